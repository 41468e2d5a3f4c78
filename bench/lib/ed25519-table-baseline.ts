/**
 * BASELINE ONLY, for bench/ed25519.ts: the hand-written Ed25519 verifier that src/core/signature/
 * verify.ts carried before it moved to @noble/curves (a per-key table of [j * 16^i]A on
 * @noble/ed25519's points). Not used by trustgate; kept so the bench can compare both in one process.
 */
import { createHash } from 'node:crypto';
import * as ed from '@noble/ed25519';
import { sha512 } from '@noble/hashes/sha2.js';

// noble's synchronous API needs a SHA-512 implementation (signing, elsewhere, uses it).
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

/**
 * A trusted Ed25519 key made ready for verification: A decoded and checked once, and a table of
 * its multiples for [k]A. Policy: the same strict decoding as for signatures (canonical, not of
 * small order); a key that fails it verifies nothing.
 */
interface PreparedEd25519Key {
  A: ed.Point;
  /**
   * rows[i][j - 1] = [j * 16^i]A for j = 1..15, i = 0..63: [k]A is then at most 64 additions
   * instead of about 250 doublings and 125 additions (noble's multiply). Verification handles
   * public values only, so a table lookup that depends on k leaks nothing secret.
   */
  rows?: ed.Point[][];
}

/** Keys prepared so far, by their 32 bytes (hex); bounded, a few hundred KiB each with a table. */
const PREPARED = new Map<string, PreparedEd25519Key | null>();
const MAX_PREPARED = 64;

function prepareKey(publicKey: Uint8Array): PreparedEd25519Key | null {
  if (publicKey.length !== 32) return null;
  const id = Buffer.from(publicKey.buffer, publicKey.byteOffset, 32).toString('hex');
  const known = PREPARED.get(id);
  if (known !== undefined) return known;
  let prepared: PreparedEd25519Key | null = null;
  try {
    const A = ed.Point.fromBytes(publicKey, false);
    if (!A.isSmallOrder()) prepared = { A };
  } catch {
    prepared = null;
  }
  if (PREPARED.size >= MAX_PREPARED) PREPARED.clear();
  PREPARED.set(id, prepared);
  return prepared;
}

/** [k]A for 0 <= k < 2^256, from the key's table (built on first use). */
function multiplyKey(key: PreparedEd25519Key, k: bigint): ed.Point {
  if (key.rows === undefined) {
    const rows: ed.Point[][] = [];
    let base = key.A;
    for (let i = 0; i < 64; i++) {
      const row = [base];
      for (let j = 1; j < 15; j++) row.push(row[j - 1]!.add(base));
      rows.push(row);
      base = row[14]!.add(base); // [16]base
    }
    key.rows = rows;
  }
  let acc = ed.Point.ZERO;
  for (let i = 0; i < 64 && k > 0n; i++, k >>= 4n) {
    const digit = Number(k & 15n);
    if (digit !== 0) acc = acc.add(key.rows[i]![digit - 1]!);
  }
  return acc;
}

/** What a signature contributes to either mode's equation, decoded and checked once. */
interface Ed25519Parts {
  key: PreparedEd25519Key;
  R: ed.Point;
  /** [S]B. */
  SB: ed.Point;
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
  const key = prepareKey(publicKey);
  if (key === null) return null;
  try {
    const R = ed.Point.fromBytes(sig.subarray(0, 32), false);
    if (R.isSmallOrder()) return null;
    return { key, R, SB: ed.Point.BASE.multiply(s, false) };
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
 * The cofactored group equation [8][S]B = [8]R + [8][k]A with k = SHA-512(prefix) mod L, as noble
 * checks it for pure Ed25519 with zip215 = false.
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
 * noble-ed25519 only does pure Ed25519, so the verification equation is written here on its audited
 * point arithmetic: [8][S]B = [8]R + [8][k]A with k = SHA-512(dom2 || R || A || SHA-512(M)) mod L,
 * the same cofactored equation noble uses for pure Ed25519.
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
