import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { GateError } from '../../src/core/errors.js';
import {
  MEDIA_TYPE_COSIGN_SIMPLESIGNING,
  MEDIA_TYPE_DOCKER_LIST,
  MEDIA_TYPE_DOCKER_MANIFEST,
  MEDIA_TYPE_OCI_CONFIG,
  MEDIA_TYPE_OCI_INDEX,
  MEDIA_TYPE_OCI_MANIFEST,
  MAX_INDEX_ENTRIES,
  MAX_MANIFEST_LAYERS,
  isSignatureArtifact,
  isSignatureDiscoveryRead,
  isValidDigest,
  parseManifest,
  referencedBlobs,
} from '../../src/core/manifest.js';
import { loadCosignFixture } from '../helpers/fixtures.js';

const D1 = `sha256:${'a'.repeat(64)}`;
const D2 = `sha256:${'b'.repeat(64)}`;
const D3 = `sha512:${'c'.repeat(128)}`;

function refused(doc: unknown, ct?: string, pattern?: RegExp): void {
  const text = typeof doc === 'string' ? doc : JSON.stringify(doc);
  assert.throws(
    () => parseManifest(text, ct),
    (err: unknown) =>
      err instanceof GateError &&
      err.code === 'MANIFEST_INVALID' &&
      err.status === 400 &&
      (pattern === undefined || pattern.test(err.message)),
  );
}

const ociImage = {
  schemaVersion: 2,
  mediaType: MEDIA_TYPE_OCI_MANIFEST,
  config: { mediaType: MEDIA_TYPE_OCI_CONFIG, digest: D1, size: 233 },
  layers: [
    { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: D2, size: 10, urls: ['https://x'] },
  ],
  subject: { mediaType: MEDIA_TYPE_OCI_MANIFEST, digest: D3, size: 5 },
  annotations: { a: 'b' },
};

const ociIndex = {
  schemaVersion: 2,
  mediaType: MEDIA_TYPE_OCI_INDEX,
  manifests: [
    {
      mediaType: MEDIA_TYPE_OCI_MANIFEST,
      digest: D1,
      size: 1,
      platform: { architecture: 'amd64', os: 'linux' },
    },
    {
      mediaType: MEDIA_TYPE_OCI_MANIFEST,
      digest: D2,
      size: 2,
      platform: { architecture: 'arm64', os: 'linux', variant: 'v8' },
    },
  ],
};

test('digest syntax: sha256 with 64 / sha512 with 128 lowercase hex only', () => {
  assert.ok(isValidDigest(D1));
  assert.ok(isValidDigest(D3));
  for (const bad of [
    `sha256:${'A'.repeat(64)}`,
    `sha256:${'a'.repeat(63)}`,
    `sha256:${'a'.repeat(65)}`,
    `sha512:${'a'.repeat(64)}`,
    `sha384:${'a'.repeat(96)}`,
    `SHA256:${'a'.repeat(64)}`,
    `sha256:${'a'.repeat(64)}\n`,
    'a'.repeat(64),
    42,
  ]) {
    assert.equal(isValidDigest(bad), false, String(bad));
  }
});

test('parses the real schema2 manifest from the cosign fixtures', () => {
  const m = parseManifest(loadCosignFixture('valid').manifest, MEDIA_TYPE_DOCKER_MANIFEST);
  assert.equal(m.kind, 'image');
  assert.equal(m.mediaType, MEDIA_TYPE_DOCKER_MANIFEST);
  assert.equal(m.config?.size, 1512);
  assert.deepEqual(referencedBlobs(m), [
    'sha256:961769676411f082461f9ef46626dd7a2d1e2b2a38e6a44364bcbecf51e66dd4',
    'sha256:9d16cba9fb961d1aafec9542f2bf7cb64acfc55245f9e4eb5abecd4cdc38d749',
  ]);
  assert.equal(isSignatureArtifact(m), false);
});

test('refuses the schema1 manifest from the fixtures', () => {
  assert.throws(
    () => parseManifest(loadCosignFixture('manifest-digest-error').manifest),
    (e: unknown) => e instanceof GateError && /schema1/.test(e.message),
  );
  refused(
    { ...ociImage, mediaType: undefined },
    'application/vnd.docker.distribution.manifest.v1+prettyjws',
    /schema1/,
  );
});

test('OCI image: descriptors, subject, annotations', () => {
  const m = parseManifest(JSON.stringify(ociImage), `${MEDIA_TYPE_OCI_MANIFEST}; charset=utf-8`);
  assert.equal(m.kind, 'image');
  assert.deepEqual(m.layers[0]?.urls, ['https://x']);
  assert.equal(m.subject?.digest, D3);
  assert.deepEqual(m.annotations, { a: 'b' });
  assert.deepEqual(m.manifests, []);
});

