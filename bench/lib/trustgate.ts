/**
 * trustgate for the benchmarks: one config (user `bench`, pull+push on bench/**, trust mode off
 * so only the proxy path is measured), started in this process through `startTrustgate` from
 * src/server/main.ts, or in a child process (bench/lib/trustgate-child.ts) for RSS sampling.
 *
 * src/server/main.ts and its dependencies are loaded dynamically: while they are missing or do
 * not load, `loadTrustgate()` returns the reason and the benchmarks skip the trustgate target.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import bcrypt from 'bcryptjs';
import { freePort } from '../../test/helpers/ports.js';
import { spawnManaged, type Managed } from '../../test/helpers/stack.js';

export const BENCH_USER = 'bench';

export interface GateFiles {
  configPath: string;
  raw: Record<string, unknown>;
  port: number;
  url: string;
  creds: { username: string; password: string };
  /** Passwords of the `pullUsers`, by name. */
  pullUsers: Record<string, string>;
}

/** Writes a trustgate config (JSON, which YAML loaders read) and its htpasswd under `dir`. */
export async function writeTrustgateConfig(
  dir: string,
  o: {
    registryUrl: string;
    cert: string;
    key: string;
    logLevel?: string;
    /** Trust rules for bench/** (default: mode off, only the proxy path is measured) and keys. */
    trust?: {
      rules: unknown[];
      keys: Record<string, string>;
      attestations?: unknown[];
      trustedRoot?: unknown;
    };
    /** More users, with pull only on bench/** (bench/starvation.ts: other identities). */
    pullUsers?: string[];
    /** upstream.reads (default: the config's default, `direct`). */
    reads?: string;
    /** The `cache` section (default: none, the config's defaults). */
    cache?: Record<string, unknown>;
  },
): Promise<GateFiles> {
  mkdirSync(path.join(dir, 'keys', 'trusted'), { recursive: true });
  const password = randomBytes(12).toString('hex');
  const htpasswd = path.join(dir, 'htpasswd');
  const pullUsers = Object.fromEntries((o.pullUsers ?? []).map((u) => [u, randomBytes(12).toString('hex')]));
  const line = (user: string, pw: string): string =>
    `${user}:${bcrypt.hashSync(pw, 4).replace(/^\$2b\$/, '$2y$')}\n`;
  writeFileSync(
    htpasswd,
    line(BENCH_USER, password) +
      Object.entries(pullUsers)
        .map(([u, pw]) => line(u, pw))
        .join(''),
  );
  const port = await freePort();
  const url = `https://127.0.0.1:${port}`;
  const raw = {
    listen: { host: '127.0.0.1', port },
    publicUrl: url,
    tls: { cert: o.cert, key: o.key },
    upstream: { url: o.registryUrl, timeoutMs: 30_000, ...(o.reads ? { reads: o.reads } : {}) },
    auth: { htpasswd, tokenKeyDir: path.join(dir, 'keys', 'token') },
    policy: {
      access: [{ repos: ['bench/**'], pull: [BENCH_USER, ...Object.keys(pullUsers)], push: [BENCH_USER] }],
    },
    trust: {
      keysDir: path.join(dir, 'keys', 'trusted'),
      rules: o.trust?.rules ?? [{ repos: ['bench/**'], mode: 'off' }],
      ...(o.trust?.attestations ? { attestations: o.trust.attestations } : {}),
      ...(o.trust?.trustedRoot !== undefined ? { trustedRoot: path.join(dir, 'trusted_root.json') } : {}),
    },
    log: { level: o.logLevel ?? 'warn' },
    ...(o.cache ? { cache: o.cache } : {}),
  };
  if (o.trust?.trustedRoot !== undefined) {
    writeFileSync(path.join(dir, 'trusted_root.json'), JSON.stringify(o.trust.trustedRoot));
  }
  for (const [name, pem] of Object.entries(o.trust?.keys ?? {})) {
    writeFileSync(path.join(dir, 'keys', 'trusted', `${name}.pub`), pem);
  }
  const configPath = path.join(dir, 'trustgate.yaml');
  writeFileSync(configPath, JSON.stringify(raw, null, 2));
  return { configPath, raw, port, url, creds: { username: BENCH_USER, password }, pullUsers };
}

/**
 * The trustgate processes a benchmark measures, in the same alternating runs: `trustgate` (this
 * build, the config's default upstream.reads); with `BENCH_READS=direct,node` one per reads value
 * (`trustgate` for the first, `trustgate-<reads>` for the others); with
 * `BENCH_BASELINE=/path/to/other/dist` also `trustgate-baseline`, started from that build of
 * trustgate (before and after a change, in one invocation).
 */
