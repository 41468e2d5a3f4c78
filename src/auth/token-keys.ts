/**
 * Token signing keys: ES256 key pairs in one directory, `<kid>.key` (PKCS#8 PEM, mode 0600),
 * kid = RFC 7638 JWK thumbprint (SHA-256) of the public key.
 *
 * Rotation: `rotateTokenKey(dir)` adds a key and marks it newest; the newest key signs (or the
 * one `auth.signingKid` names: file times say nothing in a Kubernetes Secret volume, where every
 * file has the same mtime), every key present verifies, so tokens still in flight stay valid. Remove an old key only after the longest
 * token lifetime has passed: that is `auth.refreshTtlSeconds` when refresh tokens are issued,
 * `auth.tokenTtlSeconds` otherwise.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { calculateJwkThumbprint, exportJWK } from 'jose';

export interface TokenKeySet {
  signing: { kid: string; privateKey: KeyObject };
  /** Every key that verifies, by kid. The signing key is one of them. */
  verifying: ReadonlyMap<string, KeyObject>;
}

export interface TokenKeyLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

const KEY_FILE = /^([A-Za-z0-9_-]{43})\.key$/;

export async function kidOf(publicKey: KeyObject): Promise<string> {
  return calculateJwkThumbprint(await exportJWK(publicKey), 'sha256');
}

function keyFiles(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.key')) : [];
}

/**
 * Writes a new ES256 signing key into `dir` (created 0700 if absent) and returns its kid. The new
 * file's mtime is set after every existing key's, so it is the one that signs on the next load.
 */
export async function rotateTokenKey(dir: string): Promise<string> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const kid = await kidOf(publicKey);
  const file = path.join(dir, `${kid}.key`);
  const tmp = `${file}.tmp-${process.pid}`;
  // Policy: private keys are written 0600 and renamed into place, so no reader sees half a key.
  writeFileSync(tmp, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' });
  chmodSync(tmp, 0o600);
  const newest = Math.max(0, ...keyFiles(dir).map((f) => statSync(path.join(dir, f)).mtimeMs));
  const mtime = Math.max(Date.now(), newest + 1000) / 1000;
  utimesSync(tmp, mtime, mtime);
  renameSync(tmp, file);
  return kid;
}

/**
 * Loads every key in `dir`; `signingKid` signs when given (it must be there), otherwise the most
 * recently written one. Throws if there is none.
 */
export async function loadTokenKeys(
  dir: string,
  log: TokenKeyLogger,
  signingKid?: string,
): Promise<TokenKeySet> {
  const entries = keyFiles(dir)
    .map((f) => ({ f, mtime: statSync(path.join(dir, f)).mtimeMs }))
    .sort((a, b) => b.mtime - a.mtime || a.f.localeCompare(b.f));
  const verifying = new Map<string, KeyObject>();
  let signing: TokenKeySet['signing'] | undefined;
  for (const { f } of entries) {
    const file = path.join(dir, f);
    const mode = statSync(file).mode & 0o777;
    if ((mode & 0o077) !== 0) {
      log.warn(
        { file, mode: mode.toString(8) },
        'token signing key is readable by group or others: chmod 600 it',
      );
    }
    let privateKey: KeyObject;
    try {
      privateKey = createPrivateKey(readFileSync(file));
    } catch (err) {
      throw new Error(`${file}: not a PEM private key (${(err as Error).message})`, { cause: err });
    }
    // Policy: token keys are ECDSA P-256 only (ES256 is the one pinned algorithm).
    if (
      privateKey.asymmetricKeyType !== 'ec' ||
      privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1'
    ) {
      throw new Error(`${file}: token keys must be ECDSA P-256 (ES256)`);
    }
    const publicKey = createPublicKey(privateKey);
    const kid = await kidOf(publicKey);
    // Policy: the file name is the kid; a mismatch means a renamed or replaced file, so refuse to start.
    if (KEY_FILE.exec(f)?.[1] !== kid) {
      throw new Error(
        `${file}: file name does not match the key's RFC 7638 thumbprint; rename it to ${kid}.key`,
      );
    }
    verifying.set(kid, publicKey);
    if (signingKid === undefined || kid === signingKid) signing ??= { kid, privateKey };
  }
  // Policy: a configured signing kid that is not on disk stops the start; signing with another key
  // would look right until that key is removed.
  if (signingKid !== undefined && !signing) {
    throw new Error(`auth.signingKid ${signingKid} is not among the token keys in ${dir}`);
  }
  if (!signing) throw new Error(`no token signing key in ${dir}`);
  log.info({ dir, signingKid: signing.kid, keys: verifying.size }, 'token signing keys loaded');
  return { signing, verifying };
}

/** Loads the keys in `dir`, generating a first one (with a log line saying so) when there is none. */
export async function loadOrCreateTokenKeys(
  dir: string,
  log: TokenKeyLogger,
  signingKid?: string,
): Promise<TokenKeySet> {
  if (keyFiles(dir).length === 0 && signingKid === undefined) {
    const kid = await rotateTokenKey(dir);
    log.info({ dir, kid }, `no token signing key in ${dir}: generated a new ES256 key (kid ${kid})`);
  }
  return loadTokenKeys(dir, log, signingKid);
}
