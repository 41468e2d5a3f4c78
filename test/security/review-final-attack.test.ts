/**
 * Final adversarial pass over main's request path (early allow from one evidence layout,
 * background re-verification after `.sig`/referrer writes, the issued-token memory, the tag index,
 * referrers, blob admission of signature artifacts). Three identities attack a real trustgate over a
 * real registry:2, with the default config and with cache.tagIndex on over a real redis-server:
 * (a) `consumer`, pull-only on prod/app; (b) `publisher`, push on prod/app with an untrusted key;
 * (c) `devpusher`, push on dev/tool only, whose key IS trusted for dev/**.
 * "HELD: …" tests are attacks that failed. Setup writes straight into registry:2 only bytes the
 * attacker could have pushed through trustgate.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../src/server/log.js';
import { generateKeyPair } from '../../src/core/signature/sign.js';
import { MEDIA_TYPES } from '../../src/core/manifest.js';
import { EMPTY_JSON_DIGEST, MEDIA_TYPE_OCI_EMPTY } from '../../src/core/referrers.js';
import { buildCosignSignBundle, bundleSignerFor } from '../../src/core/evidence/bundle-writer.js';
import { signatureTagFor } from '../../src/core/reference.js';
import { startRedis, startRegistry, type RedisHandle, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';
import { ACCEPT_ALL } from '../helpers/trust-stack.js';
import { assertBlobNotAdmitted, bearer, getToken, request, type Reply } from '../helpers/http.js';
import { pushBlob, pushRandomImage, sha256 } from '../helpers/registry-direct.js';
import { signatureManifest, signDirect } from '../helpers/sign.js';

const OCI = MEDIA_TYPES.ociManifest;
const BUNDLE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
const PROD = 'prod/app';
const DEV = 'dev/tool';
const USERS = {
  consumer: 'consumer-pw',
  publisher: 'publisher-pw',
  devpusher: 'devpusher-pw',
  admin: 'admin-pw',
};
type User = keyof typeof USERS;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Keeps every log line the gate writes (its audit stream included). */
class Sink extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString('utf8');
    cb();
  }
}

type Image = { digest: string; bytes: Buffer; blobs: string[] };

