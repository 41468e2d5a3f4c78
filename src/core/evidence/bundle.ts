/**
 * Sigstore bundle evidence (cosign >= 3 `sign`, Sigstore bundle v0.1 / v0.2 / v0.3): does this
 * bundle prove that a key trusted for the repository signed this manifest digest? Pure and
 * synchronous, in the style of evaluateTrust: bundle bytes, digest, keys, options and the clock
 * come in; a typed verdict goes out. Never throws on bad input (only on programming errors, as a
 * TypeError).
 *
 * What is done by whom:
 * - @sigstore/bundle `bundleFromJSON`: the protobuf-specs reading and the per-version field checks.
 * - @sigstore/core `dsse.preAuthEncoding`: the DSSE PAE.
 * - @sigstore/verify `Verifier` (with `toTrustMaterial` in trusted-root.ts): Rekor entries, i.e.
 *   the SET (inclusion promise), the Merkle inclusion proof, the signed checkpoint and the entry
 *   body matching this bundle's signature and content.
 * - Here: size and count limits, strict JSON (duplicate / case-variant keys, I2), one spelling of
 *   base64, an explicit media-type allow list, the signature check with trustgate's strict
 *   verifier (core/signature/verify.ts: RFC 8032 strict Ed25519 and Ed25519ph, DER-only ECDSA
 *   P-256; @sigstore/core's verify is node's, which takes neither Ed25519ph nor the strict checks),
 *   the statement policy (statement.ts) and the key policy (revoked, validity window).
 */
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import {
  BUNDLE_V01_MEDIA_TYPE,
  BUNDLE_V02_MEDIA_TYPE,
  BUNDLE_V03_LEGACY_MEDIA_TYPE,
  BUNDLE_V03_MEDIA_TYPE,
  bundleFromJSON,
  type Bundle,
  type TransparencyLogEntry,
} from '@sigstore/bundle';
import { dsse } from '@sigstore/core';
import { Verifier, type SignedEntity } from '@sigstore/verify';
import { isJsonObject, parseStrictJson } from '../json-strict.js';
import { isValidDigest } from '../manifest.js';
import { decodeStrictBase64, publicKeyFingerprint, publicKeySpkiDer } from '../signature/keys.js';
import { verifySignature } from '../signature/verify.js';
import { keyUsability, type TrustedKey } from '../trusted-key.js';
import { checkSignStatement, IN_TOTO_PAYLOAD_TYPE } from './statement.js';
import type { SigstoreTrustedRoot } from './trusted-root.js';
import { describeIdentity, type CertificateIdentity, type IdentityMatcher } from './identity.js';
import { signatureContent, verifyKeyless, type KeylessContent } from './keyless.js';

/** Bundle media types read. */
export const BUNDLE_MEDIA_TYPES: readonly string[] = [
  BUNDLE_V01_MEDIA_TYPE,
  BUNDLE_V02_MEDIA_TYPE,
  BUNDLE_V03_MEDIA_TYPE,
  // `…bundle+json;version=0.3`: the first v0.3 spelling, still read by cosign and sigstore-go.
  BUNDLE_V03_LEGACY_MEDIA_TYPE,
];

/**
 * Policy: a bundle over this size is refused before parsing. A key-based cosign bundle is about 1
 * KiB without Rekor entries and 5 KiB with one; a keyless one with a certificate chain and a
 * timestamp under 16 KiB.
 */
export const MAX_BUNDLE_BYTES = 64 * 1024;
/** Policy: at most this many transparency-log entries / RFC 3161 timestamps per bundle. */
export const MAX_TLOG_ENTRIES = 8;
export const MAX_TIMESTAMPS = 8;

export type TlogPolicy = 'required' | 'optional';

