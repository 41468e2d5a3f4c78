/**
 * Ed25519ph signing (RFC 8032 §5.1, phflag = 1, empty context, PH = SHA-512): what cosign >= 2.6
 * signs with an Ed25519 key, and the only Ed25519 mode cosign 3 verifies bundles with
 * (pkg/cosign/keys.go GetDefaultLoadOptions: WithED25519ph). Node's crypto and noble-ed25519 only
 * sign pure Ed25519, so the RFC 8032 §5.1.6 steps are written here on noble's point arithmetic;
 * verify.ts verifyEd25519ph checks the result. Pure.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import * as ed from '@noble/ed25519';
import { sha512 } from '@noble/hashes/sha2.js';
import { DOM2_PH_EMPTY, L, bytesToNumberLE } from './verify.js';

ed.hashes.sha512 ??= sha512;

function bigToLe32(n: bigint): Uint8Array {
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) {
    out[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return out;
}

/** The 32-byte RFC 8032 seed of an Ed25519 private key (PKCS#8 DER or a KeyObject). */
export function ed25519Seed(key: Uint8Array | KeyObject): Uint8Array {
  const ko =
    key instanceof Uint8Array
      ? createPrivateKey({ key: Buffer.from(key), format: 'der', type: 'pkcs8' })
      : key;
  if (ko.type !== 'private' || ko.asymmetricKeyType !== 'ed25519')
    throw new TypeError('not an Ed25519 private key');
  const d = ko.export({ format: 'jwk' }).d;
  if (d === undefined) throw new TypeError('Ed25519 private key has no seed');
  return new Uint8Array(Buffer.from(d, 'base64url'));
}

/** Signs `message` with Ed25519ph (empty context). `seed` is the 32-byte RFC 8032 secret key. */
export function signEd25519ph(seed: Uint8Array, message: Uint8Array): Uint8Array {
  const { prefix, scalar, pointBytes } = ed.utils.getExtendedPublicKey(seed);
  const ph = sha512(message);
  const r = bytesToNumberLE(sha512(ed.etc.concatBytes(DOM2_PH_EMPTY, prefix, ph))) % L;
  // r = 0 has probability 2^-252; noble's constant-time multiply refuses it rather than leak.
  if (r === 0n) throw new Error('Ed25519ph: degenerate nonce');
  const R = ed.Point.BASE.multiply(r).toBytes();
  const k = bytesToNumberLE(sha512(ed.etc.concatBytes(DOM2_PH_EMPTY, R, pointBytes, ph))) % L;
  const S = (r + k * scalar) % L;
  return ed.etc.concatBytes(R, bigToLe32(S));
}
