/**
 * `trustgate sign REF --key NAME.key`: signs an image in cosign 3's Sigstore-bundle referrer layout
 * (the default), in cosign's "legacy" `.sig` format (`--format legacy`), or both, through the
 * registry API (trustgate or a plain registry:2).
 */
import { readFileSync } from 'node:fs';
import {
  COSIGN_SIGNATURE_ANNOTATION,
  MEDIA_TYPES,
  isSignatureArtifact,
  parseManifest,
} from '../core/manifest.js';
import {
  buildBundleReferrerManifest,
  buildCosignSignBundle,
  bundleSignerFor,
} from '../core/evidence/bundle-writer.js';
import { verifyBundle } from '../core/evidence/bundle.js';
import { decryptCosignKey } from '../core/signature/keyfile.js';
import { parsePublicKeyPem, publicKeyFingerprint, type PublicKey } from '../core/signature/keys.js';
import { buildSimpleSigningPayload } from '../core/signature/payload.js';
import { publicKeyPemOf, signPayload } from '../core/signature/sign.js';
import { isValidTag, signatureTagFor } from '../core/reference.js';
import { bundleEvidence } from '../trust/evidence.js';
import { clientEvidenceReader } from './evidence-reader.js';
import { attachReferrer } from './evidence-writer.js';
import type { RegistryClient } from './registry-client.js';
import { readPassphrase } from './passphrase.js';
import {
  REGISTRY_OPTS,
  REGISTRY_OPTS_USAGE,
  InputError,
  UsageError,
  clientFromArgs,
  defaultIo,
  formatRef,
  manifestRefOf,
  parseArgs,
  parseImageRef,
  progress,
  runCommand,
  trustgateVersion,
  type CliIo,
} from './registry-opts.js';

export const SIGN_USAGE = `usage: trustgate sign HOST[:PORT]/REPO{:TAG|@DIGEST} --key NAME.key [--tag T] [--recursive] [--format bundle|legacy|both]

Signs the manifest REF resolves to and stores the signature next to any signatures already there
(a second bundle by the same key, or an identical legacy signature, is not added):
  --format bundle  (default) cosign 3's layout: a Sigstore bundle as an OCI 1.1 referrer of the digest.
                   A bundle names the digest only, never a tag: it does not satisfy tag binding
  --format legacy  cosign's .sig format, payload naming HOST/REPO[:TAG], at tag sha256-<hex>.sig (the
                   only format that binds a tag: needed where the repository's rule has tagBinding)
  --format both    both of the above
  --tag T        with REF by digest: the legacy payload names REPO:T, and T is pointed at the digest
                 after signing. Without --format, --tag signs in both formats (the tag is bound)
  --recursive    for an index: also sign every manifest it lists (same reference)
Passphrase: TRUSTGATE_KEY_PASSPHRASE or COSIGN_PASSWORD, else typed on the terminal.
${REGISTRY_OPTS_USAGE}`;

export interface SignatureLayer {
  /** The layer descriptor exactly as it is in the artifact (extra fields kept). */
  raw: Record<string, unknown>;
  digest: string;
  size: number;
  mediaType: string;
  annotations: Record<string, string>;
}

export interface SignatureArtifact {
  tag: string;
  /** The artifact manifest, when the tag exists. */
  digest?: string;
  layers: SignatureLayer[];
  /** Why the tag's content is not a signature artifact, when it is not. */
  problem?: string;
}

/** GETs the `.sig` artifact of `digest` in `repo` (empty when absent). */
export async function readSignatureArtifact(
  client: RegistryClient,
  repo: string,
  digest: string,
): Promise<SignatureArtifact> {
  const tag = signatureTagFor(digest);
  return signatureArtifactOf(tag, (await client.getManifestIfExists(repo, tag)) ?? undefined);
}

