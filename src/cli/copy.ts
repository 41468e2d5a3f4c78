/**
 * `trustgate copy SRC DST`: copies an image or index between repositories of one registry through
 * the API, byte-identical (same digests), mounting blobs where the registry allows, with the
 * Sigstore bundle referrers of every manifest it copies (read through the evidence seam).
 */
import { MANIFEST_ACCEPT, parseManifest } from '../core/manifest.js';
import { isBundleReferrer } from '../core/referrers.js';
import { EVIDENCE_LIMITS } from '../trust/evidence.js';
import { clientEvidenceReader, type ClientEvidenceReader } from './evidence-reader.js';
import { attachReferrer } from './evidence-writer.js';
import type { RegistryClient } from './registry-client.js';
import {
  REGISTRY_OPTS,
  REGISTRY_OPTS_USAGE,
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

export const COPY_USAGE = `usage: trustgate copy HOST/SRC{:TAG|@DIGEST} HOST/DST[:TAG|@DIGEST]

Copies a manifest (an index with all its children) and its blobs between two repositories of the same
registry; manifests are copied byte for byte, so digests stay the same. Blobs are mounted from SRC
when the registry allows, else streamed. Without a tag or digest, DST gets SRC's tag (or the digest).
Signatures: the Sigstore bundle referrers (cosign 3's format, \`trustgate sign\`'s default) of every
copied manifest are copied with it: a bundle names the digest only, so it holds in DST wherever
DST's trust rule trusts its key. Legacy .sig signatures are NOT copied: they name SRC's repository
and would be refused in DST; sign the copy with \`trustgate sign\` where DST needs them.
${REGISTRY_OPTS_USAGE}`;

export interface CopyStats {
  manifests: number;
  blobsMounted: number;
  blobsUploaded: number;
  blobsPresent: number;
  /** Sigstore bundle referrers carried to DST. */
  bundles: number;
}

interface CopyContext {
  client: RegistryClient;
  evidence: ClientEvidenceReader;
  src: string;
  dst: string;
  stats: CopyStats;
  /** Blobs already handled in DST. */
  done: Set<string>;
  log: (msg: string) => void;
}

async function copyBlob(c: CopyContext, digest: string): Promise<void> {
  if (c.done.has(digest)) return;
  c.done.add(digest);
  if ((await c.client.headBlob(c.dst, digest)).exists) {
    c.stats.blobsPresent++;
    return;
  }
  const how = await c.client.mountBlob(c.dst, c.src, digest);
  if (how === 'mounted') c.stats.blobsMounted++;
  else c.stats.blobsUploaded++;
}

/** Copies children first, then the manifest itself, so DST never names content it lacks. */
async function copyManifest(
  c: CopyContext,
  ref: string,
  m: { bytes: Uint8Array; mediaType: string; digest: string },
  depth = 0,
): Promise<void> {
  const parsed = parseManifest(m.bytes, m.mediaType);
  if (parsed.kind === 'index') {
    if (depth > 4) throw new Error('indexes nested more than 4 deep are not copied');
    for (const child of parsed.manifests) {
      const cm = await c.client.getManifest(c.src, child.digest, [
        ...new Set([child.mediaType, ...MANIFEST_ACCEPT]),
      ]);
      await copyManifest(c, child.digest, cm, depth + 1);
    }
  } else {
    const blobs = [...(parsed.config ? [parsed.config] : []), ...parsed.layers];
    for (const b of blobs) {
      // Policy: foreign (non-distributable) layers live at their `urls`, not in the registry.
      if (b.urls !== undefined && b.urls.length > 0) continue;
      await copyBlob(c, b.digest);
    }
  }
  await c.client.putManifest(c.dst, ref, m.bytes, m.mediaType);
  c.stats.manifests++;
  c.log(`copied ${m.digest}`);
  await copyBundleReferrers(c, m.digest);
}

/**
 * Carries the Sigstore bundle referrers of `digest` (after the digest itself, so DST never lists a
 * referrer of an absent subject): found as the evidence seam finds them, with its bound, and copied
 * byte for byte with their two blobs. Nothing is verified here; DST's trust rule weighs them.
 */
async function copyBundleReferrers(c: CopyContext, digest: string): Promise<void> {
  const referrers = (await c.evidence.referrers(c.src, digest))
    .filter((r) => isBundleReferrer(r.manifest))
    .slice(0, EVIDENCE_LIMITS.maxBundleReferrers);
  for (const r of referrers) {
    for (const b of [r.manifest.config!, ...r.manifest.layers]) await copyBlob(c, b.digest);
    await attachReferrer(c.client, c.dst, { bytes: r.bytes, mediaType: r.mediaType, subject: digest }, c.log);
    c.stats.bundles++;
  }
}

export async function copyImage(
  client: RegistryClient,
  src: { repo: string; ref: string },
  dst: { repo: string; ref: string },
  log: (msg: string) => void = () => undefined,
): Promise<CopyStats & { digest: string }> {
  const stats: CopyStats = { manifests: 0, blobsMounted: 0, blobsUploaded: 0, blobsPresent: 0, bundles: 0 };
  const m = await client.getManifest(src.repo, src.ref);
  if (dst.ref.includes(':') && dst.ref !== m.digest) {
    throw new Error(`${src.repo}:${src.ref} is ${m.digest}, not the requested ${dst.ref}`);
  }
  const evidence = clientEvidenceReader(client);
  await copyManifest(
    { client, evidence, src: src.repo, dst: dst.repo, stats, done: new Set(), log },
    dst.ref,
    m,
  );
  return { ...stats, digest: m.digest };
}

export async function copyCommand(argv: string[], io: CliIo = defaultIo()): Promise<number> {
  return runCommand(io, COPY_USAGE, async () => {
    const { values, positionals } = parseArgs(argv, { ...REGISTRY_OPTS, help: { type: 'boolean' } });
    if (values.help === true) {
      io.stdout.write(COPY_USAGE);
      return 0;
    }
    if (positionals.length !== 2) throw new UsageError('copy takes SRC and DST');
    const src = parseImageRef(positionals[0] as string);
    const dst = parseImageRef(positionals[1] as string);
    if (src.host !== dst.host) throw new UsageError('SRC and DST must be on the same registry host');
    if (src.repo === dst.repo) throw new UsageError('SRC and DST are the same repository');
    const srcRef = manifestRefOf(src, 'SRC');
    if (dst.tag !== undefined && dst.digest !== undefined)
      throw new UsageError('give DST by tag or by digest, not both');
    const dstRef = dst.tag ?? dst.digest ?? src.tag ?? srcRef;
    const client = await clientFromArgs(src.host, values, io);
    try {
      const r = await copyImage(
        client,
        { repo: src.repo, ref: srcRef },
        { repo: dst.repo, ref: dstRef },
        progress(io),
      );
      io.stdout.write(
        `copied ${formatRef(src)} -> ${dst.host}/${dst.repo}${dstRef.includes(':') ? '@' : ':'}${dstRef} (${r.digest}; ` +
          `${r.manifests} manifest(s), blobs: ${r.blobsMounted} mounted, ${r.blobsUploaded} uploaded, ` +
          `${r.blobsPresent} already there; ${r.bundles} Sigstore bundle referrer(s))\n`,
      );
    } finally {
      client.close();
    }
    return 0;
  });
}
