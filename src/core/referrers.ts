/**
 * OCI 1.1 referrers on a registry without the referrers API (registry:2): the layout trustgate
 * keeps, what a referrer descriptor says, and which referrer documents are signature evidence.
 * Pure: parsed manifests in, descriptors and decisions out.
 *
 * Storage is distribution-spec 1.1's referrers tag schema: the tag `sha256-<hex>` of the subject
 * holds an OCI index of referrer descriptors. trustgate answers the referrers API from it and is
 * its only writer; clients (cosign 3 through go-containerregistry) find the API and never write it.
 */
import { GateError } from './errors.js';
import { BUNDLE_MEDIA_TYPES } from './evidence/bundle.js';
import { MEDIA_TYPE_OCI_EMPTY } from './evidence/bundle-writer.js';
import { MEDIA_TYPE_OCI_INDEX, MAX_INDEX_ENTRIES, type Descriptor, type ParsedManifest } from './manifest.js';

export { MEDIA_TYPE_OCI_EMPTY } from './evidence/bundle-writer.js';
export { BUNDLE_MEDIA_TYPES, MAX_BUNDLE_BYTES } from './evidence/bundle.js';
/** sha256 of the two bytes `{}`: the OCI empty descriptor's content. */
export const EMPTY_JSON_DIGEST = 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a';

const REFERRERS_TAG = /^sha256-[0-9a-f]{64}$/;

/** The referrers-tag-schema tag of a subject; undefined for digests that have none (sha512). */
export function referrersTagFor(subject: string): string | undefined {
  const m = /^sha256:([0-9a-f]{64})$/.exec(subject);
  return m ? `sha256-${m[1]}` : undefined;
}

export function isReferrersTag(tag: string | undefined): tag is string {
  return tag !== undefined && REFERRERS_TAG.test(tag);
}

/** The subject digest a referrers tag stands for. */
export function subjectOfReferrersTag(tag: string): string {
  return `sha256:${tag.slice('sha256-'.length)}`;
}

/**
 * The descriptor of a referrer as the referrers API lists it. Policy: built from the referrer
 * manifest itself, never from an index entry (cosign 3.0.0–3.0.6 wrote entries with the config's
 * media type as artifactType and no annotations; any pusher could write others).
 */
export function referrerDescriptor(digest: string, size: number, m: ParsedManifest): Descriptor {
  const d: Descriptor = { mediaType: m.mediaType, digest, size };
  const artifactType = m.artifactType ?? m.config?.mediaType;
  if (artifactType !== undefined) d.artifactType = artifactType;
  if (m.annotations !== undefined) d.annotations = m.annotations;
  return d;
}

/** The referrers API answer: an OCI index of `descriptors`, filtered by artifactType when asked. */
export function referrersIndex(
  descriptors: readonly Descriptor[],
  artifactType?: string,
): { body: Buffer; filtered: boolean } {
  const listed = artifactType ? descriptors.filter((d) => d.artifactType === artifactType) : descriptors;
  const body = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPE_OCI_INDEX, manifests: listed }),
  );
  return { body, filtered: artifactType !== undefined };
}

/**
 * The referrers index with `add` recorded (sorted by digest, as go-containerregistry keeps it);
 * undefined when it is listed already. Throws the refusal when the index is full.
 */
export function withReferrer(
  existing: ParsedManifest | undefined,
  add: Descriptor,
  isEvidence = false,
): Buffer | undefined {
  const entries = [...(existing?.manifests ?? [])];
  if (entries.some((e) => e.digest === add.digest)) return undefined;
  // Policy: the last MAX_EVIDENCE_RESERVE places are kept for bundle referrers, so a pusher filling
  // a digest's referrers with other artifacts (SBOMs, junk) cannot lock its signatures out.
  const limit = isEvidence ? MAX_INDEX_ENTRIES : MAX_INDEX_ENTRIES - MAX_EVIDENCE_RESERVE;
  if (entries.length >= limit) {
    throw new GateError(
      'DENIED',
      isEvidence
        ? `the subject already has ${MAX_INDEX_ENTRIES} referrers, trustgate's limit for one digest`
        : `the subject already has ${limit} referrers that are not signatures, trustgate's limit for one digest (the rest are kept for signatures)`,
    );
  }
  entries.push(add);
  entries.sort((a, b) => (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0));
  return Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPE_OCI_INDEX, manifests: entries }),
  );
}

/** Places of a digest's referrers index that only bundle referrers may take. */
export const MAX_EVIDENCE_RESERVE = 64;

/**
 * True when the manifest is Sigstore bundle evidence for its subject, in exactly cosign 3's shape:
 * an image manifest with a subject, the OCI empty descriptor as config (`{}`, 2 bytes) and one
 * bundle layer. Policy (I1): the shape is exact, because such a manifest is served to callers who
 * may pull its subject without a signature of its own; any other config (an image config with an
 * Entrypoint) or more layers would let a publisher with no key ship a runnable image this way.
 */
export function isBundleReferrer(m: ParsedManifest): boolean {
  const c = m.config;
  return (
    m.kind === 'image' &&
    m.subject !== undefined &&
    c !== undefined &&
    c.mediaType === MEDIA_TYPE_OCI_EMPTY &&
    c.digest === EMPTY_JSON_DIGEST &&
    c.size === 2 &&
    m.layers.length === 1 &&
    BUNDLE_MEDIA_TYPES.includes(m.layers[0]!.mediaType)
  );
}

/**
 * Checks a client's write to a referrers tag. Policy: the tag is trustgate's own index; a write is
 * accepted only when every entry is an existing manifest of this repository whose subject is this
 * tag's digest, and every entry already recorded is kept (a publisher can neither hide evidence
 * nor list documents that do not refer to the subject). `referrers` maps each new entry's digest to
 * its manifest as the registry holds it (undefined: absent or unreadable).
 */
export function checkReferrersTagWrite(
  tag: string,
  index: ParsedManifest,
  existing: ParsedManifest | undefined,
  referrers: ReadonlyMap<string, ParsedManifest | undefined>,
): void {
  const subject = subjectOfReferrersTag(tag);
  const deny = (why: string): never => {
    throw new GateError('DENIED', `${tag} is the referrers index of ${subject}: ${why}`);
  };
  if (index.kind !== 'index') deny('only an OCI index may be written there');
  const listed = new Set(index.manifests.map((e) => e.digest));
  // Policy: each referrer once: duplicates would push real evidence past the readers' bounds.
  if (listed.size !== index.manifests.length) deny('it lists a referrer more than once');
  for (const e of existing?.manifests ?? []) {
    if (!listed.has(e.digest)) deny(`it would drop the recorded referrer ${e.digest}`);
  }
  for (const e of index.manifests) {
    const m = referrers.get(e.digest);
    if (!m) return deny(`${e.digest} is not a manifest of this repository`);
    if (m.subject?.digest !== subject) deny(`${e.digest} does not name ${subject} as its subject`);
  }
}
