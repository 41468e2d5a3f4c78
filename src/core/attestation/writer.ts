/**
 * Writes attestations the way cosign `attest --key` does, in both layouts, so trustgate reads
 * cosign's and cosign reads trustgate's: an in-toto Statement v1 about one digest, signed over the
 * DSSE PAE, either as a bare DSSE envelope (the layer of a legacy `sha256-<hex>.att` artifact) or in
 * a Sigstore bundle v0.3 (the layer of an OCI 1.1 referrer). Pure: bytes out, for the CLI to push.
 */
import { isValidDigest } from '../manifest.js';
import { buildStatementBundle, signStatementPae, type BundleSigner } from '../evidence/bundle-writer.js';
import { IN_TOTO_PAYLOAD_TYPE, IN_TOTO_STATEMENT_V1 } from '../evidence/statement.js';

/** Annotation cosign puts on a legacy attestation layer, naming its predicate type. */
export const LEGACY_PREDICATE_TYPE_ANNOTATION = 'predicateType';

/** The in-toto Statement v1 about `digest` (`sha256:<hex>`) carrying `predicate`. */
export function buildAttestationStatement(
  digest: string,
  predicateType: string,
  predicate: unknown,
  name?: string,
): Uint8Array {
  if (!isValidDigest(digest) || !digest.startsWith('sha256:')) {
    throw new TypeError(`invalid sha256 digest ${JSON.stringify(digest)}`);
  }
  const statement = {
    _type: IN_TOTO_STATEMENT_V1,
    subject: [
      { ...(name !== undefined ? { name } : {}), digest: { sha256: digest.slice('sha256:'.length) } },
    ],
    predicateType,
    predicate,
  };
  return new TextEncoder().encode(JSON.stringify(statement));
}

/** The DSSE envelope of a legacy `.att` layer (cosign's field order, empty keyid). */
export function buildDsseEnvelope(statement: Uint8Array, signer: BundleSigner): Uint8Array {
  const sig = signStatementPae(statement, signer);
  const envelope = {
    payloadType: IN_TOTO_PAYLOAD_TYPE,
    payload: Buffer.from(statement).toString('base64'),
    signatures: [{ keyid: '', sig: Buffer.from(sig).toString('base64') }],
  };
  return new TextEncoder().encode(JSON.stringify(envelope));
}

/** The Sigstore bundle v0.3 of an attestation (key hint, no Rekor entries), as cosign 3 writes it. */
export function buildAttestationBundle(statement: Uint8Array, signer: BundleSigner): Uint8Array {
  return buildStatementBundle(statement, signer);
}
