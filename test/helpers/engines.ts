/**
 * Real container engines for end-to-end tests, started like registry:2 in stack.ts: each in its
 * own temp dir with its own state, socket and config, stopped by PID, and removed at exit.
 *
 *  - containerd (Debian `containerd`) with a private config, root, state and socket, driven with
 *    `ctr`, the way a Kubernetes node's containerd pulls (hosts.toml in a hosts directory);
 *  - dockerd (Debian `docker.io`) with no bridge, no iptables, the vfs storage driver and its own
 *    data root, exec root and socket, on top of that containerd (so no containerd of its own is
 *    left behind if dockerd dies), driven with the `docker` CLI and a private DOCKER_CONFIG;
 *  - podman (containers/image, as buildah and skopeo) with a private root, runroot and
 *    registries config; it has no daemon.
 *
 * `engineUnavailable` says why an engine cannot run at all (binary missing): the only case in
 * which a test may skip. An engine that runs but does not start is a test failure.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { makeTempDir, removeTempDir, spawnManaged, type Managed } from './stack.js';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout + stderr, for matching what the user sees. */
  output: string;
}

/** One client invocation, bounded in time. Never rejects for a non-zero exit: check `code`. */
export function run(
  cmd: string,
  args: string[],
  o: { env?: NodeJS.ProcessEnv; stdin?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  const timeoutMs = o.timeoutMs ?? 120_000;
  return new Promise((resolve) => {
    const child = spawn(cmd, args, {
      env: o.env ?? process.env,
      stdio: [o.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    const finish = (code: number, extra = ''): void => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8') + extra;
      resolve({ code, stdout, stderr, output: stdout + stderr });
    };
    child.once('error', (e) => finish(-1, `cannot run ${cmd}: ${e.message}`));
    child.once('close', (code, signal) => finish(code ?? -1, signal ? `\n[${cmd} killed: ${signal}]` : ''));
    if (o.stdin !== undefined) child.stdin?.end(o.stdin);
  });
}

/** Why `bin` cannot run at all (not installed, not executable), or undefined when it runs. */
export function engineUnavailable(bin: string, versionArgs = ['--version']): string | undefined {
  const r = spawnSync(bin, versionArgs, { stdio: 'ignore', timeout: 20_000 });
  if (r.error) return `${bin} cannot run (${r.error.message}); .ci/run installs it`;
  return undefined;
}

function socketAnswers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(socketPath);
    s.setTimeout(1000, () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(false));
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
  });
}

