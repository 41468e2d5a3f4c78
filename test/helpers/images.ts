/**
 * Real container images on disk, for skopeo to push and pull:
 *  - makeOciImage:         an OCI image layout (oci:DIR:TAG) with gzip'd tar layers
 *  - makeOciIndex:         an OCI image index with one image per platform (oci:DIR:TAG)
 *  - makeDockerSchema2Image: a Docker schema2 image in skopeo's `dir:` layout
 *
 * Layers are real ustar archives of random file content, compressed with node:zlib, streamed so
 * large layers never sit in memory; config.rootfs.diff_ids are the sha256 of the uncompressed tars.
 * Manifests are written with an unusual indentation on purpose: a tool that re-serialises them
 * changes their digest, which is what assertSameImage catches.
 *
 * `dir:` (not `oci:`) holds the schema2 image: skopeo 1.9.3 converts schema2 to OCI when writing
 * `oci:` (or, with --preserve-digests, writes it unchanged but then cannot read it back: "no
 * descriptor found"); `dir:` keeps manifests byte-exact both ways. test/e2e/direct-registry.test.ts
 * checks this.
 */
import { createHash, randomBytes, randomFillSync } from 'node:crypto';
import {
  createReadStream,
  createWriteStream,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';

export const MT = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** An image (or index) as files on disk. */
export interface DiskImage {
  /** The skopeo reference: `oci:DIR:TAG` or `dir:DIR`. */
  ref: string;
  dir: string;
  mediaType: string;
  manifestDigest: string;
  manifestBytes: Buffer;
  /** Every manifest below the top one (index children), digest → bytes. */
  childManifests: Map<string, Buffer>;
  /** Every non-manifest blob (configs, layers), digest → file path. */
  blobs: Map<string, string>;
}

export interface ImageOptions {
  layers: number;
  /** Uncompressed file content per layer, in bytes. */
  layerBytes: number;
  /** `os/arch[/variant]`, default linux/amd64. */
  platform?: string;
  tag?: string;
  /** gzip level (default 1: the content is random, so higher levels only cost time). */
  gzipLevel?: number;
}

const sha256hex = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');
export const digestOf = (b: Buffer | string): string => `sha256:${sha256hex(b)}`;

export function parsePlatform(p: string): Platform {
  const [os, architecture, variant] = p.split('/');
  if (!os || !architecture) throw new TypeError(`platform ${JSON.stringify(p)}: expected os/arch[/variant]`);
  return variant ? { os, architecture, variant } : { os, architecture };
}

/** Manifests are serialised with 3-space indentation so any re-serialisation shows. */
function serialise(v: unknown): Buffer {
  return Buffer.from(JSON.stringify(v, null, 3) + '\n', 'utf8');
}

// ---------------------------------------------------------------------------------------------
// ustar
// ---------------------------------------------------------------------------------------------

function octal(n: number, width: number): string {
  // width-1 octal digits, then NUL.
  return n.toString(8).padStart(width - 1, '0') + '\0';
}

/** One 512-byte ustar header. Names must fit the 100-byte name field (no prefix split). */
export function ustarHeader(name: string, size: number, type: 'file' | 'dir', mtime = 1_700_000_000): Buffer {
  const h = Buffer.alloc(512, 0);
  const nameBytes = Buffer.from(name, 'utf8');
  if (nameBytes.length > 100) throw new RangeError(`tar name too long: ${name}`);
  nameBytes.copy(h, 0);
  h.write(octal(type === 'dir' ? 0o755 : 0o644, 8), 100, 'ascii');
  h.write(octal(0, 8), 108, 'ascii'); // uid
  h.write(octal(0, 8), 116, 'ascii'); // gid
  h.write(octal(type === 'dir' ? 0 : size, 12), 124, 'ascii');
  h.write(octal(mtime, 12), 136, 'ascii');
  h.write('        ', 148, 'ascii'); // checksum placeholder: eight spaces
  h.write(type === 'dir' ? '5' : '0', 156, 'ascii');
  h.write('ustar\0', 257, 'ascii');
  h.write('00', 263, 'ascii');
  h.write('root', 265, 'ascii');
  h.write('root', 297, 'ascii');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'ascii');
  return h;
}

