/**
 * The evidence seam: every piece of signature and attestation evidence for (repository, digest),
 * fetched with one set of limits, by the proxy (from registry:2) and the CLI (through trustgate)
 * alike. What each layout looks like on a registry is known here and in core/ only:
 * - legacy cosign: the tag `sha256-<hex>.sig`, one simple-signing payload per layer;
 * - legacy cosign attestations: the tag `sha256-<hex>.att`, one DSSE envelope per layer;
 * - Sigstore bundles: OCI 1.1 referrers of the digest whose layers are bundles (signatures, or
 *   attestations when their statement has another predicate type).
 * Nothing here decides: core/trust.ts and core/serve-decision.ts weigh what this returns.
 */
import { createHash } from 'node:crypto';
import {
  COSIGN_SIGNATURE_ANNOTATION,
  MAX_INDEX_ENTRIES,
  MEDIA_TYPES,
  parseManifest,
  type ParsedManifest,
} from '../core/manifest.js';
import { signatureTagFor } from '../core/reference.js';
import { BUNDLE_MEDIA_TYPES, MAX_BUNDLE_BYTES, isBundleReferrer } from '../core/referrers.js';
import { ANNOTATION_BUNDLE_PREDICATE_TYPE } from '../core/evidence/bundle-writer.js';
import { COSIGN_SIGN_PREDICATE_TYPE } from '../core/evidence/statement.js';
import { MEDIA_TYPE_DSSE_ENVELOPE } from '../core/attestation/envelope.js';
import type { SignatureCandidate } from '../core/trust.js';
import {
  COSIGN_BUNDLE_ANNOTATION,
  COSIGN_CERTIFICATE_ANNOTATION,
  COSIGN_CHAIN_ANNOTATION,
  COSIGN_TIMESTAMP_ANNOTATION,
  type LegacyKeylessMaterial,
} from '../core/evidence/legacy-keyless.js';

/** Limits every reader of evidence applies (the proxy and the CLI read the same evidence). */
export const EVIDENCE_LIMITS = Object.freeze({
  /** Signature layers read from one legacy artifact. */
  maxSignatureLayers: 64,
  /** A simple-signing payload larger than this is skipped unread. */
  maxPayloadBytes: 64 * 1024,
  /** A bundle larger than this is skipped unread. */
  maxBundleBytes: MAX_BUNDLE_BYTES,
  /**
   * Bundle referrers read for one digest: as many as a referrers index may list (256), so no
   * number of bogus referrers can push a valid one out of reach.
   */
  maxBundleReferrers: MAX_INDEX_ENTRIES,
});

/** What the seam needs from a registry. Failures throw (I3); absence is undefined. */
export interface EvidenceReader {
  /** A manifest by tag or digest as stored (never converted); undefined when absent. */
  manifest(repo: string, ref: string): Promise<{ bytes: Uint8Array; contentType?: string } | undefined>;
  /** A blob of at most `max` bytes; undefined when absent or larger. */
  blob(repo: string, digest: string, max: number): Promise<Uint8Array | undefined>;
  /** The referrers of `subject` (each read from its own manifest, which names `subject`). */
  referrers(repo: string, subject: string): Promise<Array<{ digest: string; manifest: ParsedManifest }>>;
}

export interface LegacyCandidate extends SignatureCandidate {
  /** The layer (payload blob) it came from. */
  layerDigest: string;
}

export interface BundleCandidate {
  /** The referrer manifest that carried it. */
  referrer: string;
  /** The bundle layer's digest (the bytes hash to it). */
  layerDigest: string;
  bytes: Uint8Array;
}

export interface Evidence {
  /** The legacy `.sig` artifact, when one parses. */
  legacyArtifact?: ParsedManifest;
  legacy: LegacyCandidate[];
  bundles: BundleCandidate[];
}

/** Every piece of evidence for `digest`, the two layouts read in parallel. */
export async function collectEvidence(
  reader: EvidenceReader,
  repo: string,
  digest: string,
): Promise<Evidence> {
  const [legacy, bundles] = await Promise.all([
    legacyEvidence(reader, repo, digest),
    bundleEvidence(reader, repo, digest),
  ]);
  return { ...legacy, bundles };
}

/** The legacy `.sig` artifact of `digest` and its candidates. */
export async function legacyEvidence(
  reader: EvidenceReader,
  repo: string,
  digest: string,
): Promise<{ legacyArtifact?: ParsedManifest; legacy: LegacyCandidate[] }> {
  const artifact = await readSignatureArtifact(reader, repo, digest);
  if (!artifact) return { legacy: [] };
  return { legacyArtifact: artifact, legacy: await signatureCandidates(reader, repo, artifact) };
}

