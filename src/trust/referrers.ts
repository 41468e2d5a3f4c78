/**
 * The referrers of a digest, kept in registry:2 under the referrers tag schema (see
 * core/referrers.ts). All I/O of the referrers API happens here: reading the tag and each referrer
 * manifest, and recording a new referrer. What is listed is decided by the core.
 */
import { GateError, isInternalFailure } from '../core/errors.js';
import {
  MANIFEST_ACCEPT_HEADER,
  MAX_MANIFEST_BYTES,
  MEDIA_TYPES,
  digestOf,
  parseManifest,
  type Descriptor,
  type ParsedManifest,
} from '../core/manifest.js';
import { referrerDescriptor, referrersTagFor, withReferrer } from '../core/referrers.js';
import { headerValue } from '../registry/headers.js';
import { upstreamFailure, type Upstream, type UpstreamResponse } from '../registry/upstream.js';
import type { EvidenceReader } from './evidence.js';
import type { ManifestCache } from '../cache/manifest-cache.js';

/** Referrer manifests read at once for one listing. */
const READ_CONCURRENCY = 8;

export interface Referrer {
  descriptor: Descriptor;
  manifest: ParsedManifest;
}

export class ReferrersStore {
  /** Per (repository, subject): one recording at a time in this process (read-modify-write). */
  private readonly recording = new Map<string, Promise<void>>();

  /**
   * @param manifests the pipeline's manifest cache: referrer manifests are read by digest, whose
   * bytes never change, so listings and evidence reads reuse them (a delete through any replica
   * drops them, as for any manifest).
   */
  constructor(
    private readonly upstream: Upstream,
    private readonly manifests?: ManifestCache,
  ) {}

  /**
   * Runs `fn` while no other change to the referrers of (repo, subject) runs in this process:
   * recordings and client writes of the referrers tag are read-modify-write on one tag.
   */
  exclusive<T>(repo: string, subject: string, fn: () => Promise<T>): Promise<T> {
    const key = `${repo}@${subject}`;
    const previous = this.recording.get(key) ?? Promise.resolve();
    const mine = previous.then(fn);
    const settled = mine.then(
      () => undefined,
      () => undefined,
    );
    this.recording.set(key, settled);
    void settled.then(() => {
      if (this.recording.get(key) === settled) this.recording.delete(key);
    });
    return mine;
  }

  /** The referrers index as stored (undefined when the subject has none). */
  async storedIndex(repo: string, subject: string): Promise<ParsedManifest | undefined> {
    const tag = referrersTagFor(subject);
    if (!tag) return undefined;
    const up = await this.get(repo, tag, 'referrers');
    return up ? parseOrUndefined(up.body, up.contentType) : undefined;
  }

