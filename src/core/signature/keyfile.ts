/**
 * cosign encrypted private key files, so cosign and trustgate keys interoperate.
 *
 * Format (sigstore/sigstore pkg/cryptoutils + go-securesystemslib `encrypted`): a PEM block whose body
 * is the JSON
 *   {"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":b64},
 *    "cipher":{"name":"nacl/secretbox","nonce":b64},"ciphertext":b64}
 * where ciphertext = secretbox(PKCS#8 DER) under key = scrypt(passphrase, salt, N, r, p, 32 bytes),
 * and b64 is standard padded base64 (Go's []byte JSON encoding).
 *
 * Labels: current cosign writes `ENCRYPTED SIGSTORE PRIVATE KEY` and reads it and `ENCRYPTED COSIGN
 * PRIVATE KEY`; older cosign reads only the latter. Policy (DESIGN): write `ENCRYPTED COSIGN PRIVATE
 * KEY` (readable by every cosign), read both.
 */
import { createPrivateKey, randomBytes, scryptSync } from 'node:crypto';
import { xsalsa20poly1305 } from '@noble/ciphers/salsa.js';
import { GateError } from '../errors.js';
import { isJsonObject, parseStrictJson } from '../json-strict.js';
import { decodePem, decodeStrictBase64, pemEncode } from './keys.js';

export const COSIGN_KEY_PEM_LABEL = 'ENCRYPTED COSIGN PRIVATE KEY';
export const SIGSTORE_KEY_PEM_LABEL = 'ENCRYPTED SIGSTORE PRIVATE KEY';

/** N written by encryptCosignKey (cosign's value). */
export const SCRYPT_N_WRITE = 32768;
/**
 * Policy: N accepted on read. Bounded so a hostile key file cannot make us allocate more than
 * 128 * N * r = 128 MiB (N = 2^17, r = 8); r = 8 and p = 1 are required for the same reason.
 */
export const SCRYPT_N_READ: readonly number[] = [2 ** 15, 2 ** 16, 2 ** 17];
const SCRYPT_R = 8;
const SCRYPT_P = 1;
const SALT_BYTES = 32;
const NONCE_BYTES = 24;
const KEY_BYTES = 32;

function keyfileError(msg: string, opts: { cause?: unknown } = {}): GateError {
  return new GateError('BAD_REQUEST', `encrypted private key: ${msg}`, { ...opts });
}