export interface BundleVerifyOptions {
  /**
   * `required`: the bundle must carry a transparency-log entry that verifies against `trustedRoot`
   * (needs `trustedRoot`). `optional`: entries are verified against `trustedRoot` when one is given
   * (and then every entry present must verify), and ignored when none is.
   */
  tlog: TlogPolicy;
  /**
   * The trusted roots (each from loadTrustedRoot, trusted-root.ts): Rekor keys for the log entries
   * of key-based bundles, and everything a keyless bundle is verified against (Fulcio CAs, CT logs,
   * Rekor, TSAs). A bundle verifies when one root verifies all of it.
   */
  trustedRoots?: readonly SigstoreTrustedRoot[];
  /** One root: the same as `trustedRoots: [trustedRoot]` (both may be given; they are joined). */
  trustedRoot?: SigstoreTrustedRoot;
  now: Date;
  /** Default MAX_BUNDLE_BYTES. */
  maxBytes?: number;
}

export interface BundleInput {
  /** The bundle JSON bytes (an OCI referrer's layer, or a .sigstore.json file). */
  bundle: Uint8Array;
  /** The manifest digest being verified: sha256 of the exact bytes that would be served. */
  digest: string;
  /**
   * The manifest bytes (sha256 = digest). Only message-signature bundles need them: their signature
   * is over the artifact itself, not over a statement naming its digest.
   */
  artifact?: Uint8Array;
  /** Keys trusted for this repository (already selected by policy). */
  keys: readonly TrustedKey[];
  /** Keyless identities trusted for this repository (compileIdentityRules, identity.ts). */
  identities?: readonly IdentityMatcher[];
}

export type BundleFailureReason =
  | 'no-signature'
  | 'untrusted-key'
  | 'digest-mismatch'
  | 'attestation-not-signature'
  | 'malformed-signature'
  | 'malformed-bundle'
  | 'unsupported-bundle'
  | 'revoked-key'
  | 'expired-key'
  | 'tlog-missing'
  | 'tlog-invalid'
  // keyless (keyless.ts, identity.ts)
  | 'untrusted-identity'
  | 'certificate-invalid'
  | 'timestamp-invalid'
  | 'signature-invalid'
  | 'no-trusted-root';

/**
 * How informative a failure is, on the scale of evaluateTrust's FAILURE_RANK (trust.ts) so that
 * the reasons of both formats can be merged into one verdict: the highest one seen wins.
 */
export const BUNDLE_FAILURE_RANK: Readonly<Record<BundleFailureReason, number>> = {
  'digest-mismatch': 9,
  'attestation-not-signature': 8.5,
  'tlog-invalid': 6.5,
  'certificate-invalid': 6.4,
  'timestamp-invalid': 6.3,
  'signature-invalid': 6.2,
  'malformed-signature': 6,
  'tlog-missing': 5.5,
  'revoked-key': 5,
  'expired-key': 4,
  'malformed-bundle': 3,
  'unsupported-bundle': 2.5,
  'no-trusted-root': 2.45,
  // A verified certificate of someone not trusted: says who signed, so above untrusted-key.
  'untrusted-identity': 2.4,
  'untrusted-key': 2,
  'no-signature': 1,
};

/**
 * A trusted key, or a trusted keyless identity, that made a valid signature; the threshold counts
 * distinct `identity` values.
 */
export interface BundleSigner {
  kind: 'key' | 'identity';
  /** The key's name, or `subject (issuer …)` for a certificate identity. */
  name: string;
  /** TrustedKey.identity, or the name; for a certificate `oidc:<issuer> <subject>`. */
  identity: string;
  /**
   * `sha256:<hex>` of the key's SPKI (publicKeyFingerprint), for counting distinct key material;
   * for a certificate the same `oidc:<issuer> <subject>` (short-lived keys are not the signer).
   */
  fingerprint: string;
  /** Keyless only: the verified certificate, as data (issuer, subject, GitHub claims, times). */
  certificate?: VerifiedCertificate;
}