  /**
   * The referrers of `subject` in `repo`. Policy: each entry of the stored index is read again from
   * the registry and kept only when it exists, parses, and names `subject` as its subject; the
   * descriptor is built from that document, never copied from the index.
   */
  async list(repo: string, subject: string): Promise<Referrer[]> {
    const index = await this.storedIndex(repo, subject);
    // Each referrer once, whatever the stored index says.
    const entries = [
      ...new Map((index?.kind === 'index' ? index.manifests : []).map((e) => [e.digest, e])).values(),
    ];
    const out: Array<Referrer | undefined> = new Array(entries.length);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < entries.length) {
        const i = next++;
        out[i] = await this.read(repo, entries[i]!.digest, subject);
      }
    };
    await Promise.all(Array.from({ length: Math.min(READ_CONCURRENCY, entries.length) }, worker));
    return out.filter((r): r is Referrer => r !== undefined);
  }

  /** One manifest of `repo` by digest, as the registry holds it (undefined when absent). */
  async manifest(
    repo: string,
    digest: string,
  ): Promise<{ bytes: Buffer; manifest: ParsedManifest } | undefined> {
    const held = this.manifests?.get(repo, digest);
    if (held?.parsed && digestOf(held.bytes, digest) === digest)
      return { bytes: held.bytes, manifest: held.parsed };
    const up = await this.get(repo, digest, 'referrer');
    if (!up || digestOf(up.body, digest) !== digest) return undefined;
    const manifest = parseOrUndefined(up.body, up.contentType);
    if (!manifest) return undefined;
    this.manifests?.set(repo, digest, { bytes: up.body, contentType: up.contentType, parsed: manifest });
    return { bytes: up.body, manifest };
  }

  /**
   * Pushes a manifest that has a subject (`send`) and records it in the subject's referrers tag,
   * under the subject's lock. Policy (I5): the index is checked BEFORE the push, so a referrer
   * refused for a full index never reaches registry:2. Returns the registry's answer to the push.
   */
  async pushAndRecord(
    repo: string,
    subject: string,
    descriptor: Descriptor,
    isEvidence: boolean,
    send: () => Promise<UpstreamResponse>,
  ): Promise<UpstreamResponse> {
    const tag = referrersTagFor(subject);
    if (!tag) return send();
    return this.exclusive(repo, subject, async () => {
      const bytes = withReferrer(await this.storedIndex(repo, subject), descriptor, isEvidence);
      const pushed = await send();
      if (pushed.status !== 201 || !bytes) return pushed;
      const up = await this.upstream.request({
        method: 'PUT',
        path: `/v2/${repo}/manifests/${tag}`,
        headers: { 'content-type': MEDIA_TYPES.ociIndex },
        body: bytes,
        maxBytes: 64 * 1024,
        kind: 'referrers-put',
      });
      if (up.status !== 201) throw upstreamFailure(new Error(`referrers tag PUT answered ${up.status}`));
      return pushed;
    });
  }

  private async read(repo: string, digest: string, subject: string): Promise<Referrer | undefined> {
    const got = await this.manifest(repo, digest);
    if (!got || got.manifest.subject?.digest !== subject) return undefined;
    return { descriptor: referrerDescriptor(digest, got.bytes.length, got.manifest), manifest: got.manifest };
  }

  private get(
    repo: string,
    ref: string,
    kind: string,
  ): Promise<{ body: Buffer; contentType: string | undefined } | undefined> {
    return getStoredManifest(this.upstream, repo, ref, kind);
  }
}

/**
 * One manifest as registry:2 stores it (every modern type accepted, so nothing is converted);
 * undefined when absent. Policy (I3): any other answer is a 503, never "no evidence".
 */
async function getStoredManifest(
  upstream: Upstream,
  repo: string,
  ref: string,
  kind: string,
): Promise<{ body: Buffer; contentType: string | undefined } | undefined> {
  const up = await upstream.request({
    method: 'GET',
    path: `/v2/${repo}/manifests/${ref}`,
    headers: { accept: MANIFEST_ACCEPT_HEADER },
    maxBytes: MAX_MANIFEST_BYTES,
    kind,
  });
  if (up.status === 404) return undefined;
  if (up.status !== 200) {
    throw new GateError('UNAVAILABLE', 'could not read signature evidence from the registry', {
      logDetail: `${kind} GET answered ${up.status}`,
    });
  }
  return { body: up.body, contentType: headerValue(up.headers['content-type']) };
}

function parseOrUndefined(bytes: Buffer, contentType: string | undefined): ParsedManifest | undefined {
  try {
    return parseManifest(bytes, contentType);
  } catch {
    // Policy: an unreadable referrer or index lists nothing; it never breaks the listing.
    return undefined;
  }
}

/**
 * The evidence seam's reader over registry:2 (the proxy's side): manifests as stored, bounded
 * blobs, and referrers from the store. Policy (I3): a registry that fails makes the read fail (and
 * so the verification); only absence is "no evidence".
 */
export function upstreamEvidenceReader(upstream: Upstream, store: ReferrersStore): EvidenceReader {
  return {
    async manifest(repo, ref) {
      const got = await getStoredManifest(upstream, repo, ref, 'signature');
      return got && { bytes: got.body, contentType: got.contentType };
    },
    async blob(repo, digest, max) {
      let up;
      try {
        up = await upstream.request({
          method: 'GET',
          path: `/v2/${repo}/blobs/${digest}`,
          maxBytes: max,
          kind: 'signature-payload',
        });
      } catch (err) {
        // Over the bound: not evidence (the caller skips it). Anything else fails closed.
        if (isInternalFailure(err, 'upstream-body-too-large')) return undefined;
        throw err;
      }
      if (up.status === 404) return undefined;
      if (up.status !== 200) {
        throw new GateError('UNAVAILABLE', 'could not read a signature payload from the registry', {
          logDetail: `payload blob GET answered ${up.status}`,
        });
      }
      return up.body;
    },
    async referrers(repo, subject) {
      return (await store.list(repo, subject)).map((r) => ({
        digest: r.descriptor.digest,
        manifest: r.manifest,
      }));
    },
  };
}
