/**
 * Public keys: PEM SPKI in, a validated key out. Pure computation (node:crypto's key parsing needs
 * no I/O).
 *
 * Policy: only Ed25519 and ECDSA P-256 are accepted. RSA, other curves and other algorithms are
 * refused with a message that says so. Ed25519 keys must be canonical, not of small order, and in
 * the prime-order subgroup.
 */
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import { badRequest, GateError } from '../errors.js';

export type PublicKey =
  { alg: 'ed25519'; raw: Uint8Array } | { alg: 'ecdsa-p256'; spkiDer: Uint8Array; keyObject: KeyObject };

// SPKI DER prefix of an Ed25519 key (RFC 8410): SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING (33) }.
const ED25519_SPKI_PREFIX = Uint8Array.from([
  0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
]);

/**
 * Strict standard base64 (padded, canonical): null when not. The bytes must re-encode to exactly the
 * text, which refuses every other alphabet (URL-safe), whitespace, missing or extra padding and
 * non-zero trailing bits; linear in the input (a regular expression took ~100 ms on 1 MiB).
 */
export function decodeStrictBase64(s: string): Uint8Array | null {
  if (s.length % 4 !== 0) return null;
  const out = Buffer.from(s, 'base64');
  if (out.toString('base64') !== s) return null;
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/**
 * Decodes exactly one PEM block with the given label(s); anything around it except whitespace is
 * refused (Policy: one key per file, no certificate smuggled in next to it).
 */
export function decodePem(
  pem: string,
  labels: readonly string[],
  what: string,
): { label: string; der: Uint8Array } {
  const m =
    /^\s*-----BEGIN ([A-Z0-9 ]+)-----\r?\n([A-Za-z0-9+/=\r\n]+?)\r?\n?-----END ([A-Z0-9 ]+)-----\s*$/.exec(
      pem,
    );
  if (m === null) throw badRequest(`${what}: expected exactly one PEM block`);
  const [, label, body, endLabel] = m as unknown as [string, string, string, string];
  if (label !== endLabel) throw badRequest(`${what}: PEM BEGIN/END labels differ`);
  if (!labels.includes(label)) {
    throw badRequest(
      `${what}: PEM type "${label}" is not supported (expected ${labels.map((l) => `"${l}"`).join(' or ')})`,
    );
  }
  const der = decodeStrictBase64(body.replace(/\r?\n/g, ''));
  if (der === null || der.length === 0) throw badRequest(`${what}: PEM body is not valid base64`);
  return { label, der };
}

/** Checks an Ed25519 public key encoding; returns a reason to refuse it, or null when it is fine. */
export function ed25519KeyProblem(raw: Uint8Array): string | null {
  if (raw.length !== 32) return 'an Ed25519 key is 32 bytes';
  let A: InstanceType<typeof ed25519.Point>;
  try {
    // zip215=false: RFC 8032 decoding, refuses y >= p and the "negative zero" x encoding.
    A = ed25519.Point.fromBytes(raw, false);
  } catch {
    return 'not a canonical Ed25519 point encoding';
  }
  if (A.isSmallOrder()) return 'a small-order Ed25519 key (it would verify forged signatures)';
  // Policy: a mixed-order key (prime-order point plus torsion) is never produced by key generation.
  if (!A.isTorsionFree()) return 'an Ed25519 key outside the prime-order subgroup';
  return null;
}

/** Builds a validated Ed25519 PublicKey from its 32 raw bytes. Throws when the key is refused. */
export function ed25519PublicKeyFromRaw(raw: Uint8Array): PublicKey {
  const problem = ed25519KeyProblem(raw);
  if (problem !== null) throw badRequest(`public key refused: ${problem}`);
  return { alg: 'ed25519', raw: Uint8Array.from(raw) };
}

/** Parses a DER SubjectPublicKeyInfo into a PublicKey (Ed25519 or ECDSA P-256 only). */
export function parsePublicKeyDer(spki: Uint8Array): PublicKey {
  let ko: KeyObject;
  try {
    ko = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
  } catch (err) {
    throw new GateError('BAD_REQUEST', 'public key is not a valid SubjectPublicKeyInfo', {
      cause: err,
    });
  }
  // Policy: the DER must be the canonical encoding (e.g. no compressed EC point, no trailing bytes),
  // so a key has one fingerprint.
  const canonical = new Uint8Array(ko.export({ format: 'der', type: 'spki' }));
  if (Buffer.compare(Buffer.from(canonical), Buffer.from(spki)) !== 0) {
    throw badRequest('public key is not in canonical DER SubjectPublicKeyInfo form');
  }
  const type = ko.asymmetricKeyType;
  if (type === 'ed25519') {
    if (canonical.length !== 44 || !Buffer.from(canonical.subarray(0, 12)).equals(ED25519_SPKI_PREFIX)) {
      throw badRequest('unexpected Ed25519 SubjectPublicKeyInfo layout');
    }
    return ed25519PublicKeyFromRaw(canonical.subarray(12));
  }
  if (type === 'ec') {
    const curve = ko.asymmetricKeyDetails?.namedCurve;
    if (curve !== 'prime256v1') {
      throw badRequest(`ECDSA curve ${curve ?? 'unknown'} is not supported; use P-256 or Ed25519`);
    }
    // Policy: uncompressed point only (91-byte SPKI, 0x04 prefix), as Go's x509 (and so cosign) parses
    // it; a compressed spelling would give the same key a second fingerprint.
    if (canonical.length !== 91 || canonical[26] !== 0x04) {
      throw badRequest('ECDSA public key must use the uncompressed point encoding (canonical SPKI)');
    }
    return { alg: 'ecdsa-p256', spkiDer: canonical, keyObject: ko };
  }
  throw badRequest(`${type ?? 'unknown'} keys are not supported; use Ed25519 or ECDSA P-256`);
}

/** Parses a PEM `PUBLIC KEY` (SPKI), as cosign writes it in cosign.pub. */
export function parsePublicKeyPem(pem: string): PublicKey {
  const { der } = decodePem(pem, ['PUBLIC KEY'], 'public key');
  return parsePublicKeyDer(der);
}

/** The DER SubjectPublicKeyInfo of a key. */
export function publicKeySpkiDer(key: PublicKey): Uint8Array {
  if (key.alg === 'ecdsa-p256') return key.spkiDer;
  const out = new Uint8Array(44);
  out.set(ED25519_SPKI_PREFIX, 0);
  out.set(key.raw, 12);
  return out;
}

/** `sha256:<hex>` of the DER SubjectPublicKeyInfo: a stable key id. */
export function publicKeyFingerprint(key: PublicKey): string {
  return `sha256:${createHash('sha256').update(publicKeySpkiDer(key)).digest('hex')}`;
}

/** PEM `PUBLIC KEY` with 64-character lines (as Go's pem.Encode writes). */
export function publicKeyToPem(key: PublicKey): string {
  return pemEncode('PUBLIC KEY', publicKeySpkiDer(key));
}

/** PEM-encodes bytes with 64-character lines and a trailing newline. */
export function pemEncode(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}