/** A verified Fulcio certificate (keyless.ts): who it names and when it signed. */
export interface VerifiedCertificate {
  identity: CertificateIdentity;
  signingTimes: Date[];
  certificateDigest: string;
  /** The identity rules it matched (their descriptions). */
  matched: string[];
}

export type BundleVerdict =
  | {
      ok: true;
      reason: 'signed';
      /** Every usable trusted key whose signature this is (usually one; more only for copies of one key). */
      signers: BundleSigner[];
      content: 'dsse' | 'message-signature';
      mediaType: string;
      /** `verified`: at least one Rekor entry verified against the trusted root; `ignored`: no root given. */
      tlog: 'verified' | 'absent' | 'ignored';
      message: string;
    }
  | {
      ok: false;
      reason: BundleFailureReason;
      /** The reason alone, to be placed in a merged message (`…: <detail> (trusted: …)`). */
      detail: string;
      message: string;
    };

type Failure = Extract<BundleVerdict, { ok: false }>;

function failure(reason: BundleFailureReason, detail: string): Failure {
  return { ok: false, reason, detail, message: `bundle refused: ${detail}` };
}

const TOP_KEYS = new Set(['mediaType', 'verificationMaterial', 'dsseEnvelope', 'messageSignature']);
const MATERIAL_KEYS = new Set([
  'publicKey',
  'x509CertificateChain',
  'certificate',
  'tlogEntries',
  'timestampVerificationData',
]);
const ENVELOPE_KEYS = new Set(['payload', 'payloadType', 'signatures']);
const DSSE_SIG_KEYS = new Set(['sig', 'keyid']);
const MESSAGE_KEYS = new Set(['messageDigest', 'signature']);
const DIGEST_KEYS = new Set(['algorithm', 'digest']);

function sha256(b: Uint8Array): Buffer {
  return createHash('sha256').update(b).digest();
}

function unknownKey(obj: Record<string, unknown>, allowed: Set<string>): string | undefined {
  return Object.keys(obj).find((k) => !allowed.has(k));
}

/** The signed content once checked: what the signature is over (keyless.ts KeylessContent). */
type SignedContent = KeylessContent;

/**
 * Structural checks on the strictly parsed JSON, before and beyond @sigstore/bundle's: the fields
 * that Go's protojson (cosign, sigstore-go) would refuse or read differently are refused here.
 * Returns the bundle's media type, or a failure.
 */