/** A tar stream: one directory holding files of random content totalling `bytes`. */
async function* randomTar(dirName: string, bytes: number, maxFile = 8 << 20): AsyncGenerator<Buffer> {
  yield ustarHeader(`${dirName}/`, 0, 'dir');
  const chunk = Buffer.allocUnsafe(1 << 20);
  let left = bytes;
  for (let i = 0; left > 0 || i === 0; i++) {
    const size = Math.min(left, maxFile);
    yield ustarHeader(`${dirName}/file-${i}.bin`, size, 'file');
    for (let done = 0; done < size;) {
      const n = Math.min(chunk.length, size - done);
      randomFillSync(chunk, 0, n);
      yield Buffer.from(chunk.subarray(0, n)); // copy: the consumer may hold on to it
      done += n;
    }
    const pad = (512 - (size % 512)) % 512;
    if (pad) yield Buffer.alloc(pad);
    left -= size;
  }
  yield Buffer.alloc(1024); // end of archive
}

class Hasher extends Transform {
  readonly hash = createHash('sha256');
  size = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.size += chunk.length;
    cb(null, chunk);
  }
}

/** Writes bytes as a blob named by digest under `blobDir` (`<hex>` or `sha256/<hex>`). */
function writeBlob(
  blobPath: (hex: string) => string,
  bytes: Buffer,
): { digest: string; size: number; file: string } {
  const hex = sha256hex(bytes);
  const file = blobPath(hex);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, bytes);
  return { digest: `sha256:${hex}`, size: bytes.length, file };
}

/** Streams a random gzip'd tar layer into the blob store. */
async function writeLayer(
  blobPath: (hex: string) => string,
  tmpDir: string,
  name: string,
  bytes: number,
  level: number,
): Promise<{ digest: string; size: number; diffId: string; file: string }> {
  mkdirSync(tmpDir, { recursive: true });
  const tmp = path.join(tmpDir, `.layer-${randomBytes(6).toString('hex')}`);
  const raw = new Hasher();
  const gz = new Hasher();
  await pipeline(
    Readable.from(randomTar(name, bytes)),
    raw,
    createGzip({ level }),
    gz,
    createWriteStream(tmp),
  );
  const hex = gz.hash.digest('hex');
  const file = blobPath(hex);
  mkdirSync(path.dirname(file), { recursive: true });
  renameSync(tmp, file);
  return { digest: `sha256:${hex}`, size: gz.size, diffId: `sha256:${raw.hash.digest('hex')}`, file };
}

interface BuiltImage {
  manifest: Descriptor;
  manifestBytes: Buffer;
  blobs: Map<string, string>;
}

/** Layers + config + manifest into a blob store; returns the manifest descriptor. */
async function buildImage(
  blobPath: (hex: string) => string,
  tmpDir: string,
  o: ImageOptions,
  kind: 'oci' | 'docker',
): Promise<BuiltImage> {
  const platform = parsePlatform(o.platform ?? 'linux/amd64');
  const level = o.gzipLevel ?? 1;
  const blobs = new Map<string, string>();
  const layers: Descriptor[] = [];
  const diffIds: string[] = [];
  for (let i = 0; i < o.layers; i++) {
    const l = await writeLayer(
      blobPath,
      tmpDir,
      `layer${i}-${randomBytes(4).toString('hex')}`,
      o.layerBytes,
      level,
    );
    blobs.set(l.digest, l.file);
    diffIds.push(l.diffId);
    layers.push({
      mediaType: kind === 'oci' ? MT.ociLayerGzip : MT.dockerLayerGzip,
      digest: l.digest,
      size: l.size,
    });
  }
  const config = {
    created: '2024-01-01T00:00:00Z',
    architecture: platform.architecture,
    ...(platform.variant ? { variant: platform.variant } : {}),
    os: platform.os,
    config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['/bin/sh'] },
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: diffIds.map((_, i) => ({
      created: '2024-01-01T00:00:00Z',
      created_by: `trustgate test layer ${i}`,
    })),
  };
  const c = writeBlob(blobPath, Buffer.from(JSON.stringify(config), 'utf8'));
  blobs.set(c.digest, c.file);
  const manifest = {
    schemaVersion: 2,
    mediaType: kind === 'oci' ? MT.ociManifest : MT.dockerManifest,
    config: { mediaType: kind === 'oci' ? MT.ociConfig : MT.dockerConfig, digest: c.digest, size: c.size },
    layers,
  };
  const manifestBytes = serialise(manifest);
  const m = writeBlob(blobPath, manifestBytes);
  return {
    manifest: { mediaType: manifest.mediaType, digest: m.digest, size: m.size, platform },
    manifestBytes,
    blobs,
  };
}

// ---------------------------------------------------------------------------------------------
// OCI layout
// ---------------------------------------------------------------------------------------------

