import { buildSimpleSigningPayload } from '../../src/core/signature/payload.js';
import { signPayload, type PrivateKeyMaterial } from '../../src/core/signature/sign.js';
import { COSIGN_SIGNATURE_ANNOTATION, MEDIA_TYPES } from '../../src/core/manifest.js';
import { signatureTagFor } from '../../src/core/reference.js';
import { direct, pushBlob, pushManifest } from './registry-direct.js';

export interface SignOptions {
  /** The docker-reference written into the payload (default `localhost/<repo>`). */
  dockerReference?: string;
  /** Repository the signature artifact is stored in (default: the signed repo). */
  storeIn?: string;
  /** Overrides the digest named in the payload (for mismatch tests). */
  payloadDigest?: string;
  /** Signs instead of `key` (keyless: returns the signature and the layer's certificate annotations). */
  signWith?: (payload: Buffer) => { signature: string; annotations: Record<string, string> };
}

/**
 * Writes a cosign-format signature for `repo@digest` straight into the registry, keeping any
 * signatures already there (the publisher's side of a test).
 */
export async function signDirect(
  registryUrl: string,
  repo: string,
  digest: string,
  key: PrivateKeyMaterial,
  o: SignOptions = {},
): Promise<{ sigManifest: Buffer }> {
  const store = o.storeIn ?? repo;
  const payload = Buffer.from(
    buildSimpleSigningPayload({
      dockerReference: o.dockerReference ?? `localhost/${repo}`,
      manifestDigest: o.payloadDigest ?? digest,
    }),
  );
  const custom = o.signWith?.(payload);
  const signature = custom?.signature ?? Buffer.from(signPayload(key, payload)).toString('base64');
  const tag = signatureTagFor(digest);
  const existing = await direct(registryUrl, 'GET', `/v2/${store}/manifests/${tag}`, undefined, {
    accept: MEDIA_TYPES.ociManifest,
  });
  const layers: unknown[] =
    existing.status === 200 ? (JSON.parse(existing.body.toString()) as { layers: unknown[] }).layers : [];
  layers.push(await signatureLayer(registryUrl, store, payload, signature, custom?.annotations));
  const manifest = await signatureArtifact(registryUrl, store, layers);
  await pushManifest(registryUrl, store, tag, manifest, MEDIA_TYPES.ociManifest);
  return { sigManifest: manifest };
}

/**
 * A cosign `.sig` manifest for `repo@digest` signed by `key`, with its blobs pushed to registry:2
 * directly and the manifest itself left to the caller (to push it through trustgate).
 */
export async function signatureManifest(
  registryUrl: string,
  repo: string,
  digest: string,
  key: PrivateKeyMaterial,
): Promise<Buffer> {
  const payload = Buffer.from(
    buildSimpleSigningPayload({ dockerReference: `localhost/${repo}`, manifestDigest: digest }),
  );
  const signature = Buffer.from(signPayload(key, payload)).toString('base64');
  return signatureArtifact(registryUrl, repo, [await signatureLayer(registryUrl, repo, payload, signature)]);
}

/** A simple-signing layer: `payload` pushed to `store`, `signature` (and `extra`) in its annotations. */
async function signatureLayer(
  registryUrl: string,
  store: string,
  payload: Buffer,
  signature: string,
  extra: Record<string, string> = {},
): Promise<Record<string, unknown>> {
  return {
    mediaType: MEDIA_TYPES.cosignSimpleSigning,
    digest: await pushBlob(registryUrl, store, payload),
    size: payload.length,
    annotations: { [COSIGN_SIGNATURE_ANNOTATION]: signature, ...extra },
  };
}

/** The `.sig` artifact manifest holding `layers`, its `{}` config pushed to `store`. */
async function signatureArtifact(registryUrl: string, store: string, layers: unknown[]): Promise<Buffer> {
  const config = Buffer.from('{}');
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociManifest,
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: await pushBlob(registryUrl, store, config),
        size: config.length,
      },
      layers,
    }),
  );
}