function checkShape(doc: unknown): Failure | string {
  const bad = (d: string): Failure => failure('malformed-bundle', d);
  if (!isJsonObject(doc)) return bad('the bundle is not a JSON object');
  // Policy (I2): unknown fields are refused, as protojson refuses them (a snake_case spelling such
  // as `dsse_envelope`, which protojson also reads, is one).
  const unknown = unknownKey(doc, TOP_KEYS);
  if (unknown !== undefined) return bad(`unknown bundle field ${JSON.stringify(unknown)}`);
  const mediaType = doc['mediaType'];
  // Policy: an explicit allow list; @sigstore/bundle reads any `version=\d.\d` as the latest.
  if (typeof mediaType !== 'string' || !BUNDLE_MEDIA_TYPES.includes(mediaType)) {
    return bad(`bundle media type ${JSON.stringify(mediaType)} is not supported`);
  }
  // Policy: exactly one content; protojson refuses two members of a oneof, @sigstore/bundle keeps one.
  const hasDsse = doc['dsseEnvelope'] !== undefined && doc['dsseEnvelope'] !== null;
  const hasMsg = doc['messageSignature'] !== undefined && doc['messageSignature'] !== null;
  if (hasDsse === hasMsg) return bad('a bundle holds exactly one of dsseEnvelope and messageSignature');
  const vm = doc['verificationMaterial'];
  if (!isJsonObject(vm)) return bad('the bundle has no verificationMaterial');
  const vmUnknown = unknownKey(vm, MATERIAL_KEYS);
  if (vmUnknown !== undefined) return bad(`unknown verificationMaterial field ${JSON.stringify(vmUnknown)}`);
  const materials = ['publicKey', 'x509CertificateChain', 'certificate'].filter(
    (k) => vm[k] !== undefined && vm[k] !== null,
  );
  if (materials.length !== 1) {
    return bad('verificationMaterial holds exactly one of publicKey, x509CertificateChain and certificate');
  }
  const tlog = vm['tlogEntries'];
  if (tlog !== undefined && (!Array.isArray(tlog) || tlog.length > MAX_TLOG_ENTRIES)) {
    return bad(`tlogEntries must be an array of at most ${MAX_TLOG_ENTRIES}`);
  }
  const tsd = vm['timestampVerificationData'];
  if (tsd !== undefined && tsd !== null) {
    const ts = isJsonObject(tsd) ? tsd['rfc3161Timestamps'] : undefined;
    if (ts !== undefined && (!Array.isArray(ts) || ts.length > MAX_TIMESTAMPS)) {
      return bad(`rfc3161Timestamps must be an array of at most ${MAX_TIMESTAMPS}`);
    }
  }
  if (hasDsse) {
    const env = doc['dsseEnvelope'];
    if (!isJsonObject(env)) return bad('dsseEnvelope is not an object');
    const envUnknown = unknownKey(env, ENVELOPE_KEYS);
    if (envUnknown !== undefined) return bad(`unknown dsseEnvelope field ${JSON.stringify(envUnknown)}`);
    if (typeof env['payload'] !== 'string' || decodeStrictBase64(env['payload']) === null) {
      return bad('the DSSE payload is not valid base64');
    }
    const sigs = env['signatures'];
    if (sigs === undefined || (Array.isArray(sigs) && sigs.length === 0)) {
      return failure('no-signature', 'the DSSE envelope carries no signature');
    }
    // Policy: exactly one signature (sigstore bundle spec; sigstore-go ErrDSSEInvalidSignatureCount).
    if (!Array.isArray(sigs) || sigs.length !== 1)
      return bad('a bundle DSSE envelope carries exactly one signature');
    const s: unknown = sigs[0];
    if (!isJsonObject(s) || unknownKey(s, DSSE_SIG_KEYS) !== undefined)
      return bad('malformed DSSE signature');
    if (typeof s['sig'] !== 'string' || decodeStrictBase64(s['sig']) === null) {
      return bad('the DSSE signature is not valid base64');
    }
  } else {
    const ms = doc['messageSignature'];
    if (!isJsonObject(ms)) return bad('messageSignature is not an object');
    const msUnknown = unknownKey(ms, MESSAGE_KEYS);
    if (msUnknown !== undefined) return bad(`unknown messageSignature field ${JSON.stringify(msUnknown)}`);
    const md = ms['messageDigest'];
    if (!isJsonObject(md) || unknownKey(md, DIGEST_KEYS) !== undefined) return bad('malformed messageDigest');
    if (typeof md['digest'] !== 'string' || decodeStrictBase64(md['digest']) === null) {
      return bad('the message digest is not valid base64');
    }
    if (typeof ms['signature'] !== 'string' || decodeStrictBase64(ms['signature']) === null) {
      return bad('the message signature is not valid base64');
    }
  }
  return mediaType;
}

