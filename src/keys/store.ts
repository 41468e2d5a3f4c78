/**
 * Changes to the trusted-key directory made by the admin API: add, revoke, rotate. The Keyring
 * (keyring.ts) stays the one reader; every replica watching the same directory sees a change on
 * its next poll (≤ 1 s), and a restart reads the same files.
 *
 * Layout per key: `<name>.pub` (PEM SPKI, never rewritten) and `<name>.meta.json` (validity,
 * repository globs, revocation and who did what).
 */
import { existsSync, promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { badRequest, GateError } from '../core/errors.js';
import { compileGlob, PolicyError } from '../core/policy.js';
import { parsePublicKeyPem, publicKeyFingerprint, publicKeyToPem, type PublicKey } from '../core/signature/keys.js';
import { removeStaleTemps, withFileLock, writeFileAtomic } from './atomic.js';

/** The lock of the key directory's writers (a dot-file: the keyring reads only `*.pub`, `*.meta.json`). */
const KEYS_LOCK = '.trustgate.lock';
import { KEY_NAME, loadKeyDir, type KeyEntry, type KeyMeta, type Keyring } from './keyring.js';

/** Bookkeeping fields the admin API adds to a key's meta file. */
export interface StoredMeta extends KeyMeta {
  addedBy?: string;
  addedAt?: string;
  revokedBy?: string;
  rotatedFrom?: string;
  rotatedTo?: string;
}

export interface KeyInfo {
  name: string;
  alg: PublicKey['alg'];
  /** `sha256:<hex>` of the DER SubjectPublicKeyInfo. */
  fingerprint: string;
  status: 'active' | 'revoked' | 'expired' | 'not-yet-valid';
  repos: string[];
  trustedAs: string[];
  notBefore?: string;
  notAfter?: string;
  revokedAt?: string;
  meta: StoredMeta;
  pem: string;
}

export interface AddKeyInput {
  name: string;
  pem: string;
  repos?: string[] | undefined;
  notBefore?: string | undefined;
  notAfter?: string | undefined;
  comment?: string | undefined;
}

export interface RotateInput {
  pem: string;
  /** Default: `<base>-<n>`, the first free one (`release` → `release-2`, `release-2` → `release-3`). */
  newName?: string | undefined;
  /** How long the old key stays valid (default 24 h, at most 90 days). */
  graceSeconds?: number | undefined;
  notAfter?: string | undefined;
}

export const DEFAULT_ROTATION_GRACE_SECONDS = 24 * 3600;
export const MAX_ROTATION_GRACE_SECONDS = 90 * 24 * 3600;
/** An add whose meta file exists without its .pub for longer than this crashed half-way. */
const ORPHAN_META_MS = 60_000;

const notFound = (name: string): GateError =>
  new GateError('NAME_UNKNOWN', `no trusted key named ${JSON.stringify(name)}`);

function statusOf(k: KeyEntry, now: Date): KeyInfo['status'] {
  if (k.revoked === true) return 'revoked';
  if (k.notBefore && now < k.notBefore) return 'not-yet-valid';
  if (k.notAfter && now > k.notAfter) return 'expired';
  return 'active';
}

export function keyInfo(k: KeyEntry, now: Date): KeyInfo {
  const m = k.meta as StoredMeta;
  return {
    name: k.name,
    alg: k.key.alg,
    fingerprint: `sha256:${k.fingerprint}`,
    status: statusOf(k, now),
    repos: m.repos ?? [],
    trustedAs: m.trustedAs ?? [],
    ...(m.notBefore ? { notBefore: m.notBefore } : {}),
    ...(m.notAfter ? { notAfter: m.notAfter } : {}),
    ...(m.revokedAt ? { revokedAt: m.revokedAt } : {}),
    meta: m,
    pem: k.pem,
  };
}

/**
 * Policy: a key name is one file-name component under keys/: KEY_NAME (lowercase letters, digits,
 * `.`, `_`, `-`, starting with a letter or digit, so no `..`, no hidden file, no separator), and,
 * belt and braces, the resolved file must sit directly inside the key directory.
 */
export function keyFilePaths(dir: string, name: string): { pub: string; meta: string } {
  if (typeof name !== 'string' || !KEY_NAME.test(name)) {
    throw new GateError(
      'NAME_INVALID',
      `key name ${JSON.stringify(String(name).slice(0, 80))} is invalid: use 1-63 of a-z 0-9 . _ -, starting with a letter or digit (no path separators, no leading dot)`,
    );
  }
  const root = path.resolve(dir);
  const pub = path.resolve(root, `${name}.pub`);
  const meta = path.resolve(root, `${name}.meta.json`);
  if (path.dirname(pub) !== root || path.dirname(meta) !== root) {
    throw new GateError('NAME_INVALID', `key name ${JSON.stringify(name)} would leave the key directory`);
  }
  return { pub, meta };
}

function isoDate(v: string | undefined, field: string): string | undefined {
  if (v === undefined) return undefined;
  const t = Date.parse(v);
  // Policy: an explicit offset or Z is required, so a date means the same instant on every replica.
  if (Number.isNaN(t) || !/(Z|[+-]\d\d:\d\d)$/.test(v)) {
    throw badRequest(`${field} must be an ISO 8601 date-time with a time zone, e.g. 2027-01-01T00:00:00Z`);
  }
  return new Date(t).toISOString();
}

function checkRepos(repos: readonly string[] | undefined): string[] {
  const out = [...new Set(repos ?? [])];
  for (const g of out) {
    try {
      compileGlob(g);
    } catch (err) {
      if (err instanceof PolicyError) throw badRequest(err.message);
      throw err;
    }
  }
  return out;
}

/** Refuses keys trustgate does not accept, with the reason (parsePublicKeyPem's Policy). */
function parseKey(pem: string): { key: PublicKey; fingerprint: string; pem: string } {
  let key: PublicKey;
  try {
    key = parsePublicKeyPem(pem);
  } catch (err) {
    if (err instanceof GateError) throw badRequest(`key refused: ${err.message}`);
    throw err;
  }
  // Stored in the canonical PEM spelling, so the file's bytes are a function of the key alone.
  return { key, fingerprint: publicKeyFingerprint(key), pem: publicKeyToPem(key) };
}

export class KeyStore {

  constructor(
    private readonly keyring: Keyring,
    private readonly now: () => Date = () => new Date(),
  ) {
    // Temp files of a write that crashed (they were never visible as keys) are swept at start.
    void removeStaleTemps(keyring.dir).catch(() => undefined);
  }

  get dir(): string {
    return this.keyring.dir;
  }

  list(): { keys: KeyInfo[]; errors: Array<{ file: string; error: string }> } {
    const snap = this.keyring.snapshot;
    const now = this.now();
    return {
      keys: [...snap.keys.values()].map((k) => keyInfo(k, now)).sort((a, b) => a.name.localeCompare(b.name)),
      errors: snap.errors,
    };
  }

  get(name: string): KeyInfo {
    keyFilePaths(this.dir, name);
    const k = this.keyring.snapshot.keys.get(name);
    if (!k) throw notFound(name);
    return keyInfo(k, this.now());
  }

  /** Changes run one at a time, across the replicas sharing the key directory too. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    return withFileLock(path.join(this.dir, KEYS_LOCK), fn);
  }

  add(input: AddKeyInput, actor: string): Promise<KeyInfo> {
    return this.serial(async () => {
      const info = await this.addLocked(input, actor, {});
      return info;
    });
  }

  private async addLocked(input: AddKeyInput, actor: string, extra: Partial<StoredMeta>): Promise<KeyInfo> {
    const paths = keyFilePaths(this.dir, input.name);
    const parsed = parseKey(input.pem);
    const repos = checkRepos(input.repos);
    const notBefore = isoDate(input.notBefore, 'notBefore');
    const notAfter = isoDate(input.notAfter, 'notAfter');
    if (notBefore && notAfter && notBefore >= notAfter) throw badRequest('notBefore must be before notAfter');
    if (input.comment !== undefined && input.comment.length > 1024) throw badRequest('comment is too long');
    // Fresh from disk (another replica may have just written), not the last polled snapshot.
    const current = loadKeyDir(this.dir);
    if (existsSync(paths.pub)) throw badRequest(`a key named ${input.name} already exists`);
    for (const k of current.keys.values()) {
      // Policy: one key, one name. A revoked key's fingerprint stays taken, so re-adding it under a
      // new name cannot undo a revocation.
      if (`sha256:${k.fingerprint}` === parsed.fingerprint) {
        throw badRequest(
          `this key is already trusted as ${k.name}${k.revoked === true ? ' (revoked; a revoked key cannot be added again)' : ''}`,
        );
      }
    }
    const at = this.now().toISOString();
    const meta: StoredMeta = {
      ...(repos.length > 0 ? { repos } : {}),
      ...(notBefore ? { notBefore } : {}),
      ...(notAfter ? { notAfter } : {}),
      ...(input.comment !== undefined ? { comment: input.comment } : {}),
      ...extra,
      addedBy: actor,
      addedAt: at,
    };
    // Policy: the meta file goes first and the .pub last. The key exists for the keyring only once
    // its .pub does, so it is never seen without its validity window and repository limits.
    await this.writeMetaCreate(paths.meta, paths.pub, meta);
    try {
      await writeFileAtomic(paths.pub, parsed.pem, { exclusive: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
        throw badRequest(`a key named ${input.name} already exists`);
      }
      throw err;
    }
    this.keyring.reload();
    const k = this.keyring.snapshot.keys.get(input.name);
    if (!k) throw new GateError('UNKNOWN', 'the key was written but did not load', { logDetail: input.name });
    return keyInfo(k, this.now());
  }

  /** Creates a meta file; one left by an add that crashed before its .pub is replaced. */
  private async writeMetaCreate(metaFile: string, pubFile: string, meta: StoredMeta): Promise<void> {
    const text = `${JSON.stringify(meta, null, 2)}\n`;
    try {
      await writeFileAtomic(metaFile, text, { exclusive: true });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    if (existsSync(pubFile)) throw badRequest(`a key named ${path.basename(pubFile, '.pub')} already exists`);
    const st = await fs.stat(metaFile);
    if (Date.now() - st.mtimeMs < ORPHAN_META_MS) {
      throw new GateError('CHANGE_IN_PROGRESS', 'another change to this key name is in progress; try again');
    }
    await writeFileAtomic(metaFile, text);
  }

  private readMeta(metaFile: string): StoredMeta {
    if (!existsSync(metaFile)) return {};
    try {
      const v = JSON.parse(readFileSync(metaFile, 'utf8')) as unknown;
      return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as StoredMeta) : {};
    } catch {
      return {};
    }
  }

  revoke(name: string, actor: string, reason?: string): Promise<{ key: KeyInfo; changed: boolean }> {
    return this.serial(async () => {
      const paths = keyFilePaths(this.dir, name);
      if (!existsSync(paths.pub)) throw notFound(name);
      const meta = this.readMeta(paths.meta);
      let changed = false;
      if (meta.revoked !== true) {
        // Policy: revocation is a meta change; the .pub stays, for audit and so the fingerprint
        // stays taken. It is final: the API has no un-revoke.
        const next: StoredMeta = {
          ...meta,
          revoked: true,
          revokedAt: this.now().toISOString(),
          revokedBy: actor,
          ...(reason !== undefined ? { comment: meta.comment ? `${meta.comment}; revoked: ${reason}` : `revoked: ${reason}` } : {}),
        };
        await writeFileAtomic(paths.meta, `${JSON.stringify(next, null, 2)}\n`);
        changed = true;
      }
      this.keyring.reload();
      const k = this.keyring.snapshot.keys.get(name);
      if (!k) throw new GateError('UNKNOWN', 'the key did not load after revocation', { logDetail: name });
      return { key: keyInfo(k, this.now()), changed };
    });
  }

  /**
   * Rotation: the new key is added under a new name, trusted for the same repositories as the old
   * one (its `repos`, and every trust rule naming the old key, through `trustedAs`); the old key's
   * notAfter becomes now + grace (never later than it was). The new key is written first, so there
   * is no moment when neither is valid.
   */
  rotate(name: string, input: RotateInput, actor: string): Promise<{ old: KeyInfo; new: KeyInfo }> {
    return this.serial(async () => {
      const paths = keyFilePaths(this.dir, name);
      const old = loadKeyDir(this.dir).keys.get(name);
      if (!old) throw existsSync(paths.pub) ? badRequest(`key ${name} does not load, so it cannot be rotated`) : notFound(name);
      if (old.revoked === true) throw badRequest(`key ${name} is revoked; add a new key instead of rotating it`);
      const grace = input.graceSeconds ?? DEFAULT_ROTATION_GRACE_SECONDS;
      if (!Number.isInteger(grace) || grace < 0 || grace > MAX_ROTATION_GRACE_SECONDS) {
        throw badRequest(`graceSeconds must be an integer from 0 to ${MAX_ROTATION_GRACE_SECONDS}`);
      }
      const newName = input.newName ?? this.nextName(name);
      const oldMeta = old.meta as StoredMeta; // parsed strictly by loadKeyDir just above
      const added = await this.addLocked(
        {
          name: newName,
          pem: input.pem,
          repos: oldMeta.repos,
          notAfter: input.notAfter,
          comment: `rotated from ${name}`,
        },
        actor,
        { trustedAs: [...new Set([name, ...(oldMeta.trustedAs ?? [])])], rotatedFrom: name },
      );
      const end = new Date(this.now().getTime() + grace * 1000);
      const notAfter = old.notAfter && old.notAfter < end ? old.notAfter : end;
      await writeFileAtomic(
        paths.meta,
        `${JSON.stringify({ ...oldMeta, notAfter: notAfter.toISOString(), rotatedTo: newName }, null, 2)}\n`,
      );
      this.keyring.reload();
      const o = this.keyring.snapshot.keys.get(name);
      if (!o) throw new GateError('UNKNOWN', 'the old key did not load after rotation', { logDetail: name });
      return { old: keyInfo(o, this.now()), new: added };
    });
  }

  private nextName(name: string): string {
    const m = /^(.*)-(\d{1,6})$/.exec(name);
    const base = m ? m[1]! : name;
    for (let n = m ? Number(m[2]) + 1 : 2; n < 1_000_000; n++) {
      const candidate = `${base}-${n}`;
      if (!KEY_NAME.test(candidate)) break;
      if (!existsSync(path.join(this.dir, `${candidate}.pub`))) return candidate;
    }
    throw badRequest(`no free name after ${name}: give newName`);
  }
}
