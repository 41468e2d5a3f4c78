/**
 * The CLI's side of the evidence seam for writes: attaching an OCI 1.1 referrer (a Sigstore bundle
 * referrer) to its subject, for `trustgate sign` and `trustgate copy`. Through trustgate, the
 * referrers API records the referrer when it is pushed; on a registry without that API (a bare
 * registry:2) the referrers tag `sha256-<hex>` is updated as distribution-spec 1.1 and cosign do.
 */
import { MEDIA_TYPES, digestOf, parseManifest } from '../core/manifest.js';
import { referrerDescriptor, referrersTagFor, withReferrer } from '../core/referrers.js';
import type { RegistryClient } from './registry-client.js';

export interface ReferrerToAttach {
  /** The referrer manifest's exact bytes (pushed by digest, so they never change). */
  bytes: Uint8Array;
  mediaType: string;
  /** The digest the referrer names as its subject. */
  subject: string;
}

/**
 * Pushes a referrer manifest by digest (its blobs must be in `repo` already) and, where the
 * registry has no referrers API, records it in the subject's referrers tag. Returns its digest.
 */
export async function attachReferrer(
  client: RegistryClient,
  repo: string,
  r: ReferrerToAttach,
  log: (msg: string) => void,
): Promise<string> {
  const parsed = parseManifest(r.bytes, r.mediaType);
  if (parsed.subject?.digest !== r.subject) {
    throw new TypeError(`attachReferrer: the manifest does not name ${r.subject} as its subject`);
  }
  const digest = digestOf(r.bytes);
  log(`writing the referrer ${repo}@${digest}`);
  await client.putManifest(repo, digest, r.bytes, r.mediaType);
  // go-containerregistry probes the API after the push, and only then falls back to the tag.
  // Read with the push token the write used: the subject may not verify (yet, or with this key).
  if ((await client.getReferrers(repo, r.subject, { forPush: true })) !== undefined) return digest;
  const tag = referrersTagFor(r.subject);
  if (!tag) return digest;
  const existing = await client.getManifestIfExists(repo, tag, [MEDIA_TYPES.ociIndex], { forPush: true });
  // The same descriptor trustgate's referrers API would list: built from the manifest itself.
  const index = withReferrer(
    existing ? parseManifest(existing.bytes, existing.mediaType) : undefined,
    referrerDescriptor(digest, r.bytes.length, parsed),
    true,
  );
  if (index) {
    log(`the registry has no referrers API: updating ${repo}:${tag}`);
    await client.putManifest(repo, tag, index, MEDIA_TYPES.ociIndex);
  }
  return digest;
}