const ociBlobPath = (dir: string) => (hex: string) => path.join(dir, 'blobs', 'sha256', hex);

function writeOciLayout(dir: string, top: Descriptor, tag: string): void {
  writeFileSync(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const { platform: _p, ...desc } = top;
  const index = {
    schemaVersion: 2,
    mediaType: MT.ociIndex,
    manifests: [{ ...desc, annotations: { 'org.opencontainers.image.ref.name': tag } }],
  };
  writeFileSync(path.join(dir, 'index.json'), JSON.stringify(index));
}

export async function makeOciImage(dir: string, o: ImageOptions): Promise<DiskImage> {
  const tag = o.tag ?? 'latest';
  mkdirSync(dir, { recursive: true });
  const img = await buildImage(ociBlobPath(dir), path.join(dir, 'blobs'), o, 'oci');
  writeOciLayout(dir, img.manifest, tag);
  return {
    ref: `oci:${dir}:${tag}`,
    dir,
    mediaType: MT.ociManifest,
    manifestDigest: img.manifest.digest,
    manifestBytes: img.manifestBytes,
    childManifests: new Map(),
    blobs: img.blobs,
  };
}

export async function makeOciIndex(
  dir: string,
  platforms: string[] = ['linux/amd64', 'linux/arm64'],
  o: Partial<Omit<ImageOptions, 'platform'>> = {},
): Promise<DiskImage> {
  const tag = o.tag ?? 'latest';
  mkdirSync(dir, { recursive: true });
  const blobPath = ociBlobPath(dir);
  const children = new Map<string, Buffer>();
  const blobs = new Map<string, string>();
  const manifests: Descriptor[] = [];
  for (const platform of platforms) {
    const img = await buildImage(
      blobPath,
      path.join(dir, 'blobs'),
      {
        layers: o.layers ?? 1,
        layerBytes: o.layerBytes ?? 64 * 1024,
        platform,
        ...(o.gzipLevel ? { gzipLevel: o.gzipLevel } : {}),
      },
      'oci',
    );
    manifests.push(img.manifest);
    children.set(img.manifest.digest, img.manifestBytes);
    for (const [d, f] of img.blobs) blobs.set(d, f);
  }
  const indexBytes = serialise({ schemaVersion: 2, mediaType: MT.ociIndex, manifests });
  const idx = writeBlob(blobPath, indexBytes);
  writeOciLayout(dir, { mediaType: MT.ociIndex, digest: idx.digest, size: idx.size }, tag);
  return {
    ref: `oci:${dir}:${tag}`,
    dir,
    mediaType: MT.ociIndex,
    manifestDigest: idx.digest,
    manifestBytes: indexBytes,
    childManifests: children,
    blobs,
  };
}

// ---------------------------------------------------------------------------------------------
// skopeo `dir:` layout (Docker schema2)
// ---------------------------------------------------------------------------------------------

export const DIR_TRANSPORT_VERSION = 'Directory Transport Version: 1.1\n';

export async function makeDockerSchema2Image(dir: string, o: Omit<ImageOptions, 'tag'>): Promise<DiskImage> {
  mkdirSync(dir, { recursive: true });
  const img = await buildImage((hex) => path.join(dir, hex), dir, o, 'docker');
  // In `dir:` the top manifest is manifest.json, not a blob named by its digest.
  renameSync(path.join(dir, img.manifest.digest.slice('sha256:'.length)), path.join(dir, 'manifest.json'));
  writeFileSync(path.join(dir, 'version'), DIR_TRANSPORT_VERSION);
  return {
    ref: `dir:${dir}`,
    dir,
    mediaType: MT.dockerManifest,
    manifestDigest: img.manifest.digest,
    manifestBytes: img.manifestBytes,
    childManifests: new Map(),
    blobs: img.blobs,
  };
}

// ---------------------------------------------------------------------------------------------
// Reading an image back, and comparing
// ---------------------------------------------------------------------------------------------

interface Parsed {
  mediaType?: string;
  config?: Descriptor;
  layers?: Descriptor[];
  manifests?: Descriptor[];
}

const isIndexType = (mt: string | undefined): boolean => mt === MT.ociIndex || mt === MT.dockerList;

/**
 * Reads an image that skopeo wrote (`oci:DIR:TAG` or `dir:DIR`) into a DiskImage, following
 * index children. Throws if a referenced blob is missing.
 */
export function readDiskImage(ref: string): DiskImage {
  let dir: string;
  let manifestBytes: Buffer;
  let manifestFile: (digest: string) => string;
  let blobFile: (digest: string) => string;
  const hex = (d: string): string => d.replace(/^sha256:/, '');
  if (ref.startsWith('oci:')) {
    const rest = ref.slice(4);
    const colon = rest.lastIndexOf(':');
    dir = colon > 0 ? rest.slice(0, colon) : rest;
    const tag = colon > 0 ? rest.slice(colon + 1) : undefined;
    const index = JSON.parse(readFileSync(path.join(dir, 'index.json'), 'utf8')) as {
      manifests: Descriptor[];
    };
    const top =
      tag === undefined
        ? index.manifests[0]
        : index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
    if (!top) throw new Error(`${ref}: no manifest tagged ${tag ?? '(any)'} in index.json`);
    blobFile = (d) => path.join(dir, 'blobs', 'sha256', hex(d));
    manifestFile = blobFile;
    manifestBytes = readFileSync(blobFile(top.digest));
  } else if (ref.startsWith('dir:')) {
    dir = ref.slice(4);
    manifestBytes = readFileSync(path.join(dir, 'manifest.json'));
    blobFile = (d) => path.join(dir, hex(d));
    // dir: stores list instances as <hex>.manifest.json.
    manifestFile = (d) => path.join(dir, `${hex(d)}.manifest.json`);
  } else {
    throw new TypeError(`readDiskImage: unsupported reference ${ref}`);
  }
  const top = JSON.parse(manifestBytes.toString('utf8')) as Parsed;
  const children = new Map<string, Buffer>();
  const blobs = new Map<string, string>();
  const addImage = (m: Parsed): void => {
    for (const d of [...(m.config ? [m.config] : []), ...(m.layers ?? [])]) {
      const f = blobFile(d.digest);
      if (!existsSync(f)) throw new Error(`${ref}: blob ${d.digest} is missing (${f})`);
      blobs.set(d.digest, f);
    }
  };
  if (isIndexType(top.mediaType) || top.manifests) {
    for (const c of top.manifests ?? []) {
      const f = manifestFile(c.digest);
      if (!existsSync(f)) throw new Error(`${ref}: child manifest ${c.digest} is missing (${f})`);
      const bytes = readFileSync(f);
      children.set(c.digest, bytes);
      addImage(JSON.parse(bytes.toString('utf8')) as Parsed);
    }
  } else {
    addImage(top);
  }
  return {
    ref,
    dir,
    mediaType: top.mediaType ?? '',
    manifestDigest: digestOf(manifestBytes),
    manifestBytes,
    childManifests: children,
    blobs,
  };
}

async function fileDigest(file: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(file), h);
  return `sha256:${h.digest('hex')}`;
}

