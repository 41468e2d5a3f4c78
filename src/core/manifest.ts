/**
 * Image manifest and index parsing, strict enough that trustgate and registry:2 read the same
 * document (I2). Pure: bytes in, a parsed view or a GateError('MANIFEST_INVALID') out.
 */
import { hash } from 'node:crypto';
import { isValidDigest as isDigest } from './reference.js';
import { GateError } from './errors.js';
import { caseVariantKey, isJsonObject, parseStrictJson } from './json-strict.js';

export const MEDIA_TYPE_OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const MEDIA_TYPE_OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const MEDIA_TYPE_OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const MEDIA_TYPE_DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const MEDIA_TYPE_DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
export const MEDIA_TYPE_DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json';
export const MEDIA_TYPE_DOCKER_SCHEMA1 = 'application/vnd.docker.distribution.manifest.v1+json';
export const MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED = 'application/vnd.docker.distribution.manifest.v1+prettyjws';
export const MEDIA_TYPE_COSIGN_SIMPLESIGNING = 'application/vnd.dev.cosign.simplesigning.v1+json';

/** The same media types as one table, for callers that build Accept headers. */
export const MEDIA_TYPES = {
  ociManifest: MEDIA_TYPE_OCI_MANIFEST,
  ociIndex: MEDIA_TYPE_OCI_INDEX,
  ociConfig: MEDIA_TYPE_OCI_CONFIG,
  dockerManifest: MEDIA_TYPE_DOCKER_MANIFEST,
  dockerManifestList: MEDIA_TYPE_DOCKER_LIST,
  dockerConfig: MEDIA_TYPE_DOCKER_CONFIG,
  dockerSchema1: MEDIA_TYPE_DOCKER_SCHEMA1,
  dockerSchema1Signed: MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED,
  cosignSimpleSigning: MEDIA_TYPE_COSIGN_SIMPLESIGNING,
} as const;

/**
 * Policy: registry:2 refuses manifests over 4 MiB; trustgate (reading from registry:2 or from a
 * client) and its CLI refuse them too, before reading more.
 */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

/**
 * Policy: every manifest GET, trustgate's to registry:2 and the CLI's, names every modern type
 * and never schema1, so registry:2 neither converts a tag to schema1 (new bytes, new digest) nor
 * collapses a list to its linux/amd64 child: the bytes verified are the bytes stored.
 */
export const MANIFEST_ACCEPT: readonly string[] = [
  MEDIA_TYPE_OCI_MANIFEST,
  MEDIA_TYPE_OCI_INDEX,
  MEDIA_TYPE_DOCKER_MANIFEST,
  MEDIA_TYPE_DOCKER_LIST,
];

/** MANIFEST_ACCEPT as one Accept header value. */
export const MANIFEST_ACCEPT_HEADER = MANIFEST_ACCEPT.join(', ');

/** The layer annotation that carries a cosign signature (standard padded base64). */
export const COSIGN_SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';

/**
 * Structural limits on what trustgate parses, serves and admits. Policy: every pull admits each
 * layer or child of a verified manifest into the verdict cache, so the work per manifest must be
 * bounded (a 25,000-layer document once wrote 25,000 entries and stalled the event loop ~0.9 s).
 * Real images stay far below: moby and containerd stop at 127 layers (overlayfs), and the largest
 * multi-platform indexes (with their attestation manifests) list well under 100 entries.
 */
export const MAX_MANIFEST_LAYERS = 256;
export const MAX_INDEX_ENTRIES = 256;

/** Manifest media types trustgate understands, by kind. */
export const IMAGE_MANIFEST_TYPES: readonly string[] = [MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST];
export const INDEX_MANIFEST_TYPES: readonly string[] = [MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_DOCKER_LIST];
const SCHEMA1_TYPES: readonly string[] = [MEDIA_TYPE_DOCKER_SCHEMA1, MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED];

export interface Platform {
  architecture: string;
  os: string;
  variant?: string;
  'os.version'?: string;
  'os.features'?: string[];
  features?: string[];
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  urls?: string[];
  platform?: Platform;
  artifactType?: string;
}

