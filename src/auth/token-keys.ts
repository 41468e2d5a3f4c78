import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { calculateJwkThumbprint, exportJWK } from 'jose';

/**
 * Token signing keys: ES256 key pairs in one directory, `<kid>.key` (PKCS#8 PEM, mode 0600),
 * kid = RFC 7638 thumbprint. The newest key signs; every key present verifies, so a rotation
 * (add a key, remove the old one after the longest token lifetime) never invalidates tokens in
 * flight.
 */
export interface TokenKeySet {
  signing: { kid: string; privateKey: KeyObject };
  verifying: ReadonlyMap<string, KeyObject>;
}

export interface TokenKeyLogger {
  info(obj: object, msg: string): void;
}

async function kidOf(publicKey: KeyObject): Promise<string> {
  return calculateJwkThumbprint(await exportJWK(publicKey), 'sha256');
}

/** Writes a new signing key; it becomes the signing key on the next load. */
export async function rotateTokenKey(dir: string): Promise<string> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const kid = await kidOf(publicKey);
  const file = path.join(dir, `${kid}.key`);
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  renameSync(tmp, file);
  return kid;
}

export async function loadOrCreateTokenKeys(dir: string, log: TokenKeyLogger): Promise<TokenKeySet> {
  const list = (): string[] => (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.key')) : []);
  if (list().length === 0) {
    const kid = await rotateTokenKey(dir);
    log.info({ dir, kid }, 'no token signing key found: generated a new ES256 key');
  }
  const entries = list()
    .map((f) => ({ f, mtime: statSync(path.join(dir, f)).mtimeMs }))
    .sort((a, b) => b.mtime - a.mtime || a.f.localeCompare(b.f));
  const verifying = new Map<string, KeyObject>();
  let signing: TokenKeySet['signing'] | undefined;
  for (const { f } of entries) {
    const privateKey = createPrivateKey(readFileSync(path.join(dir, f)));
    if (
      privateKey.asymmetricKeyType !== 'ec' ||
      privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1'
    ) {
      throw new Error(`${path.join(dir, f)}: token keys must be ECDSA P-256`);
    }
    const publicKey = createPublicKey(privateKey);
    const kid = await kidOf(publicKey);
    verifying.set(kid, publicKey);
    signing ??= { kid, privateKey };
  }
  if (!signing) throw new Error(`no token signing key in ${dir}`);
  log.info({ dir, signingKid: signing.kid, keys: verifying.size }, 'token signing keys loaded');
  return { signing, verifying };
}
