/**
 * `trustgate copy` between repositories of a real registry:2: byte-identical manifests, blobs
 * mounted (or streamed when the registry will not mount), indexes with all children, and the
 * Sigstore bundle referrers of every copied manifest (legacy .sig signatures stay behind).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { copyCommand } from '../../src/cli/copy.js';
import { RegistryClient } from '../../src/cli/registry-client.js';
import { signCommand } from '../../src/cli/sign.js';
import { verifyCommand } from '../../src/cli/verify.js';
import { MEDIA_TYPES } from '../../src/core/manifest.js';
import { EMPTY_JSON_DIGEST } from '../../src/core/referrers.js';
import { encryptCosignKey } from '../../src/core/signature/keyfile.js';
import { generateKeyPair } from '../../src/core/signature/sign.js';
import { makeTempDir, startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { makeCerts, memoryIo, pushImage, pushIndex, startTokenFront } from './support.js';

let reg: RegistryHandle;
let host: string;
let client: RegistryClient;

before(async () => {
  reg = await startRegistry();
  host = `127.0.0.1:${reg.port}`;
  client = new RegistryClient({ baseUrl: reg.url });
});
after(async () => {
  client.close();
  await reg.stop();
});

async function copy(args: string[]) {
  const mem = memoryIo();
  const code = await copyCommand([...args, '--plain-http'], mem.io);
  return { code, out: mem.out(), err: mem.err() };
}

test('copy an image: byte-identical manifest under the same tag, blobs mounted', async () => {
  const img = await pushImage(client, 'staging/app', 'v1', 'copy-1');
  const r = await copy([`${host}/staging/app:v1`, `${host}/prod/app`]);
  assert.equal(r.code, 0, r.err);
  assert.match(
    r.out,
    new RegExp(
      `-> ${host}/prod/app:v1 \\(${img.digest}; 1 manifest\\(s\\), blobs: 2 mounted, 0 uploaded, 0 already there; 0 Sigstore bundle referrer\\(s\\)\\)`,
    ),
  );
  const m = await client.getManifest('prod/app', 'v1');
  assert.deepEqual(Buffer.from(m.bytes), Buffer.from(img.bytes));
  assert.equal(m.mediaType, img.mediaType);
  for (const d of img.blobs) assert.equal((await client.headBlob('prod/app', d)).exists, true);
  // Again: everything is already there.
  const again = await copy([`${host}/staging/app:v1`, `${host}/prod/app:v1-copy`]);
  assert.match(again.out, /blobs: 0 mounted, 0 uploaded, 2 already there/);
});

test('copy an index by digest: every child and blob, byte-identical, digests unchanged', async () => {
  const a = await pushImage(client, 'staging/multi', 'a', 'idx-a');
  const b = await pushImage(client, 'staging/multi', 'b', 'idx-b');
  const idx = await pushIndex(client, 'staging/multi', 'v2', [a, b]);
  const r = await copy([`${host}/staging/multi@${idx.digest}`, `${host}/prod/multi:v2`]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /3 manifest\(s\), blobs: 4 mounted/);
  const m = await client.getManifest('prod/multi', 'v2');
  assert.deepEqual(Buffer.from(m.bytes), Buffer.from(idx.bytes));
  assert.equal(m.digest, idx.digest);
  for (const child of [a, b]) {
    const cm = await client.getManifest('prod/multi', child.digest);
    assert.deepEqual(Buffer.from(cm.bytes), Buffer.from(child.bytes));
  }
  // DST without a tag keeps the digest reference only.
  const byDigest = await copy([`${host}/staging/multi@${a.digest}`, `${host}/prod/only-digest`]);
  assert.equal(byDigest.code, 0, byDigest.err);
  assert.deepEqual(await client.listTags('prod/only-digest'), []);
  assert.ok(await client.getManifestIfExists('prod/only-digest', a.digest));
});

test('copy when the registry will not mount: blobs are streamed, the copy is still identical', async () => {
  const certs = makeCerts(makeTempDir('copy-certs'));
  const front = await startTokenFront(reg.url, certs, { user: 'ops', password: 'pw' });
  front.stripMount = true;
  try {
    const img = await pushImage(client, 'staging/nomount', 'v1', 'nomount');
    const mem = memoryIo({ TRUSTGATE_USERNAME: 'ops', TRUSTGATE_PASSWORD: 'pw' });
    const code = await copyCommand(
      [`${front.host}/staging/nomount:v1`, `${front.host}/prod/nomount`, '--ca-file', certs.caFile],
      mem.io,
    );
    assert.equal(code, 0, mem.err());
    assert.match(mem.out(), /blobs: 0 mounted, 2 uploaded/);
    assert.ok(front.uploadPosts.some((q) => q.includes('mount=') && q.includes('from=staging%2Fnomount')));
    const m = await client.getManifest('prod/nomount', 'v1');
    assert.deepEqual(Buffer.from(m.bytes), Buffer.from(img.bytes));
    for (const d of img.blobs) {
      assert.deepEqual(
        Buffer.from(await client.getBlob('prod/nomount', d)),
        Buffer.from(await client.getBlob('staging/nomount', d)),
      );
    }
  } finally {
    await front.close();
  }
});

test('copy usage errors: other host, same repository, missing source', async () => {
  assert.equal((await copy([`${host}/a/b:v1`, `other.example:5000/a/c`])).code, 2);
  const same = await copy([`${host}/a/b:v1`, `${host}/a/b:v2`]);
  assert.equal(same.code, 2);
  assert.match(same.err, /same repository/);
  const missing = await copy([`${host}/staging/none:v1`, `${host}/prod/none`]);
  assert.equal(missing.code, 1);
  assert.match(missing.err, /GET manifest staging\/none:v1: 404/);
});

test('copy carries the Sigstore bundle referrers of every copied manifest (not the legacy .sig); DST verifies', async () => {
  const dir = makeTempDir('copy-keys');
  const release = generateKeyPair('ecdsa-p256');
  const keyFile = path.join(dir, 'release.key');
  const pubFile = path.join(dir, 'release.pub');
  writeFileSync(keyFile, encryptCosignKey(release.pkcs8Der, 'pw'));
  writeFileSync(pubFile, release.publicKeyPem);
  const a = await pushImage(client, 'staging/signed', 'a', 'bundle-a');
  const b = await pushImage(client, 'staging/signed', 'b', 'bundle-b');
  const idx = await pushIndex(client, 'staging/signed', 'v1', [a, b]);
  // The index and both children in the default (bundle) format, the index in legacy too. On this
  // bare registry:2, sign records each referrer in the subject's referrers tag.
  for (const format of ['bundle', 'legacy']) {
    const mem = memoryIo({ TRUSTGATE_KEY_PASSPHRASE: 'pw' });
    const args = [`${host}/staging/signed:v1`, '--key', keyFile, '--plain-http', '--format', format];
    assert.equal(
      await signCommand(format === 'bundle' ? [...args, '--recursive'] : args, mem.io),
      0,
      mem.err(),
    );
  }
  // Another artifact with a subject (an SBOM, say) is not a signature and is not carried.
  const sbomBlob = await client.uploadBlob('staging/signed', new TextEncoder().encode('{"sbom":true}'));
  await client.uploadBlob('staging/signed', new TextEncoder().encode('{}'));
  const sbom = new TextEncoder().encode(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociManifest,
      artifactType: 'application/spdx+json',
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: EMPTY_JSON_DIGEST, size: 2 },
      layers: [{ mediaType: 'application/spdx+json', digest: sbomBlob.digest, size: sbomBlob.size }],
      subject: { mediaType: a.mediaType, digest: a.digest, size: a.bytes.length },
    }),
  );
  const sbomDigest = await client.putManifest(
    'staging/signed',
    `sha256:${sha256hex(sbom)}`,
    sbom,
    MEDIA_TYPES.ociManifest,
  );
  const aTag = `sha256-${a.digest.slice(7)}`;
  const srcIndex = JSON.parse(
    Buffer.from((await client.getManifest('staging/signed', aTag)).bytes).toString(),
  ) as {
    manifests: Array<{ digest: string }>;
  };
  await client.putManifest(
    'staging/signed',
    aTag,
    new TextEncoder().encode(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MEDIA_TYPES.ociIndex,
        manifests: [
          ...srcIndex.manifests,
          {
            mediaType: MEDIA_TYPES.ociManifest,
            digest: sbomDigest,
            size: sbom.length,
            artifactType: 'application/spdx+json',
          },
        ],
      }),
    ),
    MEDIA_TYPES.ociIndex,
  );

  const r = await copy([`${host}/staging/signed:v1`, `${host}/prod/signed`]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /3 manifest\(s\), blobs: .*; 3 Sigstore bundle referrer\(s\)\)\n$/);
  for (const d of [idx.digest, a.digest, b.digest]) {
    const tag = `sha256-${d.slice(7)}`;
    const src = JSON.parse(
      Buffer.from((await client.getManifest('staging/signed', tag)).bytes).toString(),
    ) as {
      manifests: Array<{ digest: string; artifactType?: string }>;
    };
    const dst = JSON.parse(Buffer.from((await client.getManifest('prod/signed', tag)).bytes).toString()) as {
      manifests: Array<{ digest: string; artifactType?: string }>;
    };
    const bundles = src.manifests.filter(
      (e) => e.artifactType === 'application/vnd.dev.sigstore.bundle.v0.3+json',
    );
    assert.equal(bundles.length, 1);
    // Byte-identical referrer (same digest) with its blobs, listed in DST's referrers tag.
    assert.deepEqual(
      dst.manifests.map((e) => [e.digest, e.artifactType]),
      bundles.map((e) => [e.digest, e.artifactType]),
    );
    const ref = await client.getManifest('prod/signed', bundles[0]!.digest);
    const doc = JSON.parse(Buffer.from(ref.bytes).toString()) as { layers: Array<{ digest: string }> };
    assert.equal((await client.headBlob('prod/signed', doc.layers[0]!.digest)).exists, true);
    assert.equal((await client.headBlob('prod/signed', EMPTY_JSON_DIGEST)).exists, true);
  }
  assert.equal(await client.getManifestIfExists('prod/signed', sbomDigest), null, 'the SBOM stays behind');
  assert.equal(
    await client.getManifestIfExists('prod/signed', `sha256-${idx.digest.slice(7)}.sig`),
    null,
    'legacy signatures name SRC and stay behind',
  );
  // trustgate verify reads the copied evidence in DST: the index and a child verify by bundle.
  for (const ref of [`${host}/prod/signed:v1`, `${host}/prod/signed@${b.digest}`]) {
    const mem = memoryIo();
    assert.equal(
      await verifyCommand([ref, '--key', pubFile, '--plain-http'], mem.io),
      0,
      mem.out() + mem.err(),
    );
    assert.match(mem.out(), /bundles: {4}1 Sigstore bundle referrer/);
  }
  // Copying again changes nothing: the referrers are there and listed once.
  const again = await copy([`${host}/staging/signed:v1`, `${host}/prod/signed`]);
  assert.equal(again.code, 0, again.err);
  const dstA = JSON.parse(Buffer.from((await client.getManifest('prod/signed', aTag)).bytes).toString()) as {
    manifests: unknown[];
  };
  assert.equal(dstA.manifests.length, 1);
});

function sha256hex(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}