/** What the manifest read at the `.sig` tag `tag` holds (empty when it was absent). */
export function signatureArtifactOf(
  tag: string,
  m: { bytes: Uint8Array; mediaType?: string; digest: string } | undefined,
): SignatureArtifact {
  if (m === undefined) return { tag, layers: [] };
  let parsed;
  try {
    parsed = parseManifest(m.bytes, m.mediaType);
  } catch (err) {
    return { tag, digest: m.digest, layers: [], problem: (err as Error).message };
  }
  // Policy (I1): a signature artifact is recognised by its media types, not by its tag name.
  if (!isSignatureArtifact(parsed)) {
    return {
      tag,
      digest: m.digest,
      layers: [],
      problem: `tag ${tag} does not hold a cosign signature artifact`,
    };
  }
  // parseManifest used the strict JSON reader, so plain JSON.parse sees the same document.
  const doc = JSON.parse(Buffer.from(m.bytes).toString('utf8')) as { layers: Record<string, unknown>[] };
  const layers = parsed.layers.map((l, i) => ({
    raw: doc.layers[i] as Record<string, unknown>,
    digest: l.digest,
    size: l.size,
    mediaType: l.mediaType,
    annotations: l.annotations ?? {},
  }));
  return { tag, digest: m.digest, layers };
}

const ZERO_TIME = '0001-01-01T00:00:00Z';

/**
 * The config blob of a signature artifact, as cosign writes it: go-containerregistry's ConfigFile
 * after mutate.Append (field order of the Go struct), one empty history entry and one diff_id per
 * layer (the layers are uncompressed, so diff_id = digest), `created` set to signing time.
 */
export function signatureConfig(layerDigests: string[], created: Date): Uint8Array {
  const doc = {
    architecture: '',
    created: created.toISOString().replace(/\.\d{3}Z$/, 'Z'),
    history: layerDigests.map(() => ({ created: ZERO_TIME })),
    os: '',
    rootfs: { type: 'layers', diff_ids: layerDigests },
    config: {},
  };
  return new TextEncoder().encode(JSON.stringify(doc));
}

/** The artifact manifest bytes (field order as cosign / go-containerregistry write them). */
export function signatureManifest(
  config: { digest: string; size: number },
  layers: Record<string, unknown>[],
): Uint8Array {
  const doc = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociManifest,
    config: { mediaType: MEDIA_TYPES.ociConfig, size: config.size, digest: config.digest },
    layers,
  };
  return new TextEncoder().encode(JSON.stringify(doc));
}

export interface SignOneInput {
  client: RegistryClient;
  repo: string;
  digest: string;
  /** What the payload names: HOST/REPO[:TAG]. */
  dockerReference: string;
  privateKey: Uint8Array;
  now: Date;
  log: (msg: string) => void;
}

export interface SignOneResult {
  digest: string;
  signatureTag: string;
  /** False when an identical payload + signature was already there. */
  added: boolean;
  layers: number;
}

/** Signs one manifest digest and stores the signature next to the existing ones. */
export async function signDigest(i: SignOneInput): Promise<SignOneResult> {
  const payload = buildSimpleSigningPayload({
    dockerReference: i.dockerReference,
    manifestDigest: i.digest,
    creator: `trustgate ${trustgateVersion()}`,
    timestamp: Math.floor(i.now.getTime() / 1000),
  });
  const signature = Buffer.from(signPayload(i.privateKey, payload)).toString('base64');
  const existing = await readSignatureArtifact(i.client, i.repo, i.digest);
  if (existing.problem !== undefined) {
    // Policy: never clobber what a tag holds when it is not a signature artifact.
    throw new Error(`refusing to replace ${i.repo}:${existing.tag}: ${existing.problem}`);
  }
  i.log(`uploading the signature payload to ${i.repo}`);
  const blob = await i.client.uploadBlob(i.repo, payload);
  if (
    existing.layers.some(
      (l) => l.digest === blob.digest && l.annotations[COSIGN_SIGNATURE_ANNOTATION] === signature,
    )
  ) {
    return { digest: i.digest, signatureTag: existing.tag, added: false, layers: existing.layers.length };
  }
  const layers = [
    ...existing.layers.map((l) => l.raw),
    {
      mediaType: MEDIA_TYPES.cosignSimpleSigning,
      size: blob.size,
      digest: blob.digest,
      annotations: { [COSIGN_SIGNATURE_ANNOTATION]: signature },
    },
  ];
  const config = await i.client.uploadBlob(
    i.repo,
    signatureConfig(
      layers.map((l) => l.digest as string),
      i.now,
    ),
  );
  i.log(`writing ${i.repo}:${existing.tag} (${layers.length} signature(s))`);
  await i.client.putManifest(
    i.repo,
    existing.tag,
    signatureManifest(config, layers),
    MEDIA_TYPES.ociManifest,
  );
  return { digest: i.digest, signatureTag: existing.tag, added: true, layers: layers.length };
}