export function benchReads(): Array<{ name: string; reads?: string; dist?: string }> {
  const list = process.env['BENCH_READS']?.split(',').filter(Boolean) ?? [];
  const gates: Array<{ name: string; reads?: string; dist?: string }> =
    list.length === 0
      ? [{ name: 'trustgate' }]
      : list.map((reads, i) => ({ name: i === 0 ? 'trustgate' : `trustgate-${reads}`, reads }));
  const baseline = process.env['BENCH_BASELINE'];
  if (baseline) gates.push({ name: 'trustgate-baseline', dist: baseline });
  return gates;
}

export interface RunningGate {
  url: string;
  port: number;
  pid: number;
  close(): Promise<void>;
}

type StartFn = (
  config: unknown,
  opts?: { logger?: unknown },
) => Promise<{ port: number; close(): Promise<void> }>;
type LoadFn = (file: string, env?: NodeJS.ProcessEnv) => unknown;
type ParseFn = (raw: unknown, env?: NodeJS.ProcessEnv, baseDir?: string) => unknown;

export type Loaded =
  | { ok: true; startTrustgate: StartFn; loadConfigFile: LoadFn; parseConfig: ParseFn }
  | { ok: false; reason: string };

/** Imports src/server/main.ts and src/config/load.ts; never throws. */
export async function loadTrustgate(): Promise<Loaded> {
  try {
    // Paths relative to dist/bench/lib at run time; typed loosely so the bench compiles either way.
    const mainPath = '../../src/server/main.js';
    const loadPath = '../../src/config/load.js';
    const main = (await import(mainPath)) as { startTrustgate?: StartFn };
    const load = (await import(loadPath)) as { loadConfigFile?: LoadFn; parseConfig?: ParseFn };
    if (typeof main.startTrustgate !== 'function')
      return { ok: false, reason: 'src/server/main.ts exports no startTrustgate' };
    if (typeof load.loadConfigFile !== 'function' || typeof load.parseConfig !== 'function') {
      return { ok: false, reason: 'src/config/load.ts exports no loadConfigFile/parseConfig' };
    }
    return {
      ok: true,
      startTrustgate: main.startTrustgate,
      loadConfigFile: load.loadConfigFile,
      parseConfig: load.parseConfig,
    };
  } catch (err) {
    return { ok: false, reason: `cannot load trustgate: ${(err as Error).message.split('\n')[0]}` };
  }
}

/** startTrustgate(config) in this process. */
export async function startTrustgateInProcess(
  lib: Extract<Loaded, { ok: true }>,
  files: GateFiles,
): Promise<RunningGate> {
  const config = lib.loadConfigFile(files.configPath, {});
  const tg = await lib.startTrustgate(config);
  return { url: `https://127.0.0.1:${tg.port}`, port: tg.port, pid: process.pid, close: () => tg.close() };
}

/** trustgate in a child Node process (bench/lib/trustgate-child.ts), ready when it prints its port. */
export async function startTrustgateChild(
  files: GateFiles,
  /** Another build's dist/ (BENCH_BASELINE); default: this one. */
  dist?: string,
  /** The child script in bench/lib: trustgate, or the Node floor of bench/manifest.ts. */
  script: 'trustgate-child.js' | 'floor-child.js' = 'trustgate-child.js',
): Promise<RunningGate & { proc: Managed; nodeFlags: string[] }> {
  const child = dist
    ? path.join(dist, 'bench', 'lib', script)
    : path.join(path.dirname(fileURLToPath(import.meta.url)), script);
  // BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" profiles the gate alone.
  const nodeArgs = process.env['BENCH_NODE_ARGS']?.split(' ').filter(Boolean) ?? [];
  const proc = spawnManaged(process.execPath, [...nodeArgs, child, files.configPath]);
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`trustgate child did not start:\n${proc.output()}`)),
      20_000,
    );
    let out = '';
    proc.child.stdout?.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /^TRUSTGATE_PORT=(\d+)$/m.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    void proc.exited().then(() => {
      clearTimeout(timer);
      reject(new Error(`trustgate child exited:\n${proc.output()}`));
    });
  });
  return {
    url: `https://127.0.0.1:${port}`,
    port,
    pid: proc.pid,
    proc,
    nodeFlags: nodeArgs,
    close: () => proc.stop('SIGTERM', 5000),
  };
}