export interface ParsedManifest {
  /** The effective media type: the document's `mediaType`, else the Content-Type, else inferred (OCI). */
  mediaType: string;
  kind: 'image' | 'index';
  config?: Descriptor;
  layers: Descriptor[];
  manifests: Descriptor[];
  subject?: Descriptor;
  artifactType?: string;
  annotations?: Record<string, string>;
}

/**
 * True for `sha256:` + 64 lowercase hex or `sha512:` + 128 lowercase hex.
 * Policy: only these two algorithms and only lowercase hex, so one digest has one spelling.
 */
export function isValidDigest(d: unknown): d is string {
  return typeof d === 'string' && isDigest(d);
}

function invalid(msg: string): never {
  throw new GateError('MANIFEST_INVALID', `manifest invalid: ${msg}`);
}

/** The fields Go programs read from a manifest, a descriptor and a platform. */
const MANIFEST_FIELDS = [
  'schemaVersion',
  'mediaType',
  'config',
  'layers',
  'manifests',
  'subject',
  'artifactType',
  'annotations',
];
const DESCRIPTOR_FIELDS = [
  'mediaType',
  'digest',
  'size',
  'urls',
  'annotations',
  'platform',
  'artifactType',
  'data',
];
const PLATFORM_FIELDS = ['architecture', 'os', 'os.version', 'os.features', 'variant', 'features'];

/**
 * Policy (I2): a key that Go would read into a field but that is spelled otherwise (`URLs`,
 * `MediaType`) is refused: registry:2 and its clients would see a field trustgate does not.
 */
function refuseCaseVariants(v: Record<string, unknown>, fields: readonly string[], where: string): void {
  const variant = caseVariantKey(v, fields);
  if (variant)
    invalid(`${where} key ${JSON.stringify(variant[0])} must be spelled ${JSON.stringify(variant[1])}`);
}

/** `type/subtype` without parameters, lowercased; '' for absent. */
function normalizeContentType(ct: string | undefined): string {
  if (ct === undefined) return '';
  const semi = ct.indexOf(';');
  return (semi === -1 ? ct : ct.slice(0, semi)).trim().toLowerCase();
}

function stringMap(v: unknown, where: string): Record<string, string> {
  if (!isJsonObject(v)) return invalid(`${where} must be an object of strings`);
  for (const [k, val] of Object.entries(v)) {
    if (typeof val !== 'string') invalid(`${where}[${JSON.stringify(k)}] must be a string`);
  }
  return v as Record<string, string>;
}

function stringArray(v: unknown, where: string): string[] {
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) {
    return invalid(`${where} must be an array of strings`);
  }
  return v as string[];
}

function parsePlatform(v: unknown, where: string): Platform {
  if (!isJsonObject(v)) return invalid(`${where} must be an object`);
  refuseCaseVariants(v, PLATFORM_FIELDS, where);
  if (typeof v.architecture !== 'string' || typeof v.os !== 'string') {
    invalid(`${where} needs string architecture and os`);
  }
  const p: Platform = { architecture: v.architecture as string, os: v.os as string };
  if (v.variant !== undefined) {
    if (typeof v.variant !== 'string') invalid(`${where}.variant must be a string`);
    p.variant = v.variant as string;
  }
  if (v['os.version'] !== undefined) {
    if (typeof v['os.version'] !== 'string') invalid(`${where}["os.version"] must be a string`);
    p['os.version'] = v['os.version'] as string;
  }
  if (v['os.features'] !== undefined)
    p['os.features'] = stringArray(v['os.features'], `${where}["os.features"]`);
  if (v.features !== undefined) p.features = stringArray(v.features, `${where}.features`);
  return p;
}