function signedContent(bundle: Bundle, input: BundleInput, digestHex: string): Failure | SignedContent {
  const content = bundle.content;
  if (content.$case === 'dsseEnvelope') {
    const env = content.dsseEnvelope;
    // Policy: only in-toto statements; cosign signs nothing else in a DSSE bundle.
    if (env.payloadType !== IN_TOTO_PAYLOAD_TYPE) {
      return failure(
        'unsupported-bundle',
        `DSSE payload type ${JSON.stringify(env.payloadType)} is not ${IN_TOTO_PAYLOAD_TYPE}`,
      );
    }
    const sig = env.signatures[0];
    if (sig === undefined) return failure('no-signature', 'the DSSE envelope carries no signature');
    return {
      kind: 'dsse',
      signedBytes: new Uint8Array(dsse.preAuthEncoding(env.payloadType, env.payload)),
      signature: new Uint8Array(sig.sig),
      payload: new Uint8Array(env.payload),
    };
  }
  const ms = content.messageSignature;
  const md = ms.messageDigest;
  // protobuf-specs HashAlgorithm.SHA2_256 = 1 ("SHA2_256" in JSON).
  if (md === undefined || md.algorithm !== 1) {
    return failure('unsupported-bundle', 'a message signature must be over a SHA2_256 digest');
  }
  const signedHex = Buffer.from(md.digest).toString('hex');
  // The claimed digest is not yet authenticated; the signature below is over the artifact itself.
  if (signedHex !== digestHex) {
    return failure(
      'digest-mismatch',
      `the bundle's message signature is over sha256:${signedHex}, not this digest`,
    );
  }
  if (input.artifact === undefined) {
    return failure(
      'unsupported-bundle',
      'a message-signature bundle is verified over the manifest bytes, and none were given',
    );
  }
  return {
    kind: 'message-signature',
    signedBytes: input.artifact,
    signature: new Uint8Array(ms.signature),
    messageDigest: new Uint8Array(md.digest),
  };
}

/**
 * Verifies the bundle's transparency-log entries against the trusted roots with @sigstore/verify's
 * Verifier: each entry's SET and/or inclusion proof + checkpoint, and its body against this
 * signature. The signing key is the trusted key that already verified (`keyObject`); timestamps
 * are not used (Policy: key validity is judged at `now`, as for the legacy format). One root must
 * verify every entry.
 */
function verifyTlog(
  bundle: Bundle,
  content: SignedContent,
  keyObject: KeyObject,
  roots: readonly SigstoreTrustedRoot[],
  required: boolean,
): Failure | 'verified' | 'absent' {
  const entries: TransparencyLogEntry[] = bundle.verificationMaterial.tlogEntries;
  if (entries.length === 0) {
    return required
      ? failure('tlog-missing', 'the bundle has no transparency-log entry, and this repository requires one')
      : 'absent';
  }
  const hint =
    bundle.verificationMaterial.content.$case === 'publicKey'
      ? bundle.verificationMaterial.content.publicKey.hint
      : '';
  const entity: SignedEntity = {
    // Already checked with the strict verifier; @sigstore/verify's own (node's) check is not used.
    signature: signatureContent(content, () => true),
    key: { $case: 'public-key', hint },
    tlogEntries: entries,
    timestamps: [],
  };
  let first: Failure | undefined;
  for (const root of roots) {
    const verifier = new Verifier(
      { ...root.material, publicKey: () => ({ publicKey: keyObject, validFor: () => true }) },
      { tlogThreshold: required ? 1 : 0, ctlogThreshold: 0, timestampThreshold: 0 },
    );
    try {
      verifier.verify(entity);
      return 'verified';
    } catch (err) {
      first ??= failure(
        'tlog-invalid',
        `its transparency-log entry does not verify: ${(err as Error).message}`,
      );
    }
  }
  return first!;
}

/** The trusted roots of the options, `trustedRoots` and `trustedRoot` joined. */
export function rootsOf(
  options: Pick<BundleVerifyOptions, 'trustedRoot' | 'trustedRoots'>,
): SigstoreTrustedRoot[] {
  return [...(options.trustedRoots ?? []), ...(options.trustedRoot ? [options.trustedRoot] : [])];
}

