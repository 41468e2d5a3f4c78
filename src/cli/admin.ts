/**
 * `trustgate keys …`, `trustgate users …`, `trustgate robots …`: thin clients of the admin API
 * (`/admin/v1/`, docs/admin-api.openapi.yaml). They use the registry connection flags of the
 * other commands; the admin's credentials get a token from trustgate's /token (or an admin client
 * certificate is used). Every decision is the server's; these only format requests and answers.
 */
import { readFileSync } from 'node:fs';
import { RegistryError } from './registry-client.js';
import {
  REGISTRY_OPTS,
  REGISTRY_OPTS_USAGE,
  InputError,
  UsageError,
  clientFromArgs,
  defaultIo,
  parseArgs,
  runCommand,
  type CliIo,
  type OptSpec,
  type ParsedArgs,
} from './registry-opts.js';

const SERVER_USAGE = `  --server HOST[:PORT]   trustgate to talk to (or TRUSTGATE_SERVER)
  --json                 print the server's JSON answer
`;

export const KEYS_USAGE = `usage: trustgate keys list
       trustgate keys add NAME --pem FILE [--repos 'prod/**,team/*'] [--not-before T] [--not-after T] [--comment C]
       trustgate keys revoke NAME [--reason R]
       trustgate keys rotate NAME --pem FILE [--new-name N] [--grace SECONDS] [--not-after T]

Manages trusted publisher keys through trustgate's admin API (admin role required).
  add       trust a public key (PEM, Ed25519 or ECDSA P-256) for trust rules naming it and for --repos
  revoke    revoke a key at once (final; the file stays for audit)
  rotate    add the new key as NAME-<n> (or --new-name), trusted where NAME is; NAME stays valid for
            --grace seconds (default 86400)
Times are ISO 8601 with a zone, e.g. 2027-01-01T00:00:00Z.
${SERVER_USAGE}${REGISTRY_OPTS_USAGE}`;

export const USERS_USAGE = `usage: trustgate users list
       trustgate users add NAME      new password from TRUSTGATE_NEW_PASSWORD, else the first line of stdin
       trustgate users remove NAME
${SERVER_USAGE}${REGISTRY_OPTS_USAGE}`;

export const ROBOTS_USAGE = `usage: trustgate robots add NAME     prints the login (robot$NAME) and its secret, once
       trustgate robots remove NAME
${SERVER_USAGE}${REGISTRY_OPTS_USAGE}`;

const COMMON: OptSpec = { ...REGISTRY_OPTS, server: { type: 'string' }, json: { type: 'boolean' } };

interface Ctx {
  io: CliIo;
  args: ParsedArgs;
  call(method: string, path: string, body?: unknown): Promise<unknown>;
  print(value: unknown, human: () => string): void;
}

async function withClient(
  io: CliIo,
  argv: string[],
  spec: OptSpec,
  body: (ctx: Ctx) => Promise<number>,
): Promise<number> {
  const args = parseArgs(argv, { ...COMMON, ...spec });
  const server = (args.values['server'] as string | undefined) ?? io.env['TRUSTGATE_SERVER'];
  if (server === undefined || server === '')
    throw new UsageError('--server HOST[:PORT] (or TRUSTGATE_SERVER) is required');
  if (!/^[A-Za-z0-9.-]+(?::\d{1,5})?$|^\[[0-9a-fA-F:]+\](?::\d{1,5})?$/.test(server)) {
    // Not echoed: a `user:password@host` given by mistake would print the password.
    throw new UsageError('--server takes HOST[:PORT] only (no scheme, user, password or path)');
  }
  const client = await clientFromArgs(server, args.values, io);
  const json = args.values['json'] === true;
  try {
    return await body({
      io,
      args,
      call: (method, path, b) => client.adminRequest(method, path, b),
      print: (value, human) => io.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : human()),
    });
  } catch (err) {
    // One readable line: the server's code and message (e.g. `400 UNSUPPORTED: key refused: …`).
    if (err instanceof RegistryError) throw new Error(err.message);
    throw err;
  } finally {
    client.close();
  }
}

