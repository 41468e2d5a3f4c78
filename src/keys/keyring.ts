import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { compileGlob } from '../core/policy.js';
import { parsePublicKeyPem } from '../core/signature/keys.js';
import type { TrustedKey } from '../core/trust.js';

/**
 * The trusted publisher keys, read from one directory:
 *   <name>.pub        PEM public key (SPKI), Ed25519 or ECDSA P-256
 *   <name>.meta.json  optional: {"notBefore","notAfter","revoked","revokedAt","comment",
 *                     "repos": [glob], "trustedAs": [key name], ...bookkeeping of the admin API}
 *
 * A key is trusted for a repository when the trust rule matching it names the key (or a name in
 * its `trustedAs`, which rotation sets), or when one of its `repos` globs matches the repository.
 *
 * Revoking a key on disk (deleting its .pub or setting "revoked": true) takes effect on the next
 * request after the watcher or the periodic check sees it (≤ checkIntervalMs), with no restart.
 */

export const KEY_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

export interface KeyMeta {
  notBefore?: string;
  notAfter?: string;
  revoked?: boolean;
  revokedAt?: string;
  comment?: string;
  /** Repository globs this key is trusted for, in addition to trust rules that name it. */
  repos?: string[];
  /** Key names whose trust-rule entries this key shares (set by rotation: the old key's names). */
  trustedAs?: string[];
}

export type KeyEntry = TrustedKey & {
  fingerprint: string;
  pem: string;
  meta: KeyMeta;
  /** True when a `repos` glob of the meta matches the repository. */
  appliesTo: (repo: string) => boolean;
};

export interface KeyringSnapshot {
  keys: ReadonlyMap<string, KeyEntry>;
  /** Hash of every key file's bytes: part of the trust epoch. */
  contentHash: string;
  /** Files that could not be loaded: they are not trusted (fail closed) and are reported. */
  errors: Array<{ file: string; error: string }>;
}

export interface KeyringLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** The key directory's files as text, and a hash of them: cheap to take every second. */
export interface KeyDirContent {
  files: Array<{ file: string; name: string; pem: string; metaText: string }>;
  errors: Array<{ file: string; error: string }>;
  contentHash: string;
}

export function readKeyDir(dir: string): KeyDirContent {
  const out: KeyDirContent = { files: [], errors: [], contentHash: '' };
  const h = createHash('sha256');
  const files = existsSync(dir) ? readdirSync(dir).sort() : [];
  for (const file of files) {
    if (!file.endsWith('.pub')) continue;
    const name = file.slice(0, -4);
    try {
      if (!KEY_NAME.test(name)) throw new Error(`invalid key name ${JSON.stringify(name)}`);
      const pem = readFileSync(path.join(dir, file), 'utf8');
      const metaFile = path.join(dir, `${name}.meta.json`);
      const metaText = existsSync(metaFile) ? readFileSync(metaFile, 'utf8') : '';
      // Policy: one encoding per key set: each file as a JSON array on its own line (JSON never
      // holds a raw newline), so no bytes inside a file can imitate a file boundary, and two
      // directories that trust different keys never hash alike (the hash is the trust epoch).
      h.update(`${JSON.stringify([file, pem, metaText])}\n`);
      out.files.push({ file, name, pem, metaText });
    } catch (err) {
      out.errors.push({ file, error: (err as Error).message });
    }
  }
  out.contentHash = h.digest('hex');
  return out;
}

/** Parses what readKeyDir read (an Ed25519 key costs about a millisecond: done on change only). */
export function parseKeyDir(content: KeyDirContent): KeyringSnapshot {
  const keys = new Map<string, KeyEntry>();
  const errors = [...content.errors];
  for (const { file, name, pem, metaText } of content.files) {
    try {
      const meta = parseMeta(metaText);
      const key = parsePublicKeyPem(pem);
      const matchers = (meta.repos ?? []).map((g) => compileGlob(g));
      keys.set(name, {
        name,
        key,
        fingerprint: createHash('sha256').update(spkiOf(pem)).digest('hex'),
        pem,
        meta,
        ...(meta.notBefore ? { notBefore: new Date(meta.notBefore) } : {}),
        ...(meta.notAfter ? { notAfter: new Date(meta.notAfter) } : {}),
        revoked: meta.revoked === true,
        appliesTo: (repo) => matchers.some((m) => m(repo)),
      });
    } catch (err) {
      errors.push({ file, error: (err as Error).message });
    }
  }
  return { keys, contentHash: content.contentHash, errors };
}

