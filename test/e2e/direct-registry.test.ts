/**
 * Proves the real-component harness without trustgate: a stock registry:2 and redis-server on
 * loopback, real skopeo copying three kinds of image into the registry over plain http and back,
 * byte for byte.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import tls from 'node:tls';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createClient } from 'redis';
import { generateDevCertificates } from '../../src/cli/certs.js';
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
import {
  makeTempDir,
  removeTempDir,
  startRedis,
  startRegistry,
  type RedisHandle,
  type RegistryHandle,
} from '../helpers/stack.js';

describe('harness: registry:2 + redis + skopeo, no trustgate', { timeout: 180_000 }, () => {
  let registry: RegistryHandle;
  let redis: RedisHandle;
  let sk: SkopeoContext;
  let work: string;
  const plain = { tlsVerify: false };

  before(async () => {
    [registry, redis] = await Promise.all([startRegistry(), startRedis()]);
    sk = createSkopeoContext();
    work = makeTempDir('direct-e2e');
  });

  after(async () => {
    sk?.close();
    if (work) removeTempDir(work);
    await Promise.all([registry?.stop(), redis?.stop()]);
  });

  const host = (): string => `127.0.0.1:${registry.port}`;

  async function roundTrip(name: string, img: DiskImage, back: (dir: string) => string): Promise<DiskImage> {
    const remote = `docker://${host()}/${name}:v1`;
    await sk.copyOk(img.ref, remote, { dest: plain });
    // The registry serves exactly the bytes that were pushed.
    const raw = await sk.inspectRaw(remote, plain);
    assert.equal(raw.code, 0, raw.stderr);
    assert.equal(raw.stdout, img.manifestBytes.toString('utf8'));
    const outDir = path.join(work, `${name.replace(/\//g, '_')}-back`);
    mkdirSync(outDir);
    await sk.copyOk(remote, back(outDir), { src: plain });
    const pulled = readDiskImage(back(outDir));
    await assertSameImage(img, pulled);
    return pulled;
  }

  it('OCI image: push and pull byte-identical', async () => {
    const img = await makeOciImage(path.join(work, 'oci'), { layers: 3, layerBytes: 300_000 });
    assert.equal(img.blobs.size, 4);
    await roundTrip('lib/oci-image', img, (d) => `oci:${d}:v1`);
  });

  it('OCI index (amd64 + arm64): --all push and pull byte-identical', async () => {
    const img = await makeOciIndex(path.join(work, 'index'), ['linux/amd64', 'linux/arm64'], {
      layers: 2,
      layerBytes: 100_000,
    });
    assert.equal(img.childManifests.size, 2);
    const pulled = await roundTrip('lib/oci-index', img, (d) => `oci:${d}:v1`);
    assert.equal(pulled.mediaType, MT.ociIndex);
    // Each child is also addressable by digest in the registry.
    for (const d of img.childManifests.keys()) {
      const r = await sk.inspectRaw(`docker://${host()}/lib/oci-index@${d}`, plain);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, img.childManifests.get(d)?.toString('utf8'));
    }
  });

  it('Docker schema2 image (dir: layout): push and pull byte-identical', async () => {
    const img = await makeDockerSchema2Image(path.join(work, 'schema2'), { layers: 2, layerBytes: 200_000 });
    assert.equal(img.mediaType, MT.dockerManifest);
    await roundTrip('lib/schema2', img, (d) => `dir:${d}`);
  });

  it('skopeo oci: cannot round-trip a Docker schema2 image (why schema2 uses dir:)', async () => {
    const img = await makeDockerSchema2Image(path.join(work, 'schema2-oci'), {
      layers: 1,
      layerBytes: 10_000,
    });
    const out = path.join(work, 'schema2-as-oci');
    const back = path.join(work, 'schema2-oci-back');
    // skopeo 1.9.3 writes the schema2 manifest into an OCI layout unchanged with --preserve-digests
    // (without it, it converts to OCI), but its oci: source then cannot find that descriptor.
    const w = await sk.copy(img.ref, `oci:${out}:v1`);
    const r = w.code === 0 ? await sk.copy(`oci:${out}:v1`, `dir:${back}`) : w;
    if (r.code === 0) {
      // A later skopeo may read it back: then it must be unchanged.
      await assertSameImage(img, readDiskImage(`dir:${back}`));
    } else {
      assert.match(r.stderr, /no descriptor found|manifest|media type/i);
    }
  });

  it('the wrapper refuses a changed image (assertSameImage is not vacuous)', async () => {
    const img = await makeOciImage(path.join(work, 'diff-a'), { layers: 1, layerBytes: 1000 });
    const other = await makeOciImage(path.join(work, 'diff-b'), { layers: 1, layerBytes: 1000 });
    await assert.rejects(assertSameImage(img, other), /top manifest differs/);
  });

  it('redis answers PING through the redis client', async () => {
    const client = createClient({
      url: redis.url,
      socket: { connectTimeout: 2000, reconnectStrategy: false },
    });
    client.on('error', () => {});
    await client.connect();
    try {
      assert.equal(await client.ping(), 'PONG');
      await client.set('trustgate:test', 'ok', { EX: 10 });
      assert.equal(await client.get('trustgate:test'), 'ok');
    } finally {
      client.destroy();
    }
  });

  it('registry kill + restart keeps the data; stop leaves no process', async () => {
    const before = registry.pid;
    await registry.kill();
    assert.throws(() => process.kill(before, 0));
    await registry.restart();
    assert.notEqual(registry.pid, before);
    const r = await sk.inspectRaw(`docker://${host()}/lib/oci-image:v1`, plain);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(existsSync(registry.dataDir));
  });
});

describe('harness: dev certificates', () => {
  it('server + mTLS client certificates handshake under node:tls; a second run keeps the files', async () => {
    const dir = makeTempDir('certs');
    try {
      const c = await generateDevCertificates({
        dir,
        hosts: ['localhost', '127.0.0.1', '::1'],
        clientNames: ['ci'],
      });
      const client = c.clients['ci'];
      assert.ok(client);
      assert.equal(statSync(c.caKey).mode & 0o777, 0o600);
      assert.equal(statSync(c.serverKey).mode & 0o777, 0o600);
      const server = tls.createServer(
        {
          cert: readFileSync(c.serverCert),
          key: readFileSync(c.serverKey),
          ca: readFileSync(c.caCert),
          requestCert: true,
          rejectUnauthorized: true,
        },
        (s) =>
          s.end(`hello ${String((s.getPeerCertificate() as { subject?: { CN?: string } }).subject?.CN)}`),
      );
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const port = (server.address() as { port: number }).port;
      try {
        const got = await new Promise<string>((resolve, reject) => {
          const s = tls.connect({
            host: '127.0.0.1',
            port,
            ca: readFileSync(c.caCert),
            cert: readFileSync(client.cert),
            key: readFileSync(client.key),
          });
          let out = '';
          s.on('data', (b: Buffer) => (out += b.toString()));
          s.on('end', () => resolve(out));
          s.on('error', reject);
        });
        assert.equal(got, 'hello ci');
      } finally {
        await new Promise((r) => server.close(r));
      }
      const before = readFileSync(c.serverCert, 'utf8');
      await generateDevCertificates({ dir, hosts: ['localhost'], clientNames: ['ci'] });
      assert.equal(readFileSync(c.serverCert, 'utf8'), before);
      await generateDevCertificates({ dir, hosts: ['localhost'], force: true });
      assert.notEqual(readFileSync(c.serverCert, 'utf8'), before);
    } finally {
      removeTempDir(dir);
    }
  });
});
