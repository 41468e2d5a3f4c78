/**
 * Shared pieces of the publisher commands (sign, verify, copy): a small argument parser, the
 * registry connection flags (skopeo-like), image reference parsing, and the I/O the commands use.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { tryParseDockerReference } from '../core/reference.js';
import { redactText } from '../core/redact.js';
import { isLoopbackHost, RegistryClient } from './registry-client.js';

/** A mistake in the command line: exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** A file that cannot be read or used: exit code 2, without the usage text. */
export class InputError extends UsageError {
  override name = 'InputError';
}

/** What a command reads and writes; tests pass their own. */
export interface CliIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  stdin: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (mode: boolean) => unknown };
  env: NodeJS.ProcessEnv;
  now: () => Date;
}

export function defaultIo(): CliIo {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    env: process.env,
    now: () => new Date(),
  };
}

/** Progress lines: on a terminal only (stderr), silent in CI and pipes. */
export function progress(io: CliIo): (msg: string) => void {
  return io.stderr.isTTY === true ? (msg) => io.stderr.write(`${msg}\n`) : () => undefined;
}

export type OptSpec = Record<string, { type: 'string' | 'boolean'; multiple?: boolean }>;
export interface ParsedArgs {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

/**
 * `--name value`, `--name=value`, `--flag`, `--flag=true|false`, repeatable options, `--` ends options.
 * Unknown options are usage errors.
 */
export function parseArgs(argv: string[], spec: OptSpec): ParsedArgs {
  const values: ParsedArgs['values'] = {};
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!a.startsWith('--') || a === '-') {
      // Only the option's first letter: `-p…` may be a password typed as an option.
      if (a.startsWith('-') && a !== '-') throw new UsageError(`unknown option ${a.slice(0, 2)}`);
      positionals.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = eq === -1 ? a.slice(2) : a.slice(2, eq);
    const def = spec[name];
    if (def === undefined) throw new UsageError(`unknown option --${name}`);
    let value: string | boolean;
    if (def.type === 'boolean') {
      if (eq === -1) value = true;
      else {
        const v = a.slice(eq + 1);
        if (v !== 'true' && v !== 'false') throw new UsageError(`--${name} takes true or false`);
        value = v === 'true';
      }
    } else if (eq !== -1) value = a.slice(eq + 1);
    else {
      const next = argv[i + 1];
      if (next === undefined) throw new UsageError(`--${name} needs a value`);
      value = next;
      i++;
    }
    if (def.multiple === true) {
      const list = (values[name] as string[] | undefined) ?? [];
      list.push(String(value));
      values[name] = list;
    } else {
      if (values[name] !== undefined) throw new UsageError(`--${name} given twice`);
      values[name] = value;
    }
  }
  return { values, positionals };
}

export const REGISTRY_OPTS: OptSpec = {
  'ca-file': { type: 'string', multiple: true },
  'cert-dir': { type: 'string' },
  'client-cert': { type: 'string' },
  'client-key': { type: 'string' },
  'tls-verify': { type: 'boolean' },
  'plain-http': { type: 'boolean' },
  username: { type: 'string' },
  'password-stdin': { type: 'boolean' },
};

export const REGISTRY_OPTS_USAGE = `registry options:
  --ca-file FILE         trust this CA (PEM) in addition to the system roots (repeatable)
  --cert-dir DIR         skopeo-style dir: *.crt are CAs, NAME.cert + NAME.key a client certificate
  --client-cert FILE --client-key FILE   client certificate for mTLS
  --tls-verify=false     do NOT check the registry's certificate (dangerous)
  --plain-http           http instead of https (loopback registries only)
  --username USER        or TRUSTGATE_USERNAME; password from TRUSTGATE_PASSWORD or --password-stdin
`;

export interface ImageRef {
  /** `host[:port]` */
  host: string;
  repo: string;
  tag?: string;
  digest?: string;
}

/** Parses `host:port/repo[:tag][@digest]`; the host is required (no Docker Hub defaulting). */
export function parseImageRef(text: string): ImageRef {
  const r = tryParseDockerReference(text);
  if (r === null) throw new UsageError(`invalid image reference ${JSON.stringify(text)}`);
  if (r.host === undefined) {
    throw new UsageError(
      `image reference ${JSON.stringify(text)} needs a registry host, e.g. registry.example:5000/${r.repo}`,
    );
  }
  const out: ImageRef = { host: r.host, repo: r.repo };
  if (r.tag !== undefined) out.tag = r.tag;
  if (r.digest !== undefined) out.digest = r.digest;
  return out;
}

/**
 * The tag or digest a reference names, for a manifest GET. Policy: exactly one is required (no
 * implicit `latest`): a command that signs, verifies or copies says which manifest it means.
 */
export function manifestRefOf(r: ImageRef, what = 'REF'): string {
  if (r.tag !== undefined && r.digest !== undefined) {
    throw new UsageError(`give ${what} by tag or by digest, not both`);
  }
  const ref = r.digest ?? r.tag;
  if (ref === undefined) throw new UsageError(`${what} needs a :TAG or an @DIGEST`);
  return ref;
}

