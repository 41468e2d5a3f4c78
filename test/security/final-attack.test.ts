/**
 * Final adversarial review of the request path after the session's changes (pure access decision,
 * bundle referrers, referrers API, prefetch for pulls by digest, admin/exceptions). Three roles
 * attack a real trustgate over a real registry:2: a pull-only client of repo A, a publisher of A
 * without a trusted key, and a pusher of another repository B. Each test is named HELD (the defence
 * stood) or BROKEN (fails on main; severity given). Setup writes straight into registry:2 only where
 * the attacker could have pushed the same bytes through trustgate (publisher of A / pusher of B).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { generateKeyPair } from '../../src/core/signature/sign.js';
import { MEDIA_TYPES } from '../../src/core/manifest.js';
import { EMPTY_JSON_DIGEST, MEDIA_TYPE_OCI_EMPTY } from '../../src/core/referrers.js';
import { buildCosignSignBundle, bundleSignerFor } from '../../src/core/evidence/bundle-writer.js';
import { signatureTagFor } from '../../src/core/reference.js';
import { startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';
import { ACCEPT_ALL } from '../helpers/trust-stack.js';
import { assertBlobNotAdmitted, bearer, getToken, request, type Reply } from '../helpers/http.js';
import { direct, pushBlob, pushManifest, pushRandomImage, sha256 } from '../helpers/registry-direct.js';
import { signDirect } from '../helpers/sign.js';

const OCI = MEDIA_TYPES.ociManifest;
const OCI_INDEX = MEDIA_TYPES.ociIndex;
const BUNDLE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
const A = 'team/a';
const B = 'team/b';
const C = 'secret/c';
const D = 'team/d';
const USERS = {
  consumer: 'consumer-pw',
  publisher: 'publisher-pw',
  pusherb: 'pusherb-pw',
  admin: 'admin-pw',
  mixed: 'mixed-pw',
};
type User = keyof typeof USERS;

describe('final attack: three roles against the running gate', { timeout: 300_000 }, () => {
  const release = generateKeyPair('ecdsa-p256');
  const attacker = generateKeyPair('ecdsa-p256');
  const dkey = generateKeyPair('ecdsa-p256');
  let registry: RegistryHandle;
  let gate: TestGate;
  let signedA: { digest: string; bytes: Buffer; blobs: string[] };
  let unsignedA: { digest: string; bytes: Buffer; blobs: string[] };
  let signedC: { digest: string; bytes: Buffer; blobs: string[] };
  let unsignedC: { digest: string; bytes: Buffer; blobs: string[] };

  before(async () => {
    registry = await startRegistry();
    gate = await startTestGate({
      registryUrl: registry.url,
      users: { ...USERS },
      policy: {
        access: [
          { repos: [A], pull: ['consumer', 'publisher', 'mixed'], push: ['publisher'], delete: [] },
          { repos: [B], pull: ['pusherb', 'mixed'], push: ['pusherb', 'mixed'], delete: [] },
          { repos: [C], pull: ['admin'], push: [], delete: [] },
          { repos: [D], pull: ['admin'], push: [], delete: [] },
        ],
      },
      trustRules: [
        { repos: [D], keys: ['dkey'] },
        { repos: ['**'], keys: ['release'] },
      ],
      trustedKeys: { release: release.publicKeyPem, dkey: dkey.publicKeyPem },
    });
    signedA = await pushRandomImage(registry.url, A, 'signed');
    await signDirect(registry.url, A, signedA.digest, release.pkcs8Der);
    unsignedA = await pushRandomImage(registry.url, A, 'unsigned');
    signedC = await pushRandomImage(registry.url, C, 'signed');
    await signDirect(registry.url, C, signedC.digest, release.pkcs8Der);
    unsignedC = await pushRandomImage(registry.url, C, 'unsigned');
  });
  after(async () => {
    await gate?.close();
    await registry?.stop();
  });

  const token = (user: User, scopes: string[]): Promise<string> =>
    getToken(gate.url, gate.ca, user, USERS[user], scopes);
  const get = async (user: User, repo: string, p: string, method = 'GET', actions = 'pull'): Promise<Reply> =>
    request(gate.url, gate.ca, {
      method,
      path: p,
      headers: { ...bearer(await token(user, [`repository:${repo}:${actions}`])), accept: ACCEPT_ALL },
    });
  const put = async (user: User, repo: string, ref: string, body: Buffer, ct: string = OCI): Promise<Reply> =>
    request(gate.url, gate.ca, {
      method: 'PUT',
      path: `/v2/${repo}/manifests/${ref}`,
      headers: { ...bearer(await token(user, [`repository:${repo}:pull,push`])), 'content-type': ct },
      body,
    });
  const pullA = (ref: string, method = 'GET'): Promise<Reply> =>
    get('consumer', A, `/v2/${A}/manifests/${ref}`, method);

  function bundleReferrer(
    subject: { digest: string; bytes: Buffer },
    bundleDigest: string,
    bundleSize: number,
  ): Buffer {
    return Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI,
        artifactType: BUNDLE,
        config: { mediaType: MEDIA_TYPE_OCI_EMPTY, artifactType: BUNDLE, digest: EMPTY_JSON_DIGEST, size: 2 },
        layers: [{ mediaType: BUNDLE, digest: bundleDigest, size: bundleSize }],
        subject: { mediaType: OCI, digest: subject.digest, size: subject.bytes.length },
        annotations: { 'dev.sigstore.bundle.predicateType': 'https://sigstore.dev/cosign/sign/v1' },
      }),
    );
  }

  // ---- Role 1: a pull-only client of A ----

  it('HELD (pull-only): the signed image is served; the unsigned one is refused by tag, by digest and by HEAD', async () => {
    assert.equal((await pullA('signed')).status, 200);
    for (const ref of ['unsigned', unsignedA.digest]) {
      for (const m of ['GET', 'HEAD']) {
        const r = await pullA(ref, m);
        assert.equal(r.status, 403, `${m} ${ref}: ${r.status} ${r.body.toString()}`);
      }
    }
  });

  it('HELD (pull-only): blobs of the unsigned image are not served, even after the refusal is cached', async () => {
    await pullA(unsignedA.digest);
    for (const b of unsignedA.blobs) assertBlobNotAdmitted(await get('consumer', A, `/v2/${A}/blobs/${b}`));
    // a signed image's blob is served
    const ok = await get('consumer', A, `/v2/${A}/blobs/${signedA.blobs[0]!}`);
    assert.equal(ok.status, 200);
  });

  it('HELD (pull-only): a digest that lives only in another repository is not served or prefetched through A', async () => {
    for (const d of [signedC.digest, unsignedC.digest]) {
      const r = await pullA(d);
      assert.notEqual(r.status, 200, `${d} served through A`);
      assert.doesNotMatch(r.body.toString(), /secret\/c/);
    }
    // a C blob asked through A: not served (registry:2 keys blobs per repo link; trustgate must not widen)
    for (const b of signedC.blobs) assertBlobNotAdmitted(await get('consumer', A, `/v2/${A}/blobs/${b}`));
  });

  it('HELD (pull-only): the token endpoint grants no scope on C and no push on A; requests on C are refused', async () => {
    const t = await token('consumer', [`repository:${C}:pull`, `repository:${A}:pull,push`]);
    const payload = JSON.parse(Buffer.from(t.split('.')[1]!, 'base64url').toString()) as {
      access?: Array<{ name: string; actions: string[] }>;
    };
    for (const a of payload.access ?? []) {
      assert.notEqual(a.name, C);
      if (a.name === A) assert.deepEqual(a.actions, ['pull']);
    }
    for (const p of [
      `/v2/${C}/manifests/signed`,
      `/v2/${C}/manifests/${signedC.digest}`,
      `/v2/${C}/blobs/${signedC.blobs[0]!}`,
      `/v2/${C}/tags/list`,
      `/v2/${C}/referrers/${signedC.digest}`,
    ]) {
      const r = await request(gate.url, gate.ca, { path: p, headers: { ...bearer(t), accept: ACCEPT_ALL } });
      assert.ok(r.status === 401 || r.status === 403, `${p}: ${r.status}`);
    }
  });

  it('HELD (pull-only): the catalog does not name repositories the caller cannot pull', async () => {
    const t = await token('consumer', ['registry:catalog:*']);
    const r = await request(gate.url, gate.ca, { path: '/v2/_catalog', headers: bearer(t) });
    assert.doesNotMatch(r.body.toString(), /secret\/c|team\/b/, `${r.status} ${r.body.toString()}`);
  });

  it('HELD (pull-only): the referrers API of A does not answer for a subject in C', async () => {
    const r = await get('consumer', A, `/v2/${A}/referrers/${signedC.digest}`);
    if (r.status === 200) {
      const idx = r.json() as { manifests: unknown[] };
      assert.deepEqual(idx.manifests, [], 'a C subject lists referrers through A');
    }
  });

  it('HELD (pull-only): the admin API and /exceptions refuse a registry token', async () => {
    const t = await token('consumer', [`repository:${A}:pull`]);
    for (const [m, p] of [
      ['GET', '/admin/v1/keys'],
      ['GET', '/admin/v1/exceptions'],
      ['POST', '/admin/v1/exceptions'],
      ['GET', '/admin/v1/users'],
    ] as const) {
      const r = await request(gate.url, gate.ca, {
        method: m,
        path: p,
        headers: { ...bearer(t), 'content-type': 'application/json' },
        body:
          m === 'POST'
            ? Buffer.from('{"repos":["**"],"cve":"CVE-2026-0001","expires":"2099-01-01"}')
            : undefined,
      });
      assert.ok(r.status === 401 || r.status === 403 || r.status === 404, `${m} ${p}: ${r.status}`);
    }
  });

  it('HELD (pull-only): path confusion (dot segments, encoded slashes, case, double slashes) does not reach C or unsigned bytes', async () => {
    const t = await token('consumer', [`repository:${A}:pull`]);
    const hex = unsignedC.digest.slice(7);
    for (const p of [
      `/v2/${A}/../../${C}/manifests/unsigned`,
      `/v2/${A}/%2e%2e/%2e%2e/${C}/manifests/unsigned`,
      `/v2/team%2Fa/manifests/unsigned`,
      `/v2/TEAM/A/manifests/unsigned`,
      `//v2/${A}/manifests/unsigned`,
      `/v2/${A}//manifests/unsigned`,
      `/v2/${A}/manifests/unsigned?ns=x`,
      `/v2/${A}/manifests/unsigned#x`,
      `/v2/${A}/manifests/SHA256:${unsignedA.digest.slice(7)}`,
      `/v2/${A}/manifests/sha256:${unsignedA.digest.slice(7).toUpperCase()}`,
      `/v2/${A}/manifests/${unsignedA.digest}%00`,
      `/v2/${A}/blobs/../../${C}/blobs/sha256:${hex}`,
    ]) {
      const r = await request(gate.url, gate.ca, { path: p, headers: { ...bearer(t), accept: ACCEPT_ALL } });
      assert.notEqual(r.status, 200, `${p} served`);
      assert.ok(r.status >= 400, `${p}: ${r.status}`);
    }
    for (const b of unsignedA.blobs) {
      const head = await get('consumer', A, `/v2/${A}/blobs/${b}`, 'HEAD');
      assert.equal(head.status, 404, `HEAD of unsigned blob: ${head.status}`);
    }
  });

  it('HELD (pull-only): the referrers listing and the bundle blob of an unverified subject are not served', async () => {
    const img = await pushRandomImage(registry.url, A, 'bundle-subject');
    const bundleBytes = Buffer.from(buildCosignSignBundle(img.digest, bundleSignerFor(attacker.pkcs8Der)));
    const bd = await pushBlob(registry.url, A, bundleBytes);
    await pushBlob(registry.url, A, Buffer.from('{}'));
    const ref = bundleReferrer(img, bd, bundleBytes.length);
    await put('publisher', A, sha256(ref), ref);
    const list = await get('consumer', A, `/v2/${A}/referrers/${img.digest}`);
    assert.notEqual(list.status, 200, `referrers of an unverified subject listed: ${list.body.toString()}`);
    const man = await pullA(sha256(ref));
    assert.notEqual(man.status, 200, 'the referrer manifest of an unverified subject is served');
  });

  it('HELD (keyless publisher + pull-only): an allow cached for the same digest in a repository with another trusted key does not carry over to A', async () => {
    const img = await pushRandomImage(registry.url, D, 'd');
    await signDirect(registry.url, D, img.digest, dkey.pkcs8Der);
    // the admin's pull of D caches an allow for this digest under D's rule (dkey)
    const inD = await get('admin', D, `/v2/${D}/manifests/${img.digest}`);
    assert.equal(inD.status, 200, inD.body.toString());
    // the keyless publisher pushes the same bytes into A, and a dkey signature next to them
    for (const b of img.blobs)
      await pushBlob(registry.url, A, (await direct(registry.url, 'GET', `/v2/${D}/blobs/${b}`)).body);
    assert.equal((await put('publisher', A, 'from-d', img.bytes)).status, 201);
    await signDirect(registry.url, A, img.digest, dkey.pkcs8Der);
    for (const ref of [img.digest, 'from-d']) {
      const r = await pullA(ref);
      assert.equal(r.status, 403, `${ref}: D's verdict or key carried over to A (${r.status})`);
    }
    for (const b of img.blobs) assertBlobNotAdmitted(await get('consumer', A, `/v2/${A}/blobs/${b}`));
  });

  // ---- Role 2: a publisher of A without a trusted key ----

  it('HELD (keyless publisher): a cosign .sig made with an untrusted key does not admit the image', async () => {
    const img = await pushRandomImage(registry.url, A, 'selfsigned');
    await signDirect(registry.url, A, img.digest, attacker.pkcs8Der);
    assert.equal((await pullA('selfsigned')).status, 403);
    assert.equal((await pullA(img.digest)).status, 403);
  });

  it("HELD (keyless publisher): a trusted .sig of another digest copied onto the unsigned digest's .sig tag does not admit it", async () => {
    const img = await pushRandomImage(registry.url, A, 'copied');
    const sig = await direct(
      registry.url,
      'GET',
      `/v2/${A}/manifests/${signatureTagFor(signedA.digest)}`,
      undefined,
      {
        accept: OCI,
      },
    );
    assert.equal(sig.status, 200);
    const r = await put('publisher', A, signatureTagFor(img.digest), sig.body);
    assert.ok(r.status < 300 || r.status === 403, `${r.status}`);
    assert.equal((await pullA(img.digest)).status, 403);
    assert.equal((await pullA('copied')).status, 403);
  });

  it('HELD (keyless publisher): a self-signed Sigstore bundle referrer pushed through trustgate does not admit the image', async () => {
    const img = await pushRandomImage(registry.url, A, 'bundled');
    const bundleBytes = Buffer.from(buildCosignSignBundle(img.digest, bundleSignerFor(attacker.pkcs8Der)));
    const bd = await pushBlob(registry.url, A, bundleBytes);
    await pushBlob(registry.url, A, Buffer.from('{}'));
    const ref = bundleReferrer(img, bd, bundleBytes.length);
    const r = await put('publisher', A, sha256(ref), ref);
    assert.ok(r.status === 201 || r.status === 403, `${r.status} ${r.body.toString()}`);
    assert.equal((await pullA(img.digest)).status, 403);
  });

  it('HELD (keyless publisher): a trusted bundle of the signed image re-pointed at the unsigned subject does not admit it', async () => {
    const bundleBytes = Buffer.from(buildCosignSignBundle(signedA.digest, bundleSignerFor(release.pkcs8Der)));
    const bd = await pushBlob(registry.url, A, bundleBytes);
    await pushBlob(registry.url, A, Buffer.from('{}'));
    const img = await pushRandomImage(registry.url, A, 'repointed');
    const ref = bundleReferrer(img, bd, bundleBytes.length);
    await put('publisher', A, sha256(ref), ref);
    assert.equal((await pullA(img.digest)).status, 403);
  });

  it('HELD (keyless publisher): rewriting the referrers tag sha256-<hex> of the unsigned image is refused, and the image stays refused', async () => {
    const bundleBytes = Buffer.from(buildCosignSignBundle(signedA.digest, bundleSignerFor(release.pkcs8Der)));
    const bd = await pushBlob(registry.url, A, bundleBytes);
    await pushBlob(registry.url, A, Buffer.from('{}'));
    const ref = bundleReferrer(signedA, bd, bundleBytes.length);
    const refDigest = await pushManifest(registry.url, A, sha256(ref), ref, OCI);
    const fakeIndex = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: [{ mediaType: OCI, digest: refDigest, size: ref.length, artifactType: BUNDLE }],
      }),
    );
    const tag = `sha256-${unsignedA.digest.slice(7)}`;
    const r = await put('publisher', A, tag, fakeIndex, OCI_INDEX);
    assert.notEqual(r.status, 201, 'the reserved referrers tag was written through trustgate');
    assert.equal((await pullA(unsignedA.digest)).status, 403);
  });

  it('HELD (keyless publisher): an unsigned index of a signed and an unsigned child is refused, and so is its unsigned child', async () => {
    const idx = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: [
          {
            mediaType: OCI,
            digest: signedA.digest,
            size: signedA.bytes.length,
            platform: { os: 'linux', architecture: 'amd64' },
          },
          {
            mediaType: OCI,
            digest: unsignedA.digest,
            size: unsignedA.bytes.length,
            platform: { os: 'linux', architecture: 'arm64' },
          },
        ],
      }),
    );
    const r = await put('publisher', A, 'multi', idx, OCI_INDEX);
    assert.equal(r.status, 201, r.body.toString());
    assert.equal((await pullA('multi')).status, 403);
    assert.equal((await pullA(unsignedA.digest)).status, 403);
  });

  it('HELD (keyless publisher): a runnable image pushed under a .sig tag does not make its layers pullable', async () => {
    const img = await pushRandomImage(registry.url, A, 'tmp-runnable', 1, 4096);
    const victim = `sha256:${'7'.repeat(64)}`;
    const r = await put('publisher', A, signatureTagFor(victim), img.bytes);
    assert.ok(r.status === 201 || r.status === 403, `${r.status}`);
    for (const b of img.blobs) assertBlobNotAdmitted(await get('consumer', A, `/v2/${A}/blobs/${b}`));
    const viaTag = await pullA(signatureTagFor(victim));
    assert.notEqual(viaTag.status, 200, 'a runnable image is served under a .sig tag');
  });

  it('HELD (keyless publisher): racing a tag move to unsigned bytes against pulls never serves the unsigned manifest', async () => {
    const moving = await pushRandomImage(registry.url, A, 'race');
    await signDirect(registry.url, A, moving.digest, release.pkcs8Der);
    // Tokens first, so pulls and tag moves really interleave (bounded: 8 rounds).
    const pullTok = await token('consumer', [`repository:${A}:pull`]);
    const pushTok = await token('publisher', [`repository:${A}:pull,push`]);
    const served: string[] = [];
    let unsignedStatuses = 0;
    for (let round = 0; round < 8; round++) {
      const pulls = Array.from({ length: 4 }, async () => {
        const r = await request(gate.url, gate.ca, {
          path: `/v2/${A}/manifests/race`,
          headers: { ...bearer(pullTok), accept: ACCEPT_ALL },
        });
        if (r.status === 200) served.push(sha256(r.body));
        else unsignedStatuses++;
      });
      const move = request(gate.url, gate.ca, {
        method: 'PUT',
        path: `/v2/${A}/manifests/race`,
        headers: { ...bearer(pushTok), 'content-type': OCI },
        body: round % 2 ? moving.bytes : unsignedA.bytes,
      });
      await Promise.all([...pulls, move]);
    }
    assert.ok(served.length + unsignedStatuses === 32);
    for (const d of served) assert.equal(d, moving.digest, 'unsigned bytes served during the race');
  });

  it('HELD (keyless publisher): a bundle-referrer-shaped manifest of the SIGNED subject carrying a tar layer does not serve the tar', async () => {
    const tar = Buffer.alloc(8192, 7);
    const tarDigest = await pushBlob(registry.url, A, tar);
    await pushBlob(registry.url, A, Buffer.from('{}'));
    const ref = bundleReferrer(signedA, tarDigest, tar.length);
    const pushed = await put('publisher', A, sha256(ref), ref);
    if (pushed.status !== 201) await pushManifest(registry.url, A, sha256(ref), ref, OCI);
    await pullA(sha256(ref));
    assertBlobNotAdmitted(
      await get('consumer', A, `/v2/${A}/blobs/${tarDigest}`),
      'tar under a bundle media type',
    );
  });

  // ---- Role 3: a pusher of B ----

  it("HELD (pusher of B): a cross-repo mount of A's (or C's) blobs into B is not performed", async () => {
    const t = await token('pusherb', [
      `repository:${B}:pull,push`,
      `repository:${A}:pull`,
      `repository:${C}:pull`,
    ]);
    for (const [from, blob] of [
      [A, unsignedA.blobs[0]!],
      [C, signedC.blobs[0]!],
    ] as const) {
      const r = await request(gate.url, gate.ca, {
        method: 'POST',
        path: `/v2/${B}/blobs/uploads/?mount=${blob}&from=${from}`,
        headers: bearer(t),
      });
      assert.notEqual(r.status, 201, `mounted ${from} blob into B`);
      const d = await direct(registry.url, 'HEAD', `/v2/${B}/blobs/${blob}`);
      assert.equal(d.status, 404, `${from} blob is now linked in B`);
    }
  });

  it("HELD (pull on A, push on B): mounting A's unsigned blob into B is dropped; a verified blob may be mounted", async () => {
    const t = await token('mixed', [`repository:${B}:pull,push`, `repository:${A}:pull`]);
    const mount = (blob: string) =>
      request(gate.url, gate.ca, {
        method: 'POST',
        path: `/v2/${B}/blobs/uploads/?mount=${blob}&from=${A}`,
        headers: bearer(t),
      });
    const bad = await mount(unsignedA.blobs[0]!);
    assert.notEqual(bad.status, 201, 'unsigned A blob mounted into B');
    assert.equal((await direct(registry.url, 'HEAD', `/v2/${B}/blobs/${unsignedA.blobs[0]!}`)).status, 404);
    const ok = await mount(signedA.blobs[0]!);
    assert.equal(ok.status, 201, `verified blob mount: ${ok.status} ${ok.body.toString()}`);
  });

  it("HELD (pusher of B): a referrer in B naming A's unsigned digest affects neither A's listing nor its verdict", async () => {
    const bundleBytes = Buffer.from(
      buildCosignSignBundle(unsignedA.digest, bundleSignerFor(attacker.pkcs8Der)),
    );
    const t = await token('pusherb', [`repository:${B}:pull,push`]);
    // B's blobs go through the registry directly (pusher of B may upload to B)
    const bd = await pushBlob(registry.url, B, bundleBytes);
    await pushBlob(registry.url, B, Buffer.from('{}'));
    const ref = bundleReferrer(unsignedA, bd, bundleBytes.length);
    await request(gate.url, gate.ca, {
      method: 'PUT',
      path: `/v2/${B}/manifests/${sha256(ref)}`,
      headers: { ...bearer(t), 'content-type': OCI },
      body: ref,
    });
    const list = await get('consumer', A, `/v2/${A}/referrers/${unsignedA.digest}`);
    if (list.status === 200) assert.doesNotMatch(list.body.toString(), new RegExp(sha256(ref).slice(7)));
    assert.equal((await pullA(unsignedA.digest)).status, 403);
  });

  it("HELD (pusher of B): a .sig in B for A's digest, and a push to A, tags/list of A and admin calls are refused", async () => {
    const t = await token('pusherb', [`repository:${A}:pull,push`]);
    const sig = await direct(
      registry.url,
      'GET',
      `/v2/${A}/manifests/${signatureTagFor(signedA.digest)}`,
      undefined,
      {
        accept: OCI,
      },
    );
    const pushA = await request(gate.url, gate.ca, {
      method: 'PUT',
      path: `/v2/${A}/manifests/${signatureTagFor(unsignedA.digest)}`,
      headers: { ...bearer(t), 'content-type': OCI },
      body: sig.body,
    });
    assert.ok(pushA.status === 401 || pushA.status === 403, `push to A: ${pushA.status}`);
    const tags = await request(gate.url, gate.ca, { path: `/v2/${A}/tags/list`, headers: bearer(t) });
    assert.ok(tags.status === 401 || tags.status === 403, `tags of A: ${tags.status}`);
    const del = await request(gate.url, gate.ca, {
      method: 'DELETE',
      path: `/v2/${A}/manifests/${signedA.digest}`,
      headers: bearer(t),
    });
    assert.ok(del.status === 401 || del.status === 403, `delete in A: ${del.status}`);
    const ex = await request(gate.url, gate.ca, { path: '/admin/v1/exceptions', headers: bearer(t) });
    assert.ok(ex.status === 401 || ex.status === 403 || ex.status === 404, `exceptions: ${ex.status}`);
    assert.equal((await pullA(unsignedA.digest)).status, 403);
  });
});
