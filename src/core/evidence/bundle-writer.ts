/**
 * Writes what cosign 3 `sign --key` writes for an image, so that `cosign verify --key` reads a
 * trustgate signature and trustgate reads cosign's: the Sigstore bundle v0.3 (a DSSE envelope of
 * the cosign signature statement, the key named by `publicKey.hint`, here without Rekor entries),
 * and the OCI 1.1 referrer manifest that carries it (cosign pkg/oci/remote/write.go WriteReferrer /
 * WriteAttestationNewBundleFormat). Pure: the clock comes in; bytes go out for the caller to push.
 */
import { createHash, createPrivateKey, createPublicKey } from 'node:crypto';
import { BUNDLE_V03_MEDIA_TYPE } from '@sigstore/bundle';
import { dsse } from '@sigstore/core';
import { isValidDigest, MEDIA_TYPE_OCI_MANIFEST } from '../manifest.js';
import { publicKeySpkiDer, parsePublicKeyDer, type PublicKey } from '../signature/keys.js';
import { ed25519Seed, signEd25519ph } from '../signature/ed25519ph.js';
import { privateKeyType, signPayload, type PrivateKeyMaterial } from '../signature/sign.js';
import { verifySignature } from '../signature/verify.js';
import { buildCosignSignStatement, COSIGN_SIGN_PREDICATE_TYPE, IN_TOTO_PAYLOAD_TYPE } from './statement.js';

/** The referrer's artifactType (and its config descriptor's): the bundle media type. */
export const BUNDLE_REFERRER_ARTIFACT_TYPE = BUNDLE_V03_MEDIA_TYPE;
export const MEDIA_TYPE_OCI_EMPTY = 'application/vnd.oci.empty.v1+json';
/** The OCI empty descriptor's content, `{}`. */
export const EMPTY_CONFIG_BYTES: Uint8Array = new TextEncoder().encode('{}');
export const ANNOTATION_BUNDLE_CONTENT = 'dev.sigstore.bundle.content';
export const ANNOTATION_BUNDLE_PREDICATE_TYPE = 'dev.sigstore.bundle.predicateType';
export const ANNOTATION_CREATED = 'org.opencontainers.image.created';

