/**
 * Signature verification over raw payload bytes. Pure and synchronous; never throws on malformed
 * input: anything that is not a valid signature is `false`.
 */
import { createHash, verify as nodeVerify } from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import { bytesToNumberLE } from '@noble/curves/utils.js';
import type { PublicKey } from './keys.js';

type Ed25519Point = InstanceType<typeof ed25519.Point>;
const Point = ed25519.Point;

/** Order of the Ed25519 prime-order subgroup. */
export const L = Point.Fn.ORDER;

/** dom2(phflag=1, context="") of RFC 8032 §5.1: the Ed25519ph domain separator with an empty context. */
const DOM2_PH_EMPTY = Uint8Array.from([
  ...new TextEncoder().encode('SigEd25519 no Ed25519 collisions'),
  1,
  0,
]);

/**
 * Window of @noble/curves' precomputed table for a trusted key: W = 4 builds about as fast as one
 * verification without a table and verifies a repeated key as fast as wider windows on this
 * machine (bench/ed25519.ts), at ~65 × 8 points per key.
 */
const KEY_TABLE_WINDOW = 4;

/**
 * A trusted Ed25519 key made ready for verification: A decoded and checked once. Policy: the same
 * strict decoding as for signatures (canonical, not of small order); a key that fails it verifies
 * nothing. The first verification multiplies without a table (a key seen once, as in a cold
 * verification, never pays for one); from the second on, @noble/curves keeps a precomputed table of
 * A's multiples (its wNAF cache, keyed by this Point object).
 */
interface PreparedEd25519Key {
  A: Ed25519Point;
  tabled: boolean;
}

/** Keys prepared so far, by their 32 bytes (hex); bounded, ~110 KiB each once tabled (520 points, measured). */
const PREPARED = new Map<string, PreparedEd25519Key | null>();
const MAX_PREPARED = 64;

function prepareKey(publicKey: Uint8Array): PreparedEd25519Key | null {
  if (publicKey.length !== 32) return null;
  const id = Buffer.from(publicKey.buffer, publicKey.byteOffset, 32).toString('hex');
  const known = PREPARED.get(id);
  if (known !== undefined) return known;
  let prepared: PreparedEd25519Key | null = null;
  try {
    const A = Point.fromBytes(publicKey, false);
    if (!A.isSmallOrder()) prepared = { A, tabled: false };
  } catch {
    prepared = null;
  }
  if (PREPARED.size >= MAX_PREPARED) PREPARED.clear();
  PREPARED.set(id, prepared);
  return prepared;
}

/** [k]A for 0 <= k < L by @noble/curves; asks for the key's table after its first use. */
function multiplyKey(key: PreparedEd25519Key, k: bigint): Ed25519Point {
  const kA = key.A.multiplyUnsafe(k);
  if (!key.tabled) {
    key.A.precompute(KEY_TABLE_WINDOW, true); // built lazily by the next multiply
    key.tabled = true;
  }
  return kA;
}

/** What a signature contributes to either mode's equation, decoded and checked once. */
interface Ed25519Parts {
  key: PreparedEd25519Key;
  R: Ed25519Point;
  /** [S]B. */
  SB: Ed25519Point;
}

/**
 * The strict RFC 8032 checks shared by pure and ph verification.
 * Policy: S < L (no malleable S + L), canonical encodings of R and A (zip215=false decoding), and
 * neither A nor R of small order (as libsodium); a signature failing any of these is refused.
 * @noble/curves' own strict verify does all of these but the small-order R check.
 */
function decodeStrict(sig: Uint8Array, publicKey: Uint8Array): Ed25519Parts | null {
  if (sig.length !== 64 || publicKey.length !== 32) return null;
  const s = bytesToNumberLE(sig.subarray(32, 64));
  if (s >= L) return null;
  const key = prepareKey(publicKey);
  if (key === null) return null;
  try {
    const R = Point.fromBytes(sig.subarray(0, 32), false);
    if (R.isSmallOrder()) return null;
    return { key, R, SB: Point.BASE.multiplyUnsafe(s) };
  } catch {
    return null;
  }
}