async function waitFor(what: string, proc: Managed, probe: () => Promise<boolean>, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void proc.exited().then(() => (exited = true));
  for (let i = 0; i < 1000; i++) {
    if (exited) throw new Error(`${what} exited before it was ready:\n${proc.output()}`);
    if (await probe()) return;
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  await proc.stop('SIGKILL');
  throw new Error(`${what} was not ready within ${timeoutMs} ms:\n${proc.output()}`);
}

// ---------------------------------------------------------------------------------------------
// containerd + ctr
// ---------------------------------------------------------------------------------------------

export interface ContainerdHandle {
  /** The gRPC socket (`ctr --address`). */
  address: string;
  dir: string;
  readonly pid: number;
  /**
   * Writes `<hostsDir>/<registryHost>/hosts.toml` (containerd's registry host configuration, as
   * a node's `/etc/containerd/certs.d`) and returns the hosts directory for `ctr --hosts-dir`.
   */
  hostsDir(name: string, registryHost: string, toml: string): string;
  /** `ctr --address … ARGS` in the `default` namespace. */
  ctr(args: string[], o?: { timeoutMs?: number }): Promise<RunResult>;
  output(): string;
  stop(): Promise<void>;
}

export async function startContainerd(): Promise<ContainerdHandle> {
  const dir = makeTempDir('containerd');
  const address = path.join(dir, 'containerd.sock');
  const q = (s: string): string => JSON.stringify(s);
  const configPath = path.join(dir, 'config.toml');
  writeFileSync(
    configPath,
    [
      'version = 2',
      `root = ${q(path.join(dir, 'root'))}`,
      `state = ${q(path.join(dir, 'state'))}`,
      // No CRI (this is not a kubelet), nothing listening beyond the private sockets.
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      '[grpc]',
      `  address = ${q(address)}`,
      '[ttrpc]',
      `  address = ${q(address + '.ttrpc')}`,
      '[debug]',
      `  address = ${q(path.join(dir, 'debug.sock'))}`,
      '[metrics]',
      '  address = ""',
      '',
    ].join('\n'),
  );
  const proc = spawnManaged('containerd', ['--config', configPath], { cwd: dir });
  try {
    await waitFor(`containerd in ${dir}`, proc, () => socketAnswers(address), 20_000);
  } catch (err) {
    removeTempDir(dir);
    throw err;
  }
  return {
    address,
    dir,
    get pid() {
      return proc.pid;
    },
    hostsDir(name, registryHost, toml) {
      const hosts = path.join(dir, 'hosts', name);
      mkdirSync(path.join(hosts, registryHost), { recursive: true });
      writeFileSync(path.join(hosts, registryHost, 'hosts.toml'), toml);
      return hosts;
    },
    ctr: (args, o = {}) => run('ctr', ['--address', address, ...args], o),
    output: () => proc.output(),
    async stop() {
      await proc.stop('SIGTERM', 10_000);
      removeTempDir(dir);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// dockerd + docker
// ---------------------------------------------------------------------------------------------

export interface DockerdHandle {
  /** DOCKER_HOST for the CLI: `unix://…/docker.sock`. */
  host: string;
  dir: string;
  readonly pid: number;
  /** The docker CLI against this daemon, with a private DOCKER_CONFIG (credentials of `login`). */
  docker(args: string[], o?: { stdin?: string; timeoutMs?: number }): Promise<RunResult>;
  output(): string;
  stop(): Promise<void>;
}

export async function startDockerd(containerd: ContainerdHandle): Promise<DockerdHandle> {
  const dir = makeTempDir('dockerd');
  const sock = path.join(dir, 'docker.sock');
  const host = `unix://${sock}`;
  const args = [
    '--bridge=none',
    '--iptables=false',
    '--ip6tables=false',
    '--ip-masq=false',
    '--storage-driver=vfs',
    `--data-root=${path.join(dir, 'data')}`,
    `--exec-root=${path.join(dir, 'exec')}`,
    `--pidfile=${path.join(dir, 'docker.pid')}`,
    `--containerd=${containerd.address}`,
    // A private, empty daemon.json: no mirrors, no insecure registries beyond docker's built-in
    // 127.0.0.0/8 (see the tests), whatever /etc/docker/daemon.json says.
    `--config-file=${path.join(dir, 'daemon.json')}`,
    '-H',
    host,
  ];
  writeFileSync(path.join(dir, 'daemon.json'), '{}\n');
  const proc = spawnManaged('dockerd', args, { cwd: dir });
  const env = { ...process.env, DOCKER_HOST: host, DOCKER_CONFIG: path.join(dir, 'client') };
  try {
    await waitFor(
      `dockerd in ${dir}`,
      proc,
      async () => (await socketAnswers(sock)) && (await run('docker', ['version'], { env })).code === 0,
      60_000,
    );
  } catch (err) {
    removeTempDir(dir);
    throw err;
  }
  return {
    host,
    dir,
    get pid() {
      return proc.pid;
    },
    docker: (a, o = {}) => run('docker', a, { ...o, env }),
    output: () => proc.output(),
    async stop() {
      await proc.stop('SIGTERM', 15_000);
      removeTempDir(dir);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// podman (no daemon)
// ---------------------------------------------------------------------------------------------

export interface PodmanHandle {
  dir: string;
  podman(args: string[], o?: { timeoutMs?: number }): Promise<RunResult>;
  /** The containers-storage: reference of `name` in this podman's store (for skopeo copy). */
  storageRef(name: string): string;
  stop(): Promise<void>;
}

export function startPodman(): PodmanHandle {
  const dir = makeTempDir('podman');
  // No search registries and no short names: every reference in the tests is fully qualified.
  const registries = path.join(dir, 'registries.conf');
  writeFileSync(registries, 'unqualified-search-registries = []\nshort-name-mode = "disabled"\n');
  writeFileSync(path.join(dir, 'auth.json'), '{"auths":{}}\n');
  const env = {
    ...process.env,
    CONTAINERS_REGISTRIES_CONF: registries,
    REGISTRY_AUTH_FILE: path.join(dir, 'auth.json'),
    XDG_RUNTIME_DIR: path.join(dir, 'xdg'),
    XDG_CONFIG_HOME: path.join(dir, 'config'),
  };
  mkdirSync(env.XDG_RUNTIME_DIR, { recursive: true });
  const base = [
    '--root',
    path.join(dir, 'root'),
    '--runroot',
    path.join(dir, 'run'),
    '--storage-driver',
    'vfs',
    '--cgroup-manager',
    'cgroupfs',
    '--events-backend',
    'none',
  ];
  return {
    dir,
    podman: (args, o = {}) => run('podman', [...base, ...args], { ...o, env }),
    storageRef: (name) =>
      `containers-storage:[vfs@${path.join(dir, 'root')}+${path.join(dir, 'run')}]${name}`,
    async stop() {
      removeTempDir(dir);
    },
  };
}
