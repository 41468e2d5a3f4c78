/**
 * The evidence seam's reader on the CLI's side: through trustgate (or any registry) with the CLI's
 * registry client, so `trustgate verify` reads exactly the evidence the proxy reads, with the same
 * limits (src/trust/evidence.ts).
 */
import { parseManifest, type ParsedManifest } from '../core/manifest.js';
import { BodyTooLargeError, RegistryError, type RegistryClient } from './registry-client.js';
import type { EvidenceReader } from '../trust/evidence.js';
import { referrersTagFor } from '../core/referrers.js';

/** A referrer as the CLI read it: with its exact bytes, so `copy` need not GET it again. */
export interface ClientReferrer {
  digest: string;
  manifest: ParsedManifest;
  bytes: Uint8Array;
  mediaType: string;
}

export interface ClientEvidenceReader extends EvidenceReader {
  referrers(repo: string, subject: string): Promise<ClientReferrer[]>;
}

/**
 * `forPush`: read with a pull,push token (a publisher about to sign): trustgate shows an unsigned
 * digest's referrers, and their blobs, only to a token that grants push on the repository.
 */
export function clientEvidenceReader(
  client: RegistryClient,
  opts: { forPush?: boolean } = {},
): ClientEvidenceReader {
  return {
    async manifest(repo, ref) {
      const m = await client.getManifestIfExists(repo, ref, undefined, opts);
      return m === null ? undefined : { bytes: m.bytes, contentType: m.mediaType };
    },
    async blob(repo, digest, max) {
      try {
        return await client.getBlob(repo, digest, max, opts);
      } catch (err) {
        // Policy (I3), as the proxy's reader: absent (404), larger than `max`, or other bytes (200
        // that does not hash) is not evidence; any other failure fails the read, so `verify` says
        // "I/O error" (exit 2) instead of a refusal that blames the signatures.
        if (err instanceof BodyTooLargeError) return undefined;
        if (err instanceof RegistryError && (err.status === 404 || err.status === 200)) return undefined;
        throw err;
      }
    },
    async referrers(repo, subject) {
      const out: ClientReferrer[] = [];
      for (const digest of await listReferrers(client, repo, subject, opts)) {
        const m = await client.getManifestIfExists(repo, digest, undefined, opts);
        if (m === null) continue;
        let manifest: ParsedManifest;
        try {
          manifest = parseManifest(m.bytes, m.mediaType);
        } catch {
          continue;
        }
        // Policy: a listed document counts only when it names the subject itself.
        if (manifest.subject?.digest === subject)
          out.push({ digest, manifest, bytes: m.bytes, mediaType: m.mediaType });
      }
      return out;
    },
  };
}

/**
 * The digests listed as referrers of `subject`: from the referrers API, or, where the registry has
 * none (bare registry:2), from the referrers tag `sha256-<hex>` as distribution-spec 1.1's fallback
 * and cosign 3.0.x write it. Entries are only candidates: each is read and checked by the caller.
 */
async function listReferrers(
  client: RegistryClient,
  repo: string,
  subject: string,
  opts: { forPush?: boolean },
): Promise<string[]> {
  const listed = await client.getReferrers(repo, subject, opts);
  if (listed !== undefined) return listed;
  const tag = referrersTagFor(subject);
  const index = tag ? await client.getManifestIfExists(repo, tag, undefined, opts) : null;
  if (!index) return [];
  try {
    return parseManifest(index.bytes, index.mediaType).manifests.map((d) => d.digest);
  } catch {
    return [];
  }
}
