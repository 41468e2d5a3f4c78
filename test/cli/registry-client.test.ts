/**
 * The CLI's registry client against a real registry:2 (plain http on loopback), and through an
 * HTTPS Docker-token front (with mTLS) in front of the same registry.
 *
 * Note: trustgate's server is not finished yet, so the token flow is tested against the small
 * token front in test/cli/support.ts; the same tests should later run through trustgate itself.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startRegistry, makeTempDir, type RegistryHandle } from '../helpers/stack.js';
import {
  RegistryClient,
  RegistryError,
  normalizeScopes,
  parseChallenge,
} from '../../src/cli/registry-client.js';
import {
  makeCerts,
  pushImage,
  sha256,
  startTokenFront,
  type TestCerts,
  type TokenFront,
} from '../cli/support.js';

let reg: RegistryHandle;
let certs: TestCerts;

before(async () => {
  reg = await startRegistry();
  certs = makeCerts(makeTempDir('client-certs'));
});
after(async () => {
  await reg.stop();
});

test('parseChallenge: quoted params with commas, duplicates refused', () => {
  assert.deepEqual(
    parseChallenge('Bearer realm="https://a/token",service="reg",scope="repository:a/b:pull,push"'),
    {
      scheme: 'bearer',
      params: { realm: 'https://a/token', service: 'reg', scope: 'repository:a/b:pull,push' },
    },
  );
  assert.deepEqual(parseChallenge('Basic realm="x"'), { scheme: 'basic', params: { realm: 'x' } });
  assert.equal(parseChallenge('Bearer realm="a",realm="b"'), null);
});

test('normalizeScopes merges actions per repository (a challenge subset reuses the cached token)', () => {
  assert.deepEqual(normalizeScopes(['repository:a/b:pull,push', 'repository:a/b:push']), [
    'repository:a/b:pull,push',
  ]);
  assert.deepEqual(normalizeScopes(['repository:z:pull', 'repository:a:push', 'repository:a:pull']), [
    'repository:a:pull,push',
    'repository:z:pull',
  ]);
  assert.deepEqual(normalizeScopes(['registry:catalog:*']), ['registry:catalog:*']);
});

test('constructor refuses plain http off loopback', () => {
  assert.throws(
    () => new RegistryClient({ baseUrl: 'http://registry.example:5000' }),
    /only allowed to a loopback/,
  );
  assert.throws(() => new RegistryClient({ baseUrl: 'https://r.example/v2/' }), /scheme:\/\/host/);
});

describe('direct registry:2', () => {
  let c: RegistryClient;
  before(() => {
    c = new RegistryClient({ baseUrl: reg.url });
  });
  after(() => c.close());

  test('blob upload, HEAD, GET verified; manifest PUT/GET with the digest computed from bytes', async () => {
    const bytes = new TextEncoder().encode('hello blob');
    const up = await c.uploadBlob('t/direct', bytes);
    assert.equal(up.digest, sha256(bytes));
    assert.deepEqual(await c.headBlob('t/direct', up.digest), { exists: true, size: bytes.length });
    assert.deepEqual(await c.headBlob('t/other', up.digest), { exists: false });
    assert.deepEqual(Buffer.from(await c.getBlob('t/direct', up.digest)).toString(), 'hello blob');

    const img = await pushImage(c, 't/direct', 'v1', 'a');
    const byTag = await c.getManifest('t/direct', 'v1');
    assert.deepEqual(Buffer.from(byTag.bytes), Buffer.from(img.bytes));
    assert.equal(byTag.digest, sha256(img.bytes));
    assert.equal(byTag.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    const byDigest = await c.getManifest('t/direct', img.digest);
    assert.equal(byDigest.digest, img.digest);
    assert.equal(await c.getManifestIfExists('t/direct', 'nope'), null);
    assert.deepEqual(await c.listTags('t/direct'), ['v1']);
  });

  test('registry errors carry the OCI code and message', async () => {
    const bad = new TextEncoder().encode(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256('missing'), size: 7 },
        layers: [],
      }),
    );
    await assert.rejects(
      c.putManifest('t/direct', 'broken', bad, 'application/vnd.oci.image.manifest.v1+json'),
      (err: unknown) => {
        assert.ok(err instanceof RegistryError);
        assert.equal(err.status, 400);
        assert.equal(err.code, 'MANIFEST_BLOB_UNKNOWN');
        assert.match(err.message, /^PUT manifest t\/direct:broken: 400 MANIFEST_BLOB_UNKNOWN: /);
        return true;
      },
    );
    await assert.rejects(
      c.getBlob('t/direct', sha256('absent')),
      /GET blob t\/direct@sha256:[0-9a-f]+: 404 BLOB_UNKNOWN/,
    );
  });

  test('mount between repositories: 201, blob linked in the target', async () => {
    const img = await pushImage(c, 't/src', 'v1', 'mount');
    for (const d of img.blobs) {
      assert.equal(await c.mountBlob('t/dst', 't/src', d), 'mounted');
      assert.equal((await c.headBlob('t/dst', d)).exists, true);
    }
  });
});

describe('through an HTTPS token front (mTLS, Docker token flow)', () => {
  let front: TokenFront;
  before(async () => {
    front = await startTokenFront(reg.url, certs, { user: 'alice', password: 's3cret', mtls: true });
  });
  after(async () => front.close());

  const client = (over: Partial<ConstructorParameters<typeof RegistryClient>[0]> = {}): RegistryClient =>
    new RegistryClient({
      baseUrl: front.url,
      ca: [certs.ca],
      cert: certs.clientCert,
      key: certs.clientKey,
      username: 'alice',
      password: 's3cret',
      ...over,
    });

  test('token flow: challenge, Basic to the realm, bearer retry, tokens cached per scope', async () => {
    const c = client();
    try {
      front.tokenRequests.length = 0;
      const img = await pushImage(c, 'tok/app', 'v1', 'tok');
      const m = await c.getManifest('tok/app', 'v1');
      assert.equal(m.digest, img.digest);
      await c.getManifest('tok/app', img.digest);
      await c.headBlob('tok/app', img.blobs[0]!);
      // One token for push on tok/app and one for pull on tok/app; every other request reused them.
      assert.deepEqual(
        front.tokenRequests.map((t) => t.scopes.join(' ')),
        ['repository:tok/app:pull,push', 'repository:tok/app:pull'],
      );
      assert.ok(front.tokenRequests.every((t) => t.user === 'alice'));
      assert.equal(c.tokenRequests, 2);
    } finally {
      c.close();
    }
  });

  test('absolute and relative upload Locations both work', async () => {
    const c = client();
    try {
      front.relativeLocations = true;
      const a = await c.uploadBlob('tok/loc', new TextEncoder().encode('relative'));
      front.relativeLocations = false;
      const b = await c.uploadBlob('tok/loc', new TextEncoder().encode('absolute'));
      assert.equal((await c.headBlob('tok/loc', a.digest)).exists, true);
      assert.equal((await c.headBlob('tok/loc', b.digest)).exists, true);
    } finally {
      front.relativeLocations = false;
      c.close();
    }
  });

  test('mount asks for pull on `from`; a registry that answers 202 gets the blob streamed instead', async () => {
    const c = client();
    try {
      const img = await pushImage(c, 'tok/from', 'v1', 'fallback');
      front.tokenRequests.length = 0;
      assert.equal(await c.mountBlob('tok/to1', 'tok/from', img.blobs[0]!), 'mounted');
      assert.deepEqual(front.tokenRequests[0]?.scopes, [
        'repository:tok/from:pull',
        'repository:tok/to1:pull,push',
      ]);
      front.stripMount = true;
      assert.equal(await c.mountBlob('tok/to2', 'tok/from', img.blobs[1]!), 'uploaded');
      assert.deepEqual(
        Buffer.from(await c.getBlob('tok/to2', img.blobs[1]!)),
        Buffer.from(await c.getBlob('tok/from', img.blobs[1]!)),
      );
    } finally {
      front.stripMount = false;
      c.close();
    }
  });

  test('bytes that do not hash to the requested digest are refused', async () => {
    const c = client();
    try {
      const img = await pushImage(c, 'tok/tamper', 'v1', 'tamper');
      front.tamper.add(`/v2/tok/tamper/manifests/${img.digest}`);
      await assert.rejects(
        c.getManifest('tok/tamper', img.digest),
        /hash to sha256:[0-9a-f]{64}, not sha256:/,
      );
      // By tag, the digest is whatever the bytes hash to: never the registry's header.
      front.tamper.add('/v2/tok/tamper/manifests/v1');
      const m = await c.getManifest('tok/tamper', 'v1');
      assert.notEqual(m.digest, img.digest);
      assert.equal(m.digest, sha256(m.bytes));
    } finally {
      front.tamper.clear();
      c.close();
    }
  });

  test('readable failures: wrong password, no client certificate, unknown CA', async () => {
    const wrong = client({ password: 'nope' });
    await assert.rejects(
      wrong.getManifest('tok/app', 'v1'),
      /token request to 127\.0\.0\.1:\d+\/token \(wrong username or password\?\): 401 UNAUTHORIZED: bad credentials/,
    );
    wrong.close();
    const anon = client({ username: undefined, password: undefined });
    await assert.rejects(anon.getManifest('tok/app', 'v1'), /no credentials given/);
    anon.close();
    const noCert = client({ cert: undefined, key: undefined });
    await assert.rejects(noCert.getManifest('tok/app', 'v1'), /403 DENIED: client certificate required/);
    noCert.close();
    const noCa = client({ ca: [] });
    await assert.rejects(
      noCa.getManifest('tok/app', 'v1'),
      /self.signed|unable to (?:verify|get local issuer)/i,
    );
    noCa.close();
  });
});