/** The `.sig` artifact of `digest`, parsed; undefined when absent or unreadable. */
export async function readSignatureArtifact(
  reader: EvidenceReader,
  repo: string,
  digest: string,
): Promise<ParsedManifest | undefined> {
  const got = await reader.manifest(repo, signatureTagFor(digest));
  if (!got) return undefined;
  try {
    return parseManifest(got.bytes, got.contentType);
  } catch {
    // Policy: an unreadable signature artifact is no signature (the verdict says so); it never
    // breaks the pull of an image that has other ways to be admitted.
    return undefined;
  }
}

/**
 * The candidates of a legacy artifact: each simple-signing layer with a signature annotation whose
 * payload is at most maxPayloadBytes and hashes to the layer's digest; the first
 * maxSignatureLayers layers only.
 */
export async function signatureCandidates(
  reader: EvidenceReader,
  repo: string,
  artifact: ParsedManifest,
): Promise<LegacyCandidate[]> {
  const layers = artifact.layers
    .filter((l) => l.mediaType === MEDIA_TYPES.cosignSimpleSigning)
    .slice(0, EVIDENCE_LIMITS.maxSignatureLayers);
  const found = await boundedMap(layers, async (layer): Promise<LegacyCandidate | undefined> => {
    const signature = layer.annotations?.[COSIGN_SIGNATURE_ANNOTATION];
    if (typeof signature !== 'string' || layer.size > EVIDENCE_LIMITS.maxPayloadBytes) return undefined;
    // Policy: a payload over the bound (whatever size its layer declares), absent, or not the
    // bytes the layer names is no signature and is skipped; it must not hide the other layers'.
    const payload = await verifiedBlob(reader, repo, layer.digest, EVIDENCE_LIMITS.maxPayloadBytes);
    if (!payload) return undefined;
    const keyless = keylessMaterial(layer.annotations);
    return { payload, signature, layerDigest: layer.digest, ...(keyless ? { keyless } : {}) };
  });
  return found.filter((c): c is LegacyCandidate => c !== undefined);
}

/**
 * The cosign 2.x keyless annotations of a legacy layer (certificate, chain, Rekor bundle, RFC 3161
 * timestamp), when it has a certificate. Their values are checked by the core.
 */
function keylessMaterial(annotations: Record<string, string> | undefined): LegacyKeylessMaterial | undefined {
  const certificate = annotations?.[COSIGN_CERTIFICATE_ANNOTATION];
  if (typeof certificate !== 'string' || certificate === '') return undefined;
  const pick = (k: string): string | undefined => {
    const v = annotations?.[k];
    return typeof v === 'string' && v !== '' ? v : undefined;
  };
  const chain = pick(COSIGN_CHAIN_ANNOTATION);
  const rekorBundle = pick(COSIGN_BUNDLE_ANNOTATION);
  const rfc3161Timestamp = pick(COSIGN_TIMESTAMP_ANNOTATION);
  return {
    certificate,
    ...(chain ? { chain } : {}),
    ...(rekorBundle ? { rekorBundle } : {}),
    ...(rfc3161Timestamp ? { rfc3161Timestamp } : {}),
  };
}

/** The bundles carried by the bundle referrers of `digest` (bounded, hash-checked). */
export async function bundleEvidence(
  reader: EvidenceReader,
  repo: string,
  digest: string,
): Promise<BundleCandidate[]> {
  const referrers = (await reader.referrers(repo, digest))
    .filter((r) => isBundleReferrer(r.manifest))
    .slice(0, EVIDENCE_LIMITS.maxBundleReferrers);
  const layers = referrers.flatMap((r) =>
    r.manifest.layers
      .filter((l) => BUNDLE_MEDIA_TYPES.includes(l.mediaType) && l.size <= EVIDENCE_LIMITS.maxBundleBytes)
      .map((layer) => ({ referrer: r.digest, layer })),
  );
  const found = await boundedMap(layers, async ({ referrer, layer }) => {
    const bytes = await verifiedBlob(reader, repo, layer.digest, EVIDENCE_LIMITS.maxBundleBytes);
    return bytes ? { referrer, layerDigest: layer.digest, bytes } : undefined;
  });
  return found.filter((c): c is BundleCandidate => c !== undefined);
}

/** Blobs read at once for one piece of evidence (the registry answers them in parallel). */
const READ_CONCURRENCY = 8;

