/**
 * The OCI 1.1 referrers API that trustgate serves over registry:2 (issue 13), and the classes of
 * issue 12 finding 1 on its new paths: a referrer is served only to a caller who may pull its
 * subject, admits only bounded bundle layers and the empty config, and the referrers tag (trustgate's
 * own index) cannot be rewritten to hide or forge entries.
 */
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { MEDIA_TYPES } from '../../src/core/manifest.js';
import { EMPTY_JSON_DIGEST, MEDIA_TYPE_OCI_EMPTY } from '../../src/core/referrers.js';
import { buildCosignSignBundle, bundleSignerFor } from '../../src/core/evidence/bundle-writer.js';
import { startTrustStack, type TrustStack } from '../helpers/trust-stack.js';
import { assertBlobNotAdmitted, bearer, request, type Reply } from '../helpers/http.js';
import { direct, pushBlob, pushManifest, pushRandomImage, sha256 } from '../helpers/registry-direct.js';
import { signDirect } from '../helpers/sign.js';

const OCI = MEDIA_TYPES.ociManifest;
const OCI_INDEX = MEDIA_TYPES.ociIndex;
const BUNDLE = 'application/vnd.dev.sigstore.bundle.v0.3+json';

describe('security: the referrers API over registry:2', { timeout: 180_000 }, () => {
  let stack: TrustStack;
  before(async () => {
    stack = await startTrustStack();
  });
  after(async () => {
    await stack?.stop();
  });

  const referrers = async (
    repo: string,
    digest: string,
    query = '',
    user: 'consumer' | 'publisher' = 'consumer',
  ): Promise<Reply> =>
    request(stack.gate.url, stack.gate.ca, {
      path: `/v2/${repo}/referrers/${digest}${query}`,
      headers: bearer(await stack.token(repo, user)),
    });

  /** A cosign-3-shaped bundle referrer of `subject`, its blobs uploaded; `layer` replaces the bundle. */
  async function bundleReferrer(
    repo: string,
    subject: { digest: string; bytes: Buffer },
    layer?: Buffer,
  ): Promise<{ bytes: Buffer; digest: string; bundle: string }> {
    const bundleBytes =
      layer ?? Buffer.from(buildCosignSignBundle(subject.digest, bundleSignerFor(stack.release.pkcs8Der)));
    const bundle = await pushBlob(stack.registry.url, repo, bundleBytes);
    await pushBlob(stack.registry.url, repo, Buffer.from('{}'));
    const bytes = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI,
        artifactType: BUNDLE,
        config: { mediaType: MEDIA_TYPE_OCI_EMPTY, artifactType: BUNDLE, digest: EMPTY_JSON_DIGEST, size: 2 },
        layers: [{ mediaType: BUNDLE, digest: bundle, size: bundleBytes.length }],
        subject: { mediaType: OCI, digest: subject.digest, size: subject.bytes.length },
        annotations: {
          'dev.sigstore.bundle.content': 'dsse-envelope',
          'dev.sigstore.bundle.predicateType': 'https://sigstore.dev/cosign/sign/v1',
        },
      }),
    );
    return { bytes, digest: sha256(bytes), bundle };
  }

  it('a signed image with no referrers lists an empty OCI index (never 404)', async () => {
    const img = await pushRandomImage(stack.registry.url, 'ref/empty', 'v1');
    await signDirect(stack.registry.url, 'ref/empty', img.digest, stack.release.pkcs8Der);
    const r = await referrers('ref/empty', img.digest);
    assert.equal(r.status, 200, r.body.toString());
    assert.equal(r.headers['content-type'], OCI_INDEX);
    assert.deepEqual(r.json(), { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] });
    const none = await referrers('ref/empty', `sha256:${'0'.repeat(64)}`);
    assert.equal(none.status, 200, 'a digest that does not exist lists nothing');
  });

  it('a referrer pushed through trustgate is recorded (OCI-Subject), listed from its own manifest, and filtered by artifactType', async () => {
    const repo = 'ref/push';
    const img = await pushRandomImage(stack.registry.url, repo, 'v1');
    await signDirect(stack.registry.url, repo, img.digest, stack.release.pkcs8Der);
    const ref = await bundleReferrer(repo, img);
    const put = await stack.push(repo, ref.digest, ref.bytes, OCI);
    assert.equal(put.status, 201, put.body.toString());
    assert.equal(put.headers['oci-subject'], img.digest);
    const r = await referrers(repo, img.digest);
    assert.equal(r.status, 200, r.body.toString());
    const listed = (r.json() as { manifests: Array<Record<string, unknown>> }).manifests;
    assert.equal(listed.length, 1);
    assert.equal(listed[0]!['digest'], ref.digest);
    assert.equal(listed[0]!['artifactType'], BUNDLE);
    assert.equal(
      (listed[0]!['annotations'] as Record<string, string>)['dev.sigstore.bundle.content'],
      'dsse-envelope',
    );
    const filtered = await referrers(repo, img.digest, `?artifactType=${encodeURIComponent(BUNDLE)}`);
    assert.equal(filtered.headers['oci-filters-applied'], 'artifactType');
    assert.equal((filtered.json() as { manifests: unknown[] }).manifests.length, 1);
    const other = await referrers(
      repo,
      img.digest,
      `?artifactType=${encodeURIComponent('application/vnd.example+json')}`,
    );
    assert.equal((other.json() as { manifests: unknown[] }).manifests.length, 0);
    // The same PUT again records nothing twice.
    assert.equal((await stack.push(repo, ref.digest, ref.bytes, OCI)).status, 201);
    assert.equal(
      ((await referrers(repo, img.digest)).json() as { manifests: unknown[] }).manifests.length,
      1,
    );
  });

  it('a pull-only caller reads a referrer and its bundle only when it may pull the subject; never the referrer of an unsigned image', async () => {
    const repo = 'ref/read';
    const signed = await pushRandomImage(stack.registry.url, repo, 'v1');
    await signDirect(stack.registry.url, repo, signed.digest, stack.release.pkcs8Der);
    const ref = await bundleReferrer(repo, signed);
    assert.equal((await stack.push(repo, ref.digest, ref.bytes, OCI)).status, 201);
    assert.equal((await stack.pull(repo, ref.digest)).status, 200);
    assert.equal((await stack.blob(repo, ref.bundle)).status, 200, 'the bundle layer');
    assert.equal((await stack.blob(repo, EMPTY_JSON_DIGEST)).status, 200, 'the empty config');

    const unsigned = await pushRandomImage(stack.registry.url, repo, 'unsigned');
    // A referrer carrying no valid bundle: the image stays unsigned.
    const ref2 = await bundleReferrer(
      repo,
      unsigned,
      Buffer.from(JSON.stringify({ mediaType: BUNDLE, n: 3 })),
    );
    assert.equal((await stack.push(repo, ref2.digest, ref2.bytes, OCI)).status, 201);
    assert.equal((await stack.pull(repo, ref2.digest)).status, 403, 'referrer of an unsigned image');
    assert.equal((await referrers(repo, unsigned.digest)).status, 403, 'referrers of an unsigned image');
    assert.equal(
      (await referrers(repo, unsigned.digest, '', 'publisher')).status,
      200,
      'a publisher sees them',
    );
  });

  it('a "bundle" layer that is a gzip tar is never admitted; nor is a non-empty config', async () => {
    const repo = 'ref/tar';
    const img = await pushRandomImage(stack.registry.url, repo, 'v1');
    await signDirect(stack.registry.url, repo, img.digest, stack.release.pkcs8Der);
    const tar = gzipSync(Buffer.alloc(4096, 1));
    const ref = await bundleReferrer(repo, img, tar);
    assert.equal((await stack.push(repo, ref.digest, ref.bytes, OCI)).status, 201);
    assert.equal((await stack.pull(repo, ref.digest)).status, 200);
    assertBlobNotAdmitted(await stack.blob(repo, ref.bundle), 'a tar admitted as a bundle');
  });

  it('the referrers tag is trustgate\u2019s: a client write that drops or forges entries is refused; a valid superset is accepted', async () => {
    const repo = 'ref/tag';
    const img = await pushRandomImage(stack.registry.url, repo, 'v1');
    const ref = await bundleReferrer(repo, img);
    assert.equal((await stack.push(repo, ref.digest, ref.bytes, OCI)).status, 201);
    const tag = `sha256-${img.digest.slice(7)}`;
    const index = (entries: Array<{ digest: string; size: number }>): Buffer =>
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_INDEX,
          manifests: entries.map((e) => ({ mediaType: OCI, ...e })),
        }),
      );
    const hide = await stack.push(repo, tag, index([]), OCI_INDEX);
    assert.equal(hide.status, 403, hide.body.toString());
    assert.match(hide.body.toString(), /drop the recorded referrer/);
    const other = await pushRandomImage(stack.registry.url, repo, 'other');
    const forge = await stack.push(
      repo,
      tag,
      index([
        { digest: ref.digest, size: ref.bytes.length },
        { digest: other.digest, size: other.bytes.length },
      ]),
      OCI_INDEX,
    );
    assert.equal(forge.status, 403, forge.body.toString());
    assert.match(forge.body.toString(), /does not name/);
    // A second genuine referrer pushed straight to the registry, then listed by a superset write.
    const ref2 = await bundleReferrer(repo, img, Buffer.from(JSON.stringify({ mediaType: BUNDLE, n: 2 })));
    await pushManifest(stack.registry.url, repo, ref2.digest, ref2.bytes, OCI);
    const ok = await stack.push(
      repo,
      tag,
      index([
        { digest: ref.digest, size: ref.bytes.length },
        { digest: ref2.digest, size: ref2.bytes.length },
      ]),
      OCI_INDEX,
    );
    assert.equal(ok.status, 201, ok.body.toString());
  });

  it('an index laid out as cosign 3.0.x leaves it (mislabelled artifactType, no annotations) is listed from the referrer manifests', async () => {
    const repo = 'ref/cosign30';
    const img = await pushRandomImage(stack.registry.url, repo, 'v1');
    await signDirect(stack.registry.url, repo, img.digest, stack.release.pkcs8Der);
    const ref = await bundleReferrer(repo, img);
    await pushManifest(stack.registry.url, repo, ref.digest, ref.bytes, OCI);
    const fallback = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: [
          { mediaType: OCI, digest: ref.digest, size: ref.bytes.length, artifactType: MEDIA_TYPE_OCI_EMPTY },
        ],
      }),
    );
    await pushManifest(stack.registry.url, repo, `sha256-${img.digest.slice(7)}`, fallback, OCI_INDEX);
    const r = await referrers(repo, img.digest);
    const listed = (r.json() as { manifests: Array<Record<string, unknown>> }).manifests;
    assert.equal(listed[0]!['artifactType'], BUNDLE);
    assert.ok(listed[0]!['annotations'], 'annotations read from the referrer manifest');
    const stored = await direct(
      stack.registry.url,
      'GET',
      `/v2/${repo}/manifests/sha256-${img.digest.slice(7)}`,
      undefined,
      {
        accept: OCI_INDEX,
      },
    );
    assert.equal(stored.status, 200);
  });

  it('listings reuse referrer manifests by digest: a second listing reads only the referrers tag (review 3: amplification)', async () => {
    const repo = 'ref/cached';
    const img = await pushRandomImage(stack.registry.url, repo, 'v1');
    await signDirect(stack.registry.url, repo, img.digest, stack.release.pkcs8Der);
    for (let i = 0; i < 3; i++) {
      const ref = await bundleReferrer(repo, img, Buffer.from(JSON.stringify({ mediaType: BUNDLE, i })));
      assert.equal((await stack.push(repo, ref.digest, ref.bytes, OCI)).status, 201);
    }
    const reads = async (kind: string): Promise<number> =>
      (await stack.gate.tg.metrics.upstreamDuration.get()).values.find(
        (v) => v.metricName === 'trustgate_upstream_duration_seconds_count' && v.labels.kind === kind,
      )?.value ?? 0;
    assert.equal(
      ((await referrers(repo, img.digest)).json() as { manifests: unknown[] }).manifests.length,
      3,
    );
    const before = await reads('referrer');
    assert.equal(
      ((await referrers(repo, img.digest)).json() as { manifests: unknown[] }).manifests.length,
      3,
    );
    assert.equal(await reads('referrer'), before, 'referrer manifests were read again');
  });

  it('malformed referrers requests: an unknown query key, a bad artifactType, a bad digest', async () => {
    const img = await pushRandomImage(stack.registry.url, 'ref/bad', 'v1');
    assert.equal((await referrers('ref/bad', img.digest, '?n=1')).status, 400);
    assert.equal((await referrers('ref/bad', img.digest, '?artifactType=nonsense')).status, 400);
    assert.equal((await referrers('ref/bad', 'sha256:abc')).status, 400);
  });
});