/**
 * Signs one digest in cosign 3's layout: a Sigstore bundle in an OCI 1.1 referrer manifest pushed
 * by digest with the digest as subject (evidence-writer.ts records it where the registry has no
 * referrers API). Returns the referrer's digest.
 */
export async function signDigestBundle(i: {
  client: RegistryClient;
  repo: string;
  /** The signed manifest's descriptor (the referrer's subject). */
  subject: { digest: string; size: number; mediaType: string };
  privateKey: Uint8Array;
  now: Date;
  log: (msg: string) => void;
}): Promise<string> {
  const bundle = buildCosignSignBundle(i.subject.digest, bundleSignerFor(i.privateKey));
  const ref = buildBundleReferrerManifest({ bundle, subject: i.subject, created: i.now });
  for (const b of ref.blobs) await i.client.uploadBlob(i.repo, b.bytes);
  return attachReferrer(
    i.client,
    i.repo,
    { bytes: ref.manifest, mediaType: ref.mediaType, subject: i.subject.digest },
    i.log,
  );
}

/**
 * True when a bundle referrer of `digest` already holds a valid cosign signature by `key` (read
 * through the evidence seam, judged by the core). Policy: signing again then writes nothing, as
 * for an identical legacy signature, so repeated runs (CI retries) cannot fill the digest's
 * referrer places with copies of one signature.
 */
export async function bundleSignedBy(
  client: RegistryClient,
  repo: string,
  digest: string,
  key: PublicKey,
  now: Date,
): Promise<boolean> {
  const bundles = await bundleEvidence(clientEvidenceReader(client, { forPush: true }), repo, digest);
  return bundles.some(
    (b) =>
      verifyBundle({ bundle: b.bytes, digest, keys: [{ name: 'signer', key }] }, { tlog: 'optional', now })
        .ok,
  );
}

/**
 * Reads and decrypts a cosign-format private key file (passphrase from the environment or the
 * terminal), for `sign` and `attest`. The caller zeroes `privateKey` when done.
 */
export async function loadSigningKey(
  keyFile: string,
  io: CliIo,
): Promise<{ privateKey: Uint8Array; publicKey: PublicKey; keyId: string }> {
  let pem: string;
  try {
    pem = readFileSync(keyFile, 'utf8');
  } catch (err) {
    throw new InputError(`cannot read --key ${keyFile}: ${(err as Error).message}`);
  }
  const passphrase = await readPassphrase(io, { confirm: false, keyFile });
  const privateKey = decryptCosignKey(pem, passphrase);
  const publicKey = parsePublicKeyPem(publicKeyPemOf(privateKey));
  return { privateKey, publicKey, keyId: publicKeyFingerprint(publicKey) };
}

export type SignFormat = 'bundle' | 'legacy' | 'both';

/**
 * The formats to write. Policy: the bundle (cosign 3's default) unless asked otherwise; but `--tag`
 * asks for a signature naming the tag, which only the legacy format can carry, so without an
 * explicit `--format` it writes both (`signedPush` refusals recommend exactly
 * `trustgate sign REPO@DIGEST --tag T`, which must keep working under tag binding).
 */
export function signFormats(format: string | undefined, newTag: string | undefined): SignFormat {
  if (format === undefined) return newTag !== undefined ? 'both' : 'bundle';
  if (format === 'bundle' || format === 'legacy' || format === 'both') return format;
  throw new UsageError(`--format is bundle, legacy or both, not ${JSON.stringify(format)}`);
}

