/**
 * `trustgate attest REF --predicate FILE --type TYPE --key NAME.key`: signs an in-toto statement
 * about the manifest REF resolves to and stores it as cosign does, in either layout:
 * `--format legacy` (default) a DSSE envelope layer of the `sha256-<hex>.att` artifact, appended to
 * those there; `--format bundle` a Sigstore bundle in an OCI 1.1 referrer of the digest.
 */
import { readFileSync } from 'node:fs';
import { MEDIA_TYPES, parseManifest } from '../core/manifest.js';
import { buildBundleReferrerManifest, bundleSignerFor } from '../core/evidence/bundle-writer.js';
import { MEDIA_TYPE_DSSE_ENVELOPE } from '../core/attestation/envelope.js';
import {
  isPredicateTypeSpelling,
  PREDICATE_ALIASES,
  resolvePredicateType,
} from '../core/attestation/predicates.js';
import {
  buildAttestationBundle,
  buildAttestationStatement,
  buildDsseEnvelope,
  LEGACY_PREDICATE_TYPE_ANNOTATION,
} from '../core/attestation/writer.js';
import { COSIGN_SIGNATURE_ANNOTATION } from '../core/manifest.js';
import type { RegistryClient } from './registry-client.js';
import { attachReferrer } from './evidence-writer.js';
import { ATTESTATION_LIMITS, attestationTagFor } from '../trust/evidence.js';
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
  type CliIo,
} from './registry-opts.js';
import { loadSigningKey, signatureConfig, signatureManifest } from './sign.js';

export const ATTEST_USAGE = `usage: trustgate attest HOST[:PORT]/REPO{:TAG|@DIGEST} --predicate FILE --type TYPE --key NAME.key [--format legacy|bundle]

Signs an in-toto statement about the manifest REF resolves to, with FILE (JSON) as its predicate:
  --type TYPE      the predicate type: an https URI, or ${Object.keys(PREDICATE_ALIASES).join(', ')}
  --format legacy  (default) a DSSE envelope layer of the sha256-<hex>.att artifact (cosign 2 layout)
  --format bundle  a Sigstore bundle in an OCI 1.1 referrer of the digest (cosign 3 layout)
Passphrase: TRUSTGATE_KEY_PASSPHRASE or COSIGN_PASSWORD, else typed on the terminal.
${REGISTRY_OPTS_USAGE}`;

/** Appends a DSSE envelope layer to the `.att` artifact of `digest` (created when absent). */
export async function writeLegacyAttestation(i: {
  client: RegistryClient;
  repo: string;
  digest: string;
  envelope: Uint8Array;
  predicateType: string;
  now: Date;
  log: (msg: string) => void;
}): Promise<{ tag: string; layers: number }> {
  const tag = attestationTagFor(i.digest);
  // Read with push rights: an attestation artifact is no signed image, and trustgate shows it only
  // to publishers of the repository.
  const existing = await i.client.getManifestIfExists(i.repo, tag, undefined, { forPush: true });
  let layers: Record<string, unknown>[] = [];
  if (existing !== null) {
    const parsed = parseManifest(existing.bytes, existing.mediaType);
    // Policy: never clobber what a tag holds when it is not an attestation artifact.
    if (parsed.kind !== 'image' || parsed.layers.some((l) => l.mediaType !== MEDIA_TYPE_DSSE_ENVELOPE)) {
      throw new InputError(
        `refusing to replace ${i.repo}:${tag}: it does not hold a cosign attestation artifact`,
      );
    }
    // parseManifest used the strict JSON reader, so JSON.parse reads the same document.
    layers = (
      JSON.parse(Buffer.from(existing.bytes).toString('utf8')) as { layers: Record<string, unknown>[] }
    ).layers;
  }
  i.log(`uploading the attestation envelope to ${i.repo}`);
  const blob = await i.client.uploadBlob(i.repo, i.envelope);
  if (!layers.some((l) => l['digest'] === blob.digest)) {
    layers.push({
      mediaType: MEDIA_TYPE_DSSE_ENVELOPE,
      size: blob.size,
      digest: blob.digest,
      annotations: { [COSIGN_SIGNATURE_ANNOTATION]: '', [LEGACY_PREDICATE_TYPE_ANNOTATION]: i.predicateType },
    });
  }
  const config = await i.client.uploadBlob(
    i.repo,
    signatureConfig(
      layers.map((l) => l['digest'] as string),
      i.now,
    ),
  );
  i.log(`writing ${i.repo}:${tag} (${layers.length} attestation(s))`);
  await i.client.putManifest(i.repo, tag, signatureManifest(config, layers), MEDIA_TYPES.ociManifest);
  return { tag, layers: layers.length };
}