function validateOptions(input: BundleInput, options: BundleVerifyOptions): number {
  if (options.tlog !== 'required' && options.tlog !== 'optional') {
    throw new TypeError(`tlog must be 'required' or 'optional', got ${JSON.stringify(options.tlog)}`);
  }
  const roots = rootsOf(options);
  if (roots.some((r) => r.kind !== 'sigstore-trusted-root')) {
    throw new TypeError('trustedRoot must come from loadTrustedRoot');
  }
  if (!(options.now instanceof Date) || Number.isNaN(options.now.getTime()))
    throw new TypeError('invalid clock value');
  const maxBytes = options.maxBytes ?? MAX_BUNDLE_BYTES;
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 1)
    throw new TypeError('maxBytes must be a positive integer');
  if (!isValidDigest(input.digest) || !input.digest.startsWith('sha256:')) {
    throw new TypeError(`invalid digest ${JSON.stringify(input.digest)}`);
  }
  if (!(input.bundle instanceof Uint8Array)) throw new TypeError('bundle must be bytes');
  if (input.artifact !== undefined && `sha256:${sha256(input.artifact).toString('hex')}` !== input.digest) {
    throw new TypeError('artifact bytes do not hash to digest');
  }
  return maxBytes;
}

/**
 * True when the bytes are a structurally valid bundle (size, strict JSON, known fields only, one
 * content, @sigstore/bundle's checks), whoever signed it. Used to decide whether a blob may be
 * served as a bundle layer: nothing else is admitted that way.
 */
export function isWellFormedBundle(bytes: Uint8Array): boolean {
  if (bytes.length > MAX_BUNDLE_BYTES) return false;
  try {
    const doc = parseStrictJson(bytes, 'bundle');
    if (typeof checkShape(doc) !== 'string') return false;
    bundleFromJSON(doc);
    return true;
  } catch {
    return false;
  }
}

/** A bundle whose signature, signer and log entries verified; its DSSE payload not yet judged. */
export interface VerifiedSigstoreBundle {
  ok: true;
  signers: BundleSigner[];
  content: 'dsse' | 'message-signature';
  mediaType: string;
  /** `verified`: at least one Rekor entry verified against a trusted root; `ignored`: no root given. */
  tlog: 'verified' | 'absent' | 'ignored';
  /** DSSE: the payload type and the payload, verified but not interpreted. */
  payloadType?: string;
  payload?: Uint8Array;
}

/** Parses and checks the bundle up to its content; shared by both signer kinds. */
function parseBundle(
  input: BundleInput,
  maxBytes: number,
): Failure | { bundle: Bundle; mediaType: string; content: SignedContent } {
  if (input.bundle.length > maxBytes) {
    return failure(
      'malformed-bundle',
      `the bundle is ${input.bundle.length} bytes, over the ${maxBytes}-byte limit`,
    );
  }
  let doc: unknown;
  try {
    doc = parseStrictJson(input.bundle, 'bundle');
  } catch (err) {
    return failure('malformed-bundle', (err as Error).message);
  }
  const shape = checkShape(doc);
  if (typeof shape !== 'string') return shape;
  let bundle: Bundle;
  try {
    bundle = bundleFromJSON(doc);
  } catch (err) {
    const fields = (err as { fields?: unknown }).fields;
    const extra = Array.isArray(fields) && fields.length > 0 ? ` (${fields.join(', ')})` : '';
    return failure('malformed-bundle', `${(err as Error).message}${extra}`);
  }
  const content = signedContent(bundle, input, input.digest.slice('sha256:'.length));
  if ('ok' in content) return content;
  return { bundle, mediaType: shape, content };
}

/**
 * Keyless: the certificate verified against a trusted root (keyless.ts), then its identity
 * matched against the identities trusted for the repository.
 */