test('OCI index and Docker list', () => {
  const m = parseManifest(JSON.stringify(ociIndex));
  assert.equal(m.kind, 'index');
  assert.equal(m.manifests.length, 2);
  assert.equal(m.manifests[1]?.platform?.variant, 'v8');
  assert.deepEqual(referencedBlobs(m), []);
  const list = parseManifest(
    JSON.stringify({ ...ociIndex, mediaType: MEDIA_TYPE_DOCKER_LIST }),
    MEDIA_TYPE_DOCKER_LIST,
  );
  assert.equal(list.kind, 'index');
});

test('mediaType may be absent for OCI: kind is inferred from the shape or the Content-Type', () => {
  const { mediaType: _a, ...img } = ociImage;
  assert.equal(parseManifest(JSON.stringify(img)).mediaType, MEDIA_TYPE_OCI_MANIFEST);
  assert.equal(parseManifest(JSON.stringify(img), 'application/json').mediaType, MEDIA_TYPE_OCI_MANIFEST);
  const { mediaType: _b, ...idx } = ociIndex;
  assert.equal(parseManifest(JSON.stringify(idx)).kind, 'index');
  assert.equal(parseManifest(JSON.stringify(idx), MEDIA_TYPE_OCI_INDEX).kind, 'index');
  // A Docker type must name itself in the document.
  refused(img, MEDIA_TYPE_DOCKER_MANIFEST, /must carry/);
});

test('refuses a mediaType that conflicts with the Content-Type', () => {
  refused(ociImage, MEDIA_TYPE_DOCKER_MANIFEST, /conflicts with Content-Type/);
  refused(ociImage, MEDIA_TYPE_OCI_INDEX, /conflicts/);
  refused(ociIndex, MEDIA_TYPE_OCI_MANIFEST, /conflicts/);
});

test('refuses ambiguous or malformed documents', () => {
  refused({ ...ociImage, manifests: ociIndex.manifests }, undefined, /both "layers" and "manifests"/);
  refused({ ...ociIndex, layers: [] }, undefined, /both/);
  refused({ ...ociIndex, config: ociImage.config }, undefined, /index cannot/);
  refused({ ...ociImage, schemaVersion: 3 }, undefined, /schemaVersion/);
  refused({ ...ociImage, schemaVersion: '2' }, undefined, /schemaVersion/);
  refused({ ...ociImage, mediaType: 'application/vnd.example+json' }, undefined, /unsupported/);
  refused({ ...ociImage, config: undefined }, undefined, /needs "config"/);
  refused({ ...ociImage, layers: undefined }, undefined, /needs "layers"/);
  refused(
    { ...ociImage, layers: [{ ...ociImage.layers[0], digest: D1.toUpperCase() }] },
    undefined,
    /digest/,
  );
  refused({ ...ociImage, layers: [{ ...ociImage.layers[0], size: -1 }] }, undefined, /size/);
  refused({ ...ociImage, layers: [{ ...ociImage.layers[0], size: 1.5 }] }, undefined, /size/);
  refused({ ...ociImage, layers: [{ ...ociImage.layers[0], size: 2 ** 53 }] }, undefined, /size/);
  refused(
    { ...ociImage, layers: [{ ...ociImage.layers[0], annotations: { a: 1 } }] },
    undefined,
    /annotations/,
  );
  refused({ ...ociImage, config: { ...ociImage.config, mediaType: '' } }, undefined, /mediaType/);
  refused({ ...ociImage, subject: { digest: 'sha256:x' } }, undefined, /subject/);
  refused('[]', undefined, /not a JSON object/);
  refused(
    `{"schemaVersion":2,"mediaType":"${MEDIA_TYPE_OCI_MANIFEST}","mediaType":"x"}`,
    undefined,
    /duplicate/,
  );
  refused(
    JSON.stringify(ociImage).replace('"layers"', '"Layers":[],"layers"'),
    undefined,
    /differ only by case/,
  );
});

const sigArtifact = {
  schemaVersion: 2,
  mediaType: MEDIA_TYPE_OCI_MANIFEST,
  config: { mediaType: MEDIA_TYPE_OCI_CONFIG, digest: D1, size: 233 },
  layers: [
    {
      mediaType: MEDIA_TYPE_COSIGN_SIMPLESIGNING,
      digest: D2,
      size: 250,
      annotations: { 'dev.cosignproject.cosign/signature': 'MEUCIQ==' },
    },
  ],
};