/**
 * Throws unless `b` is byte-identical to `a`: the same top manifest bytes, the same child
 * manifest bytes, and every blob present with content whose sha256 is its digest.
 */
export async function assertSameImage(a: DiskImage, b: DiskImage): Promise<void> {
  const problems: string[] = [];
  if (!a.manifestBytes.equals(b.manifestBytes)) {
    problems.push(
      `top manifest differs: ${a.manifestDigest} (${a.manifestBytes.length} B) vs ` +
        `${digestOf(b.manifestBytes)} (${b.manifestBytes.length} B)`,
    );
  }
  for (const [d, bytes] of a.childManifests) {
    const other = b.childManifests.get(d);
    if (!other) problems.push(`child manifest ${d} missing`);
    else if (!other.equals(bytes)) problems.push(`child manifest ${d} differs`);
  }
  if (b.childManifests.size !== a.childManifests.size) {
    problems.push(`child manifests: ${a.childManifests.size} vs ${b.childManifests.size}`);
  }
  for (const d of a.blobs.keys()) {
    const f = b.blobs.get(d);
    if (!f) {
      problems.push(`blob ${d} missing`);
      continue;
    }
    const actual = await fileDigest(f);
    if (actual !== d) problems.push(`blob ${d} has content ${actual}`);
  }
  if (b.blobs.size !== a.blobs.size) problems.push(`blobs: ${a.blobs.size} vs ${b.blobs.size}`);
  if (problems.length > 0)
    throw new Error(`images differ (${a.ref} vs ${b.ref}):\n  ${problems.join('\n  ')}`);
}

/** Total bytes of an image's blobs (configs + layers). */
export function imageBytes(img: DiskImage): number {
  let n = 0;
  for (const f of img.blobs.values()) n += statSync(f).size;
  return n;
}
