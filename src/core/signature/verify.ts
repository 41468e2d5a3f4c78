/**
 * Signature verification over raw payload bytes. Pure and synchronous; never throws on malformed
 * input: anything that is not a valid signature is `false`.
 */
import { verify as nodeVerify } from 'node:crypto';
import * as ed from '@noble/ed25519';
import { sha512 } from '@noble/hashes/sha2.js';
import type { PublicKey } from './keys.js';

// noble's synchronous API needs a SHA-512 implementation.
ed.hashes.sha512 ??= sha512;

/** Order of the Ed25519 prime-order subgroup. */
export const L = 2n ** 252n + 27742317777372353535851937790883648493n;

/** dom2(phflag=1, context="") of RFC 8032 §5.1: the Ed25519ph domain separator with an empty context. */
export const DOM2_PH_EMPTY = Uint8Array.from([
  ...new TextEncoder().encode('SigEd25519 no Ed25519 collisions'),
  1,
  0,
]);

export function bytesToNumberLE(b: Uint8Array): bigint {
  let n = 0n;
  for (let i = b.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(b[i] as number);
  return n;
}

interface Ed25519Parts {
  A: ed.Point;
  R: ed.Point;
  s: bigint;
}

/**
 * The strict RFC 8032 checks shared by pure and ph verification.
 * Policy: S < L (no malleable S + L), canonical encodings of R and A (zip215=false decoding), and
 * neither A nor R of small order (as libsodium); a signature failing any of these is refused.
 */
function decodeStrict(sig: Uint8Array, publicKey: Uint8Array): Ed25519Parts | null {
  if (sig.length !== 64 || publicKey.length !== 32) return null;
  const s = bytesToNumberLE(sig.subarray(32, 64));
  if (s >= L) return null;
  try {
    const A = ed.Point.fromBytes(publicKey, false);
    const R = ed.Point.fromBytes(sig.subarray(0, 32), false);
    if (A.isSmallOrder() || R.isSmallOrder()) return null;
    return { A, R, s };
  } catch {
    return null;
  }
}

/** Pure Ed25519 (RFC 8032 §5.1.7) in strict mode. */
export function verifyEd25519Pure(publicKey: Uint8Array, message: Uint8Array, sig: Uint8Array): boolean {
  if (decodeStrict(sig, publicKey) === null) return false;
  try {
    return ed.verify(sig, message, publicKey, { zip215: false });
  } catch {
    return false;
  }
}

/**
 * Ed25519ph (RFC 8032 §5.1, phflag = 1, empty context, PH = SHA-512), which cosign >= 2.6 emits with
 * `--key` (sigstore's ED25519phVerifier: Go ed25519.VerifyWithOptions with Hash: SHA512, no context).
 * noble-ed25519 only does pure Ed25519, so the verification equation is written here on its audited
 * point arithmetic: [8][S]B = [8]R + [8][k]A with k = SHA-512(dom2 || R || A || SHA-512(M)) mod L,
 * the same cofactored equation noble uses for pure Ed25519.
 */
export function verifyEd25519ph(publicKey: Uint8Array, message: Uint8Array, sig: Uint8Array): boolean {
  const parts = decodeStrict(sig, publicKey);
  if (parts === null) return false;
  try {
    const ph = sha512(message);
    const k =
      bytesToNumberLE(sha512(ed.etc.concatBytes(DOM2_PH_EMPTY, sig.subarray(0, 32), publicKey, ph))) % L;
    const SB = ed.Point.BASE.multiply(parts.s, false);
    const kA = parts.A.multiply(k, false);
    return parts.R.add(kA).subtract(SB).clearCofactor().is0();
  } catch {
    return false;
  }
}

/** ECDSA P-256 with SHA-256 over the payload; the signature must be ASN.1 DER. */
function verifyEcdsaP256(
  key: Extract<PublicKey, { alg: 'ecdsa-p256' }>,
  payload: Uint8Array,
  sig: Uint8Array,
): boolean {
  // Policy: DER only, as cosign writes and as sigstore verifies (ecdsa.VerifyASN1); a raw r||s
  // (IEEE P1363) signature is refused. OpenSSL also refuses non-canonical (BER) encodings.
  if (sig.length < 8 || sig[0] !== 0x30) return false;
  try {
    return nodeVerify('sha256', payload, { key: key.keyObject, dsaEncoding: 'der' }, sig);
  } catch {
    return false;
  }
}

/**
 * Verifies `signature` over the raw `payload` with `key`. Ed25519: strict pure Ed25519 first, then
 * Ed25519ph. Returns false for anything malformed; never throws.
 */
export function verifySignature(key: PublicKey, payload: Uint8Array, signature: Uint8Array): boolean {
  try {
    if (key.alg === 'ecdsa-p256') return verifyEcdsaP256(key, payload, signature);
    if (key.alg === 'ed25519') {
      // Policy: both modes are accepted for an Ed25519 key (DESIGN: cosign >= 2.6 signs with ph); they
      // are domain-separated by dom2, so a signature valid in one mode says nothing in the other.
      return verifyEd25519Pure(key.raw, payload, signature) || verifyEd25519ph(key.raw, payload, signature);
    }
    return false;
  } catch {
    return false;
  }
}