/** SHA-512 of the concatenated parts (node's, which the hashes of both modes go through). */
function sha512Of(...parts: Uint8Array[]): Uint8Array {
  const h = createHash('sha512');
  for (const p of parts) h.update(p);
  return h.digest();
}

/**
 * The cofactored group equation [8][S]B = [8]R + [8][k]A with k = SHA-512(prefix) mod L, written
 * with @noble/curves' points exactly as its ed25519.verify / ed25519ph.verify check it with
 * zip215 = false (composed here only so that A's precomputed table is used; the library's verify
 * decodes A afresh on every call).
 */
function equationHolds(parts: Ed25519Parts, hashed: Uint8Array): boolean {
  const k = bytesToNumberLE(hashed) % L;
  return parts.R.add(multiplyKey(parts.key, k)).subtract(parts.SB).clearCofactor().is0();
}

function pureHolds(
  parts: Ed25519Parts,
  publicKey: Uint8Array,
  message: Uint8Array,
  sig: Uint8Array,
): boolean {
  return equationHolds(parts, sha512Of(sig.subarray(0, 32), publicKey, message));
}

function phHolds(parts: Ed25519Parts, publicKey: Uint8Array, message: Uint8Array, sig: Uint8Array): boolean {
  return equationHolds(parts, sha512Of(DOM2_PH_EMPTY, sig.subarray(0, 32), publicKey, sha512Of(message)));
}

/** Pure Ed25519 (RFC 8032 §5.1.7) in strict mode. */
export function verifyEd25519Pure(publicKey: Uint8Array, message: Uint8Array, sig: Uint8Array): boolean {
  try {
    const parts = decodeStrict(sig, publicKey);
    return parts !== null && pureHolds(parts, publicKey, message, sig);
  } catch {
    return false;
  }
}

/**
 * Ed25519ph (RFC 8032 §5.1, phflag = 1, empty context, PH = SHA-512), which cosign >= 2.6 emits with
 * `--key` (sigstore's ED25519phVerifier: Go ed25519.VerifyWithOptions with Hash: SHA512, no context).
 * k = SHA-512(dom2 || R || A || SHA-512(M)) mod L, as @noble/curves' ed25519ph computes it.
 */
export function verifyEd25519ph(publicKey: Uint8Array, message: Uint8Array, sig: Uint8Array): boolean {
  try {
    const parts = decodeStrict(sig, publicKey);
    return parts !== null && phHolds(parts, publicKey, message, sig);
  } catch {
    return false;
  }
}

/**
 * Either Ed25519 mode, `first` tried first: the decoding, the strict checks and [S]B are shared
 * (they do not depend on the mode), so the second mode costs one hash and one [k]A more.
 */
export function verifyEd25519Either(
  publicKey: Uint8Array,
  message: Uint8Array,
  sig: Uint8Array,
  first: 'pure' | 'ph',
): boolean {
  try {
    const parts = decodeStrict(sig, publicKey);
    if (parts === null) return false;
    const [a, b] = first === 'pure' ? [pureHolds, phHolds] : [phHolds, pureHolds];
    return a(parts, publicKey, message, sig) || b(parts, publicKey, message, sig);
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
 * Verifies `signature` over the raw `payload` with `key`. Ed25519: strict pure Ed25519 and
 * Ed25519ph, `ed25519First` tried first (only the cost differs: cosign signs DSSE and bundles with
 * ph, legacy `.sig` layers pure). Returns false for anything malformed; never throws.
 */
export function verifySignature(
  key: PublicKey,
  payload: Uint8Array,
  signature: Uint8Array,
  ed25519First: 'pure' | 'ph' = 'pure',
): boolean {
  try {
    if (key.alg === 'ecdsa-p256') return verifyEcdsaP256(key, payload, signature);
    if (key.alg === 'ed25519') {
      // Policy: both modes are accepted for an Ed25519 key (DESIGN: cosign >= 2.6 signs with ph); they
      // are domain-separated by dom2, so a signature valid in one mode says nothing in the other.
      return verifyEd25519Either(key.raw, payload, signature, ed25519First);
    }
    return false;
  } catch {
    return false;
  }
}
