/**
 * Distribution-protocol attacks through trustgate against a real registry:2: cross-repository
 * mounts, uploads moved between repositories, catalog leaks, oversized and ambiguous manifests
 * (I2, I4, I5). Spec rules cited are from the OCI distribution spec v1.1 and registry:2 v2.8.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { generateKeyPair } from '../../src/core/signature/sign.js';
import { startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';
import { assertBlobNotAdmitted, bearer, getToken, request, type Reply } from '../helpers/http.js';
import { direct, pushBlob, pushRandomImage, sha256 } from '../helpers/registry-direct.js';
import { signDirect } from '../helpers/sign.js';

const OCI = 'application/vnd.oci.image.manifest.v1+json';
const users = { alice: 'alice-password-1', consumer: 'consumer-password', root: 'root-password-1' };

describe('security: registry protocol', { timeout: 180_000 }, () => {
  let registry: RegistryHandle;
  let gate: TestGate;
  const release = generateKeyPair('ecdsa-p256');

  before(async () => {
    registry = await startRegistry();
    gate = await startTestGate({
      registryUrl: registry.url,
      users,
      policy: {
        admins: ['root'],
        access: [
          { repos: ['prod/**'], pull: ['alice', 'consumer'], push: [], delete: [] },
          { repos: ['scratch/alice'], pull: ['alice'], push: ['alice'], delete: ['alice'] },
          { repos: ['scratch/other'], pull: ['alice'], push: ['alice'], delete: [] },
          { repos: ['hidden/**'], pull: ['root'], push: [], delete: [] },
        ],
      },
      trustRules: [
        { repos: ['prod/**'], keys: ['release'] },
        { repos: ['**'], mode: 'off' },
      ],
      trustedKeys: { release: release.publicKeyPem },
    });
  });

  after(async () => {
    await gate?.close();
    await registry?.stop();
  });

  const tok = (u: keyof typeof users, scopes: string[]): Promise<string> =>
    getToken(gate.url, gate.ca, u, users[u], scopes);
  const req = (method: string, path: string, t: string, extra: Record<string, string> = {}, body?: Buffer) =>
    request(gate.url, gate.ca, { method, path, headers: { ...bearer(t), ...extra }, body });

  it('a mount of a blob that a pull-only caller could not GET is dropped (unsigned image layer)', async () => {
    // I4 + I1: pull on `from` is not enough when `from` would refuse the blob itself (it belongs to
    // an unsigned image); otherwise mount-then-read in one's own repository bypasses the check.
    const img = await pushRandomImage(registry.url, 'prod/unsigned', 'v1');
    const t = await tok('alice', ['repository:scratch/alice:pull,push', 'repository:prod/unsigned:pull']);
    const layer = img.blobs[1]!;
    assertBlobNotAdmitted(await req('GET', `/v2/prod/unsigned/blobs/${layer}`, t), 'control');
    const r = await req('POST', `/v2/scratch/alice/blobs/uploads/?mount=${layer}&from=prod/unsigned`, t);
    assert.equal(r.status, 202, `mount must fall back to a plain upload: ${r.status}`);
    const head = await direct(registry.url, 'HEAD', `/v2/scratch/alice/blobs/${layer}`);
    assert.equal(head.status, 404, 'the blob was mounted');
    // The manifest bytes are a blob too: mounting them must not work either.
    const r2 = await req(
      'POST',
      `/v2/scratch/alice/blobs/uploads/?mount=${img.digest}&from=prod/unsigned`,
      t,
    );
    assert.notEqual(r2.status, 201);
    assert.equal((await req('GET', `/v2/scratch/alice/blobs/${img.digest}`, t)).status, 404);
  });

  it('a mount of a blob of a verified image still works', async () => {
    const img = await pushRandomImage(registry.url, 'prod/signed', 'v1');
    await signDirect(registry.url, 'prod/signed', img.digest, release.pkcs8Der);
    const t = await tok('alice', ['repository:scratch/alice:pull,push', 'repository:prod/signed:pull']);
    const pull = await req('GET', '/v2/prod/signed/manifests/v1', t, { accept: OCI });
    assert.equal(pull.status, 200, pull.body.toString());
    const r = await req(
      'POST',
      `/v2/scratch/alice/blobs/uploads/?mount=${img.blobs[1]!}&from=prod/signed`,
      t,
    );
    assert.equal(r.status, 201, r.body.toString());
  });

  it('an upload started in one repository cannot be finished through another', async () => {
    const t = await tok('alice', [
      'repository:scratch/alice:pull,push',
      'repository:scratch/other:pull,push',
    ]);
    const start = await req('POST', '/v2/scratch/alice/blobs/uploads/', t);
    assert.equal(start.status, 202);
    const loc = new URL(String(start.headers.location), gate.url);
    const data = Buffer.from('moved upload');
    const moved =
      loc.pathname.replace('/scratch/alice/', '/scratch/other/') + loc.search + `&digest=${sha256(data)}`;
    const r = await req('PUT', moved, t, { 'content-type': 'application/octet-stream' }, data);
    assert.ok(r.status >= 400, `finished in another repository: ${r.status}`);
    for (const repo of ['scratch/other', 'scratch/alice']) {
      assert.equal((await direct(registry.url, 'HEAD', `/v2/${repo}/blobs/${sha256(data)}`)).status, 404);
    }
    // And the status of an upload cannot be read through a repository that does not own it.
    const st = await req('GET', loc.pathname.replace('/scratch/alice/', '/scratch/other/') + loc.search, t);
    assert.ok(st.status >= 400, `upload status leaked: ${st.status}`);
  });

  it('an upload id of another repository with a forged _state is refused', async () => {
    const t = await tok('alice', ['repository:scratch/other:pull,push']);
    const data = Buffer.from('forged');
    const forged = Buffer.from(JSON.stringify({ Name: 'scratch/other', UUID: 'x', Offset: 0 })).toString(
      'base64url',
    );
    const r = await req(
      'PUT',
      `/v2/scratch/other/blobs/uploads/x?_state=${forged}&digest=${sha256(data)}`,
      t,
      { 'content-type': 'application/octet-stream' },
      data,
    );
    assert.ok(r.status >= 400 && r.status < 500, String(r.status));
  });

  it('catalog pagination does not leak hidden repository names in the Link header', async () => {
    await pushRandomImage(registry.url, 'hidden/aaa-secret-name', 'v1');
    await pushRandomImage(registry.url, 'hidden/bbb-secret-name', 'v1');
    const t = await tok('alice', ['registry:catalog:*']);
    const seen: string[] = [];
    let next: string | undefined = '/v2/_catalog?n=1';
    for (let i = 0; i < 20 && next; i++) {
      const r: Reply = await req('GET', next, t);
      assert.equal(r.status, 200, r.body.toString());
      assert.doesNotMatch(`${r.headers.link ?? ''} ${r.body.toString()}`, /secret-name/);
      seen.push(...(r.json() as { repositories: string[] }).repositories);
      const m = /<([^>]+)>/.exec(String(r.headers.link ?? ''));
      next = m ? m[1] : undefined;
    }
    assert.ok(
      seen.includes('prod/unsigned'),
      `pagination still reaches visible repositories: ${seen.join(',')}`,
    );
    assert.ok(!seen.some((s) => s.startsWith('hidden/')));
  });

  it('a tag list needs pull on that repository; a hidden one is refused like a missing one', async () => {
    const t = await tok('alice', ['repository:hidden/aaa-secret-name:pull', 'repository:hidden/nope:pull']);
    const a = await req('GET', '/v2/hidden/aaa-secret-name/tags/list', t);
    const b = await req('GET', '/v2/hidden/nope/tags/list', t);
    assert.equal(a.status, 403);
    assert.equal(b.status, 403);
    assert.equal(
      a.body.toString().replaceAll('aaa-secret-name', 'X'),
      b.body.toString().replaceAll('nope', 'X'),
    );
  });

  describe('manifest pushes', () => {
    let t: string;
    let config: string;
    let layer: string;
    before(async () => {
      t = await tok('alice', ['repository:scratch/alice:pull,push']);
      config = await pushBlob(registry.url, 'scratch/alice', Buffer.from('{}'));
      layer = await pushBlob(registry.url, 'scratch/alice', Buffer.from('layer bytes'));
    });
    const manifest = (extra = ''): string =>
      `{"schemaVersion":2,"mediaType":"${OCI}","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"${config}","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"${layer}","size":11}]${extra}}`;
    const put = (tag: string, body: string | Buffer, ct = OCI) =>
      req('PUT', `/v2/scratch/alice/manifests/${tag}`, t, { 'content-type': ct }, Buffer.from(body));
    const stored = async (tag: string) =>
      (await direct(registry.url, 'HEAD', `/v2/scratch/alice/manifests/${tag}`, undefined, { accept: OCI }))
        .status;

    it('control: a plain manifest is accepted', async () => {
      assert.equal((await put('ok', manifest())).status, 201);
    });

    it('over 4 MiB (registry:2 maxManifestBodySize) is refused with 413 and nothing stored', async () => {
      const pad = `,"annotations":{"pad":"${'x'.repeat(4 * 1024 * 1024)}"}`;
      const r = await put('big', manifest(pad));
      assert.equal(r.status, 413);
      assert.equal(await stored('big'), 404);
    });

    it('duplicate and case-variant keys are refused (I2: Go reads the last / folds case)', async () => {
      const cases = [
        manifest().replace('"schemaVersion":2,', '"schemaVersion":2,"schemaVersion":2,'),
        manifest().replace(`"mediaType":"${OCI}",`, `"mediaType":"${OCI}","MediaType":"${OCI}",`),
        manifest(`,"Layers":[]`),
        manifest().replace('"layers":[{', '"layers":[{"Digest":"sha256:' + 'e'.repeat(64) + '",'),
        manifest(`,"annotations":{"a":"1","\\u0061":"2"}`),
      ];
      for (const [i, body] of cases.entries()) {
        const r = await put(`dup${i}`, body);
        assert.equal(r.status, 400, `case ${i}: ${r.status}`);
        assert.equal(await stored(`dup${i}`), 404);
      }
    });

    it('a Content-Type that conflicts with the mediaType field is refused', async () => {
      for (const [i, ct] of [
        'application/vnd.docker.distribution.manifest.v2+json',
        'application/vnd.oci.image.index.v1+json',
        'application/vnd.docker.distribution.manifest.v1+prettyjws',
      ].entries()) {
        const r = await put(`ct${i}`, manifest(), ct);
        assert.equal(r.status, 400, `${ct}: ${r.status}`);
        assert.equal(await stored(`ct${i}`), 404);
      }
    });

    it('an index shape under an image media type (and the reverse) is refused', async () => {
      const both = manifest(`,"manifests":[]`);
      assert.equal((await put('both', both)).status, 400);
      const idx = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[],"layers":[]}`;
      assert.equal((await put('idx', idx, 'application/vnd.oci.image.index.v1+json')).status, 400);
    });

    it('foreign layer URLs (non-distributable layers) are not accepted by default', async () => {
      const body = manifest().replace('"size":11}', '"size":11,"urls":["http://127.0.0.1:1/evil.tar"]}');
      const r = await put('foreign', body);
      // registry:2 v2.8 refuses it (with a 500 UNKNOWN + MANIFEST_BLOB_UNKNOWN, its own answer).
      assert.ok(r.status >= 400, `foreign URL accepted: ${r.status}`);
      assert.equal(await stored('foreign'), 404);
    });

    it('a PUT by digest whose bytes hash elsewhere is refused before the registry', async () => {
      const r = await put(`sha256:${'0'.repeat(64)}`, manifest());
      assert.equal(r.status, 400);
    });
  });
});
