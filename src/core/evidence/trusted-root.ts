/**
 * A Sigstore trusted root (`trusted_root.json`, protobuf-specs TrustedRoot) turned, once, into the
 * trust material that @sigstore/verify checks transparency-log entries against. Pure: the caller
 * reads the file (and, later, fetches it over TUF); this module only validates and converts it.
 */
import { TrustedRoot } from '@sigstore/protobuf-specs';
import { toTrustMaterial, type TrustMaterial } from '@sigstore/verify';
import { isJsonObject, parseStrictJson } from '../json-strict.js';

/** Trusted-root media types read (protobuf-specs: v0.1 spelling and the newer one). */
export const TRUSTED_ROOT_MEDIA_TYPES: readonly string[] = [
  'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
  'application/vnd.dev.sigstore.trustedroot.v0.2+json',
];

/** A validated trusted root, ready for verifyBundle. Opaque to callers. */
export interface SigstoreTrustedRoot {
  readonly kind: 'sigstore-trusted-root';
  /** Trust material without a public-key finder; verifyBundle adds the rule's key per call. */
  readonly material: Omit<TrustMaterial, 'publicKey'>;
  /** Number of transparency logs (Rekor instances) the root trusts. */
  readonly tlogCount: number;
}

export class TrustedRootError extends Error {
  override readonly name = 'TrustedRootError';
}

/**
 * Validates a trusted root (the JSON bytes, or the value JSON-parsed) and converts it.
 * Throws TrustedRootError with a clear message when the root is unusable.
 *
 * Policy: every transparency log must state when its key became valid (`publicKey.validFor.start`);
 * @sigstore/verify would read a missing start as "since the beginning of time", and the
 * sigstore-conformance case `trust-root-tlog-missing-validity-start_fail` requires refusing it.
 */
export function loadTrustedRoot(input: Uint8Array | unknown): SigstoreTrustedRoot {
  let doc: unknown;
  try {
    doc = input instanceof Uint8Array ? parseStrictJson(input, 'trusted root') : input;
  } catch (err) {
    throw new TrustedRootError((err as Error).message, { cause: err });
  }
  if (!isJsonObject(doc)) throw new TrustedRootError('trusted root is not a JSON object');
  const mediaType = doc['mediaType'];
  if (typeof mediaType !== 'string' || !TRUSTED_ROOT_MEDIA_TYPES.includes(mediaType)) {
    throw new TrustedRootError(`trusted root media type ${JSON.stringify(mediaType)} is not supported`);
  }
  const tlogs = doc['tlogs'];
  if (!Array.isArray(tlogs) || tlogs.length === 0) {
    throw new TrustedRootError('trusted root lists no transparency log (tlogs)');
  }
  tlogs.forEach((t: unknown, i) => {
    const pk = isJsonObject(t) ? t['publicKey'] : undefined;
    if (!isJsonObject(pk) || typeof pk['rawBytes'] !== 'string' || pk['rawBytes'] === '') {
      throw new TrustedRootError(`trusted root tlogs[${i}] has no public key`);
    }
    const validFor = pk['validFor'];
    if (!isJsonObject(validFor) || typeof validFor['start'] !== 'string') {
      throw new TrustedRootError(`trusted root tlogs[${i}] public key has no validFor.start`);
    }
    if (Number.isNaN(Date.parse(validFor['start']))) {
      throw new TrustedRootError(`trusted root tlogs[${i}] validFor.start is not a timestamp`);
    }
    const logId = isJsonObject(t) ? t['logId'] : undefined;
    if (!isJsonObject(logId) || typeof logId['keyId'] !== 'string') {
      throw new TrustedRootError(`trusted root tlogs[${i}] has no logId`);
    }
  });
  try {
    const root = TrustedRoot.fromJSON(doc);
    // No public-key finder here: key-based bundles are checked against the rule's keys per call.
    const { publicKey: _unused, ...material } = toTrustMaterial(root, () => {
      throw new TrustedRootError('no key finder');
    });
    return { kind: 'sigstore-trusted-root', material, tlogCount: material.tlogs.length };
  } catch (err) {
    throw new TrustedRootError(`trusted root is invalid: ${(err as Error).message}`, { cause: err });
  }
}
