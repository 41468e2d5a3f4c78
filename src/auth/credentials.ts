import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import bcrypt from 'bcryptjs';
import { GateError } from '../core/errors.js';
import type { Identity } from '../core/types.js';
import { checkCredentialShape } from './basic.js';

/** Robot accounts log in as `robot$<name>` (Harbor's convention) and are `robot:<name>` in policy. */
export const ROBOT_LOGIN_PREFIX = 'robot$';
const BCRYPT = /^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$/;

export interface CredentialLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface CredentialOptions {
  htpasswd?: string;
  robotsFile?: string;
  maxFailures: number;
  failureWindowSeconds: number;
}

/** A random robot secret: 32 bytes, base64url. */
export function generateRobotSecret(): string {
  return randomBytes(32).toString('base64url');
}

/** Reads `name:bcrypt-hash` lines. Policy: bcrypt only; MD5, SHA1 and crypt lines are refused. */
export function parseHtpasswd(text: string, file: string, log: CredentialLogger): Map<string, string> {
  const out = new Map<string, string>();
  text.split('\n').forEach((line, i) => {
    const l = line.trim();
    if (l === '' || l.startsWith('#')) return;
    const colon = l.indexOf(':');
    const user = l.slice(0, colon);
    const hash = l.slice(colon + 1);
    if (colon <= 0 || !BCRYPT.test(hash)) {
      log.warn(
        { file, line: i + 1 },
        'credential line skipped: only bcrypt hashes (htpasswd -B) are accepted',
      );
      return;
    }
    out.set(user, hash);
  });
  return out;
}

interface FailureState {
  count: number;
  first: number;
  lockedUntil: number;
}

/**
 * Counts failed logins per account and per client address. After `maxFailures` failures within
 * the window, logins are refused with 429 until the window ends; before that, each failure is
 * answered after a growing delay.
 */
export class FailureLimiter {
  private readonly state = new Map<string, FailureState>();

  constructor(
    private readonly maxFailures: number,
    private readonly windowMs: number,
  ) {}

  check(keys: string[], now: number): void {
    for (const k of keys) {
      const s = this.state.get(k);
      if (s && s.lockedUntil > now) {
        const retry = Math.ceil((s.lockedUntil - now) / 1000);
        throw new GateError('TOOMANYREQUESTS', `too many failed logins: try again in ${retry} s`, {
          headers: { 'Retry-After': String(retry) },
          logDetail: { key: k },
        });
      }
    }
  }

  /** Records a failure; returns the delay to apply before answering. */
  fail(keys: string[], now: number): number {
    let worst = 0;
    for (const k of keys) {
      let s = this.state.get(k);
      if (!s || now - s.first > this.windowMs) s = { count: 0, first: now, lockedUntil: 0 };
      s.count++;
      if (s.count >= this.maxFailures) s.lockedUntil = now + this.windowMs;
      this.state.set(k, s);
      worst = Math.max(worst, s.count);
    }
    if (this.state.size > 100_000) this.prune(now);
    return Math.min(100 * 2 ** (worst - 1), 2000);
  }

  succeed(keys: string[]): void {
    for (const k of keys) this.state.delete(k);
  }

  private prune(now: number): void {
    for (const [k, s] of this.state)
      if (now - s.first > this.windowMs && s.lockedUntil <= now) this.state.delete(k);
  }
}

export class CredentialStore {
  private readonly limiter: FailureLimiter;
  private readonly dummyHash: string;

  constructor(
    private readonly users: Map<string, string>,
    private readonly robots: Map<string, string>,
    opts: Pick<CredentialOptions, 'maxFailures' | 'failureWindowSeconds'>,
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
  ) {
    this.limiter = new FailureLimiter(opts.maxFailures, opts.failureWindowSeconds * 1000);
    const cost = [...users.values(), ...robots.values()].map((h) => Number(h.slice(4, 6)))[0] ?? 10;
    this.dummyHash = bcrypt.hashSync(randomBytes(16).toString('hex'), cost);
  }

  static load(opts: CredentialOptions, log: CredentialLogger): CredentialStore {
    const read = (file: string | undefined): Map<string, string> => {
      if (!file) return new Map();
      if (!existsSync(file)) throw new Error(`credentials file ${file} does not exist`);
      return parseHtpasswd(readFileSync(file, 'utf8'), file, log);
    };
    const users = read(opts.htpasswd);
    const robots = read(opts.robotsFile);
    log.info({ users: users.size, robots: robots.size }, 'credentials loaded');
    return new CredentialStore(users, robots, opts);
  }

  /** Does this subject still have an account (used when a refresh token is redeemed)? */
  exists(subject: string, kind: Identity['kind']): boolean {
    if (kind === 'robot') return this.robots.has(subject.replace(/^robot:/, ''));
    return kind === 'user' && this.users.has(subject);
  }

  /**
   * Checks a user name and password. Policy: unknown users are compared against a dummy hash of
   * the same cost, so they cost the same as a wrong password; the limiter is keyed by account
   * and by the socket's address (never a header).
   */
  async verify(
    user: string,
    password: string,
    clientAddress: string | undefined,
    now = Date.now(),
  ): Promise<Identity> {
    const keys = [`u:${user}`, `a:${clientAddress ?? 'unknown'}`];
    this.limiter.check(keys, now);
    checkCredentialShape(user, password);
    const robot = user.startsWith(ROBOT_LOGIN_PREFIX);
    const name = robot ? user.slice(ROBOT_LOGIN_PREFIX.length) : user;
    const hash = (robot ? this.robots : this.users).get(name);
    // bcryptjs reads $2y$ as the same algorithm under the $2b$ name.
    const ok = await bcrypt.compare(password, (hash ?? this.dummyHash).replace(/^\$2y\$/, '$2b$'));
    if (ok && hash !== undefined) {
      this.limiter.succeed([`u:${user}`]);
      return robot
        ? { subject: `robot:${name}`, kind: 'robot', groups: [] }
        : { subject: name, kind: 'user', groups: [] };
    }
    await this.sleep(this.limiter.fail(keys, now));
    throw new GateError('UNAUTHORIZED', 'invalid username or password');
  }
}