export async function attestCommand(argv: string[], io: CliIo = defaultIo()): Promise<number> {
  return runCommand(io, ATTEST_USAGE, async () => {
    const { values, positionals } = parseArgs(argv, {
      ...REGISTRY_OPTS,
      key: { type: 'string' },
      predicate: { type: 'string' },
      type: { type: 'string' },
      format: { type: 'string' },
      help: { type: 'boolean' },
    });
    if (values.help === true) {
      io.stdout.write(ATTEST_USAGE);
      return 0;
    }
    const format = (values.format as string | undefined) ?? 'legacy';
    if (format !== 'legacy' && format !== 'bundle') {
      throw new UsageError(`--format is legacy or bundle, not ${JSON.stringify(format)}`);
    }
    if (positionals.length !== 1) throw new UsageError('attest takes exactly one image reference');
    const ref = parseImageRef(positionals[0] as string);
    const manifestRef = manifestRefOf(ref);
    const keyFile = values.key as string | undefined;
    if (keyFile === undefined) throw new UsageError('--key NAME.key is required');
    const typeArg = values.type as string | undefined;
    if (typeArg === undefined || !isPredicateTypeSpelling(typeArg)) {
      throw new UsageError(`--type is an https URI or one of ${Object.keys(PREDICATE_ALIASES).join(', ')}`);
    }
    const predicateType = resolvePredicateType(typeArg);
    const predicateFile = values.predicate as string | undefined;
    if (predicateFile === undefined) throw new UsageError('--predicate FILE (JSON) is required');
    let predicate: unknown;
    try {
      predicate = JSON.parse(readFileSync(predicateFile, 'utf8'));
    } catch (err) {
      throw new InputError(`cannot read --predicate ${predicateFile} (JSON): ${(err as Error).message}`);
    }
    const { privateKey, keyId } = await loadSigningKey(keyFile, io);
    const log = progress(io);
    const client = await clientFromArgs(ref.host, values, io);
    try {
      // One GET, with push rights: the digest is computed from exactly these bytes.
      const m = await client.getManifest(ref.repo, manifestRef, undefined, {
        forPush: true,
      });
      log(`resolved ${formatRef(ref)} to ${m.digest}`);
      const statement = buildAttestationStatement(
        m.digest,
        predicateType,
        predicate,
        `${ref.host}/${ref.repo}`,
      );
      const signer = bundleSignerFor(privateKey);
      const bytes =
        format === 'legacy'
          ? buildDsseEnvelope(statement, signer)
          : buildAttestationBundle(statement, signer);
      if (bytes.length > ATTESTATION_LIMITS.maxEnvelopeBytes) {
        throw new InputError(
          `the signed attestation is ${bytes.length} bytes; trustgate reads at most ${ATTESTATION_LIMITS.maxEnvelopeBytes}`,
        );
      }
      if (format === 'legacy') {
        const r = await writeLegacyAttestation({
          client,
          repo: ref.repo,
          digest: m.digest,
          envelope: bytes,
          predicateType,
          now: io.now(),
          log,
        });
        io.stdout.write(
          `attested ${ref.host}/${ref.repo}@${m.digest} (${predicateType}) with ${keyId} (${r.layers} attestation(s) in ${r.tag})\n`,
        );
      } else {
        const subject = { digest: m.digest, size: m.bytes.length, mediaType: m.mediaType };
        const built = buildBundleReferrerManifest({
          bundle: bytes,
          subject,
          created: io.now(),
          predicateType,
        });
        for (const b of built.blobs) await client.uploadBlob(ref.repo, b.bytes);
        const referrer = await attachReferrer(
          client,
          ref.repo,
          { bytes: built.manifest, mediaType: built.mediaType, subject: m.digest },
          log,
        );
        io.stdout.write(
          `attested ${ref.host}/${ref.repo}@${m.digest} (${predicateType}) with ${keyId} (Sigstore bundle in referrer ${referrer})\n`,
        );
      }
    } finally {
      privateKey.fill(0);
      client.close();
    }
    return 0;
  });
}