export async function signCommand(argv: string[], io: CliIo = defaultIo()): Promise<number> {
  return runCommand(io, SIGN_USAGE, async () => {
    const { values, positionals } = parseArgs(argv, {
      ...REGISTRY_OPTS,
      key: { type: 'string' },
      tag: { type: 'string' },
      recursive: { type: 'boolean' },
      format: { type: 'string' },
      help: { type: 'boolean' },
    });
    const newTag = values.tag as string | undefined;
    const format = signFormats(values.format as string | undefined, newTag);
    if (values.help === true) {
      io.stdout.write(SIGN_USAGE);
      return 0;
    }
    if (positionals.length !== 1) throw new UsageError('sign takes exactly one image reference');
    const ref = parseImageRef(positionals[0] as string);
    const keyFile = values.key as string | undefined;
    if (keyFile === undefined) throw new UsageError('--key NAME.key is required');
    if (newTag !== undefined) {
      if (ref.digest === undefined) throw new UsageError('--tag needs REF by digest (HOST/REPO@sha256:…)');
      if (!isValidTag(newTag)) throw new UsageError(`invalid tag ${JSON.stringify(newTag)}`);
    }
    if (ref.tag !== undefined && ref.digest !== undefined) {
      throw new UsageError('give REF by tag or by digest, not both (use --tag to name a tag for a digest)');
    }
    const manifestRef = manifestRefOf(ref);
    const { privateKey, publicKey, keyId } = await loadSigningKey(keyFile, io);
    const log = progress(io);
    const client = await clientFromArgs(ref.host, values, io);
    try {
      // I1: one GET; the digest is computed from exactly these bytes. Resolved with a pull,push
      // token: signing needs push anyway, and trustgate shows an unsigned manifest only to a token
      // that grants push on the repository.
      const m = await client.getManifest(ref.repo, manifestRef, undefined, {
        forPush: true,
      });
      log(`resolved ${formatRef(ref)} to ${m.digest}`);
      const tag = newTag ?? ref.tag;
      const dockerReference = `${ref.host}/${ref.repo}${tag !== undefined ? `:${tag}` : ''}`;
      const parsed = parseManifest(m.bytes, m.mediaType);
      const targets = [m.digest];
      if (values.recursive === true) {
        if (parsed.kind !== 'index') throw new UsageError('--recursive needs an index (manifest list)');
        for (const child of parsed.manifests) {
          // Fetched by digest: the client checks the bytes hash to the digest the index lists.
          await client.getManifest(ref.repo, child.digest, undefined, { forPush: true });
          targets.push(child.digest);
        }
      } else if (parsed.kind === 'index') {
        log('note: this is an index; its children are not signed (use --recursive to sign them too)');
      }
      for (const digest of targets) {
        if (format !== 'bundle') {
          // Legacy first: a `.sig` tag holding something else stops the run before anything is written.
          const r = await signDigest({
            client,
            repo: ref.repo,
            digest,
            dockerReference,
            privateKey,
            now: io.now(),
            log,
          });
          io.stdout.write(
            r.added
              ? `signed ${ref.host}/${ref.repo}@${digest} as ${dockerReference} with ${keyId} ` +
                  `(${r.layers} signature(s) in ${r.signatureTag})\n`
              : `already signed: ${ref.host}/${ref.repo}@${digest} has this exact signature\n`,
          );
        }
        if (format !== 'legacy' && (await bundleSignedBy(client, ref.repo, digest, publicKey, io.now()))) {
          io.stdout.write(
            `already signed: ${ref.host}/${ref.repo}@${digest} has a Sigstore bundle by this key\n`,
          );
        } else if (format !== 'legacy') {
          const subject =
            digest === m.digest
              ? { digest, size: m.bytes.length, mediaType: m.mediaType }
              : await client
                  .getManifest(ref.repo, digest, undefined, { forPush: true })
                  .then((c) => ({ digest, size: c.bytes.length, mediaType: c.mediaType }));
          const referrer = await signDigestBundle({
            client,
            repo: ref.repo,
            subject,
            privateKey,
            now: io.now(),
            log,
          });
          io.stdout.write(
            `signed ${ref.host}/${ref.repo}@${digest} with ${keyId} (Sigstore bundle in referrer ${referrer})\n`,
          );
        }
      }
      if (format === 'bundle' && tag !== undefined) {
        // Not progress: the publisher needs this to sign for a repository whose rule binds tags.
        io.stderr.write(
          `note: a Sigstore bundle names no tag; if the trust rule of ${ref.repo} binds tags (tagBinding), ` +
            `a pull of ${ref.repo}:${tag} also needs a signature naming the tag: sign again with --format both\n`,
        );
      }
      if (newTag !== undefined) {
        // Signed first, tagged second: the tag never points at an unsigned manifest.
        await client.putManifest(ref.repo, newTag, m.bytes, m.mediaType);
        io.stdout.write(`tagged ${ref.host}/${ref.repo}:${newTag} -> ${m.digest}\n`);
      }
    } finally {
      privateKey.fill(0);
      client.close();
    }
    return 0;
  });
}
