/**
 * Issue 18: signature evidence written through trustgate (a `.sig` push, a bundle referrer) makes
 * the gate verify the subject again at once, in the background (TrustService.evidenceChanged), so
 * the first pull after signing finds the verdict made instead of reading the evidence itself.
 * Against a real registry:2 through the whole pipeline. Fail closed: a background verification is
 * the one a pull would make (an untrusted bundle is refused, then a trusted one admitted at once),
 * and when it fails the pull verifies for itself (the failing read is fault injection around the
 * gate's real evidence reader).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { generateKeyPair } from '../../src/core/signature/sign.js';
import { MEDIA_TYPES } from '../../src/core/manifest.js';
import { signatureTagFor } from '../../src/core/reference.js';
import {
  buildBundleReferrerManifest,
  buildCosignSignBundle,
  bundleSignerFor,
} from '../../src/core/evidence/bundle-writer.js';
import { GateError } from '../../src/core/errors.js';
import type { EvidenceReader } from '../../src/trust/evidence.js';
import { pushBlob, pushRandomImage } from '../helpers/registry-direct.js';
import { pushReleaseSignature, startTrustStack, type TrustStack } from '../helpers/trust-stack.js';

const OCI = MEDIA_TYPES.ociManifest;

describe('signature evidence written through trustgate is verified at once', { timeout: 120_000 }, () => {
  let stack: TrustStack;
  const stranger = generateKeyPair('ecdsa-p256');
  before(async () => {
    stack = await startTrustStack();
  });
  after(async () => {
    await stack?.stop();
  });
  const fetches = (): number => stack.gate.tg.trust.signatureFetches;

  /** Polls (bounded: at most 1000 times, 5 ms apart) until a verification has started. */
  async function startedSince(before: number): Promise<boolean> {
    for (let i = 0; i < 1000 && fetches() <= before; i++) await new Promise((r) => setTimeout(r, 5));
    return fetches() > before;
  }

  /** Pushes a bundle referrer of `img` by `key` through trustgate (the referrers API). */
  async function pushReferrer(repo: string, img: { digest: string; bytes: Buffer }, key: Uint8Array) {
    const r = buildBundleReferrerManifest({
      bundle: buildCosignSignBundle(img.digest, bundleSignerFor(key)),
      subject: { mediaType: OCI, digest: img.digest, size: img.bytes.length },
      created: new Date('2026-12-04T12:00:00Z'),
    });
    for (const b of r.blobs) await pushBlob(stack.registry.url, repo, Buffer.from(b.bytes));
    return stack.push(repo, r.digest, Buffer.from(r.manifest), OCI);
  }

  it('a .sig pushed through trustgate is verified before any pull; the first pull reads no evidence', async () => {
    const repo = 'written/legacy';
    const img = await pushRandomImage(stack.registry.url, repo, 'v1');
    const before = fetches();
    const put = await pushReleaseSignature(stack, repo, img.digest);
    assert.equal(put.status, 201, put.body.toString());
    assert.ok(await startedSince(before), 'the push started a verification of its subject');
    const r = await stack.pull(repo, img.digest);
    assert.equal(r.status, 200, r.body.toString());
    assert.equal(fetches() - before, 1, 'the pull used (or joined) that verification');
  });

  it('a bundle referrer: an untrusted one is refused, and a trusted one pushed next admits at once', async () => {
    const repo = 'written/bundle';
    const img = await pushRandomImage(stack.registry.url, repo, 'v1');
    let before = fetches();
    assert.equal((await pushReferrer(repo, img, stranger.pkcs8Der)).status, 201);
    assert.ok(await startedSince(before));
    const refused = await stack.pull(repo, img.digest);
    assert.equal(refused.status, 403, refused.body.toString());
    assert.equal(fetches() - before, 1);
    // The cached refusal would live for the negative TTL; the new referrer replaces it at once.
    before = fetches();
    assert.equal((await pushReferrer(repo, img, stack.release.pkcs8Der)).status, 201);
    assert.ok(await startedSince(before));
    const ok = await stack.pull(repo, img.digest);
    assert.equal(ok.status, 200, ok.body.toString());
    assert.equal(fetches() - before, 1);
  });

  it('a burst of writes: one background verification at a time, and one more after the writes that landed meanwhile', async () => {
    const repo = 'written/burst';
    const img = await pushRandomImage(stack.registry.url, repo, 'v1');
    const options = (stack.gate.tg.trust as unknown as { o: { evidence: EvidenceReader } }).o;
    const real = options.evidence;
    // Fault injection (a slow registry): the first background verification's referrers read waits.
    let open!: () => void;
    const held = new Promise<void>((r) => (open = r));
    let listings = 0;
    options.evidence = {
      ...real,
      referrers: async (r, s) => {
        if (++listings === 1) await held;
        return real.referrers(r, s);
      },
    };
    try {
      const before = fetches();
      assert.equal((await pushReferrer(repo, img, stranger.pkcs8Der)).status, 201);
      assert.ok(await startedSince(before));
      // Two more writes while it runs: an untrusted bundle, then a trusted one.
      assert.equal((await pushReferrer(repo, img, stranger.pkcs8Der)).status, 201);
      assert.equal((await pushReferrer(repo, img, stack.release.pkcs8Der)).status, 201);
      for (let i = 0; i < 200; i++) await new Promise((r) => setImmediate(r));
      assert.equal(fetches() - before, 1, 'no second verification while the first runs');
      open();
      assert.ok(await startedSince(before + 1), 'one more verification after the first');
      // Its verdict holds the last write: the trusted bundle admits the image (the pull joins it).
      const r = await stack.pull(repo, img.digest);
      assert.equal(r.status, 200, r.body.toString());
      assert.equal(fetches() - before, 2, 'two verifications for three writes, none by the pull');
    } finally {
      open();
      options.evidence = real;
    }
  });

  it('when the background verification fails, the pull verifies for itself', async () => {
    const repo = 'written/failing';
    const img = await pushRandomImage(stack.registry.url, repo, 'v1');
    const options = (stack.gate.tg.trust as unknown as { o: { evidence: EvidenceReader } }).o;
    const real = options.evidence;
    // Fault injection: registry:2 fails the background verification's read of the .sig (the second
    // read of that tag; the first is the push's own check).
    let sigReads = 0;
    options.evidence = {
      ...real,
      manifest: async (r, ref) => {
        if (ref === signatureTagFor(img.digest) && ++sigReads === 2)
          throw new GateError('UNAVAILABLE', 'could not read signature evidence from the registry');
        return real.manifest(r, ref);
      },
    };
    try {
      const before = fetches();
      const put = await pushReleaseSignature(stack, repo, img.digest);
      assert.equal(put.status, 201, put.body.toString());
      assert.ok(await startedSince(before));
      // Let the failed computation settle (the registry answers the next reads again).
      for (let i = 0; i < 1000 && sigReads < 2; i++) await new Promise((r) => setTimeout(r, 5));
      assert.equal(sigReads, 2);
      for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
      const r = await stack.pull(repo, img.digest);
      assert.equal(r.status, 200, r.body.toString());
      assert.equal(fetches() - before, 2, 'the pull did not take the failure as a verdict');
    } finally {
      options.evidence = real;
    }
  });
});
