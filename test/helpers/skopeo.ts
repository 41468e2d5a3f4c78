/**
 * Runs the real skopeo (Debian 1.9.3) hermetically: each SkopeoContext has its own HOME,
 * XDG_RUNTIME_DIR, auth file (--authfile and REGISTRY_AUTH_FILE), trust policy, registries.d and
 * tmpdir, all in one temp dir, so nothing leaks between tests or into the real home directory.
 *
 * Cert dirs (containers/image pkg/tlsclientconfig rules): every `*.crt` is a CA certificate;
 * every `*.cert` is a client certificate that needs the same-named `*.key`, and a `*.key` without
 * a `*.cert` is an error. So a CA's private key must never sit in a cert dir.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { makeTempDir, removeTempDir } from './stack.js';

export interface SkopeoResult {
  code: number;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface SkopeoRunOptions {
  /** Kill skopeo after this long (default 120 s). */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Bytes written to stdin (e.g. a password for --password-stdin). */
  stdin?: string;
}

/** One skopeo invocation, bounded in time. Never rejects for a non-zero exit: check `code`. */
export function runSkopeo(args: string[], opts: SkopeoRunOptions = {}): Promise<SkopeoResult> {
  const timeoutMs = opts.timeoutMs ?? 120_000;
  return new Promise((resolve, reject) => {
    const child = spawn('skopeo', args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: [opts.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run skopeo: ${e.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        code: code ?? -1,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8') + (timedOut ? `\n[killed after ${timeoutMs} ms]` : ''),
        timedOut,
      });
    });
    if (opts.stdin !== undefined) child.stdin?.end(opts.stdin);
  });
}

/** How skopeo reaches one registry endpoint (the `src` or `dest` side of a copy). */
export interface Endpoint {
  /** `--*-tls-verify` (default true: HTTPS with verification; false allows plain http). */
  tlsVerify?: boolean;
  /** `--*-cert-dir`: a dir made by makeCertDir. */
  certDir?: string;
  /** `--*-creds USER:PASS`. */
  creds?: { username: string; password: string };
  /** `--*-registry-token`. */
  token?: string;
  /** `--*-no-creds`. */
  anonymous?: boolean;
}

/** `src`/`dest` for copy's two sides; `''` for one-endpoint commands (inspect, login, delete). */
export type Side = 'src' | 'dest' | '';

const flag = (side: Side, name: string): string => (side ? `--${side}-${name}` : `--${name}`);

export function tlsArgs(side: Side, e: Pick<Endpoint, 'tlsVerify' | 'certDir'>): string[] {
  const a: string[] = [];
  if (e.tlsVerify !== undefined) a.push(`${flag(side, 'tls-verify')}=${e.tlsVerify ? 'true' : 'false'}`);
  if (e.certDir !== undefined) a.push(flag(side, 'cert-dir'), e.certDir);
  return a;
}

export function credsArgs(side: Side, e: Pick<Endpoint, 'creds' | 'token' | 'anonymous'>): string[] {
  if (e.anonymous) return [flag(side, 'no-creds')];
  if (e.token !== undefined) return [flag(side, 'registry-token'), e.token];
  if (e.creds) return [flag(side, 'creds'), `${e.creds.username}:${e.creds.password}`];
  return [];
}

export function endpointArgs(side: Side, e: Endpoint | undefined): string[] {
  return e ? [...tlsArgs(side, e), ...credsArgs(side, e)] : [];
}

/**
 * Writes a skopeo cert dir: `ca.crt` (PEM text or a path to one) and, for mTLS,
 * `client.cert` + `client.key`. Returns `dir`.
 */
export function makeCertDir(dir: string, o: { ca: string; client?: { cert: string; key: string } }): string {
  const pemOrFile = (v: string): string => (v.includes('-----BEGIN') ? v : readFileSync(v, 'utf8'));
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(path.join(dir, 'ca.crt'), pemOrFile(o.ca));
  if (o.client) {
    writeFileSync(path.join(dir, 'client.cert'), pemOrFile(o.client.cert));
    writeFileSync(path.join(dir, 'client.key'), pemOrFile(o.client.key), { mode: 0o600 });
  }
  return dir;
}