/** Signs the bytes it is given (the DSSE PAE) with the key whose public half is `publicKey`. */
export interface BundleSigner {
  publicKey: PublicKey;
  sign(message: Uint8Array): Uint8Array;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

function sha256Digest(b: Uint8Array): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

/** cosign's key hint: standard base64 of sha256 over the key's DER SubjectPublicKeyInfo. */
export function publicKeyHint(key: PublicKey): string {
  return createHash('sha256').update(publicKeySpkiDer(key)).digest('base64');
}

/**
 * A BundleSigner for a private key. Policy: an Ed25519 key signs Ed25519ph, as cosign 3 does and
 * as it verifies bundles (pure Ed25519 would fail `cosign verify --key`); ECDSA P-256 signs
 * SHA-256 with a DER signature.
 */
export function bundleSignerFor(privateKey: PrivateKeyMaterial): BundleSigner {
  const type = privateKeyType(privateKey);
  const ko =
    privateKey instanceof Uint8Array
      ? createPrivateKey({ key: Buffer.from(privateKey), format: 'der', type: 'pkcs8' })
      : privateKey;
  const spki = createPublicKey(ko).export({ format: 'der', type: 'spki' });
  const publicKey = parsePublicKeyDer(new Uint8Array(spki));
  if (type === 'ed25519') {
    const seed = ed25519Seed(privateKey);
    return { publicKey, sign: (m) => signEd25519ph(seed, m) };
  }
  return { publicKey, sign: (m) => signPayload(privateKey, m) };
}

/** Signs an in-toto statement over its DSSE PAE; the signature is checked by our own verifier. */
export function signStatementPae(statement: Uint8Array, signer: BundleSigner): Uint8Array {
  const pae = new Uint8Array(dsse.preAuthEncoding(IN_TOTO_PAYLOAD_TYPE, Buffer.from(statement)));
  const sig = signer.sign(pae);
  // Round trip through our own verifier: we never write a signature we would refuse.
  if (!verifySignature(signer.publicKey, pae, sig)) {
    throw new TypeError('the signer did not produce a valid signature for its public key');
  }
  return sig;
}

/**
 * The Sigstore bundle v0.3 of a signed in-toto statement (a DSSE envelope, the key named by
 * `publicKey.hint`, no Rekor entries or timestamps): JSON bytes in protojson field order, as cosign
 * 3 writes it for `sign` and `attest`.
 */
export function buildStatementBundle(statement: Uint8Array, signer: BundleSigner): Uint8Array {
  const sig = signStatementPae(statement, signer);
  const bundle = {
    mediaType: BUNDLE_V03_MEDIA_TYPE,
    verificationMaterial: { publicKey: { hint: publicKeyHint(signer.publicKey) } },
    dsseEnvelope: {
      payload: Buffer.from(statement).toString('base64'),
      payloadType: IN_TOTO_PAYLOAD_TYPE,
      signatures: [{ sig: Buffer.from(sig).toString('base64') }],
    },
  };
  return new TextEncoder().encode(JSON.stringify(bundle));
}

/**
 * The cosign 3 signature bundle for `digest` (`sha256:<hex>`). `annotations` become the statement
 * subject's annotations, as cosign `sign -a k=v` puts them.
 */
export function buildCosignSignBundle(
  digest: string,
  signer: BundleSigner,
  annotations: Record<string, string> = {},
): Uint8Array {
  return buildStatementBundle(buildCosignSignStatement(digest, annotations), signer);
}

export interface BundleReferrer {
  /** The referrer manifest bytes, to PUT by digest. */
  manifest: Uint8Array;
  mediaType: typeof MEDIA_TYPE_OCI_MANIFEST;
  digest: string;
  /** Blobs to upload first: the empty config and the bundle. */
  blobs: { descriptor: Descriptor; bytes: Uint8Array }[];
}

/** RFC 3339 in UTC, whole seconds (Go's time.RFC3339 of a UTC time). */
function rfc3339(t: Date): string {
  if (Number.isNaN(t.getTime())) throw new TypeError('invalid clock value');
  return t.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * The OCI 1.1 referrer manifest that carries a signature bundle for `subject`, exactly as cosign 3
 * writes it: artifactType = bundle media type, config = the empty descriptor carrying the same
 * artifactType, one bundle layer, `subject`, and the annotations `dev.sigstore.bundle.content:
 * dsse-envelope`, `dev.sigstore.bundle.predicateType` and `org.opencontainers.image.created`.
 * Field order is Go's (go-containerregistry v1.Manifest, then artifactType; map keys sorted).
 */
export function buildBundleReferrerManifest(args: {
  bundle: Uint8Array;
  subject: Descriptor;
  created: Date;
  predicateType?: string;
}): BundleReferrer {
  const { bundle, subject, created } = args;
  if (!isValidDigest(subject.digest) || !Number.isSafeInteger(subject.size) || subject.size < 0) {
    throw new TypeError('invalid subject descriptor');
  }
  const config: Descriptor = {
    mediaType: MEDIA_TYPE_OCI_EMPTY,
    digest: sha256Digest(EMPTY_CONFIG_BYTES),
    size: 2,
  };
  const layer: Descriptor = {
    mediaType: BUNDLE_V03_MEDIA_TYPE,
    digest: sha256Digest(bundle),
    size: bundle.length,
  };
  const manifest = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPE_OCI_MANIFEST,
    config: {
      mediaType: config.mediaType,
      size: config.size,
      digest: config.digest,
      artifactType: BUNDLE_REFERRER_ARTIFACT_TYPE,
    },
    layers: [{ mediaType: layer.mediaType, size: layer.size, digest: layer.digest }],
    annotations: {
      [ANNOTATION_BUNDLE_CONTENT]: 'dsse-envelope',
      [ANNOTATION_BUNDLE_PREDICATE_TYPE]: args.predicateType ?? COSIGN_SIGN_PREDICATE_TYPE,
      [ANNOTATION_CREATED]: rfc3339(created),
    },
    subject: { mediaType: subject.mediaType, size: subject.size, digest: subject.digest },
    artifactType: BUNDLE_REFERRER_ARTIFACT_TYPE,
  };
  const bytes = new TextEncoder().encode(JSON.stringify(manifest));
  return {
    manifest: bytes,
    mediaType: MEDIA_TYPE_OCI_MANIFEST,
    digest: sha256Digest(bytes),
    blobs: [
      { descriptor: config, bytes: EMPTY_CONFIG_BYTES },
      { descriptor: layer, bytes: bundle },
    ],
  };
}
