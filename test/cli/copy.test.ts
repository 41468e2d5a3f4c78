/**
 * `trustgate copy` between repositories of a real registry:2: byte-identical manifests, blobs
 * mounted (or streamed when the registry will not mount), indexes with all children.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyCommand } from '../../src/cli/copy.js';
import { RegistryClient } from '../../src/cli/registry-client.js';
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
      `-> ${host}/prod/app:v1 \\(${img.digest}; 1 manifest\\(s\\), blobs: 2 mounted, 0 uploaded, 0 already there\\)`,
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