export interface CopyOptions {
  src?: Endpoint;
  dest?: Endpoint;
  /** `--all` (default true: copy every image of an index). */
  all?: boolean;
  /** `--preserve-digests` (default true: fail rather than convert a manifest). */
  preserveDigests?: boolean;
  extra?: string[];
  timeoutMs?: number;
}

export interface SkopeoContext {
  /** The temp dir holding HOME, the auth file, policy and tmpdir. */
  dir: string;
  authfile: string;
  env: NodeJS.ProcessEnv;
  /** Global options put before the subcommand (policy, registries.d, tmpdir). */
  globalArgs: string[];
  run(args: string[], opts?: SkopeoRunOptions): Promise<SkopeoResult>;
  copy(src: string, dest: string, opts?: CopyOptions): Promise<SkopeoResult>;
  /** Like copy, but throws with skopeo's stderr on a non-zero exit. */
  copyOk(src: string, dest: string, opts?: CopyOptions): Promise<SkopeoResult>;
  /** `skopeo inspect --raw` (the manifest bytes exactly as served). */
  inspectRaw(ref: string, e?: Endpoint): Promise<SkopeoResult>;
  login(host: string, creds: { username: string; password: string }, e?: Endpoint): Promise<SkopeoResult>;
  close(): void;
}

export function createSkopeoContext(): SkopeoContext {
  const dir = makeTempDir('skopeo');
  const home = path.join(dir, 'home');
  const runtime = path.join(dir, 'run');
  const tmp = path.join(dir, 'tmp');
  const regd = path.join(dir, 'registries.d');
  for (const d of [home, runtime, tmp, regd]) mkdirSync(d, { recursive: true, mode: 0o700 });
  const authfile = path.join(dir, 'auth.json');
  writeFileSync(authfile, '{"auths":{}}\n', { mode: 0o600 });
  const policy = path.join(dir, 'policy.json');
  writeFileSync(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  const env: NodeJS.ProcessEnv = {
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    HOME: home,
    XDG_RUNTIME_DIR: runtime,
    XDG_CONFIG_HOME: path.join(home, '.config'),
    REGISTRY_AUTH_FILE: authfile,
    TMPDIR: tmp,
  };
  const globalArgs = ['--policy', policy, '--registries.d', regd, '--tmpdir', tmp];
  // Per-subcommand auth file flags: copy has --src-authfile/--dest-authfile as well.
  const authArgs = (sub: string): string[] =>
    sub === 'copy' ? ['--src-authfile', authfile, '--dest-authfile', authfile] : ['--authfile', authfile];

  const run = (args: string[], opts: SkopeoRunOptions = {}): Promise<SkopeoResult> => {
    const [sub, ...rest] = args;
    const withAuth = sub && ['copy', 'inspect', 'login', 'logout', 'delete', 'list-tags'].includes(sub);
    const full = sub ? [...globalArgs, sub, ...(withAuth ? authArgs(sub) : []), ...rest] : globalArgs;
    return runSkopeo(full, { ...opts, env: { ...env, ...opts.env } });
  };

  const copy = (src: string, dest: string, o: CopyOptions = {}): Promise<SkopeoResult> => {
    const args = ['copy', '--retry-times', '0'];
    if (o.all ?? true) args.push('--all');
    if (o.preserveDigests ?? true) args.push('--preserve-digests');
    args.push(...endpointArgs('src', o.src), ...endpointArgs('dest', o.dest), ...(o.extra ?? []), src, dest);
    return run(args, o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {});
  };

  return {
    dir,
    authfile,
    env,
    globalArgs,
    run,
    copy,
    async copyOk(src, dest, o) {
      const r = await copy(src, dest, o);
      if (r.code !== 0) throw new Error(`skopeo copy ${src} ${dest} failed (${r.code}):\n${r.stderr}`);
      return r;
    },
    inspectRaw(ref, e) {
      return run(['inspect', '--raw', ...endpointArgs('', e), ref]);
    },
    login(host, creds, e) {
      const args = ['login', '--username', creds.username, '--password-stdin', ...(e ? tlsArgs('', e) : [])];
      return run([...args, host], { stdin: creds.password });
    },
    close() {
      removeTempDir(dir);
    },
  };
}
