/**
 * `trustgate copy SRC DST`: copies an image or index between repositories of one registry through
 * the API, byte-identical (same digests), mounting blobs where the registry allows.
 */
import { MANIFEST_ACCEPT, parseManifest } from '../core/manifest.js';
import type { RegistryClient } from './registry-client.js';
import {
  REGISTRY_OPTS,
  REGISTRY_OPTS_USAGE,
  UsageError,
  clientFromArgs,
  defaultIo,
  formatRef,
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
Signatures are NOT copied: they name SRC's repository; sign the copy with \`trustgate sign\`.
${REGISTRY_OPTS_USAGE}`;

export interface CopyStats {
  manifests: number;
  blobsMounted: number;
  blobsUploaded: number;
  blobsPresent: number;
}

async function copyBlob(
  client: RegistryClient,
  src: string,
  dst: string,
  digest: string,
  stats: CopyStats,
  done: Set<string>,
): Promise<void> {
  if (done.has(digest)) return;
  done.add(digest);
  if ((await client.headBlob(dst, digest)).exists) {
    stats.blobsPresent++;
    return;
  }
  const how = await client.mountBlob(dst, src, digest);
  if (how === 'mounted') stats.blobsMounted++;
  else stats.blobsUploaded++;
}

/** Copies children first, then the manifest itself, so DST never names content it lacks. */
async function copyManifest(
  client: RegistryClient,
  src: string,
  dst: string,
  ref: string,
  m: { bytes: Uint8Array; mediaType: string; digest: string },
  stats: CopyStats,
  done: Set<string>,
  log: (msg: string) => void,
  depth = 0,
): Promise<void> {
  const parsed = parseManifest(m.bytes, m.mediaType);
  if (parsed.kind === 'index') {
    if (depth > 4) throw new Error('indexes nested more than 4 deep are not copied');
    for (const child of parsed.manifests) {
      const cm = await client.getManifest(src, child.digest, [
        ...new Set([child.mediaType, ...MANIFEST_ACCEPT]),
      ]);
      await copyManifest(client, src, dst, child.digest, cm, stats, done, log, depth + 1);
    }
  } else {
    const blobs = [...(parsed.config ? [parsed.config] : []), ...parsed.layers];
    for (const b of blobs) {
      // Policy: foreign (non-distributable) layers live at their `urls`, not in the registry.
      if (b.urls !== undefined && b.urls.length > 0) continue;
      await copyBlob(client, src, dst, b.digest, stats, done);
    }
  }
  await client.putManifest(dst, ref, m.bytes, m.mediaType);
  stats.manifests++;
  log(`copied ${m.digest}`);
}

export async function copyImage(
  client: RegistryClient,
  src: { repo: string; ref: string },
  dst: { repo: string; ref: string },
  log: (msg: string) => void = () => undefined,
): Promise<CopyStats & { digest: string }> {
  const stats: CopyStats = { manifests: 0, blobsMounted: 0, blobsUploaded: 0, blobsPresent: 0 };
  const m = await client.getManifest(src.repo, src.ref);
  if (dst.ref.includes(':') && dst.ref !== m.digest) {
    throw new Error(`${src.repo}:${src.ref} is ${m.digest}, not the requested ${dst.ref}`);
  }
  await copyManifest(client, src.repo, dst.repo, dst.ref, m, stats, new Set(), log);
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
    if (src.tag !== undefined && src.digest !== undefined)
      throw new UsageError('give SRC by tag or by digest');
    if (dst.tag !== undefined && dst.digest !== undefined)
      throw new UsageError('give DST by tag or by digest');
    const srcRef = src.digest ?? (src.tag as string);
    const dstRef = dst.tag ?? dst.digest ?? src.tag ?? (src.digest as string);
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
          `${r.blobsPresent} already there)\n`,
      );
    } finally {
      client.close();
    }
    return 0;
  });
}
