/**
 * Loads the outside-made test vectors in ../shared/fixtures (see its README.md).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: the nearest ancestor of this file with a package.json. */
export function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('repository root not found');
    dir = parent;
  }
}

export function sharedDir(): string {
  return path.resolve(repoRoot(), '..', 'shared');
}

export const COSIGN_FIXTURES = 'fixtures/containers-image-cosign';

export function readShared(rel: string): Buffer {
  return readFileSync(path.join(sharedDir(), rel));
}

export interface DirSignature {
  mimeType: string;
  payload: Uint8Array;
  annotations: Record<string, string>;
}

const SIGSTORE_JSON_PREFIX = Buffer.from('\x00sigstore-json\n', 'latin1');

/** Parses one containers/image "dir" signature file: "\x00sigstore-json\n" + JSON. */
export function parseDirSignature(bytes: Buffer): DirSignature {
  if (!bytes.subarray(0, SIGSTORE_JSON_PREFIX.length).equals(SIGSTORE_JSON_PREFIX)) {
    throw new Error('not a sigstore-json signature file');
  }
  const doc = JSON.parse(bytes.subarray(SIGSTORE_JSON_PREFIX.length).toString('utf8')) as {
    mimeType: string;
    payload: string;
    annotations: Record<string, string>;
  };
  return {
    mimeType: doc.mimeType,
    payload: new Uint8Array(Buffer.from(doc.payload, 'base64')),
    annotations: doc.annotations,
  };
}

export interface CosignFixture {
  manifest: Uint8Array;
  signatures: DirSignature[];
}

/** Loads dir-img-cosign-<name>: manifest.json and signature-1..N. */
export function loadCosignFixture(name: string): CosignFixture {
  const dir = `${COSIGN_FIXTURES}/dir-img-cosign-${name}`;
  const manifest = new Uint8Array(readShared(`${dir}/manifest.json`));
  const signatures: DirSignature[] = [];
  for (let i = 1; existsSync(path.join(sharedDir(), dir, `signature-${i}`)); i++) {
    signatures.push(parseDirSignature(readShared(`${dir}/signature-${i}`)));
  }
  return { manifest, signatures };
}

export function cosignPublicKeyPem(): string {
  return readShared(`${COSIGN_FIXTURES}/cosign.pub`).toString('utf8');
}

export function unknownKeySignature(): DirSignature {
  return parseDirSignature(readShared(`${COSIGN_FIXTURES}/unknown-cosign-key.signature`));
}
