/**
 * Content trust end to end: real skopeo pulls through trustgate from a real registry:2, with
 * cosign-format signatures written by the publisher side of the test.
 */
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateKeyPair } from '../../src/core/signature/sign.js';
import {
  assertSameImage,
  makeOciImage,
  makeOciIndex,
  readDiskImage,
  type DiskImage,
} from '../helpers/images.js';
import { createSkopeoContext, type SkopeoContext } from '../helpers/skopeo.js';
import { makeTempDir, removeTempDir, startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';
import { assertBlobNotAdmitted, bearer, getToken, request } from '../helpers/http.js';
import { direct, pushManifest, pushRandomImage } from '../helpers/registry-direct.js';
import { signDirect } from '../helpers/sign.js';

const OCI_ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json';

describe('e2e: content trust through trustgate', { timeout: 300_000 }, () => {
  let registry: RegistryHandle;
  let gate: TestGate;
  let sk: SkopeoContext;
  let work: string;
  const release = generateKeyPair('ecdsa-p256');
  const releaseEd = generateKeyPair('ed25519');
  const stranger = generateKeyPair('ecdsa-p256');
  const consumer = { username: 'consumer', password: 'consumer-password' };
  const publisher = { username: 'publisher', password: 'publisher-password' };

  before(async () => {
    registry = await startRegistry();
    gate = await startTestGate({
      registryUrl: registry.url,
      users: { consumer: consumer.password, publisher: publisher.password },
      policy: {
        access: [
          { repos: ['**'], pull: ['consumer', 'publisher'], push: ['publisher'], delete: ['publisher'] },
        ],
      },
      trustRules: [
        { repos: ['bound/**'], keys: ['release'], tagBinding: true },
        { repos: ['audit/**'], keys: ['release'], mode: 'audit' },
        { repos: ['gated/**'], keys: ['release'], signedPush: true },
        { repos: ['two/**'], keys: ['release', 'release-ed'], threshold: 2 },
        { repos: ['prod/**'], keys: ['release', 'release-ed'] },
      ],
      trustedKeys: {
        release: release.publicKeyPem,
        'release-ed': releaseEd.publicKeyPem,
        stranger: stranger.publicKeyPem,
      },
    });
    sk = createSkopeoContext();
    work = makeTempDir('trust-e2e');
  });

  after(async () => {
    sk?.close();
    if (work) removeTempDir(work);
    await gate?.close();
    await registry?.stop();
  });

  const as = (c: typeof consumer) => ({ certDir: gate.certDir, creds: c });
  let n = 0;
  async function pull(ref: string, c = consumer): Promise<{ code: number; stderr: string; out: string }> {
    const out = path.join(work, `pull-${n++}`);
    mkdirSync(out);
    const r = await sk.copy(`docker://${gate.host}/${ref}`, `oci:${out}:x`, { src: as(c) });
    return { code: r.code, stderr: r.stderr, out: `oci:${out}:x` };
  }
  async function pushImage(name: string, o: { layers?: number } = {}): Promise<DiskImage> {
    const img = await makeOciImage(path.join(work, `img-${n++}`), {
      layers: o.layers ?? 2,
      layerBytes: 50_000,
    });
    await sk.copyOk(img.ref, `docker://${gate.host}/${name}`, { dest: as(publisher) });
    return img;
  }
  const sign = (repo: string, digest: string, key = release, ref?: string) =>
    signDirect(registry.url, repo, digest, key.pkcs8Der, { dockerReference: ref ?? `${gate.host}/${repo}` });
  const tokenFor = (c: typeof consumer, repo: string) =>
    getToken(gate.url, gate.ca, c.username, c.password, [`repository:${repo}:pull`]);

  it('a signed image pulls, byte-identical (ECDSA P-256 key)', async () => {
    const img = await pushImage('prod/app:v1');
    await sign('prod/app', img.manifestDigest);
    const r = await pull('prod/app:v1');
    assert.equal(r.code, 0, r.stderr);
    await assertSameImage(img, readDiskImage(r.out));
  });

  it('a signed image pulls with an Ed25519 key too', async () => {
    const img = await pushImage('prod/ed:v1');
    await sign('prod/ed', img.manifestDigest, releaseEd);
    const r = await pull('prod/ed:v1');
    assert.equal(r.code, 0, r.stderr);
  });

  it('an unsigned image is refused with a message naming repository, digest and trusted keys', async () => {
    const img = await pushImage('prod/unsigned:v1');
    const r = await pull('prod/unsigned:v1');
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /denied/);
    assert.match(r.stderr, new RegExp(`prod/unsigned@${img.manifestDigest}`));
    assert.match(r.stderr, /release/);
  });

  it('a publisher (push rights) may read its unsigned manifest, to sign it', async () => {
    const img = await pushImage('prod/staged:v1');
    const t = await getToken(gate.url, gate.ca, publisher.username, publisher.password, [
      'repository:prod/staged:pull,push',
    ]);
    const r = await request(gate.url, gate.ca, {
      path: '/v2/prod/staged/manifests/v1',
      headers: { ...bearer(t), accept: OCI_ACCEPT },
    });
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, img.manifestBytes);
  });

  it('a signature by an untrusted key, or one naming another digest, is refused', async () => {
    const img = await pushImage('prod/wrongkey:v1');
    await sign('prod/wrongkey', img.manifestDigest, stranger);
    const r = await pull('prod/wrongkey:v1');
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /denied/);
    const img2 = await pushImage('prod/otherdigest:v1');
    await signDirect(registry.url, 'prod/otherdigest', img2.manifestDigest, release.pkcs8Der, {
      payloadDigest: img.manifestDigest,
    });
    assert.notEqual((await pull('prod/otherdigest:v1')).code, 0);
  });

  it('a signature transplanted from another repository is refused', async () => {
    const img = await pushImage('prod/origin:v1');
    await sign('prod/origin', img.manifestDigest);
    // The same image in another repository, with the origin's signature copied next to it.
    await sk.copyOk(`docker://${gate.host}/prod/origin:v1`, `docker://${gate.host}/prod/victim:v1`, {
      src: as(publisher),
      dest: as(publisher),
    });
    await signDirect(registry.url, 'prod/victim', img.manifestDigest, release.pkcs8Der, {
      dockerReference: `${gate.host}/prod/origin`,
    });
    const r = await pull('prod/victim:v1');
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /repository|prod\/origin/i);
    assert.equal((await pull('prod/origin:v1')).code, 0);
  });

  it('a tag moved to an unsigned image is refused at once, though the old digest was verified', async () => {
    const img = await pushImage('prod/moving:v1');
    await sign('prod/moving', img.manifestDigest);
    assert.equal((await pull('prod/moving:v1')).code, 0);
    await pushImage('prod/moving:v1');
    const r = await pull('prod/moving:v1');
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /denied/);
    // The old digest itself still pulls by digest.
    assert.equal((await pull(`prod/moving@${img.manifestDigest}`)).code, 0);
  });

  it('a multi-platform index signed at the index level pulls every platform', async () => {
    const idx = await makeOciIndex(path.join(work, 'idx'), ['linux/amd64', 'linux/arm64'], {
      layers: 1,
      layerBytes: 30_000,
    });
    await sk.copyOk(idx.ref, `docker://${gate.host}/prod/multi:v1`, { dest: as(publisher) });
    await sign('prod/multi', idx.manifestDigest);
    const r = await pull('prod/multi:v1');
    assert.equal(r.code, 0, r.stderr);
    await assertSameImage(idx, readDiskImage(r.out));
  });

  it('an unsigned index is refused even when its children are signed; the children pull by digest', async () => {
    const idx = await makeOciIndex(path.join(work, 'idx2'), ['linux/amd64', 'linux/arm64'], {
      layers: 1,
      layerBytes: 30_000,
    });
    await sk.copyOk(idx.ref, `docker://${gate.host}/prod/multi2:v1`, { dest: as(publisher) });
    for (const d of idx.childManifests.keys()) await sign('prod/multi2', d);
    assert.notEqual((await pull('prod/multi2:v1')).code, 0);
    const child = [...idx.childManifests.keys()][0]!;
    const r = await pull(`prod/multi2@${child}`);
    assert.equal(r.code, 0, r.stderr);
  });

  it('HEAD gives no more than GET, and a pull by digest is checked like a pull by tag', async () => {
    const img = await pushImage('prod/headcheck:v1');
    const t = await tokenFor(consumer, 'prod/headcheck');
    for (const p of [
      '/v2/prod/headcheck/manifests/v1',
      `/v2/prod/headcheck/manifests/${img.manifestDigest}`,
    ]) {
      for (const method of ['HEAD', 'GET']) {
        const r = await request(gate.url, gate.ca, {
          method,
          path: p,
          headers: { ...bearer(t), accept: OCI_ACCEPT },
        });
        assert.equal(r.status, 403, `${method} ${p}`);
        assert.equal(r.headers['docker-content-digest'], undefined);
      }
    }
  });

  it('a blob of an unsigned image is not served to a pull-only client, even by exact digest', async () => {
    const img = await pushImage('prod/blobguess:v1');
    const t = await tokenFor(consumer, 'prod/blobguess');
    const layer = [...img.blobs.keys()][0]!;
    const r = await request(gate.url, gate.ca, {
      path: `/v2/prod/blobguess/blobs/${layer}`,
      headers: bearer(t),
    });
    assertBlobNotAdmitted(r);
    await sign('prod/blobguess', img.manifestDigest);
    await request(gate.url, gate.ca, {
      path: '/v2/prod/blobguess/manifests/v1',
      headers: { ...bearer(t), accept: OCI_ACCEPT },
    });
    const r2 = await request(gate.url, gate.ca, {
      path: `/v2/prod/blobguess/blobs/${layer}`,
      headers: bearer(t),
    });
    assert.equal(r2.status, 200);
  });

  it('signature artifacts stay readable to consumers (recognised by media type)', async () => {
    const img = await pushImage('prod/sigread:v1');
    await sign('prod/sigread', img.manifestDigest);
    const tag = `sha256-${img.manifestDigest.slice(7)}.sig`;
    const t = await tokenFor(consumer, 'prod/sigread');
    const r = await request(gate.url, gate.ca, {
      path: `/v2/prod/sigread/manifests/${tag}`,
      headers: { ...bearer(t), accept: OCI_ACCEPT },
    });
    assert.equal(r.status, 200);
    const sig = JSON.parse(r.body.toString()) as { layers: Array<{ digest: string }> };
    const blob = await request(gate.url, gate.ca, {
      path: `/v2/prod/sigread/blobs/${sig.layers[0]!.digest}`,
      headers: bearer(t),
    });
    assert.equal(blob.status, 200);
  });

  it('an image pushed under a .sig tag name is not a signature artifact and is not served', async () => {
    const img = await pushRandomImage(registry.url, 'prod/sneaky', 'v1');
    const fake = `sha256-${'a'.repeat(64)}.sig`;
    await pushManifest(
      registry.url,
      'prod/sneaky',
      fake,
      img.bytes,
      'application/vnd.oci.image.manifest.v1+json',
    );
    const t = await tokenFor(consumer, 'prod/sneaky');
    const r = await request(gate.url, gate.ca, {
      path: `/v2/prod/sneaky/manifests/${fake}`,
      headers: { ...bearer(t), accept: OCI_ACCEPT },
    });
    assert.equal(r.status, 403);
  });

  it('a push to a .sig tag must add a signature by a trusted key', async () => {
    const img = await pushImage('prod/sigpush:v1');
    const t = await getToken(gate.url, gate.ca, publisher.username, publisher.password, [
      'repository:prod/sigpush:pull,push',
    ]);
    // Build a signature artifact by an untrusted key in a scratch repo, then try to push it here.
    const bad = await signDirect(registry.url, 'scratch/a', img.manifestDigest, stranger.pkcs8Der, {
      dockerReference: `${gate.host}/prod/sigpush`,
      storeIn: 'scratch/a',
    });
    // The payload and config blobs must exist in prod/sigpush for the registry to accept it.
    await signDirect(registry.url, 'scratch/b', img.manifestDigest, release.pkcs8Der, {
      dockerReference: `${gate.host}/prod/sigpush`,
    });
    const tag = `sha256-${img.manifestDigest.slice(7)}.sig`;
    const put = (body: Buffer) =>
      request(gate.url, gate.ca, {
        method: 'PUT',
        path: `/v2/prod/sigpush/manifests/${tag}`,
        headers: { ...bearer(t), 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
        body,
      });
    await copyBlobs(registry.url, 'scratch/a', 'prod/sigpush', bad.sigManifest);
    const r = await put(bad.sigManifest);
    assert.equal(r.status, 403, r.body.toString());
    assert.match(r.body.toString(), /does not verify with a key trusted/);
    const good = (
      await direct(registry.url, 'GET', `/v2/scratch/b/manifests/${tag}`, undefined, { accept: OCI_ACCEPT })
    ).body;
    await copyBlobs(registry.url, 'scratch/b', 'prod/sigpush', good);
    const r2 = await put(good);
    assert.equal(r2.status, 201, r2.body.toString());
    assert.equal((await pull('prod/sigpush:v1')).code, 0);
  });

  it('signed pushes: PUT by tag of an unsigned manifest is refused with how to sign; digest → sign → tag works', async () => {
    const img = await makeOciImage(path.join(work, 'gated'), { layers: 1, layerBytes: 20_000 });
    const r = await sk.copy(img.ref, `docker://${gate.host}/gated/app:v1`, { dest: as(publisher) });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /requires signed pushes/);
    assert.match(r.stderr, /trustgate sign/);
    const byDigest = await sk.copy(img.ref, `docker://${gate.host}/gated/app@${img.manifestDigest}`, {
      dest: as(publisher),
    });
    assert.equal(byDigest.code, 0, byDigest.stderr);
    await sign('gated/app', img.manifestDigest, release, `${gate.host}/gated/app:v1`);
    const t = await getToken(gate.url, gate.ca, publisher.username, publisher.password, [
      'repository:gated/app:pull,push',
    ]);
    const tagPut = await request(gate.url, gate.ca, {
      method: 'PUT',
      path: '/v2/gated/app/manifests/v1',
      headers: { ...bearer(t), 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
      body: img.manifestBytes,
    });
    assert.equal(tagPut.status, 201, tagPut.body.toString());
    assert.equal((await pull('gated/app:v1')).code, 0);
  });

  it('tag binding: a signature that does not name the tag is not enough for a pull by that tag', async () => {
    const img = await pushImage('bound/app:v2');
    await sign('bound/app', img.manifestDigest, release, `${gate.host}/bound/app`);
    assert.notEqual((await pull('bound/app:v2')).code, 0);
    await sign('bound/app', img.manifestDigest, release, `${gate.host}/bound/app:v2`);
    await pastNegativeTtl();
    const r = await pull('bound/app:v2');
    assert.equal(r.code, 0, r.stderr);
  });

  it('threshold 2 needs two distinct trusted keys', async () => {
    const img = await pushImage('two/app:v1');
    await sign('two/app', img.manifestDigest, release);
    await sign('two/app', img.manifestDigest, release);
    assert.notEqual((await pull('two/app:v1')).code, 0);
    await sign('two/app', img.manifestDigest, releaseEd);
    await pastNegativeTtl();
    assert.equal((await pull('two/app:v1')).code, 0);
  });

  it('threshold 2: a rotated key and the key it replaces are one signer, not two', async () => {
    // release-next replaces release (the admin API's rotate writes the same meta).
    const next = generateKeyPair('ed25519');
    writeFileSync(
      path.join(gate.keysDir, 'release-next.meta.json'),
      JSON.stringify({ trustedAs: ['release'] }),
    );
    writeFileSync(path.join(gate.keysDir, 'release-next.pub'), next.publicKeyPem);
    const img = await pushImage('two/rotated:v1');
    await sign('two/rotated', img.manifestDigest, release);
    await sign('two/rotated', img.manifestDigest, next);
    // Give the keyring its 1 s check, then a refusal must name the threshold.
    await new Promise((r) => setTimeout(r, 1500));
    const refused = await pull('two/rotated:v1');
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /needs 2/);
    await sign('two/rotated', img.manifestDigest, releaseEd);
    await pastNegativeTtl();
    const r = await pull('two/rotated:v1');
    assert.equal(r.code, 0, r.stderr);
  });

  it('audit mode serves an unsigned image', async () => {
    await pushImage('audit/app:v1');
    const r = await pull('audit/app:v1');
    assert.equal(r.code, 0, r.stderr);
  });

  it('a key revoked on disk stops the next pull without a restart', async () => {
    const img = await pushImage('prod/revoke:v1');
    await sign('prod/revoke', img.manifestDigest, releaseEd);
    assert.equal((await pull('prod/revoke:v1')).code, 0);
    writeFileSync(path.join(gate.keysDir, 'release-ed.meta.json'), JSON.stringify({ revoked: true }));
    const deadline = Date.now() + 5000;
    let code = 0;
    while (Date.now() < deadline) {
      code = (await pull('prod/revoke:v1')).code;
      if (code !== 0) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.notEqual(code, 0, 'revocation took effect within 5 s');
    rmSync(path.join(gate.keysDir, 'release-ed.meta.json'));
  });
});

/** The test gate caches refusals for 1 s: an image signed after a refusal pulls after that. */
const pastNegativeTtl = (): Promise<void> => new Promise((r) => setTimeout(r, 1100));

/** Links the blobs a manifest names from one repository into another (publisher-side setup). */
async function copyBlobs(registryUrl: string, from: string, to: string, manifest: Buffer): Promise<void> {
  const m = JSON.parse(manifest.toString()) as {
    config: { digest: string };
    layers: Array<{ digest: string }>;
  };
  for (const d of [m.config.digest, ...m.layers.map((l) => l.digest)]) {
    const r = await direct(registryUrl, 'POST', `/v2/${to}/blobs/uploads/?mount=${d}&from=${from}`);
    if (r.status !== 201) throw new Error(`mount ${d}: ${r.status}`);
  }
}