function one(args: ParsedArgs, what: string): string {
  if (args.positionals.length !== 1) throw new UsageError(`expected exactly one ${what}`);
  return args.positionals[0]!;
}

function readPem(file: string | undefined): string {
  if (file === undefined) throw new UsageError('--pem FILE is required');
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new InputError(`cannot read --pem ${file}: ${(err as Error).message}`);
  }
}

const enc = (s: string): string => encodeURIComponent(s);

interface KeyView {
  name: string;
  alg: string;
  fingerprint: string;
  status: string;
  repos: string[];
  trustedAs: string[];
  notBefore?: string;
  notAfter?: string;
}

function keyLine(k: KeyView): string {
  const parts = [
    k.name.padEnd(24),
    k.status.padEnd(13),
    k.alg.padEnd(10),
    k.fingerprint.slice(0, 23),
    k.repos.length > 0 ? `repos=${k.repos.join(',')}` : '',
    k.trustedAs.length > 0 ? `as=${k.trustedAs.join(',')}` : '',
    k.notBefore ? `from=${k.notBefore}` : '',
    k.notAfter ? `until=${k.notAfter}` : '',
  ];
  return `${parts.filter((p) => p !== '').join('  ')}\n`;
}

export async function keysCommand(argv: string[], io: CliIo = defaultIo()): Promise<number> {
  return runCommand(io, KEYS_USAGE, async () => {
    const [sub, ...rest] = argv;
    const spec: OptSpec = {
      pem: { type: 'string' },
      repos: { type: 'string' },
      'not-before': { type: 'string' },
      'not-after': { type: 'string' },
      comment: { type: 'string' },
      reason: { type: 'string' },
      'new-name': { type: 'string' },
      grace: { type: 'string' },
    };
    const allowed: Record<string, string[]> = {
      list: [],
      add: ['pem', 'repos', 'not-before', 'not-after', 'comment'],
      revoke: ['reason'],
      rotate: ['pem', 'new-name', 'grace', 'not-after'],
    };
    if (sub === undefined || sub === '--help' || sub === 'help') {
      io.stdout.write(KEYS_USAGE);
      return sub === undefined ? 2 : 0;
    }
    const ok = allowed[sub];
    if (ok === undefined) throw new UsageError(`unknown keys subcommand ${JSON.stringify(sub)}`);
    return withClient(io, rest, spec, async (c) => {
      for (const k of Object.keys(spec)) {
        if (c.args.values[k] !== undefined && !ok.includes(k))
          throw new UsageError(`--${k} does not apply to keys ${sub}`);
      }
      const v = c.args.values as Record<string, string | undefined>;
      switch (sub) {
        case 'list': {
          if (c.args.positionals.length > 0) throw new UsageError('keys list takes no arguments');
          const r = (await c.call('GET', '/admin/v1/keys')) as {
            keys: KeyView[];
            errors: Array<{ file: string; error: string }>;
          };
          c.print(
            r,
            () =>
              [...r.keys.map(keyLine), ...r.errors.map((e) => `NOT LOADED ${e.file}: ${e.error}\n`)].join(
                '',
              ) || 'no trusted keys\n',
          );
          return 0;
        }
        case 'add': {
          const name = one(c.args, 'key NAME');
          const repos = v['repos']
            ?.split(',')
            .map((s) => s.trim())
            .filter((s) => s !== '');
          const k = (await c.call('POST', '/admin/v1/keys', {
            name,
            pem: readPem(v['pem']),
            ...(repos !== undefined ? { repos } : {}),
            ...(v['not-before'] !== undefined ? { notBefore: v['not-before'] } : {}),
            ...(v['not-after'] !== undefined ? { notAfter: v['not-after'] } : {}),
            ...(v['comment'] !== undefined ? { comment: v['comment'] } : {}),
          })) as KeyView;
          c.print(k, () => `added ${keyLine(k)}`);
          return 0;
        }
        case 'revoke': {
          const name = one(c.args, 'key NAME');
          const r = (await c.call(
            'POST',
            `/admin/v1/keys/${enc(name)}/revoke`,
            v['reason'] !== undefined ? { reason: v['reason'] } : {},
          )) as { key: KeyView; changed: boolean };
          c.print(r, () => `${r.changed ? 'revoked' : 'already revoked'} ${keyLine(r.key)}`);
          return 0;
        }
        case 'rotate': {
          const name = one(c.args, 'key NAME');
          let grace: number | undefined;
          if (v['grace'] !== undefined) {
            if (!/^\d{1,10}$/.test(v['grace'])) throw new UsageError('--grace takes a number of seconds');
            grace = Number(v['grace']);
          }
          const r = (await c.call('POST', `/admin/v1/keys/${enc(name)}/rotate`, {
            pem: readPem(v['pem']),
            ...(v['new-name'] !== undefined ? { newName: v['new-name'] } : {}),
            ...(grace !== undefined ? { graceSeconds: grace } : {}),
            ...(v['not-after'] !== undefined ? { notAfter: v['not-after'] } : {}),
          })) as { old: KeyView; new: KeyView };
          c.print(r, () => `new ${keyLine(r.new)}old ${keyLine(r.old)}`);
          return 0;
        }
      }
      return 2;
    });
  });
}