function verifyKeylessSigner(
  bundle: Bundle,
  content: SignedContent,
  input: BundleInput,
  roots: readonly SigstoreTrustedRoot[],
): Failure | BundleSigner[] {
  const v = verifyKeyless(bundle, content, roots);
  if (!v.ok) return failure(v.reason, `its certificate does not verify: ${v.detail}`);
  const identities = input.identities ?? [];
  const matched = identities.filter((m) => m.matches(v.identity));
  if (matched.length === 0) {
    const expected = identities.length > 0 ? identities.map((m) => m.description).join('; ') : 'none';
    return failure(
      'untrusted-identity',
      `it is signed by ${describeIdentity(v.identity)}, which is not an identity trusted for this repository (expected: ${expected})`,
    );
  }
  // Policy: toward a threshold, a keyless signer counts as the identity rule entry it satisfies
  // (the first one), not as its certificate subject: a GitHub subject carries the ref, so one
  // workflow signing on two tags would otherwise be two signers under one regular-expression entry
  // (review 7). Distinct signers need distinct entries (exact subjects), as keys need distinct keys.
  const ruleEntry = `oidc-rule:${matched[0]!.description}`;
  return [
    {
      kind: 'identity',
      name: describeIdentity(v.identity),
      identity: ruleEntry,
      fingerprint: `oidc:${v.identity.issuer} ${v.identity.subject}`,
      certificate: {
        identity: v.identity,
        signingTimes: v.signingTimes,
        certificateDigest: v.certificateDigest,
        matched: matched.map((m) => m.description),
      },
    },
  ];
}

/** Key-based: the signature under the rule's keys, the keys' usability, then the log entries. */
function verifyKeySigner(
  content: SignedContent,
  input: BundleInput,
  hint: string,
  now: Date,
): Failure | { signers: BundleSigner[]; usable: TrustedKey[] } {
  const { keys } = input;
  // Policy: the key hint is only a selector. Keys whose SPKI sha256 (base64, as cosign writes it)
  // equals the hint are tried first, then every other key of the rule; authorisation comes from
  // the signature alone.
  const fingerprints = new Map(keys.map((k) => [k, publicKeyFingerprint(k.key)]));
  const hintOf = (k: TrustedKey): string =>
    Buffer.from(fingerprints.get(k)!.slice('sha256:'.length), 'hex').toString('base64');
  const ordered = [...keys].sort((a, b) => Number(hintOf(b) === hint) - Number(hintOf(a) === hint));

  // The same acceptance set as the legacy format (Ed25519 pure or ph, ECDSA P-256 DER); cosign
  // signs bundles with Ed25519ph, so ph is tried first.
  const verified = ordered.filter((k) =>
    verifySignature(k.key, content.signedBytes, content.signature, 'ph'),
  );
  if (verified.length === 0) {
    return failure(
      'untrusted-key',
      keys.length === 0
        ? 'no key is trusted for this repository'
        : 'no key trusted for this repository made its signature',
    );
  }
  const usable = verified.filter((k) => keyUsability(k, now) === 'usable');
  if (usable.length === 0) {
    const k = verified[0]!;
    const why = keyUsability(k, now);
    return failure(
      why === 'revoked-key' ? 'revoked-key' : 'expired-key',
      why === 'revoked-key'
        ? `it is signed by key ${k.name}, which is revoked`
        : `it is signed by key ${k.name}, which is not valid at ${now.toISOString()}`,
    );
  }
  return {
    usable,
    signers: usable.map((k) => ({
      kind: 'key',
      name: k.name,
      identity: k.identity ?? k.name,
      fingerprint: fingerprints.get(k)!,
    })),
  };
}

/**
 * Verifies one Sigstore bundle's signature, signer and log entries; `statement` judges a DSSE
 * payload once the signer is trusted (before the log entries, which cost the most).
 *
 * Order (each step only on what the previous one authenticated): size → strict JSON and shape →
 * @sigstore/bundle validation → content → the signer: for a public key, the signature under the
 * rule's keys (the key hint only orders them) and key usability; for a certificate, the whole
 * keyless verification (keyless.ts) and the identity rules → the statement → for a public key,
 * the transparency-log entries.
 */