function parseDescriptor(v: unknown, where: string): Descriptor {
  if (!isJsonObject(v)) return invalid(`${where} must be an object`);
  refuseCaseVariants(v, DESCRIPTOR_FIELDS, where);
  const { mediaType, digest, size } = v;
  if (typeof mediaType !== 'string' || mediaType === '')
    invalid(`${where}.mediaType must be a non-empty string`);
  if (!isValidDigest(digest)) {
    invalid(`${where}.digest ${JSON.stringify(digest)} is not sha256:<64 hex> or sha512:<128 hex>`);
  }
  // Policy: sizes beyond 2^53 cannot be represented exactly here, so they are refused, not rounded.
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    invalid(`${where}.size must be a non-negative integer`);
  }
  const d: Descriptor = { mediaType: mediaType as string, digest: digest as string, size: size as number };
  if (v.annotations !== undefined && v.annotations !== null) {
    d.annotations = stringMap(v.annotations, `${where}.annotations`);
  }
  if (v.urls !== undefined && v.urls !== null) d.urls = stringArray(v.urls, `${where}.urls`);
  if (v.platform !== undefined && v.platform !== null)
    d.platform = parsePlatform(v.platform, `${where}.platform`);
  if (v.artifactType !== undefined) {
    if (typeof v.artifactType !== 'string') invalid(`${where}.artifactType must be a string`);
    d.artifactType = v.artifactType as string;
  }
  return d;
}

function parseDescriptorList(v: unknown, where: string, max: number): Descriptor[] {
  if (!Array.isArray(v)) return invalid(`${where} must be an array`);
  // Refused before the entries are parsed, so an oversized document costs one length check.
  if (v.length > max) invalid(`${where} may list at most ${max} entries (this one lists ${v.length})`);
  return v.map((x, i) => parseDescriptor(x, `${where}[${i}]`));
}

/**
 * Parses an image manifest or index.
 *
 * @param contentType the Content-Type it was pushed or served with, if any. Policy (I2): registry:2
 * picks its parser from the Content-Type and then checks the `mediaType` field, so a document whose
 * `mediaType` disagrees with the Content-Type is refused rather than interpreted one way or the other.
 */
export function parseManifest(bytes: Uint8Array | string, contentType?: string): ParsedManifest {
  const doc = parseStrictJson(bytes, 'manifest', 'MANIFEST_INVALID');
  if (!isJsonObject(doc)) return invalid('the document is not a JSON object');
  refuseCaseVariants(doc, MANIFEST_FIELDS, 'the document');

  if (doc.schemaVersion === 1) {
    // Policy: schema1 is refused outright: its digest is over a re-serialised form and it has no config.
    return invalid('schema1 manifests are not supported; push with a schema2 or OCI client');
  }
  if (doc.schemaVersion !== 2) return invalid('schemaVersion must be 2');

  const declared = doc.mediaType;
  if (declared !== undefined && (typeof declared !== 'string' || declared === '')) {
    invalid('mediaType must be a non-empty string');
  }
  let ct = normalizeContentType(contentType);
  // application/json (or no Content-Type) makes registry:2 sniff the document; it carries no claim.
  if (ct === 'application/json') ct = '';
  if (SCHEMA1_TYPES.includes(ct) || (typeof declared === 'string' && SCHEMA1_TYPES.includes(declared))) {
    invalid('schema1 manifests are not supported; push with a schema2 or OCI client');
  }
  if (typeof declared === 'string' && ct !== '' && declared !== ct) {
    invalid(`mediaType ${JSON.stringify(declared)} conflicts with Content-Type ${JSON.stringify(ct)}`);
  }

  const hasLayers = doc.layers !== undefined;
  const hasManifests = doc.manifests !== undefined;
  if (hasLayers && hasManifests) {
    // Policy: such a document is an image to one reader and an index to another.
    invalid('a manifest cannot have both "layers" and "manifests"');
  }

  let mediaType = typeof declared === 'string' ? declared : ct;
  if (mediaType === '') {
    // OCI allows mediaType to be absent; infer the OCI type from the shape.
    mediaType = hasManifests ? MEDIA_TYPE_OCI_INDEX : MEDIA_TYPE_OCI_MANIFEST;
  }

  let kind: 'image' | 'index';
  if (IMAGE_MANIFEST_TYPES.includes(mediaType)) kind = 'image';
  else if (INDEX_MANIFEST_TYPES.includes(mediaType)) kind = 'index';
  else return invalid(`unsupported manifest media type ${JSON.stringify(mediaType)}`);

  // Docker's own types must name themselves in the document (distribution refuses them otherwise).
  if (
    (mediaType === MEDIA_TYPE_DOCKER_MANIFEST || mediaType === MEDIA_TYPE_DOCKER_LIST) &&
    declared !== mediaType
  ) {
    invalid(`a ${mediaType} document must carry "mediaType": ${JSON.stringify(mediaType)}`);
  }

  const out: ParsedManifest = { mediaType, kind, layers: [], manifests: [] };
  if (kind === 'image') {
    if (hasManifests) invalid('an image manifest cannot have "manifests"');
    if (doc.config === undefined) invalid('an image manifest needs "config"');
    out.config = parseDescriptor(doc.config, 'config');
    if (!hasLayers || doc.layers === null) invalid('an image manifest needs "layers"');
    out.layers = parseDescriptorList(doc.layers, 'layers', MAX_MANIFEST_LAYERS);
  } else {
    if (hasLayers || doc.config !== undefined) invalid('an index cannot have "layers" or "config"');
    if (!hasManifests || doc.manifests === null) invalid('an index needs "manifests"');
    out.manifests = parseDescriptorList(doc.manifests, 'manifests', MAX_INDEX_ENTRIES);
    // Policy: an index lists image manifests only. Real images never nest indexes (platform
    // images, buildx attestation manifests and the referrers-tag index all list image manifests),
    // and a nested index would make admission and verification work recursive.
    const nested = out.manifests.findIndex((m) => INDEX_MANIFEST_TYPES.includes(m.mediaType));
    if (nested !== -1) {
      invalid(`manifests[${nested}] is itself an index; trustgate accepts an index of image manifests only`);
    }
  }
  if (doc.subject !== undefined && doc.subject !== null)
    out.subject = parseDescriptor(doc.subject, 'subject');
  if (doc.artifactType !== undefined) {
    if (typeof doc.artifactType !== 'string') invalid('artifactType must be a string');
    out.artifactType = doc.artifactType as string;
  }
  if (doc.annotations !== undefined && doc.annotations !== null) {
    out.annotations = stringMap(doc.annotations, 'annotations');
  }
  return out;
}

