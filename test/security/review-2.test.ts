/**
 * Second adversarial review of the /v2 pipeline after the issue-12 fixes (review branch).
 *
 * Each test names its outcome in its title:
 * - `HELD:`   the attack was tried against a real registry:2 and trustgate refused it (passes);
 * - `fixed`:  the attack worked in the review (a Connection-named Host leaked the registry's
 *              address; a filtered catalog cost one registry walk per hidden repository); the test
 *              asserts the safe behaviour and failed before the fix.
 *
 * Attackers: (a) a publisher with push rights on its own repositories and no trusted key,
 * (b) a consumer with pull rights only.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { generateKeyPair } from '../../src/core/signature/sign.js';
import { MEDIA_TYPES } from '../../src/core/manifest.js';
import { signatureTagFor } from '../../src/core/reference.js';
import { startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';
import { assertBlobNotAdmitted, bearer, getToken, request, type Reply } from '../helpers/http.js';
import { direct, pushBlob, pushManifest, pushRandomImage, sha256 } from '../helpers/registry-direct.js';
import { signDirect } from '../helpers/sign.js';

const OCI = MEDIA_TYPES.ociManifest;
const OCI_INDEX = MEDIA_TYPES.ociIndex;
const ALL = [OCI, OCI_INDEX, MEDIA_TYPES.dockerManifest, MEDIA_TYPES.dockerManifestList].join(', ');

/** A pass-through in front of registry:2 that counts requests by path prefix (no fault injected). */
async function countingProxy(target: string): Promise<{
  url: string;
  count: (prefix: string) => number;
  reset: () => void;
  close: () => Promise<void>;
}> {
  const seen: string[] = [];
  const t = new URL(target);
  const server = http.createServer((req, res) => {
    seen.push(req.url ?? '');
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const headers = { ...req.headers };
      delete headers['transfer-encoding'];
      if (body.length > 0) headers['content-length'] = String(body.length);
      const up = http.request(
        { host: t.hostname, port: t.port, method: req.method, path: req.url, headers, agent: false },
        (ur) => {
          const out: Buffer[] = [];
          ur.on('data', (c: Buffer) => out.push(c));
          ur.on('end', () => {
            const b = Buffer.concat(out);
            const h = { ...ur.headers };
            delete h['transfer-encoding'];
            delete h['connection'];
            h['content-length'] = String(b.length);
            res.writeHead(ur.statusCode ?? 502, h);
            res.end(req.method === 'HEAD' ? undefined : b);
          });
        },
      );
      up.on('error', () => {
        res.writeHead(502, { 'content-length': '0' });
        res.end();
      });
      up.end(body.length > 0 ? body : undefined);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    count: (prefix) => seen.filter((p) => p.startsWith(prefix)).length,
    reset: () => {
      seen.length = 0;
    },
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

describe('security review 2: the /v2 pipeline after issue 12', { timeout: 300_000 }, () => {
  let registry: RegistryHandle;
  let proxy: Awaited<ReturnType<typeof countingProxy>>;
  let gate: TestGate;
  const release = generateKeyPair('ecdsa-p256');
  const users = { consumer: 'consumer-password', publisher: 'publisher-password' };

  before(async () => {
    registry = await startRegistry();
    proxy = await countingProxy(registry.url);
    gate = await startTestGate({
      registryUrl: proxy.url,
      users,
      policy: {
        access: [
          // The consumer may pull everything except `secret/**`; the publisher pushes `pub/**` and
          // `victim/**` (attacker (a)), and may pull but not push `other/**`.
          {
            repos: ['pub/**', 'victim/**'],
            pull: ['consumer', 'publisher'],
            push: ['publisher'],
            delete: [],
          },
          {
            repos: ['other/**', 'att/**', 'nest/**', 'alg/**'],
            pull: ['consumer', 'publisher'],
            push: [],
            delete: [],
          },
          { repos: ['zzz/only'], pull: ['consumer'], push: [], delete: [] },
          { repos: ['secret/**'], pull: [], push: [], delete: [] },
        ],
      },
      trustRules: [{ repos: ['**'], keys: ['release'] }],
      trustedKeys: { release: release.publicKeyPem },
    });
  });
  after(async () => {
    await gate?.close();
    await proxy?.close();
    await registry?.stop();
  });

  const token = (user: keyof typeof users, scopes: string[]): Promise<string> =>
    getToken(gate.url, gate.ca, user, users[user], scopes);
  const pull = async (repo: string, ref: string, method = 'GET', accept = ALL): Promise<Reply> =>
    request(gate.url, gate.ca, {
      method,
      path: `/v2/${repo}/manifests/${ref}`,
      headers: { ...bearer(await token('consumer', [`repository:${repo}:pull`])), accept },
    });
  const blob = async (repo: string, digest: string): Promise<Reply> =>
    request(gate.url, gate.ca, {
      path: `/v2/${repo}/blobs/${digest}`,
      headers: bearer(await token('consumer', [`repository:${repo}:pull`])),
    });

  // ------------------------------------------------------------------------------------------
  // Signature-exemption siblings
  // ------------------------------------------------------------------------------------------

  it('HELD: the .sig tag of a digest signed for ANOTHER repository, copied in (while trust was off): served as a signature, but the image stays unsigned', async () => {
    const img = await pushRandomImage(registry.url, 'other/app', 'v1');
    await signDirect(registry.url, 'other/app', img.digest, release.pkcs8Der);
    // The same image and the other repository's signature artifact, written into victim/app.
    await pushRandomImage(registry.url, 'victim/app', 'filler');
    for (const b of img.blobs) {
      await pushBlob(
        registry.url,
        'victim/app',
        (await direct(registry.url, 'GET', `/v2/other/app/blobs/${b}`)).body,
      );
    }
    await pushManifest(registry.url, 'victim/app', 'v1', img.bytes, OCI);
    await signDirect(registry.url, 'victim/app', img.digest, release.pkcs8Der, {
      dockerReference: 'localhost/other/app',
    });
    assert.equal((await pull('other/app', 'v1')).status, 200, 'control: signed where it belongs');
    for (const method of ['GET', 'HEAD']) {
      assert.equal((await pull('victim/app', 'v1', method)).status, 403, `${method} by tag`);
      assert.equal((await pull('victim/app', img.digest, method)).status, 403, `${method} by digest`);
    }
    assert.equal((await pull('victim/app', signatureTagFor(img.digest))).status, 200);
    assertBlobNotAdmitted(await blob('victim/app', img.blobs[1]!), 'the layer became readable');
  });

  it('HELD: a publisher cannot push, through trustgate, a .sig whose only signature was made for another repository', async () => {
    const img = await pushRandomImage(registry.url, 'other/app2', 'v1');
    const { sigManifest } = await signDirect(registry.url, 'other/app2', img.digest, release.pkcs8Der);
    const parsed = JSON.parse(sigManifest.toString()) as {
      config: { digest: string };
      layers: Array<{ digest: string }>;
    };
    for (const d of [parsed.config.digest, parsed.layers[0]!.digest]) {
      await pushBlob(
        registry.url,
        'pub/app2',
        (await direct(registry.url, 'GET', `/v2/other/app2/blobs/${d}`)).body,
      );
    }
    const t = await token('publisher', ['repository:pub/app2:pull,push']);
    const r = await request(gate.url, gate.ca, {
      method: 'PUT',
      path: `/v2/pub/app2/manifests/${signatureTagFor(img.digest)}`,
      headers: { ...bearer(t), 'content-type': OCI },
      body: sigManifest,
    });
    assert.equal(r.status, 403, r.body.toString());
    const upstream = await direct(
      registry.url,
      'GET',
      `/v2/pub/app2/manifests/${signatureTagFor(img.digest)}`,
      undefined,
      {
        accept: OCI,
      },
    );
    assert.equal(upstream.status, 404, 'the refused push reached the registry');
  });

  it('HELD: a .sig read with a restrictive Accept or by HEAD admits nothing beyond payloads; the .att tag (attestation) is verified like any manifest', async () => {
    const img = await pushRandomImage(registry.url, 'att/app', 'v1');
    await signDirect(registry.url, 'att/app', img.digest, release.pkcs8Der);
    const sigTag = signatureTagFor(img.digest);
    assert.equal((await pull('att/app', sigTag, 'HEAD')).status, 200);
    assert.equal((await pull('att/app', sigTag, 'GET', MEDIA_TYPES.dockerManifest)).status, 404);
    // A legacy attestation (DSSE layer) under sha256-<hex>.att, written while trust was off.
    const env = Buffer.from(
      JSON.stringify({ payloadType: 'application/vnd.in-toto+json', payload: '', signatures: [] }),
    );
    const envDigest = await pushBlob(registry.url, 'att/app', env);
    const cfg = Buffer.from('{}');
    const cfgDigest = await pushBlob(registry.url, 'att/app', cfg);
    const att = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI,
        config: { mediaType: MEDIA_TYPES.ociConfig, digest: cfgDigest, size: cfg.length },
        layers: [{ mediaType: 'application/vnd.dsse.envelope.v1+json', digest: envDigest, size: env.length }],
      }),
    );
    const attTag = sigTag.replace(/\.sig$/, '.att');
    await pushManifest(registry.url, 'att/app', attTag, att, OCI);
    assert.equal((await pull('att/app', attTag)).status, 403);
    assertBlobNotAdmitted(await blob('att/app', envDigest));
  });

  it('HELD: a signature artifact as the child of an unsigned index, and an index under a .sig tag, are verified (refused)', async () => {
    const img = await pushRandomImage(registry.url, 'nest/app', 'v1');
    const { sigManifest } = await signDirect(registry.url, 'nest/app', img.digest, release.pkcs8Der);
    const sigDigest = sha256(sigManifest);
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: [
          {
            mediaType: OCI,
            digest: sigDigest,
            size: sigManifest.length,
            platform: { architecture: 'amd64', os: 'linux' },
          },
        ],
      }),
    );
    await pushManifest(registry.url, 'nest/app', 'idx', index, OCI_INDEX);
    assert.equal((await pull('nest/app', 'idx')).status, 403);
    assert.equal((await pull('nest/app', sigDigest)).status, 403);
    // An index written under a .sig tag (trust off at the time) is no signature artifact.
    const other = await pushRandomImage(registry.url, 'nest/app', 'v2');
    await pushManifest(registry.url, 'nest/app', signatureTagFor(other.digest), index, OCI_INDEX);
    assert.equal((await pull('nest/app', signatureTagFor(other.digest))).status, 403);
    assert.equal((await pull('nest/app', 'v2')).status, 403, 'the index under .sig counted as a signature');
  });

  it('HELD: a signed manifest uploaded as a blob under a sha512 digest is not served by that digest', async () => {
    const img = await pushRandomImage(registry.url, 'alg/app', 'v1');
    await signDirect(registry.url, 'alg/app', img.digest, release.pkcs8Der);
    assert.equal((await pull('alg/app', 'v1')).status, 200);
    const d512 = `sha512:${createHash('sha512').update(img.bytes).digest('hex')}`;
    const start = await direct(registry.url, 'POST', '/v2/alg/app/blobs/uploads/');
    const loc = new URL(String(start.headers.location), registry.url);
    loc.searchParams.set('digest', d512);
    const put = await direct(registry.url, 'PUT', loc.pathname + loc.search, img.bytes, {
      'content-type': 'application/octet-stream',
    });
    const upstream = await direct(registry.url, 'GET', `/v2/alg/app/manifests/${d512}`, undefined, {
      accept: ALL,
    });
    const r = await pull('alg/app', d512);
    assert.notEqual(r.status, 200, `served by sha512 (registry PUT ${put.status}, GET ${upstream.status})`);
    assert.notEqual((await blob('alg/app', d512)).status, 200);
  });

  // ------------------------------------------------------------------------------------------
  // Headers Go reads differently: Connection-named headers
  // ------------------------------------------------------------------------------------------

  it('HELD: `Connection: content-type` on an upload start with a form-shaped octet-stream body does not turn it into a mount', async () => {
    const secret = await pushBlob(registry.url, 'secret/repo', Buffer.from('secret bytes ' + Date.now()));
    const t = await token('publisher', ['repository:pub/mount:pull,push', 'repository:secret/repo:pull']);
    const body = `mount=${encodeURIComponent(secret)}&from=secret%2Frepo`;
    const r = await request(gate.url, gate.ca, {
      method: 'POST',
      path: '/v2/pub/mount/blobs/uploads/',
      headers: { ...bearer(t), 'content-type': 'application/octet-stream', connection: 'content-type' },
      body,
    });
    assert.notEqual(r.status, 201, 'the body was read as a form: mounted');
    const linked = await direct(registry.url, 'HEAD', `/v2/pub/mount/blobs/${secret}`);
    assert.equal(linked.status, 404, 'secret blob linked into pub/mount');
  });

  it('fixed (low, review 2): `Connection: host` makes registry:2 build the upload Location from its own internal address', async () => {
    const t = await token('publisher', ['repository:pub/loc:pull,push']);
    const normal = await request(gate.url, gate.ca, {
      method: 'POST',
      path: '/v2/pub/loc/blobs/uploads/',
      headers: { ...bearer(t), 'content-length': '0' },
    });
    assert.equal(normal.status, 202);
    assert.match(
      String(normal.headers.location),
      new RegExp(`^(https://${gate.host.replace(/\./g, '\\.')})?/v2/`),
    );
    const r = await request(gate.url, gate.ca, {
      method: 'POST',
      path: '/v2/pub/loc/blobs/uploads/',
      headers: { ...bearer(t), 'content-length': '0', connection: 'authorization, host' },
    });
    const loc = String(r.headers.location);
    const registryHost = new URL(proxy.url).host;
    assert.ok(
      !loc.includes(registryHost) && !loc.includes(new URL(registry.url).host),
      `upload Location names the registry behind trustgate: ${loc}`,
    );
  });

  it('HELD: `Connection: authorization, host, range` on a blob read of an admitted blob still serves the right bytes', async () => {
    const img = await pushRandomImage(registry.url, 'other/conn', 'v1');
    await signDirect(registry.url, 'other/conn', img.digest, release.pkcs8Der);
    assert.equal((await pull('other/conn', 'v1')).status, 200);
    const t = await token('consumer', ['repository:other/conn:pull']);
    const r = await request(gate.url, gate.ca, {
      path: `/v2/other/conn/blobs/${img.blobs[1]}`,
      headers: { ...bearer(t), connection: 'authorization, host, range', range: 'bytes=0-9' },
    });
    assert.ok(r.status === 200 || r.status === 206, String(r.status));
    if (r.status === 200) assert.equal(sha256(r.body), img.blobs[1]);
    // A blob of the same repository that no verified manifest names stays refused.
    const loose = await pushBlob(registry.url, 'other/conn', Buffer.from('loose ' + Date.now()));
    const r2 = await request(gate.url, gate.ca, {
      path: `/v2/other/conn/blobs/${loose}`,
      headers: { ...bearer(t), connection: 'authorization, host' },
    });
    assertBlobNotAdmitted(r2, 'a loose blob');
  });

  it('HELD: `Connection: content-length` on an upload PATCH still stores exactly the bytes sent (I5)', async () => {
    const t = await token('publisher', ['repository:pub/cl:pull,push']);
    const start = await request(gate.url, gate.ca, {
      method: 'POST',
      path: '/v2/pub/cl/blobs/uploads/',
      headers: { ...bearer(t), 'content-length': '0' },
    });
    assert.equal(start.status, 202);
    const data = Buffer.from('chunk of a layer ' + Date.now());
    const loc = new URL(String(start.headers.location), gate.url);
    const patch = await request(gate.url, gate.ca, {
      method: 'PATCH',
      path: loc.pathname + loc.search,
      headers: { ...bearer(t), 'content-type': 'application/octet-stream', connection: 'content-length' },
      body: data,
    });
    assert.equal(patch.status, 202, patch.body.toString());
    const next = new URL(String(patch.headers.location), gate.url);
    next.searchParams.set('digest', sha256(data));
    const put = await request(gate.url, gate.ca, {
      method: 'PUT',
      path: next.pathname + next.search,
      headers: { ...bearer(t), 'content-length': '0' },
    });
    assert.equal(put.status, 201, put.body.toString());
    assert.deepEqual((await direct(registry.url, 'GET', `/v2/pub/cl/blobs/${sha256(data)}`)).body, data);
  });

  it('fixed (low, review 2): `Connection: host` on a manifest PUT: the relayed Location names the internal registry too', async () => {
    const img = await pushRandomImage(registry.url, 'pub/locm', 'seed');
    const t = await token('publisher', ['repository:pub/locm:pull,push']);
    const r = await request(gate.url, gate.ca, {
      method: 'PUT',
      path: '/v2/pub/locm/manifests/v2',
      headers: { ...bearer(t), 'content-type': OCI, connection: 'host' },
      body: img.bytes,
    });
    assert.equal(r.status, 201, r.body.toString());
    const loc = String(r.headers.location);
    assert.ok(!loc.includes(new URL(proxy.url).host), `manifest Location names the registry: ${loc}`);
  });

  // ------------------------------------------------------------------------------------------
  // Catalog
  // ------------------------------------------------------------------------------------------

  it('fixed (low, review 2, amplification): one filtered catalog request with n=1 costs up to 100 registry catalog walks', async () => {
    for (let i = 0; i < 40; i++) {
      await pushRandomImage(registry.url, `aaa/r${String(i).padStart(2, '0')}`, 'v1', 1, 16);
    }
    await pushRandomImage(registry.url, 'zzz/only', 'v1', 1, 16);
    const t = await getToken(gate.url, gate.ca, 'consumer', users.consumer, ['registry:catalog:*']);
    proxy.reset();
    const r = await request(gate.url, gate.ca, { path: '/v2/_catalog?n=1', headers: bearer(t) });
    assert.equal(r.status, 200, r.body.toString());
    const walks = proxy.count('/v2/_catalog');
    // Each registry:2 catalog page walks the repository tree from the start; a client-chosen n=1
    // turns one request into one walk per hidden repository (bounded only by MAX_CATALOG_PAGES).
    assert.ok(walks <= 5, `one client request caused ${walks} upstream catalog requests`);
  });
});
