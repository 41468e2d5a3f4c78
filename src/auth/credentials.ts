/**
 * Password credentials: users from an htpasswd file (bcrypt, as `htpasswd -B` writes it) and robot
 * accounts for CI (same file format, long random secrets), plus the failed-login limiter.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { isIPv6 } from 'node:net';
import bcrypt from 'bcryptjs';
import { GateError } from '../core/errors.js';
import type { Identity } from '../core/types.js';
import { checkCredentialShape, MAX_USER_LENGTH } from './basic.js';

/**
 * Robot accounts log in as `robot$<name>` and are `robot:<name>` in policy. (A Basic user name
 * cannot contain `:`, so the login needs its own separator; `$` is Harbor's convention.)
 */
export const ROBOT_LOGIN_PREFIX = 'robot$';
export const ROBOT_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const BCRYPT = /^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$/;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
/** Policy: names that mean something else in policy can never be accounts. */
const RESERVED_USERS = new Set(['anonymous', '*']);

export interface CredentialLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** The `auth` config fields this module reads. */
export interface CredentialOptions {
  htpasswd?: string | undefined;
  robotsFile?: string | undefined;
  maxFailures: number;
  failureWindowSeconds: number;
  maxFailuresPerAddress?: number | undefined;
}

export interface CredentialStoreOptions {
  /** Failures per account (user name, known or not) within the window before 429. */
  maxFailures: number;
  failureWindowSeconds: number;
  /** Failures per client address within the window before 429 (default 4 x maxFailures). */
  maxFailuresPerAddress?: number | undefined;
  /** Clock in ms (injectable for tests). */
  now?: () => number;
  /** How a failure's delay is served (injectable for tests). */
  sleep?: (ms: number) => Promise<void>;
}

/** A random robot secret: 32 bytes from the CSPRNG, base64url (43 characters, 256 bits). */
export function generateRobotSecret(): string {
  return randomBytes(32).toString('base64url');
}

/** A robots-file line for `name` and `secret` (bcrypt, `$2y$` like `htpasswd -B`). */
export function robotsFileLine(name: string, secret: string, cost = 12): string {
  if (!ROBOT_NAME.test(name))
    throw new TypeError(`robot name ${JSON.stringify(name)} must match ${ROBOT_NAME.source}`);
  return `${name}:${bcrypt.hashSync(secret, cost).replace(/^\$2b\$/, '$2y$')}`;
}

function describeHash(hash: string): string {
  if (hash.startsWith('$apr1$')) return 'MD5 (htpasswd -m)';
  if (hash.startsWith('{SHA}')) return 'SHA-1 (htpasswd -s)';
  if (/^\$[156]\$/.test(hash)) return 'crypt(3) MD5/SHA (htpasswd -d or -2/-5)';
  if (/^[./A-Za-z0-9]{13}$/.test(hash)) return 'DES crypt (htpasswd -d)';
  if (/^\$2[aby]\$/.test(hash)) return 'bcrypt with an unusable cost or length';
  return 'plain text or unknown';
}

/**
 * Reads `name:hash` lines. Policy: bcrypt only (`$2y$`, `$2b$`, `$2a$`, cost 4..31); MD5, SHA-1,
 * crypt and plain-text lines are refused with a warning naming the file, the line and what it
 * found (never the hash). Reserved, oversized or control-character names and duplicates are
 * refused the same way; for a duplicate the first line wins (as Apache does).
 */
export function parseHtpasswd(
  text: string,
  file: string,
  log: CredentialLogger,
  validName: (name: string) => string | null = validUserName,
): Map<string, string> {
  const out = new Map<string, string>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    if (line.trim() === '' || line.startsWith('#')) return;
    const colon = line.indexOf(':');
    const where = { file, line: i + 1 };
    if (colon <= 0) {
      log.warn(where, 'credential line skipped: expected name:bcrypt-hash');
      return;
    }
    const name = line.slice(0, colon);
    const hash = line.slice(colon + 1).trim();
    const badName = validName(name);
    if (badName) {
      log.warn(where, `credential line skipped: ${badName}`);
      return;
    }
    const m = BCRYPT.exec(hash);
    const cost = m ? Number(m[1]) : 0;
    if (!m || cost < 4 || cost > 31) {
      log.warn(
        { ...where, found: describeHash(hash) },
        `credential line skipped: only bcrypt hashes (htpasswd -B) are accepted, found ${describeHash(hash)}`,
      );
      return;
    }
    if (out.has(name)) {
      log.warn(where, 'credential line skipped: duplicate name (the first line wins)');
      return;
    }
    out.set(name, hash);
  });
  return out;
}

function validUserName(name: string): string | null {
  if (name.length > MAX_USER_LENGTH) return `user names are at most ${MAX_USER_LENGTH} characters`;
  if (CONTROL.test(name)) return 'control characters in the user name';
  if (RESERVED_USERS.has(name)) return `${JSON.stringify(name)} is reserved`;
  if (name.startsWith(ROBOT_LOGIN_PREFIX))
    return `user names may not start with ${ROBOT_LOGIN_PREFIX} (robots file)`;
  return null;
}

