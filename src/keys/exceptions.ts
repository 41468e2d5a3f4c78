/**
 * Vulnerability exceptions (issue 16): admin state like the trusted keys, kept in one JSON file
 * (`trust.exceptionsFile`, beside the keys on the shared volume) that the admin API writes and every
 * replica re-reads within a second. Changes are read-modify-write under the same kind of file lock
 * as the key directory's, and written atomically.
 *
 * Policy: exceptions are never part of a cached decision. The attestation decision reads the list
 * in force at every pull (core/attestation/decide.ts), so an added exception applies on the next
 * pull, a removed or expired one stops at once, and no epoch bump (which would re-verify every
 * cached signature) is needed. A file that cannot be read or parsed grants nothing (fail closed).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { badRequest, GateError } from '../core/errors.js';
import type { VulnException } from '../core/attestation/decide.js';
import { compileGlob, PolicyError } from '../core/policy.js';
import { withFileLock, writeFileAtomic } from './atomic.js';

/** Policy: an exception lasts at most this long; renewing one is a deliberate, audited act. */
export const MAX_EXCEPTION_DAYS = 365;
/** Policy: at most this many exceptions are kept (expired ones included until removed). */
export const MAX_EXCEPTIONS = 10_000;

const VULN_ID = /^[A-Za-z][A-Za-z0-9._:-]{1,63}$/;

const storedException = z.strictObject({
  id: z.string().regex(/^[a-z0-9]{1,32}$/),
  cve: z.string().regex(VULN_ID),
  repos: z.array(z.string().min(1).max(255)).min(1).max(64),
  expires: z.string().min(1).max(64),
  reason: z.string().min(1).max(1024),
  by: z.string().min(1).max(256),
  created: z.string().min(1).max(64),
});
const storedFile = z.strictObject({ exceptions: z.array(storedException).max(MAX_EXCEPTIONS) });

export interface StoredException extends VulnException {
  created: string;
}

export interface ExceptionInfo extends StoredException {
  status: 'active' | 'expired';
}

export interface AddExceptionInput {
  cve: string;
  repos: string[];
  /** ISO 8601 with a time zone. */
  expires: string;
  reason: string;
}

export interface ExceptionLogger {
  error(obj: object, msg: string): void;
}


export class ExceptionStore {
  private snapshot: { key: string; list: StoredException[] } = { key: '', list: [] };
  private timer?: NodeJS.Timeout;

  constructor(
    readonly file: string,
    private readonly log: ExceptionLogger,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.reload();
  }

  /** Re-reads the file every second (other replicas' changes); stop() ends it. */
  start(): void {
    this.timer ??= setInterval(() => this.reload(), 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** The exceptions as last read (active and expired). */
  current(): readonly StoredException[] {
    return this.snapshot.list;
  }

  list(): ExceptionInfo[] {
    const t = this.now().getTime();
    return this.snapshot.list.map((e) => ({ ...e, status: t < Date.parse(e.expires) ? 'active' : 'expired' }));
  }

  /** Reads the file again when its size or mtime changed. */
  reload(): void {
    let key = 'absent';
    try {
      if (existsSync(this.file)) {
        const st = statSync(this.file);
        key = `${st.size}:${st.mtimeMs}`;
      }
    } catch {
      key = 'unreadable';
    }
    if (key === this.snapshot.key) return;
    this.snapshot = { key, list: this.read() };
  }

  private read(): StoredException[] {
    if (!existsSync(this.file)) return [];
    try {
      const parsed = storedFile.safeParse(JSON.parse(readFileSync(this.file, 'utf8')));
      if (!parsed.success) throw new Error(parsed.error.issues[0]?.message ?? 'invalid');
      return parsed.data.exceptions;
    } catch (err) {
      this.log.error(
        { file: this.file, err: (err as Error).message },
        'vulnerability exceptions file unreadable: no exception applies until it is fixed',
      );
      return [];
    }
  }

  private lockFile(): string {
    return path.join(path.dirname(this.file), `.${path.basename(this.file)}.lock`);
  }

  private async change<T>(fn: (list: StoredException[]) => { list: StoredException[]; result: T }): Promise<T> {
    return withFileLock(this.lockFile(), async () => {
      this.snapshot.key = '';
      const { list, result } = fn(this.read());
      await writeFileAtomic(this.file, `${JSON.stringify({ exceptions: list }, null, 2)}\n`, { mode: 0o600 });
      this.snapshot = { key: '', list };
      this.reload();
      return result;
    });
  }

  async add(input: AddExceptionInput, actor: string): Promise<StoredException> {
    const cve = input.cve.trim();
    if (!VULN_ID.test(cve)) throw badRequest('cve must be a vulnerability id such as CVE-2026-12345 or GHSA-xxxx-xxxx-xxxx');
    const repos = [...new Set(input.repos)];
    if (repos.length === 0) throw badRequest('repos: at least one repository pattern');
    for (const g of repos) {
      try {
        compileGlob(g);
      } catch (err) {
        if (err instanceof PolicyError) throw badRequest(err.message);
        throw err;
      }
    }
    const t = Date.parse(input.expires);
    // Policy: an explicit zone, so the instant is the same on every replica.
    if (Number.isNaN(t) || !/(Z|[+-]\d\d:\d\d)$/.test(input.expires)) {
      throw badRequest('expires must be an ISO 8601 date-time with a time zone, e.g. 2027-01-01T00:00:00Z');
    }
    const now = this.now().getTime();
    if (t <= now) throw badRequest('expires is in the past');
    if (t - now > MAX_EXCEPTION_DAYS * 86_400_000) throw badRequest(`an exception lasts at most ${MAX_EXCEPTION_DAYS} days`);
    const reason = input.reason.trim();
    if (reason.length === 0) throw badRequest('reason is required: say why shipping this is acceptable');
    const entry: StoredException = {
      id: randomBytes(6).toString('hex'),
      cve: cve.toUpperCase(),
      repos,
      expires: new Date(t).toISOString(),
      reason: reason.slice(0, 1024),
      by: actor.slice(0, 256),
      created: new Date(now).toISOString(),
    };
    return this.change((list) => {
      if (list.length >= MAX_EXCEPTIONS) throw badRequest(`at most ${MAX_EXCEPTIONS} exceptions: remove expired ones first`);
      return { list: [...list, entry], result: entry };
    });
  }

  remove(id: string): Promise<StoredException> {
    return this.change((list) => {
      const found = list.find((e) => e.id === id);
      if (!found) throw new GateError('NAME_UNKNOWN', `no exception with id ${JSON.stringify(id.slice(0, 40))}`);
      return { list: list.filter((e) => e.id !== id), result: found };
    });
  }
}