/**
 * True when the manifest is a cosign "legacy" signature artifact.
 * Policy (I1): recognised by media types only (OCI image manifest, OCI config, at least one layer,
 * every layer the simplesigning type), never by a `sha256-….sig` tag name.
 */
export function isSignatureArtifact(m: ParsedManifest): boolean {
  return (
    m.kind === 'image' &&
    m.mediaType === MEDIA_TYPE_OCI_MANIFEST &&
    m.config?.mediaType === MEDIA_TYPE_OCI_CONFIG &&
    m.layers.length >= 1 &&
    m.layers.every((l) => l.mediaType === MEDIA_TYPE_COSIGN_SIMPLESIGNING)
  );
}

/** The legacy cosign signature tag of a digest: `sha256-<hex>.sig`. */
const SIGNATURE_TAG = /^sha256-[0-9a-f]{64}\.sig$/;

export function isSignatureTag(tag: string | undefined): tag is string {
  return tag !== undefined && SIGNATURE_TAG.test(tag);
}

/**
 * True when a pull is signature discovery: a client reading the `.sig` tag of a digest it is
 * verifying, and the tag holds a signature artifact. Policy (I1): only this read is exempt from
 * verification. The same document asked for by digest is verified like any other manifest:
 * registry:2 answers a manifest GET by digest for any blob linked in the repository, so a
 * by-digest exemption would serve documents that were never pushed as manifests at all.
 */
export function isSignatureDiscoveryRead(tag: string | undefined, m: ParsedManifest): boolean {
  return isSignatureTag(tag) && isSignatureArtifact(m);
}

/** Digests of the blobs an image manifest references (config first, then layers); none for an index. */
export function referencedBlobs(m: ParsedManifest): string[] {
  const out: string[] = [];
  if (m.config) out.push(m.config.digest);
  for (const l of m.layers) out.push(l.digest);
  return out;
}

/**
 * `sha256:<hex>` (or sha512) of the exact bytes, with the algorithm of `like` (a digest being
 * checked against; default sha256). Policy: a manifest's digest is always computed from the bytes
 * held, never taken from a header.
 */
export function digestOf(bytes: Uint8Array, like = 'sha256:'): string {
  const alg = like.startsWith('sha512:') ? 'sha512' : 'sha256';
  // crypto.hash: one call, no Hash object (a third cheaper for a manifest; run on every pull, I1).
  return `${alg}:${hash(alg, bytes, 'hex')}`;
}