function bundleReferrer(subject: Image, bundleDigest: string, bundleSize: number): Buffer {
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

for (const indexed of [false, true]) {
  describe(`final attack (${indexed ? 'tag index + redis' : 'default config'})`, { timeout: 300_000 }, () => {
    const release = generateKeyPair('ecdsa-p256');
    const devkey = generateKeyPair('ecdsa-p256');
    const attacker = generateKeyPair('ecdsa-p256');
    const rel2 = generateKeyPair('ecdsa-p256');
    let registry: RegistryHandle;
    let redis: RedisHandle | undefined;
    let gate: TestGate;
    let signed: Image;
    let unsigned: Image;
    const sink = new Sink();

    before(async () => {
      registry = await startRegistry();
      if (indexed) redis = await startRedis();
      gate = await startTestGate({
        registryUrl: registry.url,
        ...(redis ? { redisUrl: redis.url, tagIndex: { enabled: true, maxAgeSeconds: 3600 } } : {}),
        users: { ...USERS },
        logger: createLogger('debug', sink),
        policy: {
          admins: ['admin'],
          access: [
            { repos: [PROD], pull: ['consumer', 'publisher', 'admin'], push: ['publisher'], delete: [] },
            { repos: [DEV], pull: ['devpusher'], push: ['devpusher'], delete: [] },
          ],
        },
        trustRules: [
          { repos: ['dev/**'], keys: ['devkey'] },
          { repos: ['**'], keys: ['release', 'rel2'] },
        ],
        trustedKeys: { release: release.publicKeyPem, devkey: devkey.publicKeyPem, rel2: rel2.publicKeyPem },
      });
      signed = await pushRandomImage(registry.url, PROD, 'signed');
      await signDirect(registry.url, PROD, signed.digest, release.pkcs8Der);
      unsigned = await pushRandomImage(registry.url, PROD, 'unsigned');
    });
    after(async () => {
      await gate?.close();
      await redis?.stop();
      await registry?.stop();
    });

    const token = (user: User, scopes: string[]): Promise<string> =>
      getToken(gate.url, gate.ca, user, USERS[user], scopes);
    const call = async (
      user: User,
      repo: string,
      path: string,
      o: { method?: string; actions?: string; body?: Buffer; ct?: string } = {},
    ): Promise<Reply> =>
      request(gate.url, gate.ca, {
        method: o.method ?? 'GET',
        path,
        headers: {
          ...bearer(await token(user, [`repository:${repo}:${o.actions ?? 'pull'}`])),
          accept: ACCEPT_ALL,
          ...(o.ct ? { 'content-type': o.ct } : {}),
        },
        body: o.body,
      });
    const put = (user: User, repo: string, ref: string, body: Buffer): Promise<Reply> =>
      call(user, repo, `/v2/${repo}/manifests/${ref}`, {
        method: 'PUT',
        actions: 'pull,push',
        body,
        ct: OCI,
      });
    const pull = (ref: string, method = 'GET'): Promise<Reply> =>
      call('consumer', PROD, `/v2/${PROD}/manifests/${ref}`, { method });
    /** The unsigned image stays refused, by tag and digest, GET and HEAD, also after background work. */
    const assertUnsignedRefused = async (what: string): Promise<void> => {
      for (let round = 0; round < 3; round++) {
        for (const ref of ['unsigned', unsigned.digest]) {
          for (const m of ['GET', 'HEAD']) {
            const r = await pull(ref, m);
            assert.equal(r.status, 403, `${what}: ${m} ${ref} round ${round}: ${r.status}`);
          }
        }
        for (const b of unsigned.blobs)
          assertBlobNotAdmitted(await call('consumer', PROD, `/v2/${PROD}/blobs/${b}`), `${what}: ${b}`);
        await sleep(150);
      }
    };

    it('HELD (a): signed served; unsigned refused by tag, digest and HEAD; its blobs not served', async () => {
      const ok = await pull('signed');
      assert.equal(ok.status, 200);
      assert.equal(sha256(ok.body), signed.digest);
      await assertUnsignedRefused('baseline');
    });

    it('HELD (b): a self-signed .sig pushed through the gate is refused and counts for nothing', async () => {
      const sig = await signatureManifest(registry.url, PROD, unsigned.digest, attacker.pkcs8Der);
      const r = await put('publisher', PROD, signatureTagFor(unsigned.digest), sig);
      assert.equal(r.status, 403, r.body.toString());
      await assertUnsignedRefused('after self-signed .sig');
    });

    it('HELD (b): a self-signed bundle referrer (background re-verification, early allow) does not allow', async () => {
      const bundle = Buffer.from(buildCosignSignBundle(unsigned.digest, bundleSignerFor(attacker.pkcs8Der)));
      const bd = await pushBlob(registry.url, PROD, bundle);
      await pushBlob(registry.url, PROD, Buffer.from('{}'));
      const ref = bundleReferrer(unsigned, bd, bundle.length);
      const r = await put('publisher', PROD, sha256(ref), ref);
      assert.ok(r.status === 201 || r.status === 403, `${r.status} ${r.body.toString()}`);
      await assertUnsignedRefused('after self-signed bundle referrer');
      // The same key's bundle next to the release key's legacy signature of ANOTHER digest: nothing.
      const d2 = await pull(signed.digest);
      assert.equal(d2.status, 200);
    });

    it('HELD (b): a referrer whose "bundle" layer is an image layer does not admit that layer', async () => {
      const layer = unsigned.blobs.find((b) => b !== unsigned.blobs.at(-1)) ?? unsigned.blobs[0]!;
      const ref = bundleReferrer(unsigned, layer, 1024);
      const r = await put('publisher', PROD, sha256(ref), ref);
      assert.ok(r.status === 201 || r.status >= 400, `${r.status}`);
      // the consumer reads the referrers list and the referrer, then asks for the layer
      await call('consumer', PROD, `/v2/${PROD}/referrers/${unsigned.digest}`);
      await call('consumer', PROD, `/v2/${PROD}/manifests/${sha256(ref)}`);
      for (const b of unsigned.blobs)
        assertBlobNotAdmitted(await call('consumer', PROD, `/v2/${PROD}/blobs/${b}`), `layer ${b}`);
    });

    it('HELD (b): retagging a served tag to unsigned bytes never serves the unsigned bytes', async () => {
      const victim = await pushRandomImage(registry.url, PROD, 'moving');
      await signDirect(registry.url, PROD, victim.digest, release.pkcs8Der);
      assert.equal((await pull('moving')).status, 200); // warm every cache
      const r = await put('publisher', PROD, 'moving', unsigned.bytes);
      assert.equal(r.status, 201, r.body.toString());
      const after = await pull('moving');
      assert.ok(
        after.status === 403 || (after.status === 200 && sha256(after.body) === victim.digest),
        `moving: ${after.status} ${sha256(after.body)}`,
      );
      assert.notEqual(after.status === 200 && sha256(after.body), unsigned.digest);
    });

    it('HELD (c): a dev/tool token reaches nothing of prod/app, and prod/app scopes are not granted', async () => {
      const t = await token('devpusher', [`repository:${DEV}:pull,push`, `repository:${PROD}:pull,push`]);
      const claims = JSON.parse(Buffer.from(t.split('.')[1]!, 'base64url').toString()) as {
        access?: Array<{ name: string }>;
      };
      assert.ok(!(claims.access ?? []).some((a) => a.name === PROD), JSON.stringify(claims.access));
      const sig = await signatureManifest(registry.url, DEV, unsigned.digest, devkey.pkcs8Der);
      for (const [m, p, body] of [
        ['GET', `/v2/${PROD}/manifests/signed`, undefined],
        ['GET', `/v2/${PROD}/blobs/${signed.blobs[0]!}`, undefined],
        ['GET', `/v2/${PROD}/referrers/${signed.digest}`, undefined],
        ['GET', `/v2/${PROD}/tags/list`, undefined],
        ['PUT', `/v2/${PROD}/manifests/${signatureTagFor(unsigned.digest)}`, sig],
        ['PUT', `/v2/${PROD}/manifests/signed`, unsigned.bytes],
        ['POST', `/v2/${PROD}/blobs/uploads/?mount=${unsigned.blobs[0]!}&from=${DEV}`, undefined],
        ['DELETE', `/v2/${PROD}/manifests/${signed.digest}`, undefined],
      ] as const) {
        const r = await request(gate.url, gate.ca, {
          method: m,
          path: p,
          headers: { ...bearer(t), accept: ACCEPT_ALL, 'content-type': OCI },
          body,
        });
        assert.ok(r.status === 401 || r.status === 403, `${m} ${p}: ${r.status}`);
      }
      assert.equal(sha256((await pull('signed')).body), signed.digest);
    });

    it('HELD (c): dev/tool evidence signed by a key trusted for dev/** does not count for prod/app', async () => {
      // a .sig for prod/app's digest, with a payload naming prod/app, pushed into dev/tool
      await signDirect(registry.url, DEV, unsigned.digest, devkey.pkcs8Der, {
        dockerReference: `localhost/${PROD}`,
        storeIn: DEV,
      }).catch(() => undefined);
      const sig = await signatureManifest(registry.url, DEV, unsigned.digest, devkey.pkcs8Der);
      const viaGate = await put('devpusher', DEV, signatureTagFor(unsigned.digest), sig);
      assert.ok(viaGate.status === 201 || viaGate.status === 403, `${viaGate.status}`);
      // a bundle referrer in dev/tool naming prod/app's unsigned digest
      const bundle = Buffer.from(buildCosignSignBundle(unsigned.digest, bundleSignerFor(devkey.pkcs8Der)));
      const bd = await pushBlob(registry.url, DEV, bundle);
      await pushBlob(registry.url, DEV, Buffer.from('{}'));
      const ref = bundleReferrer(unsigned, bd, bundle.length);
      const r = await put('devpusher', DEV, sha256(ref), ref);
      assert.ok(r.status === 201 || r.status === 403, `${r.status} ${r.body.toString()}`);
      await assertUnsignedRefused('after dev/tool evidence');
      const list = await call('consumer', PROD, `/v2/${PROD}/referrers/${unsigned.digest}`);
      if (list.status === 200) {
        const idx = list.json() as { manifests: Array<{ digest: string }> };
        assert.ok(
          !idx.manifests.some((m) => m.digest === sha256(ref)),
          'dev/tool referrer listed in prod/app',
        );
      }
      // and a tag written in dev/tool does not move prod/app's tag of the same name
      const tagged = await put('devpusher', DEV, 'signed', unsigned.bytes);
      assert.ok(tagged.status === 201 || tagged.status >= 400, `${tagged.status}`);
      const s = await pull('signed');
      assert.equal(s.status, 200);
      assert.equal(sha256(s.body), signed.digest);
    });

    it('HELD (c): a flood of referrer writes to dev/tool leaves prod/app pulls correct', async () => {
      await pushBlob(registry.url, DEV, Buffer.from('{}'));
      const writes: Promise<Reply>[] = [];
      for (let i = 0; i < 24; i++) {
        const bundle = Buffer.from(
          buildCosignSignBundle(unsigned.digest, bundleSignerFor(devkey.pkcs8Der), { n: String(i) }),
        );
        const bd = await pushBlob(registry.url, DEV, bundle);
        const ref = bundleReferrer(unsigned, bd, bundle.length);
        writes.push(put('devpusher', DEV, sha256(ref), ref));
      }
      const answers = await Promise.all(writes);
      assert.ok(
        answers.every((a) => a.status === 201),
        answers.map((a) => a.status).join(' '),
      );
      assert.equal((await pull('signed')).status, 200);
      await assertUnsignedRefused('after dev/tool flood');
    });

    it('HELD (a/b): a refusal does not outlive the fix: a trusted .sig pushed through the gate serves at once', async () => {
      const img = await pushRandomImage(registry.url, PROD, 'later');
      assert.equal((await pull('later')).status, 403);
      assert.equal((await pull(img.digest)).status, 403);
      const sig = await signatureManifest(registry.url, PROD, img.digest, release.pkcs8Der);
      const r = await put('publisher', PROD, signatureTagFor(img.digest), sig);
      assert.equal(r.status, 201, r.body.toString());
      assert.equal((await pull('later')).status, 200);
      assert.equal((await pull(img.digest, 'HEAD')).status, 200);
      for (const b of img.blobs)
        assert.equal((await call('consumer', PROD, `/v2/${PROD}/blobs/${b}`)).status, 200);
    });

    it('HELD (b): an upload through the gate is not served to the pull-only client until admitted', async () => {
      const bytes = Buffer.from(`not admitted ${Math.random()}`);
      const digest = sha256(bytes);
      const start = await call('publisher', PROD, `/v2/${PROD}/blobs/uploads/`, {
        method: 'POST',
        actions: 'pull,push',
      });
      assert.equal(start.status, 202, start.body.toString());
      const loc = new URL(String(start.headers['location']), gate.url);
      loc.searchParams.set('digest', digest);
      const done = await call('publisher', PROD, loc.pathname + loc.search, {
        method: 'PUT',
        actions: 'pull,push',
        body: bytes,
        ct: 'application/octet-stream',
      });
      assert.equal(done.status, 201, done.body.toString());
      assertBlobNotAdmitted(await call('consumer', PROD, `/v2/${PROD}/blobs/${digest}`));
      assertBlobNotAdmitted(await call('publisher', PROD, `/v2/${PROD}/blobs/${digest}`));
    });
    it('HELD (b): a mount from dev/tool (not pullable by the publisher) does not bring a blob into prod/app', async () => {
      const bytes = Buffer.from(`dev only ${Math.random()}`);
      const digest = await pushBlob(registry.url, DEV, bytes);
      const r = await call('publisher', PROD, `/v2/${PROD}/blobs/uploads/?mount=${digest}&from=${DEV}`, {
        method: 'POST',
        actions: 'pull,push',
      });
      assert.notEqual(r.status, 201, `mounted: ${r.status}`);
      for (const u of ['consumer', 'publisher'] as const) {
        for (const method of ['GET', 'HEAD']) {
          const b = await call(u, PROD, `/v2/${PROD}/blobs/${digest}`, { method });
          assert.ok(b.status === 404 || b.status === 403, `${u} ${method}: ${b.status}`);
        }
      }
    });

    it('HELD (a): an allow does not outlive the withdrawal of its key (legacy + bundle, early allow, background work)', async () => {
      const img = await pushRandomImage(registry.url, PROD, 'rel2');
      // signed by rel2 in both layouts: the bundle layout alone may decide early
      const bundle = Buffer.from(buildCosignSignBundle(img.digest, bundleSignerFor(rel2.pkcs8Der)));
      const bd = await pushBlob(registry.url, PROD, bundle);
      await pushBlob(registry.url, PROD, Buffer.from('{}'));
      const ref = bundleReferrer(img, bd, bundle.length);
      assert.equal((await put('publisher', PROD, sha256(ref), ref)).status, 201);
      const sig = await signatureManifest(registry.url, PROD, img.digest, rel2.pkcs8Der);
      assert.equal((await put('publisher', PROD, signatureTagFor(img.digest), sig)).status, 201);
      assert.equal((await pull('rel2')).status, 200);
      for (const b of img.blobs)
        assert.equal((await call('consumer', PROD, `/v2/${PROD}/blobs/${b}`)).status, 200);
      // one more write starts a background re-verification; the key is revoked while it may run
      const sig2 = await signatureManifest(registry.url, PROD, img.digest, rel2.pkcs8Der);
      const pending = put('publisher', PROD, signatureTagFor(img.digest), sig2);
      const t = await getToken(gate.url, gate.ca, 'admin', USERS.admin, ['registry:admin:*']);
      const rv = await request(gate.url, gate.ca, {
        method: 'POST',
        path: '/admin/v1/keys/rel2/revoke',
        headers: { ...bearer(t), 'content-type': 'application/json' },
        body: Buffer.from('{"reason":"compromised"}'),
      });
      assert.equal(rv.status, 200, rv.body.toString());
      await pending;
      for (let round = 0; round < 3; round++) {
        for (const r of ['rel2', img.digest]) {
          for (const m of ['GET', 'HEAD'])
            assert.equal((await pull(r, m)).status, 403, `${m} ${r} round ${round}`);
        }
        for (const b of img.blobs)
          assertBlobNotAdmitted(await call('consumer', PROD, `/v2/${PROD}/blobs/${b}`));
        await sleep(200);
      }
      assert.equal((await pull('signed')).status, 200);
    });

    it('HELD: no password or token reaches the log or audit lines, nor the refusal sent to the client', async () => {
      const t = await token('consumer', [`repository:${PROD}:pull`]);
      const wrong = 'wrong-password-secret-9';
      await getToken(gate.url, gate.ca, 'consumer', wrong, [`repository:${PROD}:pull`]).catch(
        () => undefined,
      );
      const r = await request(gate.url, gate.ca, {
        path: `/v2/${PROD}/manifests/unsigned?access_token=${t}&password=${USERS.consumer}`,
        headers: { ...bearer(t), accept: ACCEPT_ALL },
      });
      assert.equal(r.status, 403);
      const basic = await request(gate.url, gate.ca, {
        path: `/v2/${PROD}/manifests/unsigned`,
        headers: { authorization: `Basic ${Buffer.from(`consumer:${USERS.consumer}`).toString('base64')}` },
      });
      assert.ok(basic.status >= 400);
      await sleep(150);
      assert.match(sink.text, /"audit"/, 'the audit stream is captured');
      for (const secret of [
        t,
        t.split('.')[2]!,
        USERS.consumer,
        USERS.publisher,
        USERS.devpusher,
        USERS.admin,
        wrong,
      ]) {
        assert.ok(!sink.text.includes(secret), `secret in the log: ${secret.slice(0, 12)}…`);
        assert.ok(!r.body.toString().includes(secret));
      }
    });
    it('HELD: an admin token and a refresh token are not registry tokens, nor a registry token an admin one (issued-token memory)', async () => {
      const admin = await getToken(gate.url, gate.ca, 'admin', USERS.admin, ['registry:admin:*']);
      const q = new URLSearchParams({
        service: 'trustgate',
        scope: `repository:${PROD}:pull`,
        offline_token: 'true',
      });
      const basic = `Basic ${Buffer.from(`consumer:${USERS.consumer}`).toString('base64')}`;
      const issued = await request(gate.url, gate.ca, {
        path: `/token?${q.toString()}`,
        headers: { authorization: basic },
      });
      assert.equal(issued.status, 200, issued.body.toString());
      const { token: access, refresh_token: refresh } = issued.json() as {
        token: string;
        refresh_token?: string;
      };
      assert.ok(refresh, 'a refresh token was issued');
      // at once (the issued-token memory) and after a first verified use
      for (let round = 0; round < 2; round++) {
        for (const [what, t] of [
          ['admin token', admin],
          ['refresh token', refresh],
        ] as const) {
          const r = await request(gate.url, gate.ca, {
            path: `/v2/${PROD}/manifests/signed`,
            headers: { ...bearer(t), accept: ACCEPT_ALL },
          });
          assert.equal(r.status, 401, `${what} at /v2 round ${round}: ${r.status}`);
        }
        const r = await request(gate.url, gate.ca, { path: '/admin/v1/keys', headers: bearer(access) });
        assert.ok(r.status === 401 || r.status === 403, `registry token at /admin: ${r.status}`);
      }
      const ok = await request(gate.url, gate.ca, {
        path: `/v2/${PROD}/manifests/signed`,
        headers: { ...bearer(access), accept: ACCEPT_ALL },
      });
      assert.equal(ok.status, 200);
    });
    it('HELD (b): junk, oversized and self-signed bundle referrers on a signed digest do not refuse it', async () => {
      const img = await pushRandomImage(registry.url, PROD, 'target');
      await signDirect(registry.url, PROD, img.digest, release.pkcs8Der);
      assert.equal((await pull('target')).status, 200);
      await pushBlob(registry.url, PROD, Buffer.from('{}'));
      const self = Buffer.from(buildCosignSignBundle(img.digest, bundleSignerFor(attacker.pkcs8Der)));
      const junk = Buffer.from('{"mediaType":"not a bundle"}');
      const big = Buffer.alloc(9 * 1024 * 1024, 0x7b);
      for (const bytes of [self, junk, big]) {
        const bd = await pushBlob(registry.url, PROD, bytes);
        const ref = bundleReferrer(img, bd, bytes.length);
        assert.equal((await put('publisher', PROD, sha256(ref), ref)).status, 201);
      }
      for (let round = 0; round < 3; round++) {
        for (const r of ['target', img.digest])
          assert.equal((await pull(r)).status, 200, `${r} round ${round}`);
        await sleep(150);
      }
    });
  });
}