test('isSignatureArtifact: by media types only', () => {
  assert.equal(isSignatureArtifact(parseManifest(JSON.stringify(sigArtifact))), true);
  const two = { ...sigArtifact, layers: [sigArtifact.layers[0], sigArtifact.layers[0]] };
  assert.equal(isSignatureArtifact(parseManifest(JSON.stringify(two))), true);
  const noLayers = { ...sigArtifact, layers: [] };
  assert.equal(isSignatureArtifact(parseManifest(JSON.stringify(noLayers))), false);
  const mixed = { ...sigArtifact, layers: [sigArtifact.layers[0], ociImage.layers[0]] };
  assert.equal(isSignatureArtifact(parseManifest(JSON.stringify(mixed))), false);
  const dockerCfg = {
    ...sigArtifact,
    config: { ...sigArtifact.config, mediaType: 'application/vnd.docker.container.image.v1+json' },
  };
  assert.equal(isSignatureArtifact(parseManifest(JSON.stringify(dockerCfg))), false);
  const dockerType = { ...sigArtifact, mediaType: MEDIA_TYPE_DOCKER_MANIFEST };
  assert.equal(isSignatureArtifact(parseManifest(JSON.stringify(dockerType))), false);
});

test('limits: at most MAX_MANIFEST_LAYERS layers and MAX_INDEX_ENTRIES entries; an index lists image manifests only', () => {
  const layer = ociImage.layers[0]!;
  const entry = ociIndex.manifests[0]!;
  assert.equal(
    parseManifest(JSON.stringify({ ...ociImage, layers: Array(MAX_MANIFEST_LAYERS).fill(layer) })).layers
      .length,
    MAX_MANIFEST_LAYERS,
  );
  refused(
    { ...ociImage, layers: Array(MAX_MANIFEST_LAYERS + 1).fill(layer) },
    undefined,
    /at most 256 entries/,
  );
  refused({ ...ociImage, layers: Array(25_000).fill(layer) }, undefined, /this one lists 25000/);
  assert.equal(
    parseManifest(JSON.stringify({ ...ociIndex, manifests: Array(MAX_INDEX_ENTRIES).fill(entry) })).manifests
      .length,
    MAX_INDEX_ENTRIES,
  );
  refused(
    { ...ociIndex, manifests: Array(MAX_INDEX_ENTRIES + 1).fill(entry) },
    undefined,
    /at most 256 entries/,
  );
  for (const nested of [MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_DOCKER_LIST]) {
    refused(
      { ...ociIndex, manifests: [entry, { ...entry, mediaType: nested }] },
      undefined,
      /manifests\[1\] is itself an index/,
    );
  }
});

test('isSignatureDiscoveryRead: the .sig tag of a digest holding a signature artifact, and nothing else', () => {
  const sig = parseManifest(JSON.stringify(sigArtifact));
  const tag = `sha256-${'a'.repeat(64)}.sig`;
  assert.equal(isSignatureDiscoveryRead(tag, sig), true);
  assert.equal(isSignatureDiscoveryRead(undefined, sig), false, 'by digest');
  assert.equal(isSignatureDiscoveryRead('latest', sig), false);
  assert.equal(isSignatureDiscoveryRead(`sha256-${'A'.repeat(64)}.sig`, sig), false);
  assert.equal(isSignatureDiscoveryRead(`sha256-${'a'.repeat(64)}.att`, sig), false);
  assert.equal(isSignatureDiscoveryRead(`sha512-${'a'.repeat(64)}.sig`, sig), false);
  assert.equal(isSignatureDiscoveryRead(tag, parseManifest(JSON.stringify(ociImage))), false);
});

test('property: mutated or random input only ever yields a GateError or a well-formed view', () => {
  const bytes = new TextEncoder().encode(JSON.stringify(sigArtifact));
  const check = (input: Uint8Array): void => {
    let m;
    try {
      m = parseManifest(input);
    } catch (err) {
      assert.ok(err instanceof GateError, String(err));
      return;
    }
    for (const d of [...m.layers, ...m.manifests, ...(m.config ? [m.config] : [])]) {
      assert.ok(isValidDigest(d.digest));
      assert.ok(Number.isSafeInteger(d.size) && d.size >= 0);
    }
  };
  fc.assert(
    fc.property(fc.nat(bytes.length * 8 - 1), (bit) => {
      const copy = Uint8Array.from(bytes);
      copy[bit >> 3] = (copy[bit >> 3] as number) ^ (1 << (bit & 7));
      check(copy);
    }),
    { numRuns: 400 },
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (b) => check(b)),
    { numRuns: 300 },
  );
});
