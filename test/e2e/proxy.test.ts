/**
 * Foundation end to end: real skopeo pushes and pulls three kinds of image through trustgate over
 * TLS (token auth, trust policy off for these repositories) into a real registry:2, byte for byte.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  assertSameImage,
  makeDockerSchema2Image,
  makeOciImage,
  makeOciIndex,
  MT,
  readDiskImage,
  type DiskImage,
} from '../helpers/images.js';
import { createSkopeoContext, type SkopeoContext } from '../helpers/skopeo.js';
import { makeTempDir, removeTempDir, startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';
import { direct } from '../helpers/registry-direct.js';

describe('e2e: skopeo through trustgate over TLS', { timeout: 240_000 }, () => {
  let registry: RegistryHandle;
  let gate: TestGate;
  let sk: SkopeoContext;
  let work: string;
  const creds = { username: 'alice', password: 'alice-secret-password' };

  before(async () => {
    registry = await startRegistry();
    gate = await startTestGate({
      registryUrl: registry.url,
      users: { alice: creds.password },
      policy: { access: [{ repos: ['e2e/**'], pull: ['alice'], push: ['alice'], delete: ['alice'] }] },
      trustRules: [{ repos: ['e2e/**'], mode: 'off' }],
    });
    sk = createSkopeoContext();
    work = makeTempDir('proxy-e2e');
  });

  after(async () => {
    sk?.close();
    if (work) removeTempDir(work);
    await gate?.close();
    await registry?.stop();
  });

  const tls = (): { certDir: string; creds: typeof creds } => ({ certDir: gate.certDir, creds });

  async function roundTrip(name: string, img: DiskImage, back: (dir: string) => string): Promise<DiskImage> {
    const remote = `docker://${gate.host}/${name}:v1`;
    await sk.copyOk(img.ref, remote, { dest: tls() });
    // trustgate serves exactly the pushed bytes, and so does the registry behind it.
    const raw = await sk.inspectRaw(remote, tls());
    assert.equal(raw.code, 0, raw.stderr);
    assert.equal(raw.stdout, img.manifestBytes.toString('utf8'));
    const stored = await direct(registry.url, 'GET', `/v2/${name}/manifests/v1`, undefined, {
      accept: img.mediaType,
    });
    assert.deepEqual(stored.body, img.manifestBytes);
    const outDir = path.join(work, `${name.replace(/\//g, '_')}-back`);
    mkdirSync(outDir);
    await sk.copyOk(remote, back(outDir), { src: tls() });
    const pulled = readDiskImage(back(outDir));
    await assertSameImage(img, pulled);
    return pulled;
  }

  it('skopeo login succeeds against the token endpoint', async () => {
    const r = await sk.login(gate.host, creds, { certDir: gate.certDir });
    assert.equal(r.code, 0, r.stderr);
  });

  it('OCI image: push and pull byte-identical', async () => {
    const img = await makeOciImage(path.join(work, 'oci'), { layers: 3, layerBytes: 400_000 });
    await roundTrip('e2e/oci-image', img, (d) => `oci:${d}:v1`);
  });

  it('OCI index with two platforms: push and pull byte-identical', async () => {
    const img = await makeOciIndex(path.join(work, 'index'), ['linux/amd64', 'linux/arm64'], {
      layers: 2,
      layerBytes: 100_000,
    });
    const pulled = await roundTrip('e2e/oci-index', img, (d) => `oci:${d}:v1`);
    assert.equal(pulled.mediaType, MT.ociIndex);
    assert.equal(pulled.childManifests.size, 2);
  });

  it('Docker schema2 image: push and pull byte-identical', async () => {
    const img = await makeDockerSchema2Image(path.join(work, 'schema2'), { layers: 2, layerBytes: 200_000 });
    await roundTrip('e2e/schema2', img, (d) => `dir:${d}`);
  });

  it('wrong password: skopeo login is refused', async () => {
    const r = await sk.login(gate.host, { username: 'alice', password: 'wrong' }, { certDir: gate.certDir });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /401|unauthorized|invalid username\/password/i);
  });

  it('an untrusted server certificate is refused by skopeo (TLS is real)', async () => {
    const r = await sk.inspectRaw(`docker://${gate.host}/e2e/oci-image:v1`, { creds });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /certificate|x509/i);
  });
});