function deriveKey(passphrase: string, salt: Uint8Array, N: number): Uint8Array {
  const out = scryptSync(Buffer.from(passphrase, 'utf8'), salt, KEY_BYTES, {
    N,
    r: SCRYPT_R,
    p: SCRYPT_P,
    // 128 * N * r bytes are needed; leave headroom for OpenSSL's bookkeeping.
    maxmem: 2 * 128 * N * SCRYPT_R * SCRYPT_P,
  });
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

export interface EncryptOptions {
  /** Tests only: fixed salt (32 bytes) and nonce (24 bytes). Default: fresh random bytes. */
  salt?: Uint8Array;
  nonce?: Uint8Array;
}

/** Encrypts a PKCS#8 DER private key into a cosign key file (PEM text). */
export function encryptCosignKey(
  pkcs8Der: Uint8Array,
  passphrase: string,
  opts: EncryptOptions = {},
): string {
  // Policy: an empty passphrase would store the key effectively in the clear.
  if (passphrase.length === 0) throw keyfileError('an empty passphrase is not allowed');
  const salt = opts.salt ?? new Uint8Array(randomBytes(SALT_BYTES));
  const nonce = opts.nonce ?? new Uint8Array(randomBytes(NONCE_BYTES));
  if (salt.length !== SALT_BYTES || nonce.length !== NONCE_BYTES)
    throw new TypeError('bad salt or nonce length');
  const key = deriveKey(passphrase, salt, SCRYPT_N_WRITE);
  const ciphertext = xsalsa20poly1305(key, nonce).encrypt(pkcs8Der);
  key.fill(0);
  const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');
  // Field order as Go marshals the securesystemslib structs.
  const body = JSON.stringify({
    kdf: { name: 'scrypt', params: { N: SCRYPT_N_WRITE, r: SCRYPT_R, p: SCRYPT_P }, salt: b64(salt) },
    cipher: { name: 'nacl/secretbox', nonce: b64(nonce) },
    ciphertext: b64(ciphertext),
  });
  return pemEncode(COSIGN_KEY_PEM_LABEL, new TextEncoder().encode(body));
}

function exact(v: unknown, fields: readonly string[], where: string): Record<string, unknown> {
  if (!isJsonObject(v)) throw keyfileError(`${where} must be an object`);
  for (const k of Object.keys(v))
    if (!fields.includes(k)) throw keyfileError(`unexpected field ${where}.${k}`);
  for (const f of fields) if (!(f in v)) throw keyfileError(`missing field ${where}.${f}`);
  return v;
}

function b64Field(v: unknown, where: string): Uint8Array {
  const bytes = typeof v === 'string' ? decodeStrictBase64(v) : null;
  if (bytes === null) throw keyfileError(`${where} is not standard base64`);
  return bytes;
}

/** Decrypts a cosign key file (either label) to the PKCS#8 DER private key. */
export function decryptCosignKey(pem: string, passphrase: string): Uint8Array {
  const { der } = decodePem(pem, [COSIGN_KEY_PEM_LABEL, SIGSTORE_KEY_PEM_LABEL], 'encrypted private key');
  let doc: unknown;
  try {
    doc = parseStrictJson(der, 'encrypted private key body');
  } catch (err) {
    throw keyfileError('the PEM body is not the expected JSON', { cause: err });
  }
  const top = exact(doc, ['kdf', 'cipher', 'ciphertext'], 'key');
  const kdf = exact(top.kdf, ['name', 'params', 'salt'], 'kdf');
  const params = exact(kdf.params, ['N', 'r', 'p'], 'kdf.params');
  const cipher = exact(top.cipher, ['name', 'nonce'], 'cipher');
  if (kdf.name !== 'scrypt') throw keyfileError(`unsupported kdf ${JSON.stringify(kdf.name)}`);
  if (cipher.name !== 'nacl/secretbox')
    throw keyfileError(`unsupported cipher ${JSON.stringify(cipher.name)}`);
  const N = params.N;
  if (typeof N !== 'number' || !SCRYPT_N_READ.includes(N)) {
    throw keyfileError(`scrypt N=${String(N)} is not accepted (accepted: ${SCRYPT_N_READ.join(', ')})`);
  }
  if (params.r !== SCRYPT_R || params.p !== SCRYPT_P) {
    throw keyfileError(
      `scrypt r=${String(params.r)}, p=${String(params.p)} are not accepted (need r=8, p=1)`,
    );
  }
  const salt = b64Field(kdf.salt, 'kdf.salt');
  if (salt.length < 16 || salt.length > 64) throw keyfileError('kdf.salt must be 16 to 64 bytes');
  const nonce = b64Field(cipher.nonce, 'cipher.nonce');
  if (nonce.length !== NONCE_BYTES) throw keyfileError('cipher.nonce must be 24 bytes');
  const ciphertext = b64Field(top.ciphertext, 'ciphertext');
  if (ciphertext.length < 16) throw keyfileError('ciphertext is too short');

  // An empty passphrase is allowed here: cosign can write such files (COSIGN_PASSWORD=""), and reading
  // one is the user's choice; only writing one is refused.
  const key = deriveKey(passphrase, salt, N);
  let plain: Uint8Array;
  try {
    plain = xsalsa20poly1305(key, nonce).decrypt(ciphertext);
  } catch {
    throw new GateError('DENIED', 'cannot decrypt the private key: wrong passphrase (or a damaged key file)');
  } finally {
    key.fill(0);
  }
  try {
    createPrivateKey({ key: Buffer.from(plain), format: 'der', type: 'pkcs8' });
  } catch (err) {
    throw keyfileError('decrypted data is not a PKCS#8 private key', { cause: err });
  }
  return plain;
}