export function formatRef(r: ImageRef): string {
  return `${r.host}/${r.repo}${r.tag !== undefined ? `:${r.tag}` : ''}${r.digest !== undefined ? `@${r.digest}` : ''}`;
}

async function readStdin(io: CliIo): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of io.stdin) chunks.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new InputError(`cannot read ${what} ${file}: ${(err as Error).message}`);
  }
}

/** Builds a client for `host` from the registry options. */
export async function clientFromArgs(
  host: string,
  values: ParsedArgs['values'],
  io: CliIo,
): Promise<RegistryClient> {
  const ca: string[] = [];
  for (const f of (values['ca-file'] as string[] | undefined) ?? []) ca.push(readText(f, 'CA file'));
  let cert: string | undefined;
  let key: string | undefined;
  const certDir = values['cert-dir'] as string | undefined;
  if (certDir !== undefined) {
    let names: string[];
    try {
      names = readdirSync(certDir).sort();
    } catch (err) {
      throw new InputError(`cannot read --cert-dir ${certDir}: ${(err as Error).message}`);
    }
    for (const n of names) {
      const p = path.join(certDir, n);
      if (n.endsWith('.crt')) ca.push(readText(p, 'CA file'));
      else if (n.endsWith('.cert')) {
        const keyFile = p.slice(0, -'.cert'.length) + '.key';
        if (!existsSync(keyFile)) throw new UsageError(`${p} has no matching key ${keyFile}`);
        if (cert !== undefined) throw new UsageError(`${certDir} holds more than one client certificate`);
        cert = readText(p, 'client certificate');
        key = readText(keyFile, 'client key');
      } else if (n.endsWith('.key') && !existsSync(p.slice(0, -'.key'.length) + '.cert')) {
        throw new UsageError(`${p} has no matching certificate ${p.slice(0, -'.key'.length)}.cert`);
      }
    }
  }
  const cc = values['client-cert'] as string | undefined;
  const ck = values['client-key'] as string | undefined;
  if ((cc === undefined) !== (ck === undefined))
    throw new UsageError('--client-cert and --client-key go together');
  if (cc !== undefined && ck !== undefined) {
    if (cert !== undefined)
      throw new UsageError('--client-cert conflicts with the client certificate in --cert-dir');
    cert = readText(cc, 'client certificate');
    key = readText(ck, 'client key');
  }
  const tlsVerify = values['tls-verify'] !== false;
  const plain = values['plain-http'] === true;
  const hostname = new URL(`http://${host}`).hostname;
  // Policy: plain http only to loopback (credentials and unverified manifests would cross the network).
  if (plain && !isLoopbackHost(hostname))
    throw new UsageError(`--plain-http is only allowed for loopback, not ${host}`);
  if (!tlsVerify && !plain) {
    // Policy: allowed, because skopeo allows it, but never silently.
    io.stderr.write(
      `WARNING: --tls-verify=false: the certificate of ${host} is NOT checked. Anyone on the network path can ` +
        'read your credentials and change what you sign, verify or copy. Use --ca-file or --cert-dir instead.\n',
    );
  }
  const username = (values.username as string | undefined) ?? io.env['TRUSTGATE_USERNAME'];
  let password = io.env['TRUSTGATE_PASSWORD'];
  if (values['password-stdin'] === true) {
    if (username === undefined)
      throw new UsageError('--password-stdin needs --username or TRUSTGATE_USERNAME');
    password = await readStdin(io);
  }
  return new RegistryClient({
    baseUrl: `${plain ? 'http' : 'https'}://${host}`,
    ...(ca.length > 0 ? { ca } : {}),
    ...(cert !== undefined ? { cert } : {}),
    ...(key !== undefined ? { key } : {}),
    tlsVerify,
    ...(username !== undefined && username !== '' ? { username, password: password ?? '' } : {}),
    userAgent: `trustgate/${trustgateVersion()}`,
  });
}

let cachedVersion: string | undefined;
/** The version in trustgate's package.json. */
export function trustgateVersion(): string {
  if (cachedVersion !== undefined) return cachedVersion;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const p = path.join(dir, 'package.json');
    if (existsSync(p)) {
      try {
        const pkg = JSON.parse(readFileSync(p, 'utf8')) as { name?: string; version?: string };
        if (pkg.name === 'trustgate' && typeof pkg.version === 'string') return (cachedVersion = pkg.version);
      } catch {
        /* keep looking */
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) return (cachedVersion = 'unknown');
    dir = parent;
  }
}

/** Runs a command body: usage errors exit 2, other failures `failCode`, with one readable line. */
export async function runCommand(
  io: CliIo,
  usage: string,
  body: () => Promise<number>,
  failCode = 1,
): Promise<number> {
  try {
    return await body();
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(
        `trustgate: ${redactText(err.message)}\n${err instanceof InputError ? '' : `\n${usage}`}`,
      );
      return 2;
    }
    // Policy: error lines go through the log redaction (a URL with userinfo or a query, a token).
    io.stderr.write(`trustgate: ${redactText(err instanceof Error ? err.message : String(err))}\n`);
    return failCode;
  }
}