/** `fn` over `items`, at most READ_CONCURRENCY at a time; results in the order of `items`. */
async function boundedMap<T, R>(items: readonly T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(READ_CONCURRENCY, items.length) }, worker));
  return out;
}

/** A blob whose bytes hash to `digest`, at most `max` bytes; undefined otherwise. */
export async function verifiedBlob(
  reader: EvidenceReader,
  repo: string,
  digest: string,
  max: number,
): Promise<Uint8Array | undefined> {
  const bytes = await reader.blob(repo, digest, max);
  if (!bytes) return undefined;
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}` === digest ? bytes : undefined;
}

/**
 * Limits on attestation evidence. Policy: an attestation (a scan report, an SBOM) is larger than a
 * signature, so its own bounds: one envelope at most 4 MiB (Trivy's report of a large image and a
 * CycloneDX SBOM of a few thousand components fit), at most 32 envelopes and 32 MiB per digest.
 * A larger one is skipped unread; what it would have proved is then missing (fail closed).
 */
export const ATTESTATION_LIMITS = Object.freeze({
  maxEnvelopeBytes: 4 * 1024 * 1024,
  maxEnvelopes: 32,
  maxTotalBytes: 32 * 1024 * 1024,
});

/** An attestation envelope as stored: a legacy `.att` layer (DSSE) or a bundle referrer's layer. */
export interface AttestationCandidate {
  layout: 'legacy' | 'bundle';
  /** The blob's digest (its bytes hash to it). */
  digest: string;
  bytes: Uint8Array;
}

/** The legacy attestation tag of a digest: `sha256-<hex>.att`. */
export function attestationTagFor(digest: string): string {
  return signatureTagFor(digest).replace(/\.sig$/, '.att');
}

/** The digest a legacy attestation tag `sha256-<hex>.att` is about; undefined for other tags. */
export function attestationSubjectOfTag(tag: string | undefined): string | undefined {
  const m = tag === undefined ? null : /^sha256-([0-9a-f]{64})\.att$/.exec(tag);
  return m ? `sha256:${m[1]}` : undefined;
}

/**
 * Every attestation envelope stored for `digest`, unverified (core/attestation verifies): the DSSE
 * layers of its `.att` artifact and the bundle referrers not marked as signatures. The referrer's
 * predicateType annotation is only used to skip signature bundles (a wrong one can only hide the
 * pusher's own evidence); the signed statement decides what each is.
 */
export async function attestationEvidence(
  reader: EvidenceReader,
  repo: string,
  digest: string,
): Promise<AttestationCandidate[]> {
  const [artifact, referrers] = await Promise.all([
    reader.manifest(repo, attestationTagFor(digest)),
    reader.referrers(repo, digest),
  ]);
  const wanted: Array<{ layout: 'legacy' | 'bundle'; digest: string; size: number }> = [];
  if (artifact) {
    let parsed: ParsedManifest | undefined;
    try {
      parsed = parseManifest(artifact.bytes, artifact.contentType);
    } catch {
      // Policy: an unreadable .att artifact is no attestation; the verdict says what is missing.
      parsed = undefined;
    }
    for (const l of parsed?.layers ?? []) {
      if (l.mediaType === MEDIA_TYPE_DSSE_ENVELOPE)
        wanted.push({ layout: 'legacy', digest: l.digest, size: l.size });
    }
  }
  for (const r of referrers) {
    if (!isBundleReferrer(r.manifest)) continue;
    if (r.manifest.annotations?.[ANNOTATION_BUNDLE_PREDICATE_TYPE] === COSIGN_SIGN_PREDICATE_TYPE) continue;
    const layer = r.manifest.layers[0]!;
    wanted.push({ layout: 'bundle', digest: layer.digest, size: layer.size });
  }
  const picked: typeof wanted = [];
  let total = 0;
  const seen = new Set<string>();
  for (const w of wanted) {
    if (picked.length >= ATTESTATION_LIMITS.maxEnvelopes) break;
    if (seen.has(w.digest) || w.size > ATTESTATION_LIMITS.maxEnvelopeBytes) continue;
    if (total + w.size > ATTESTATION_LIMITS.maxTotalBytes) continue;
    seen.add(w.digest);
    total += w.size;
    picked.push(w);
  }
  // Read at most the size each descriptor declares, so the declared total bounds the bytes held.
  const read = await Promise.all(
    picked.map(async (w) => {
      const bytes = await verifiedBlob(reader, repo, w.digest, Math.max(w.size, 1));
      return bytes ? { layout: w.layout, digest: w.digest, bytes } : undefined;
    }),
  );
  const out = read.filter((c): c is AttestationCandidate => c !== undefined);
  return out;
}
