/**
 * Attestations as signed envelopes: a legacy cosign `.att` layer (a bare DSSE envelope,
 * `application/vnd.dsse.envelope.v1+json`) or a Sigstore bundle referrer whose statement is not
 * cosign's signature statement. Each is verified against the keys a rule trusts for attestations,
 * and its in-toto statement (v0.1 or v1) must name the served digest. Pure.
 */
import { dsse } from '@sigstore/core';
import { isJsonObject, parseStrictJson } from '../json-strict.js';
import { verifySignature } from '../signature/verify.js';
import { decodeStrictBase64 } from '../signature/keys.js';
import { keyUsability, type TrustedKey } from '../trusted-key.js';
import { verifySigstoreBundle, type BundleVerifyOptions } from '../evidence/bundle.js';
import type { IdentityMatcher } from '../evidence/identity.js';
import {
  COSIGN_SIGN_PREDICATE_TYPE,
  IN_TOTO_PAYLOAD_TYPE,
  IN_TOTO_STATEMENT_V1,
  STATEMENT_KEYS,
  statementSubjectDigests,
} from '../evidence/statement.js';

/** `_type` of an in-toto Statement v0.1 (cosign's legacy `attest` still writes it). */
export const IN_TOTO_STATEMENT_V01 = 'https://in-toto.io/Statement/v0.1';
/** The layer media type of a legacy cosign attestation. */
export const MEDIA_TYPE_DSSE_ENVELOPE = 'application/vnd.dsse.envelope.v1+json';
/** Policy: at most this many signatures are tried in one legacy envelope. */
export const MAX_ENVELOPE_SIGNATURES = 8;

/**
 * Who vouched for an attestation: a trusted key, or (bundles only) a keyless identity (Fulcio
 * certificate issuer and subject) matched by core/evidence/bundle.ts against the rule's identities.
 */
export interface AttestationSigner {
  kind: 'key' | 'identity';
  name: string;
  /** The key's notAfter (ms), when it has one: the attestation stops counting after it. */
  notAfter?: number;
}

export interface VerifiedStatement {
  predicateType: string;
  predicate: unknown;
  signers: AttestationSigner[];
}

export type AttestationRejection =
  'malformed' | 'untrusted-signer' | 'revoked-or-expired-key' | 'other-subject' | 'signature-statement';

export type EnvelopeResult =
  ({ ok: true } & VerifiedStatement) | { ok: false; reason: AttestationRejection; detail: string };

const ENVELOPE_KEYS = new Set(['payloadType', 'payload', 'signatures']);
const SIG_KEYS = new Set(['keyid', 'sig']);

const reject = (reason: AttestationRejection, detail: string): EnvelopeResult => ({
  ok: false,
  reason,
  detail,
});

function signersOf(keys: readonly TrustedKey[], now: Date): AttestationSigner[] {
  return keys
    .filter((k) => keyUsability(k, now) === 'usable')
    .map((k) => ({
      kind: 'key' as const,
      name: k.name,
      ...(k.notAfter ? { notAfter: k.notAfter.getTime() } : {}),
    }));
}

/**
 * Verifies a legacy cosign attestation layer: a DSSE envelope of an in-toto statement, signed over
 * the DSSE PAE by at least one of `keys` that is usable at `now`. The statement is then checked.
 */
export function verifyLegacyEnvelope(
  bytes: Uint8Array,
  digest: string,
  keys: readonly TrustedKey[],
  now: Date,
): EnvelopeResult {
  let doc: unknown;
  try {
    doc = parseStrictJson(bytes, 'DSSE envelope');
  } catch (err) {
    return reject('malformed', (err as Error).message);
  }
  if (!isJsonObject(doc)) return reject('malformed', 'the DSSE envelope is not a JSON object');
  const unknown = Object.keys(doc).find((k) => !ENVELOPE_KEYS.has(k));
  if (unknown !== undefined)
    return reject('malformed', `unknown DSSE envelope field ${JSON.stringify(unknown)}`);
  // Policy: in-toto statements only; any other payload type says nothing trustgate can read.
  if (doc['payloadType'] !== IN_TOTO_PAYLOAD_TYPE) {
    return reject(
      'malformed',
      `DSSE payload type ${JSON.stringify(doc['payloadType'])} is not ${IN_TOTO_PAYLOAD_TYPE}`,
    );
  }
  const payload = typeof doc['payload'] === 'string' ? decodeStrictBase64(doc['payload']) : null;
  if (payload === null) return reject('malformed', 'the DSSE payload is not valid base64');
  const sigs = doc['signatures'];
  if (!Array.isArray(sigs) || sigs.length === 0)
    return reject('untrusted-signer', 'the DSSE envelope carries no signature');
  if (sigs.length > MAX_ENVELOPE_SIGNATURES) {
    return reject('malformed', `the DSSE envelope carries more than ${MAX_ENVELOPE_SIGNATURES} signatures`);
  }
  const pae = new Uint8Array(dsse.preAuthEncoding(IN_TOTO_PAYLOAD_TYPE, Buffer.from(payload)));
  const verified = new Set<TrustedKey>();
  for (const s of sigs as unknown[]) {
    if (!isJsonObject(s) || Object.keys(s).some((k) => !SIG_KEYS.has(k))) {
      return reject('malformed', 'malformed DSSE signature');
    }
    const sig = typeof s['sig'] === 'string' ? decodeStrictBase64(s['sig']) : null;
    if (sig === null || sig.length === 0) continue;
    // Policy: the keyid is only a label; every trusted key is tried and the signature decides.
    // Ed25519: cosign signs DSSE with Ed25519ph for `--key`, older releases pure.
    for (const k of keys) if (verifySignature(k.key, pae, sig, 'ph')) verified.add(k);
  }
  if (verified.size === 0) {
    return reject(
      'untrusted-signer',
      keys.length === 0
        ? 'no key is trusted for attestations here'
        : 'no key trusted for attestations signed it',
    );
  }
  const signers = signersOf([...verified], now);
  if (signers.length === 0) {
    return reject(
      'revoked-or-expired-key',
      `signed by ${[...verified].map((k) => k.name).join(', ')}, not usable at ${now.toISOString()}`,
    );
  }
  return checkStatement(payload, digest, signers);
}

