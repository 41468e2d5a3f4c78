/**
 * The in-toto Statement that a cosign v3 bundle signs for an image (cosign `sign` with the new
 * bundle format, cmd/cosign/cli/sign/sign.go signDigestBundle): build it, and check one that a
 * trusted key signed. Pure.
 */
import { isJsonObject, parseStrictJson } from '../json-strict.js';
import { isValidDigest } from '../manifest.js';

/** DSSE payload type of an in-toto statement. */
export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
/** `_type` of an in-toto Statement v1. */
export const IN_TOTO_STATEMENT_V1 = 'https://in-toto.io/Statement/v1';
/** cosign's predicate type for a plain image signature (pkg/types/predicate.go CosignSignPredicateType). */
export const COSIGN_SIGN_PREDICATE_TYPE = 'https://sigstore.dev/cosign/sign/v1';

/**
 * The statement cosign 3.0.5+ signs: one subject with only the digest and the (possibly empty)
 * signing annotations, and an empty predicate. Serialised in protojson field order.
 */
export function buildCosignSignStatement(
  digest: string,
  annotations: Record<string, string> = {},
): Uint8Array {
  if (!isValidDigest(digest) || !digest.startsWith('sha256:')) {
    throw new TypeError(`invalid sha256 digest ${JSON.stringify(digest)}`);
  }
  const statement = {
    _type: IN_TOTO_STATEMENT_V1,
    subject: [{ digest: { sha256: digest.slice('sha256:'.length) }, annotations }],
    predicateType: COSIGN_SIGN_PREDICATE_TYPE,
    predicate: {},
  };
  return new TextEncoder().encode(JSON.stringify(statement));
}

export type StatementCheck =
  | { ok: true }
  | {
      ok: false;
      reason: 'attestation-not-signature' | 'digest-mismatch' | 'malformed-signature';
      detail: string;
    };

/** The fields of an in-toto Statement (v0.1 and v1); any other is refused. */
export const STATEMENT_KEYS: ReadonlySet<string> = new Set([
  '_type',
  'subject',
  'predicateType',
  'predicate',
]);
const SUBJECT_KEYS = new Set(['name', 'digest', 'annotations']);
const SHA256_HEX = /^[0-9a-f]{64}$/;

/**
 * Checks a statement that a trusted key signed: it must be an in-toto Statement v1 with cosign's
 * signature predicate type and a subject whose sha256 is `digest`. Call it only after the signature
 * over the payload verified.
 *
 * Accepted shapes (all three cosign 3 writes): subject `{digest}`, `{digest, annotations}`
 * (3.0.3+), and with `predicate: {}` (3.0.5+). A subject `name` is allowed (in-toto permits it;
 * cosign writes none) and ignored.
 */
export function checkSignStatement(payload: Uint8Array, digest: string): StatementCheck {
  const malformed = (detail: string): StatementCheck => ({
    ok: false,
    reason: 'malformed-signature',
    detail,
  });
  let doc: unknown;
  try {
    doc = parseStrictJson(payload, 'in-toto statement');
  } catch (err) {
    return malformed((err as Error).message);
  }
  if (!isJsonObject(doc)) return malformed('the in-toto statement is not a JSON object');
  const predicateType = doc['predicateType'];
  if (typeof predicateType !== 'string') return malformed('the in-toto statement has no predicateType');
  // Policy: only cosign's signature predicate makes a bundle a signature. Any other predicate type
  // (SLSA provenance, SBOM, vulnerability scan, custom) is an attestation ABOUT the image, never a
  // signature OF it, even though `cosign verify` accepts any verified DSSE bundle whose subject
  // matches; a publisher key that attests must not thereby admit an image.
  if (predicateType !== COSIGN_SIGN_PREDICATE_TYPE) {
    return {
      ok: false,
      reason: 'attestation-not-signature',
      detail: `the bundle is an attestation (predicateType ${JSON.stringify(predicateType)}), not a signature (${COSIGN_SIGN_PREDICATE_TYPE})`,
    };
  }
  for (const k of Object.keys(doc)) {
    if (!STATEMENT_KEYS.has(k))
      return malformed(`the in-toto statement has an unknown field ${JSON.stringify(k)}`);
  }
  // Policy: Statement v1 only; cosign 3 writes v1, and v0.1 was never used with this predicate type.
  if (doc['_type'] !== IN_TOTO_STATEMENT_V1) {
    return malformed(
      `the in-toto statement _type is ${JSON.stringify(doc['_type'])}, not ${IN_TOTO_STATEMENT_V1}`,
    );
  }
  const predicate = doc['predicate'];
  // Policy: the signature predicate carries nothing; anything in it is a shape we do not know.
  if (predicate !== undefined && !(isJsonObject(predicate) && Object.keys(predicate).length === 0)) {
    return malformed('the cosign signature predicate must be empty');
  }
  const subjects = statementSubjectDigests(doc['subject']);
  if (!subjects.ok) return malformed(subjects.detail);
  const signed = subjects.digests;
  if (!signed.includes(digest)) {
    return {
      ok: false,
      reason: 'digest-mismatch',
      detail: `the bundle signs ${signed.join(', ')}, not this digest`,
    };
  }
  return { ok: true };
}

/**
 * The sha256 digests an in-toto statement's `subject` list names (`sha256:<hex>`), checked the one
 * way for signatures and attestations: a non-empty list of `{name?, digest, annotations?}` whose
 * digest maps hold strings, each with a lowercase sha256.
 */
export function statementSubjectDigests(
  subjects: unknown,
): { ok: true; digests: string[] } | { ok: false; detail: string } {
  const malformed = (detail: string): { ok: false; detail: string } => ({ ok: false, detail });
  if (!Array.isArray(subjects) || subjects.length === 0) {
    return malformed('the in-toto statement has no subject');
  }
  const signed: string[] = [];
  for (const s of subjects as unknown[]) {
    if (!isJsonObject(s)) return malformed('an in-toto subject is not a JSON object');
    for (const k of Object.keys(s)) {
      if (!SUBJECT_KEYS.has(k))
        return malformed(`an in-toto subject has an unknown field ${JSON.stringify(k)}`);
    }
    if (s['name'] !== undefined && typeof s['name'] !== 'string')
      return malformed('an in-toto subject name is not a string');
    if (s['annotations'] !== undefined && !isJsonObject(s['annotations'])) {
      return malformed('in-toto subject annotations are not a JSON object');
    }
    const d = s['digest'];
    if (!isJsonObject(d)) return malformed('an in-toto subject has no digest');
    for (const v of Object.values(d)) {
      if (typeof v !== 'string') return malformed('an in-toto subject digest value is not a string');
    }
    const hex = d['sha256'];
    // Policy: a subject is matched by its sha256 only, in canonical lowercase hex.
    if (typeof hex !== 'string' || !SHA256_HEX.test(hex)) {
      return malformed('an in-toto subject has no lowercase sha256 digest');
    }
    signed.push(`sha256:${hex}`);
  }
  return { ok: true, digests: signed };
}