function validRobotName(name: string): string | null {
  return ROBOT_NAME.test(name) ? null : `robot names must match ${ROBOT_NAME.source}`;
}

/**
 * The key for a client address. Policy: the socket's address, never a header. IPv4-mapped IPv6 is
 * read as IPv4; an IPv6 address is keyed by its /64, the block one host usually owns.
 */
export function addressKey(address: string | undefined): string {
  if (!address) return 'a:unknown';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return `a:${mapped[1]}`;
  if (!isIPv6(address)) return `a:${address}`;
  const [head = '', tail = ''] = address.split('%')[0]!.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = address.includes('::')
    ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t]
    : h;
  return `a:${groups
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}

interface FailureState {
  /** Failures (and attempts in flight) in the current window. */
  count: number;
  windowStart: number;
  lockedUntil: number;
}

const MAX_TRACKED = 100_000;

/**
 * Counts failed logins per account and per client address.
 * - Policy: an attempt counts as a failure from the moment it starts and is taken back if it
 *   succeeds, so parallel guesses cannot slip past the limit while bcrypt runs.
 * - After the second failure within the window each failed answer is delayed, doubling from
 *   250 ms up to 4 s; at the limit the key is locked and refused with 429 (Retry-After) for one
 *   window, even with the right password.
 */
export class FailureLimiter {
  constructor(
    private readonly windowMs: number,
    private readonly limitOf: (key: string) => number,
    private readonly state = new Map<string, FailureState>(),
  ) {}

  /**
   * This limiter's limits over `other`'s counters (a reload): the new limits apply at once, and
   * counts and lockouts carry over, so a reload never lifts a lockout.
   */
  withCountsOf(other: FailureLimiter): FailureLimiter {
    return new FailureLimiter(this.windowMs, this.limitOf, other.state);
  }

  /** Starts an attempt for `keys`: throws 429 when any key is locked or at its limit. */
  begin(keys: readonly string[], now: number): void {
    for (const k of keys) {
      const s = this.fresh(k, now);
      if (s.lockedUntil > now || s.count >= this.limitOf(k)) {
        const retry = Math.max(1, Math.ceil((Math.max(s.lockedUntil, now + 1000) - now) / 1000));
        throw new GateError('TOOMANYREQUESTS', `too many failed logins: try again in ${retry} s`, {
          headers: { 'Retry-After': String(retry) },
          logDetail: { key: k.startsWith('a:') ? k : 'account' },
        });
      }
    }
    for (const k of keys) this.fresh(k, now).count++;
    if (this.state.size > MAX_TRACKED) this.prune(now);
  }

  /** The attempt failed: lock keys at their limit; returns the delay to serve before answering. */
  fail(keys: readonly string[], now: number): number {
    let worst = 0;
    for (const k of keys) {
      const s = this.fresh(k, now);
      if (s.count >= this.limitOf(k)) s.lockedUntil = now + this.windowMs;
      worst = Math.max(worst, s.count);
    }
    return worst < 2 ? 0 : Math.min(250 * 2 ** (worst - 2), 4000);
  }

  /** The attempt succeeded: forget the account's failures, take the address's attempt back. */
  succeed(accountKey: string, address: string): void {
    this.state.delete(accountKey);
    const s = this.state.get(address);
    if (s && s.count > 0) s.count--;
  }

  private fresh(k: string, now: number): FailureState {
    let s = this.state.get(k);
    if (!s || (now - s.windowStart >= this.windowMs && s.lockedUntil <= now)) {
      s = { count: 0, windowStart: now, lockedUntil: 0 };
      this.state.set(k, s);
    }
    return s;
  }

  private prune(now: number): void {
    for (const [k, s] of this.state) {
      if (now - s.windowStart >= this.windowMs && s.lockedUntil <= now) this.state.delete(k);
    }
    // Policy: memory is bounded; under a flood of distinct keys the oldest entries go first.
    for (const k of this.state.keys()) {
      if (this.state.size <= MAX_TRACKED * 0.9) break;
      this.state.delete(k);
    }
  }
}

export interface Accounts {
  /** user name -> bcrypt hash */
  users: ReadonlyMap<string, string>;
  /** robot name (without prefix) -> bcrypt hash */
  robots: ReadonlyMap<string, string>;
}

/**
 * One dummy bcrypt hash per cost for the process: a store is rebuilt on every credential file
 * change, and a cost-12 hash takes about 0.4 s of blocked event loop to make.
 */
const dummyHashes = new Map<number, string>();
function dummyHashFor(cost: number): string {
  let h = dummyHashes.get(cost);
  if (h === undefined) {
    h = bcrypt.hashSync(randomBytes(18).toString('base64'), cost);
    dummyHashes.set(cost, h);
  }
  return h;
}

export class CredentialStore {
  private limiter: FailureLimiter;
  private readonly dummyHash: string;
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(
    private readonly accounts: Accounts,
    opts: CredentialStoreOptions,
  ) {
    const perAccount = opts.maxFailures;
    const perAddress = opts.maxFailuresPerAddress ?? 4 * opts.maxFailures;
    this.limiter = new FailureLimiter(opts.failureWindowSeconds * 1000, (k) =>
      k.startsWith('a:') ? perAddress : perAccount,
    );
    this.now = opts.now ?? Date.now;
    this.sleep = opts.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
    // Policy: unknown accounts are checked against a dummy hash of the most common cost, so an
    // unknown name costs what a wrong password costs.
    const costs = new Map<number, number>();
    for (const h of [...accounts.users.values(), ...accounts.robots.values()]) {
      const c = Number(h.slice(4, 6));
      costs.set(c, (costs.get(c) ?? 0) + 1);
    }
    const cost = [...costs.entries()].sort((a, b) => b[1] - a[1] || b[0] - a[0])[0]?.[0] ?? 10;
    this.dummyHash = dummyHashFor(cost);
  }

  static load(
    opts: CredentialOptions,
    log: CredentialLogger,
    extra: Pick<CredentialStoreOptions, 'now' | 'sleep'> = {},
  ): CredentialStore {
    const read = (file: string | undefined, validName: (n: string) => string | null): Map<string, string> => {
      if (!file) return new Map();
      if (!existsSync(file)) throw new Error(`credentials file ${file} does not exist`);
      return parseHtpasswd(readFileSync(file, 'utf8'), file, log, validName);
    };
    const users = read(opts.htpasswd, validUserName);
    const robots = read(opts.robotsFile, validRobotName);
    log.info({ users: users.size, robots: robots.size }, 'credentials loaded');
    return new CredentialStore({ users, robots }, { ...opts, ...extra });
  }

  /**
   * Re-reads the account files into a new store that shares this one's failure counters (under
   * the limits of `opts`), so a config or file reload neither forgets failures nor lifts a lockout.
   */
  reload(opts: CredentialOptions, log: CredentialLogger): CredentialStore {
    const next = CredentialStore.load(opts, log, { now: this.now, sleep: this.sleep });
    // Policy: the new file's limits (auth.maxFailures, failureWindowSeconds, maxFailuresPerAddress)
    // apply at once; the failures counted so far carry over.
    next.limiter = next.limiter.withCountsOf(this.limiter);
    return next;
  }

  private hashOf(subject: string, kind: Identity['kind']): string | undefined {
    if (kind === 'robot')
      return subject.startsWith('robot:') ? this.accounts.robots.get(subject.slice(6)) : undefined;
    return kind === 'user' ? this.accounts.users.get(subject) : undefined;
  }

  /** Does this subject still have an account (checked when a refresh token is redeemed)? */
  exists(subject: string, kind: Identity['kind']): boolean {
    return this.hashOf(subject, kind) !== undefined;
  }

  /**
   * A fingerprint of the account's current credential (a hash of its bcrypt hash), undefined if
   * the account is gone. Bound into refresh tokens: changing a password or robot secret revokes
   * them. It reveals nothing usable: the bcrypt salt stays secret.
   */
  accountVersion(subject: string, kind: Identity['kind']): string | undefined {
    const h = this.hashOf(subject, kind);
    return h === undefined ? undefined : createHash('sha256').update(h).digest('base64url').slice(0, 22);
  }

  /**
   * Checks a user name and password; resolves to the identity (groups are added by policy) or
   * throws GateError UNAUTHORIZED (401) / TOOMANYREQUESTS (429 with Retry-After).
   * Policy: the limiter is keyed by the account name (known or not) AND the client address, which
   * the caller must take from the socket, never from a header.
   */
  async verify(user: string, password: string, clientAddress: string | undefined): Promise<Identity> {
    checkCredentialShape(user, password);
    const accountKey = `u:${user}`;
    const addrKey = addressKey(clientAddress);
    const keys = [accountKey, addrKey];
    this.limiter.begin(keys, this.now());
    const robot = user.startsWith(ROBOT_LOGIN_PREFIX);
    const name = robot ? user.slice(ROBOT_LOGIN_PREFIX.length) : user;
    const hash = (robot ? this.accounts.robots : this.accounts.users).get(name);
    // bcryptjs reads $2y$ (PHP/Apache's name) as the same algorithm under the $2b$ name.
    // Policy: always one bcrypt compare, against the dummy hash when the account is unknown.
    const ok = await bcrypt.compare(password, (hash ?? this.dummyHash).replace(/^\$2y\$/, '$2b$'));
    if (ok && hash !== undefined) {
      this.limiter.succeed(accountKey, addrKey);
      return robot
        ? { subject: `robot:${name}`, kind: 'robot', groups: [] }
        : { subject: name, kind: 'user', groups: [] };
    }
    const delay = this.limiter.fail(keys, this.now());
    if (delay > 0) await this.sleep(delay);
    throw new GateError('UNAUTHORIZED', 'invalid username or password', {
      logDetail: { user: user.slice(0, 64), known: hash !== undefined },
    });
  }
}
