/**
 * Changes to the credential files (htpasswd users, robots) made by the admin API. The files keep
 * the format CredentialStore reads (`name:bcrypt`, `$2y$` like `htpasswd -B`); lines this module
 * does not touch (comments, other accounts) are kept as they are.
 */
import { existsSync, readFileSync } from 'node:fs';
import bcrypt from 'bcryptjs';
import { badRequest, GateError } from '../core/errors.js';
import { MAX_PASSWORD_BYTES } from '../auth/basic.js';
import { generateRobotSecret, ROBOT_NAME } from '../auth/credentials.js';
import { withFileLock, writeFileAtomic } from '../keys/atomic.js';

/**
 * Policy: account names are a conservative subset of what the credential parser accepts, so that
 * no name can carry a `:` or a newline into the file (a second, injected account line), and none
 * is reserved (`anonymous`, `*`) or looks like a robot login (`robot$…`).
 */
export const USER_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;
const RESERVED = new Set(['anonymous']);
export const MIN_PASSWORD = 12;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

export interface AccountFilesOptions {
  htpasswd: () => string | undefined;
  robotsFile: () => string | undefined;
  /** bcrypt cost (default 12). */
  cost?: number;
}

function linesOf(file: string): string[] {
  if (!existsSync(file)) return [];
  const text = readFileSync(file, 'utf8');
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

function nameOf(line: string): string | undefined {
  if (line.startsWith('#')) return undefined;
  const c = line.indexOf(':');
  return c > 0 ? line.slice(0, c) : undefined;
}

export class AccountFiles {
  private readonly cost: number;

  constructor(private readonly o: AccountFilesOptions) {
    this.cost = o.cost ?? 12;
  }

  /** Changes to one file run one at a time, across the replicas sharing it too. */
  private serial<T>(kind: 'user' | 'robot', fn: (file: string) => Promise<T>): Promise<T> {
    const file = this.fileOf(kind);
    return withFileLock(`${file}.lock`, () => fn(file));
  }

  private fileOf(kind: 'user' | 'robot'): string {
    const f = kind === 'user' ? this.o.htpasswd() : this.o.robotsFile();
    if (!f) {
      throw new GateError(
        'NOT_CONFIGURED',
        `${kind === 'user' ? 'auth.htpasswd' : 'auth.robotsFile'} is not configured, so ${kind}s cannot be managed here`,
      );
    }
    return f;
  }

  list(): { users: string[]; robots: string[] } {
    const names = (f: string | undefined): string[] => (f ? linesOf(f).flatMap((l) => nameOf(l) ?? []) : []);
    return { users: names(this.o.htpasswd()).sort(), robots: names(this.o.robotsFile()).sort() };
  }

  private async hash(secret: string): Promise<string> {
    return (await bcrypt.hash(secret, this.cost)).replace(/^\$2b\$/, '$2y$');
  }

  private async rewrite(file: string, edit: (lines: string[]) => string[]): Promise<void> {
    const next = edit(linesOf(file));
    // Policy: credential files hold password hashes: owner-only.
    await writeFileAtomic(file, next.map((l) => `${l}\n`).join(''), { mode: 0o600 });
  }

  addUser(name: string, password: string): Promise<void> {
    if (!USER_NAME.test(name) || RESERVED.has(name)) {
      throw new GateError(
        'NAME_INVALID',
        'user names are 1-64 of A-Z a-z 0-9 . _ @ -, starting with a letter or digit, and not reserved',
      );
    }
    if (password.length < MIN_PASSWORD) throw badRequest(`passwords are at least ${MIN_PASSWORD} characters`);
    // bcrypt reads at most 72 bytes; a longer password would be silently cut, so it is refused.
    if (Buffer.byteLength(password) > MAX_PASSWORD_BYTES) {
      throw badRequest(`passwords are at most ${MAX_PASSWORD_BYTES} bytes (bcrypt ignores the rest)`);
    }
    if (CONTROL.test(password)) throw badRequest('passwords may not contain control characters');
    return this.serial('user', async (file) => {
      if (linesOf(file).some((l) => nameOf(l) === name)) throw badRequest(`user ${name} already exists`);
      const line = `${name}:${await this.hash(password)}`;
      await this.rewrite(file, (lines) => {
        // Re-checked on the lines actually rewritten (a concurrent add may have landed meanwhile).
        if (lines.some((l) => nameOf(l) === name)) throw badRequest(`user ${name} already exists`);
        return [...lines, line];
      });
    });
  }

  remove(kind: 'user' | 'robot', name: string): Promise<void> {
    return this.serial(kind, async (file) => {
      if (!linesOf(file).some((l) => nameOf(l) === name)) {
        throw new GateError('NAME_UNKNOWN', `no ${kind} named ${JSON.stringify(name.slice(0, 80))}`);
      }
      await this.rewrite(file, (lines) => lines.filter((l) => nameOf(l) !== name));
    });
  }

  /** Creates a robot account; the secret is returned once and only its bcrypt hash is stored. */
  addRobot(name: string): Promise<{ login: string; secret: string }> {
    if (!ROBOT_NAME.test(name)) {
      throw new GateError('NAME_INVALID', `robot names must match ${ROBOT_NAME.source}`);
    }
    return this.serial('robot', async (file) => {
      if (linesOf(file).some((l) => nameOf(l) === name)) throw badRequest(`robot ${name} already exists`);
      // Policy: 256 bits from the CSPRNG; never logged, never stored in clear.
      const secret = generateRobotSecret();
      const line = `${name}:${await this.hash(secret)}`;
      await this.rewrite(file, (lines) => {
        if (lines.some((l) => nameOf(l) === name)) throw badRequest(`robot ${name} already exists`);
        return [...lines, line];
      });
      return { login: `robot$${name}`, secret };
    });
  }
}
