/**
 * Review 4: adversarial tests of the change since 56d9b10 (referrers API, bundle referrers read by
 * digest, the subjectPullable shortcut, blob 404 answers). HELD tests pass when the defence held;
 * `fixed` tests broke at review (they failed before the fix) and pass now.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MAX_INDEX_ENTRIES, MEDIA_TYPES } from '../../src/core/manifest.js';
import { EMPTY_JSON_DIGEST, MAX_EVIDENCE_RESERVE, MEDIA_TYPE_OCI_EMPTY } from '../../src/core/referrers.js';
import {
  buildBundleReferrerManifest,
  buildCosignSignBundle,
  bundleSignerFor,
} from '../../src/core/evidence/bundle-writer.js';
import { startTrustStack, type TrustStack } from '../helpers/trust-stack.js';
import { direct, pushBlob, pushRandomImage } from '../helpers/registry-direct.js';
import { bearer, request } from '../helpers/http.js';

const OCI = MEDIA_TYPES.ociManifest;

describe('security: review 4', { timeout: 300_000 }, () => {
  let stack: TrustStack;
  before(async () => {
    stack = await startTrustStack();
  });
  after(async () => {
    await stack?.stop();
  });

  it("fixed (medium, review 4): a publisher with no key fills a digest's referrers (256 junk artifacts) before it is bundle-signed; the real bundle is never recorded and the signed image is refused", async () => {
    const repo = 'r4/squat';
    const img = await pushRandomImage(stack.registry.url, repo, 'v1');
    const subject = { mediaType: OCI, digest: img.digest, size: img.bytes.length };
    await pushBlob(stack.registry.url, repo, Buffer.from('{}'));
    const tok = await stack.token(repo, 'publisher');
    // The attacker: 256 distinct junk referrers of the subject, each pushed by digest through the gate.
    for (let i = 0; i < 256; i++) {
      const junk = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI,
          artifactType: 'application/x-junk',
          config: { mediaType: MEDIA_TYPE_OCI_EMPTY, digest: EMPTY_JSON_DIGEST, size: 2 },
          layers: [{ mediaType: MEDIA_TYPE_OCI_EMPTY, digest: EMPTY_JSON_DIGEST, size: 2 }],
          subject,
          annotations: { i: String(i) },
        }),
      );
      const r = await request(stack.gate.url, stack.gate.ca, {
        method: 'PUT',
        path: `/v2/${repo}/manifests/latest-junk-${i}`,
        headers: { ...bearer(tok), 'content-type': OCI },
        body: junk,
      });
      // Fixed: the last 64 places of a referrers index are kept for bundle referrers, and a push
      // refused for a full index never reaches registry:2 (I5).
      const accepted = i < MAX_INDEX_ENTRIES - MAX_EVIDENCE_RESERVE;
      assert.equal(r.status, accepted ? 201 : 403, `junk ${i}: ${r.body.toString()}`);
      if (!accepted) {
        const stored = await direct(
          stack.registry.url,
          'HEAD',
          `/v2/${repo}/manifests/latest-junk-${i}`,
          undefined,
          {
            accept: OCI,
          },
        );
        assert.equal(stored.status, 404, `refused junk ${i} reached the registry`);
      }
    }
    // The legitimate signer (holder of `release`) now signs the image with a bundle.
    const good = buildBundleReferrerManifest({
      bundle: buildCosignSignBundle(img.digest, bundleSignerFor(stack.release.pkcs8Der)),
      subject,
      created: new Date('2026-12-04T12:00:00Z'),
    });
    for (const b of good.blobs) await pushBlob(stack.registry.url, repo, Buffer.from(b.bytes));
    const put = await stack.push(repo, good.digest, Buffer.from(good.manifest), OCI);
    const pulled = await stack.pull(repo, img.digest);
    assert.equal(
      pulled.status,
      200,
      `bundle PUT answered ${put.status} (${put.body.toString().slice(0, 200)}); validly bundle-signed image refused to a pull-only client: ${pulled.body.toString().slice(0, 300)}`,
    );
  });

  it('HELD: a bundle referrer copied into another repository (whose subject lives only in the first) is not served there, nor its bundle layer', async () => {
    const a = 'r4/cross-a';
    const b = 'r4/cross-b';
    const img = await pushRandomImage(stack.registry.url, a, 'v1');
    const subject = { mediaType: OCI, digest: img.digest, size: img.bytes.length };
    const good = buildBundleReferrerManifest({
      bundle: buildCosignSignBundle(img.digest, bundleSignerFor(stack.release.pkcs8Der)),
      subject,
      created: new Date('2026-12-04T12:00:00Z'),
    });
    for (const r of [a, b])
      for (const bl of good.blobs) await pushBlob(stack.registry.url, r, Buffer.from(bl.bytes));
    assert.equal((await stack.push(a, good.digest, Buffer.from(good.manifest), OCI)).status, 201);
    assert.equal((await stack.push(b, good.digest, Buffer.from(good.manifest), OCI)).status, 201);
    // In A the subject is signed (by the bundle) and the referrer is served.
    assert.equal((await stack.pull(a, img.digest)).status, 200);
    assert.equal((await stack.pull(a, good.digest)).status, 200);
    // In B the subject does not exist: neither the referrer nor its layer.
    const rb = await stack.pull(b, good.digest);
    assert.notEqual(rb.status, 200, 'bundle referrer served from a repo without its subject');
    const lb = await stack.blob(b, good.blobs[1]!.descriptor.digest);
    assert.equal(lb.status, 404);
    // Referrers API on B for A's subject: no listing of anything admitted.
    const tok = await stack.token(b);
    const ref = await request(stack.gate.url, stack.gate.ca, {
      path: `/v2/${b}/referrers/${img.digest}`,
      headers: bearer(tok),
    });
    assert.ok(ref.status === 200 || ref.status === 403, `referrers: ${ref.status}`);
  });

  it('HELD: referrers API of an existing unsigned subject is refused to a pull-only client; blob of an unsigned image is 404 whether present or not', async () => {
    const repo = 'r4/unsigned';
    const img = await pushRandomImage(stack.registry.url, repo, 'v1');
    const tok = await stack.token(repo);
    const ref = await request(stack.gate.url, stack.gate.ca, {
      path: `/v2/${repo}/referrers/${img.digest}`,
      headers: bearer(tok),
    });
    assert.equal(ref.status, 403);
    const present = await stack.blob(repo, img.blobs[1]!);
    const absent = await stack.blob(repo, `sha256:${'0'.repeat(64)}`);
    assert.equal(present.status, 404);
    assert.equal(absent.status, 404);
    assert.equal(
      present.body.toString().includes('BLOB_UNKNOWN'),
      absent.body.toString().includes('BLOB_UNKNOWN'),
    );
  });
});
