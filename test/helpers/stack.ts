/**
 * Real components for integration tests and benchmarks: a stock registry:2 (Debian
 * `docker-registry`) and a redis-server, each on a free loopback port, each in its own temp dir.
 *
 * Everything started here is recorded; on process exit (and on SIGINT/SIGTERM) every child still
 * running is SIGKILLed by PID and every temp dir removed, so a failing test leaves nothing behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './ports.js';

// ---------------------------------------------------------------------------------------------
// Process registry
// ---------------------------------------------------------------------------------------------

const running = new Set<ChildProcess>();
const tempDirs = new Set<string>();
let hooksInstalled = false;

function cleanupSync(): void {
  for (const child of running) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }
  running.clear();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', cleanupSync);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    const onSignal = (): void => {
      cleanupSync();
      process.removeListener(sig, onSignal);
      // Re-raise with the default disposition, unless someone else handles the signal.
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

/** A temp dir under os.tmpdir(), removed at exit if the owner has not removed it already. */
export function makeTempDir(prefix: string): string {
  installHooks();
  const dir = mkdtempSync(path.join(os.tmpdir(), `trustgate-${prefix}-`));
  tempDirs.add(dir);
  return dir;
}

export function removeTempDir(dir: string): void {
  tempDirs.delete(dir);
  rmSync(dir, { recursive: true, force: true });
}