export function loadKeyDir(dir: string): KeyringSnapshot {
  return parseKeyDir(readKeyDir(dir));
}

function spkiOf(pem: string): Buffer {
  const b64 = pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
  return Buffer.from(b64, 'base64');
}

function parseMeta(text: string): KeyMeta {
  if (text === '') return {};
  const v = JSON.parse(text) as unknown;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('meta file must be a JSON object');
  const m = v as Record<string, unknown>;
  for (const k of ['notBefore', 'notAfter']) {
    if (m[k] !== undefined && (typeof m[k] !== 'string' || Number.isNaN(Date.parse(m[k] as string)))) {
      throw new Error(`meta ${k} must be an ISO date`);
    }
  }
  if (m['revoked'] !== undefined && typeof m['revoked'] !== 'boolean') throw new Error('meta revoked must be a boolean');
  // Policy: a meta file that widens trust must be well formed; a bad one makes the key unloaded
  // (not trusted anywhere), never trusted with the bad field ignored.
  for (const k of ['repos', 'trustedAs']) {
    const v = m[k];
    if (v !== undefined && (!Array.isArray(v) || v.length > 256 || !v.every((x) => typeof x === 'string'))) {
      throw new Error(`meta ${k} must be an array of strings`);
    }
  }
  if ((m['trustedAs'] as string[] | undefined)?.some((n) => !KEY_NAME.test(n))) {
    throw new Error('meta trustedAs must hold key names');
  }
  return m as KeyMeta;
}

/** A live view of the key directory: file watch plus a periodic content check. */
export class Keyring {
  private snap: KeyringSnapshot;
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly listeners = new Set<(s: KeyringSnapshot) => void>();
  private current: string;

  constructor(
    dir: string,
    private readonly log: KeyringLogger,
    private readonly checkIntervalMs = 1000,
    private readonly parse: (c: KeyDirContent) => KeyringSnapshot = parseKeyDir,
  ) {
    this.current = dir;
    mkdirSync(dir, { recursive: true });
    this.snap = this.parse(readKeyDir(dir));
    this.report();
  }

  /** The directory read (trust.keysDir). */
  get dir(): string {
    return this.current;
  }

  /**
   * Moves to another directory (trust.keysDir changed on a reload): reads it at once (listeners
   * hear of it when its keys differ) and watches it instead of the old one. Policy: a directory
   * that cannot be read trusts no key (as in reload), it is not created here.
   */
  moveTo(dir: string): void {
    if (dir === this.current) return;
    const watching = this.timer !== undefined;
    this.stop();
    this.current = dir;
    this.reload();
    if (watching) this.start();
  }

  get snapshot(): KeyringSnapshot {
    return this.snap;
  }

  /** Re-reads the directory; notifies listeners when the content changed. */
  reload(): boolean {
    let next: KeyringSnapshot;
    try {
      const content = readKeyDir(this.dir);
      // The periodic check reads and hashes; keys are parsed again only when something changed.
      if (content.contentHash === this.snap.contentHash) return false;
      next = this.parse(content);
    } catch (err) {
      // Policy: an unreadable key directory trusts no keys (not the last good view), so a broken
      // or removed keys/ never keeps a key trusted that an operator took away.
      this.log.error({ dir: this.dir, err: String(err) }, 'key directory unreadable: trusting no keys');
      next = { keys: new Map(), contentHash: `error:${Date.now()}`, errors: [{ file: this.dir, error: String(err) }] };
    }
    if (next.contentHash === this.snap.contentHash) return false;
    this.snap = next;
    this.report();
    for (const l of this.listeners) l(next);
    return true;
  }

  onChange(listener: (s: KeyringSnapshot) => void): void {
    this.listeners.add(listener);
  }

  start(): void {
    try {
      this.watcher = watch(this.dir, { persistent: false }, () => this.reload());
      this.watcher.on('error', (err) => this.log.warn({ err: String(err) }, 'key directory watch failed; polling only'));
    } catch (err) {
      this.log.warn({ err: String(err) }, 'key directory watch unavailable; polling only');
    }
    this.timer = setInterval(() => this.reload(), this.checkIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    this.watcher?.close();
    this.watcher = undefined;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private report(): void {
    const names = [...this.snap.keys.values()].map((k) => (k.revoked ? `${k.name}(revoked)` : k.name));
    this.log.info({ dir: this.dir, keys: names }, `loaded ${this.snap.keys.size} trusted key(s)`);
    for (const e of this.snap.errors) this.log.error(e, 'trusted key not loaded (not trusted)');
  }
}