/**
 * Verifies a Sigstore bundle (an OCI referrer's layer) as an attestation: core/evidence/bundle.ts
 * does the bundle, key and transparency-log work (purpose `attestation`), then the statement is
 * checked here. A bundle whose statement is cosign's signature statement is no attestation.
 */
export function verifyAttestationBundle(
  bytes: Uint8Array,
  digest: string,
  keys: readonly TrustedKey[],
  options: Pick<BundleVerifyOptions, 'tlog' | 'trustedRoot' | 'trustedRoots' | 'now' | 'maxBytes'>,
  identities: readonly IdentityMatcher[] = [],
): EnvelopeResult {
  const v = verifySigstoreBundle({ bundle: bytes, digest, keys, identities }, options);
  if (!v.ok) {
    const reason: AttestationRejection =
      v.reason === 'untrusted-key' || v.reason === 'no-signature' || v.reason === 'untrusted-identity'
        ? 'untrusted-signer'
        : v.reason === 'revoked-key' || v.reason === 'expired-key'
          ? 'revoked-or-expired-key'
          : 'malformed';
    return reject(reason, v.detail);
  }
  // Policy: an attestation is a DSSE envelope of an in-toto statement; a message signature is not.
  if (v.content !== 'dsse' || v.payload === undefined || v.payloadType !== IN_TOTO_PAYLOAD_TYPE) {
    return reject('malformed', 'an attestation bundle holds a DSSE envelope of an in-toto statement');
  }
  const byName = new Map(keys.map((k) => [k.name, k]));
  const signers = v.signers.map((s): AttestationSigner => {
    const k = s.kind === 'key' ? byName.get(s.name) : undefined;
    return { kind: s.kind, name: s.name, ...(k?.notAfter ? { notAfter: k.notAfter.getTime() } : {}) };
  });
  return checkStatement(v.payload, digest, signers);
}

/**
 * The in-toto statement of a verified envelope: v0.1 or v1, known fields only (strict JSON), a
 * predicate type, and `digest` among its subjects. Policy: a statement is parsed only after a
 * trusted key vouched for its bytes.
 */
export function checkStatement(
  payload: Uint8Array,
  digest: string,
  signers: AttestationSigner[],
): EnvelopeResult {
  let doc: unknown;
  try {
    doc = parseStrictJson(payload, 'in-toto statement');
  } catch (err) {
    return reject('malformed', (err as Error).message);
  }
  if (!isJsonObject(doc)) return reject('malformed', 'the in-toto statement is not a JSON object');
  const unknown = Object.keys(doc).find((k) => !STATEMENT_KEYS.has(k));
  if (unknown !== undefined)
    return reject('malformed', `unknown in-toto statement field ${JSON.stringify(unknown)}`);
  if (doc['_type'] !== IN_TOTO_STATEMENT_V1 && doc['_type'] !== IN_TOTO_STATEMENT_V01) {
    return reject('malformed', `in-toto statement _type ${JSON.stringify(doc['_type'])} is not v0.1 or v1`);
  }
  const predicateType = doc['predicateType'];
  if (typeof predicateType !== 'string' || predicateType.length === 0 || predicateType.length > 512) {
    return reject('malformed', 'the in-toto statement has no predicateType');
  }
  // Policy: cosign's signature statement is a signature (core/trust.ts weighs it), never an attestation.
  if (predicateType === COSIGN_SIGN_PREDICATE_TYPE) {
    return reject('signature-statement', 'a signature statement, not an attestation');
  }
  const subjects = statementSubjectDigests(doc['subject']);
  if (!subjects.ok) return reject('malformed', subjects.detail);
  // Policy: an attestation counts only for the digest its statement names: one made for another
  // image (copied next to this one) says nothing about it.
  if (!subjects.digests.includes(digest)) {
    return reject('other-subject', `it is about ${subjects.digests.slice(0, 3).join(', ')}, not this digest`);
  }
  return { ok: true, predicateType, predicate: doc['predicate'] ?? null, signers };
}