/** A child process whose output tail is kept for error messages. */
export interface Managed {
  child: ChildProcess;
  pid: number;
  /** The last 16 KiB of stdout+stderr. */
  output(): string;
  /** Resolves when the process has exited (immediately if it already has). */
  exited(): Promise<void>;
  /** Sends `signal`, waits up to `graceMs`, then SIGKILLs; resolves on exit. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
}

export function spawnManaged(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Managed {
  installHooks();
  const child = spawn(cmd, args, {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let tail = '';
  const keep = (b: Buffer): void => {
    tail = (tail + b.toString('utf8')).slice(-16_384);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let spawnError: Error | undefined;
  const done = new Promise<void>((resolve) => {
    child.once('exit', () => {
      running.delete(child);
      resolve();
    });
    child.once('error', (err) => {
      spawnError = err;
      running.delete(child);
      keep(Buffer.from(`spawn ${cmd}: ${err.message}\n`));
      resolve();
    });
  });
  const isAlive = (): boolean => !spawnError && child.exitCode === null && child.signalCode === null;
  return {
    child,
    pid: child.pid ?? -1,
    output: () => tail,
    exited: () => done,
    async stop(signal = 'SIGTERM', graceMs = 5000) {
      if (!isAlive() || child.pid === undefined) return done;
      process.kill(child.pid, signal);
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((r) => {
        timer = setTimeout(() => r('timeout'), graceMs);
      });
      const r = await Promise.race([done.then(() => 'exited' as const), timeout]);
      clearTimeout(timer);
      if (r === 'timeout' && isAlive()) {
        process.kill(child.pid, 'SIGKILL');
        await done;
      }
    },
  };
}

/** Polls `probe` every 100 ms until it returns true; fails early if the process exits. */
async function waitReady(
  what: string,
  proc: Managed,
  probe: () => Promise<boolean>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void proc.exited().then(() => (exited = true));
  for (let i = 0; i < 10_000; i++) {
    if (exited) throw new Error(`${what} exited before it was ready:\n${proc.output()}`);
    if (await probe()) return;
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await proc.stop('SIGKILL');
  throw new Error(`${what} was not ready within ${timeoutMs} ms:\n${proc.output()}`);
}

function httpStatus(url: string): Promise<number> {
  return new Promise((resolve) => {
    // Readiness only: a TLS registry's certificate is checked by the clients under test.
    const get = url.startsWith('https:')
      ? (u: string, o: https.RequestOptions, cb: (res: http.IncomingMessage) => void) =>
          https.get(u, { ...o, rejectUnauthorized: false }, cb)
      : http.get;
    const req = get(url, { agent: false, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.once('timeout', () => req.destroy());
    req.once('error', () => resolve(0));
  });
}

const looksLikeBindError = (out: string): boolean => /address already in use|bind: /i.test(out);

// ---------------------------------------------------------------------------------------------
// registry:2
// ---------------------------------------------------------------------------------------------

export interface RegistryHandle {
  /** http://127.0.0.1:PORT (no trailing slash). */
  url: string;
  port: number;
  /** PID of the current registry process (changes on restart). */
  readonly pid: number;
  /** Storage root (filesystem driver). */
  dataDir: string;
  /** Path of the generated config.yml. */
  configPath: string;
  /** Last output of the registry process. */
  output(): string;
  /** SIGTERM (then SIGKILL after 5 s), wait for exit, remove the temp dir. */
  stop(): Promise<void>;
  /** SIGKILL and wait for exit; data is kept, so restart() brings it back. */
  kill(): Promise<void>;
  /** Stop (if running) and start again on the same port with the same data. */
  restart(): Promise<void>;
}

export interface RegistryOptions {
  /** Use this directory for config and data (kept on stop). Default: a fresh temp dir, removed on stop. */
  dir?: string;
  /** Registry log level (default warn; TRUSTGATE_TEST_REGISTRY_LOG overrides). */
  logLevel?: 'error' | 'warn' | 'info' | 'debug';
  /** Milliseconds to wait for GET /v2/ to answer 200. */
  readyTimeoutMs?: number;
  /** Serve this storage directory (e.g. another registry's `dataDir`, for a second endpoint). */
  dataDir?: string;
  /** Serve HTTPS with this certificate and key (PEM files); `url` is then https://. */
  tls?: { cert: string; key: string };
  /** registry:2's own `validation.manifests.urls` (allow/deny regexps for layer URLs); default: none. */
  manifestUrls?: { allow?: string[]; deny?: string[] };
  /** Pull-through cache mode (`proxy.remoteurl`): this registry mirrors the one at that URL. */
  proxyRemoteUrl?: string;
}

function registryConfig(o: {
  dataDir: string;
  port: number;
  secret: string;
  logLevel: string;
  tls?: { cert: string; key: string };
  manifestUrls?: { allow?: string[]; deny?: string[] };
  proxyRemoteUrl?: string;
}): string {
  // JSON strings are valid YAML scalars; this avoids quoting surprises in paths.
  const q = (s: string): string => JSON.stringify(s);
  return [
    'version: 0.1',
    'log:',
    `  level: ${o.logLevel}`,
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${q(o.dataDir)}`,
    '  delete:',
    '    enabled: true',
    '  maintenance:',
    '    uploadpurging:',
    '      enabled: false',
    'http:',
    `  addr: ${q(`127.0.0.1:${o.port}`)}`,
    `  secret: ${q(o.secret)}`,
    ...(o.tls ? ['  tls:', `    certificate: ${q(o.tls.cert)}`, `    key: ${q(o.tls.key)}`] : []),
    '  headers:',
    '    X-Content-Type-Options: [nosniff]',
    'health:',
    '  storagedriver:',
    '    enabled: false',
    ...(o.manifestUrls
      ? [
          'validation:',
          '  manifests:',
          '    urls:',
          ...(['allow', 'deny'] as const).flatMap((k) =>
            o.manifestUrls?.[k] ? [`      ${k}:`, ...o.manifestUrls[k].map((r) => `        - ${q(r)}`)] : [],
          ),
        ]
      : []),
    ...(o.proxyRemoteUrl ? ['proxy:', `  remoteurl: ${q(o.proxyRemoteUrl)}`] : []),
    '',
  ].join('\n');
}

export async function startRegistry(opts: RegistryOptions = {}): Promise<RegistryHandle> {
  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? makeTempDir('registry');
  const dataDir = opts.dataDir ?? path.join(dir, 'data');
  const scheme = opts.tls ? 'https' : 'http';
  const configPath = path.join(dir, 'config.yml');
  const secret = randomBytes(24).toString('hex');
  const logLevel = process.env['TRUSTGATE_TEST_REGISTRY_LOG'] ?? opts.logLevel ?? 'warn';
  const readyTimeoutMs = opts.readyTimeoutMs ?? 15_000;

  let port = 0;
  let proc: Managed | undefined;

  const launch = async (): Promise<void> => {
    writeFileSync(
      configPath,
      registryConfig({
        dataDir,
        port,
        secret,
        logLevel,
        tls: opts.tls,
        manifestUrls: opts.manifestUrls,
        proxyRemoteUrl: opts.proxyRemoteUrl,
      }),
    );
    const p = spawnManaged('docker-registry', ['serve', configPath], { cwd: dir });
    proc = p;
    await waitReady(
      `docker-registry on 127.0.0.1:${port}`,
      p,
      async () => (await httpStatus(`${scheme}://127.0.0.1:${port}/v2/`)) === 200,
      readyTimeoutMs,
    );
  };

  // The free port can be taken between probe and bind: retry a bind failure with a new port.
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    try {
      await launch();
      break;
    } catch (err) {
      if (attempt < 3 && looksLikeBindError(proc?.output() ?? '')) continue;
      if (ownDir) removeTempDir(dir);
      throw err;
    }
  }

  const url = `${scheme}://127.0.0.1:${port}`;
  return {
    url,
    port,
    get pid() {
      return proc?.pid ?? -1;
    },
    dataDir,
    configPath,
    output: () => proc?.output() ?? '',
    async stop() {
      await proc?.stop('SIGTERM', 5000);
      if (ownDir) removeTempDir(dir);
    },
    async kill() {
      await proc?.stop('SIGKILL');
    },
    async restart() {
      await proc?.stop('SIGTERM', 5000);
      await launch();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// redis-server
// ---------------------------------------------------------------------------------------------

export interface RedisHandle {
  /** redis://127.0.0.1:PORT */
  url: string;
  port: number;
  readonly pid: number;
  output(): string;
  stop(): Promise<void>;
  /** SIGKILL and wait for exit. */
  kill(): Promise<void>;
  /** Stop (if running) and start again on the same port; the data is gone (no persistence). */
  restart(): Promise<void>;
}

function redisPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    const finish = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(1000, () => finish(false));
    s.once('error', () => finish(false));
    s.once('connect', () => s.write('PING\r\n'));
    s.on('data', (b: Buffer) => {
      buf += b.toString('latin1');
      if (buf.includes('\r\n')) finish(buf.startsWith('+PONG'));
    });
  });
}

export async function startRedis(opts: { readyTimeoutMs?: number } = {}): Promise<RedisHandle> {
  const dir = makeTempDir('redis');
  const readyTimeoutMs = opts.readyTimeoutMs ?? 10_000;
  let port = 0;
  let proc: Managed | undefined;

  const launch = async (): Promise<void> => {
    const args = [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--daemonize',
      'no',
      '--dir',
      dir,
      '--loglevel',
      'warning',
    ];
    const p = spawnManaged('redis-server', args, { cwd: dir });
    proc = p;
    await waitReady(`redis-server on 127.0.0.1:${port}`, p, () => redisPing(port), readyTimeoutMs);
  };

  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    try {
      await launch();
      break;
    } catch (err) {
      if (attempt < 3 && looksLikeBindError(proc?.output() ?? '')) continue;
      removeTempDir(dir);
      throw err;
    }
  }

  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    get pid() {
      return proc?.pid ?? -1;
    },
    output: () => proc?.output() ?? '',
    async stop() {
      await proc?.stop('SIGTERM', 5000);
      removeTempDir(dir);
    },
    async kill() {
      await proc?.stop('SIGKILL');
    },
    async restart() {
      await proc?.stop('SIGTERM', 5000);
      await launch();
    },
  };
}