async function readFirstLine(io: CliIo): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of io.stdin) {
    const b = typeof c === 'string' ? Buffer.from(c) : (c as Buffer);
    chunks.push(b);
    size += b.length;
    if (size > 4096) break;
  }
  return Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '';
}

export async function usersCommand(argv: string[], io: CliIo = defaultIo()): Promise<number> {
  return runCommand(io, USERS_USAGE, async () => {
    const [sub, ...rest] = argv;
    if (sub === undefined || sub === '--help' || sub === 'help') {
      io.stdout.write(USERS_USAGE);
      return sub === undefined ? 2 : 0;
    }
    if (!['list', 'add', 'remove'].includes(sub))
      throw new UsageError(`unknown users subcommand ${JSON.stringify(sub)}`);
    return withClient(io, rest, {}, async (c) => {
      if (sub === 'list') {
        if (c.args.positionals.length > 0) throw new UsageError('users list takes no arguments');
        const r = (await c.call('GET', '/admin/v1/users')) as { users: string[]; robots: string[] };
        c.print(r, () => [...r.users, ...r.robots.map((n) => `robot$${n}`)].map((n) => `${n}\n`).join(''));
        return 0;
      }
      const name = one(c.args, 'user NAME');
      if (sub === 'remove') {
        const r = await c.call('DELETE', `/admin/v1/users/${enc(name)}`);
        c.print(r, () => `removed user ${name}\n`);
        return 0;
      }
      let password = io.env['TRUSTGATE_NEW_PASSWORD'];
      if (password === undefined) {
        // Policy: stdin can carry one password only; the admin's own then comes from the environment.
        if (c.args.values['password-stdin'] === true) {
          throw new UsageError('with --password-stdin, give the new password in TRUSTGATE_NEW_PASSWORD');
        }
        password = await readFirstLine(io);
      }
      if (password === '') throw new UsageError('no new password (TRUSTGATE_NEW_PASSWORD or stdin)');
      const r = await c.call('POST', '/admin/v1/users', { name, password });
      c.print(r, () => `added user ${name}\n`);
      return 0;
    });
  });
}

export async function robotsCommand(argv: string[], io: CliIo = defaultIo()): Promise<number> {
  return runCommand(io, ROBOTS_USAGE, async () => {
    const [sub, ...rest] = argv;
    if (sub === undefined || sub === '--help' || sub === 'help') {
      io.stdout.write(ROBOTS_USAGE);
      return sub === undefined ? 2 : 0;
    }
    if (!['add', 'remove'].includes(sub))
      throw new UsageError(`unknown robots subcommand ${JSON.stringify(sub)}`);
    return withClient(io, rest, {}, async (c) => {
      const name = one(c.args, 'robot NAME');
      if (sub === 'remove') {
        const r = await c.call('DELETE', `/admin/v1/robots/${enc(name)}`);
        c.print(r, () => `removed robot ${name}\n`);
        return 0;
      }
      const r = (await c.call('POST', '/admin/v1/robots', { name })) as { login: string; secret: string };
      c.print(r, () => `login:  ${r.login}\nsecret: ${r.secret}\n(shown once; store it now)\n`);
      return 0;
    });
  });
}