function verifyInternal(
  input: BundleInput,
  options: BundleVerifyOptions,
  statement: (payload: Uint8Array, signers: string) => Failure | undefined,
): Failure | VerifiedSigstoreBundle {
  const maxBytes = validateOptions(input, options);
  const roots = rootsOf(options);
  const parsed = parseBundle(input, maxBytes);
  if ('ok' in parsed) return parsed;
  const { bundle, mediaType, content } = parsed;
  const material = bundle.verificationMaterial.content;
  const base = {
    ok: true as const,
    content: content.kind,
    mediaType,
    ...(content.kind === 'dsse' && bundle.content.$case === 'dsseEnvelope'
      ? { payloadType: bundle.content.dsseEnvelope.payloadType, payload: content.payload! }
      : {}),
  };

  if (material.$case !== 'publicKey') {
    // Policy: a certificate is judged by its identity only, never by its key matching a trusted
    // key (a rule's keys never admit a keyless bundle, and identities never a key-signed one).
    const signers = verifyKeylessSigner(bundle, content, input, roots);
    if (!Array.isArray(signers)) return signers;
    if (content.kind === 'dsse') {
      const f = statement(content.payload!, signers.map((s) => s.name).join(', '));
      if (f) return f;
    }
    return { ...base, signers, tlog: 'verified' };
  }

  const keyed = verifyKeySigner(content, input, material.publicKey.hint, options.now);
  if ('ok' in keyed) return keyed;
  const names = keyed.usable.map((k) => `key ${k.name}`).join(', ');
  if (content.kind === 'dsse') {
    const f = statement(content.payload!, names);
    if (f) return f;
  }
  let tlog: 'verified' | 'absent' | 'ignored' = 'ignored';
  if (roots.length > 0) {
    // Policy: with a trusted root, every entry present must verify, even when the rule makes them
    // optional: a forged entry is refused, never skipped. Without one, entries are ignored (never
    // trusted as they come), which tlog 'required' does not allow (validateOptions).
    const keyObject = createPublicKey({
      key: Buffer.from(publicKeySpkiDer(keyed.usable[0]!.key)),
      format: 'der',
      type: 'spki',
    });
    const t = verifyTlog(bundle, content, keyObject, roots, options.tlog === 'required');
    if (typeof t !== 'string') return t;
    tlog = t;
  } else if (options.tlog === 'required') {
    // Policy: a rule that requires a transparency-log entry, with no trusted root available (a
    // TUF source that never verified, issue 15), fails closed; the signature was checked first,
    // so a bundle from an untrusted key is refused for that instead.
    return failure(
      'no-trusted-root',
      `${names} signed it, but this repository requires a transparency-log entry and no Sigstore trusted root is available to verify it (trust.sigstore: no source has a valid root)`,
    );
  }
  return { ...base, signers: keyed.signers, tlog };
}

/**
 * Verifies a Sigstore bundle (key-based or keyless) without interpreting a DSSE payload: for
 * callers with their own statement policy (attestations). A message signature is verified over
 * `input.artifact`.
 */
export function verifySigstoreBundle(
  input: BundleInput,
  options: BundleVerifyOptions,
): VerifiedSigstoreBundle | Extract<BundleVerdict, { ok: false }> {
  return verifyInternal(input, options, () => undefined);
}

/** Verifies one Sigstore bundle as signature evidence for `input.digest`. */
export function verifyBundle(input: BundleInput, options: BundleVerifyOptions): BundleVerdict {
  const v = verifyInternal(input, options, (payload, names) => {
    const check = checkSignStatement(payload, input.digest);
    return check.ok ? undefined : failure(check.reason, `${names} signed it, but ${check.detail}`);
  });
  if (!v.ok) return v;
  const who = v.signers.map((s) => s.name).join(', ');
  return {
    ok: true,
    reason: 'signed',
    signers: v.signers,
    content: v.content,
    mediaType: v.mediaType,
    tlog: v.tlog,
    message: `${input.digest} is signed by ${who} (Sigstore bundle, ${v.content === 'dsse' ? 'DSSE' : 'message signature'}, tlog ${v.tlog})`,
  };
}