export const EXCEPTIONS_USAGE = `usage: trustgate exceptions list
       trustgate exceptions add CVE --repos 'prod/**[,…]' --expires 7d|12h|2027-01-01T00:00:00Z --reason R
       trustgate exceptions remove ID

Vulnerability exceptions of the attestation gates (trust.attestations), through the admin API:
  add       let images of --repos ship although their scan lists CVE, until --expires (at most 365 days)
  remove    end an exception at once
  list      every exception, active or expired (expired ones never apply; remove or renew them)
${SERVER_USAGE}${REGISTRY_OPTS_USAGE}`;

interface ExceptionView {
  id: string;
  cve: string;
  repos: string[];
  expires: string;
  reason: string;
  by: string;
  status?: string;
}

function exceptionLine(e: ExceptionView): string {
  return `${e.id}  ${(e.status ?? 'active').padEnd(8)} ${e.cve.padEnd(20)} repos=${e.repos.join(',')}  until=${e.expires}  by=${e.by}  reason=${JSON.stringify(e.reason)}\n`;
}

/** `7d`, `12h`, `30m` from now, or an ISO 8601 date-time passed through (the server checks it). */
export function expiryFrom(text: string, now: Date): string {
  const m = /^(\d{1,5})([dhm])$/.exec(text);
  if (!m) return text;
  const unit = { d: 86_400_000, h: 3_600_000, m: 60_000 }[m[2] as 'd' | 'h' | 'm'];
  return new Date(now.getTime() + Number(m[1]) * unit).toISOString();
}

export async function exceptionsCommand(argv: string[], io: CliIo = defaultIo()): Promise<number> {
  return runCommand(io, EXCEPTIONS_USAGE, async () => {
    const [sub, ...rest] = argv;
    if (sub === undefined || sub === '--help' || sub === 'help') {
      io.stdout.write(EXCEPTIONS_USAGE);
      return sub === undefined ? 2 : 0;
    }
    if (!['list', 'add', 'remove'].includes(sub))
      throw new UsageError(`unknown exceptions subcommand ${JSON.stringify(sub)}`);
    const spec: OptSpec = {
      repos: { type: 'string' },
      expires: { type: 'string' },
      reason: { type: 'string' },
    };
    return withClient(io, rest, spec, async (c) => {
      const v = c.args.values as Record<string, string | undefined>;
      if (sub !== 'add') {
        for (const k of Object.keys(spec)) {
          if (v[k] !== undefined) throw new UsageError(`--${k} does not apply to exceptions ${sub}`);
        }
      }
      if (sub === 'list') {
        if (c.args.positionals.length > 0) throw new UsageError('exceptions list takes no arguments');
        const r = (await c.call('GET', '/admin/v1/exceptions')) as {
          exceptions: ExceptionView[];
          expired: Array<{ id: string; cve: string; expires: string }>;
        };
        c.print(
          r,
          () =>
            (r.exceptions.map(exceptionLine).join('') || 'no exceptions\n') +
            (r.expired.length > 0 ? `${r.expired.length} expired exception(s): remove or renew them\n` : ''),
        );
        return 0;
      }
      if (sub === 'remove') {
        const id = one(c.args, 'exception ID');
        const r = (await c.call('DELETE', `/admin/v1/exceptions/${enc(id)}`)) as { exception: ExceptionView };
        c.print(r, () => `removed ${exceptionLine(r.exception)}`);
        return 0;
      }
      const cve = one(c.args, 'CVE');
      const repos = (v['repos'] ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
      if (repos.length === 0) throw new UsageError("--repos 'PATTERN[,…]' is required");
      if (v['expires'] === undefined)
        throw new UsageError('--expires (7d, 12h or an ISO date-time) is required');
      if (v['reason'] === undefined || v['reason'].trim() === '')
        throw new UsageError('--reason is required');
      const e = (await c.call('POST', '/admin/v1/exceptions', {
        cve,
        repos,
        expires: expiryFrom(v['expires'], io.now()),
        reason: v['reason'],
      })) as ExceptionView;
      c.print(e, () => `added ${exceptionLine(e)}`);
      return 0;
    });
  });
}
