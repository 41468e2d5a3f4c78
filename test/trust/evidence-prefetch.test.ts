/**
 * Issue 18: for a pull by digest, the evidence reads start alongside the manifest read
 * (TrustService.prefetch) and verify joins that computation. Against a real registry:2 through
 * the whole pipeline: one evidence computation per cold pull (not two), the same decisions as
 * before (signed passes, unsigned is refused, an unknown digest gets the registry's 404), and no
 * evidence read for a publisher (who reads unsigned manifests) or for a manifest already held.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { bearer, request } from '../helpers/http.js';
import { pushRandomImage } from '../helpers/registry-direct.js';
import { signDirect } from '../helpers/sign.js';
import { ACCEPT_ALL, startTrustStack, type TrustStack } from '../helpers/trust-stack.js';

describe('evidence read alongside the manifest for pulls by digest', { timeout: 120_000 }, () => {
  let stack: TrustStack;
  before(async () => {
    stack = await startTrustStack();
  });
  after(async () => {
    await stack?.stop();
  });
  const fetches = (): number => stack.gate.tg.trust.signatureFetches;

  it('a signed image passes and an unsigned one is refused, each with one evidence computation', async () => {
    const signed = await pushRandomImage(stack.registry.url, 'pre/signed', 'v1');
    await signDirect(stack.registry.url, 'pre/signed', signed.digest, stack.release.pkcs8Der);
    const unsigned = await pushRandomImage(stack.registry.url, 'pre/unsigned', 'v1');

    let before = fetches();
    const ok = await stack.pull('pre/signed', signed.digest);
    assert.equal(ok.status, 200, ok.body.toString());
    assert.equal(fetches() - before, 1, 'the prefetch and the verification shared one computation');

    before = fetches();
    const refused = await stack.pull('pre/unsigned', unsigned.digest);
    assert.equal(refused.status, 403);
    assert.match(refused.body.toString(), /DENIED/);
    assert.equal(fetches() - before, 1);

    // Warm: the manifest is held and the verdict cached; nothing is read again.
    before = fetches();
    assert.equal((await stack.pull('pre/signed', signed.digest)).status, 200);
    assert.equal(fetches() - before, 0);
  });

  it('a digest the registry does not hold gets its 404, not a refusal', async () => {
    const missing = `sha256:${'ab'.repeat(32)}`;
    const r = await stack.pull('pre/signed', missing);
    assert.equal(r.status, 404);
    assert.match(r.body.toString(), /MANIFEST_UNKNOWN/);
  });

  it('a publisher reads its unsigned manifest by digest without any evidence read', async () => {
    const img = await pushRandomImage(stack.registry.url, 'pre/publisher', 'v1');
    const before = fetches();
    const r = await request(stack.gate.url, stack.gate.ca, {
      path: `/v2/pre/publisher/manifests/${img.digest}`,
      headers: { ...bearer(await stack.token('pre/publisher', 'publisher')), accept: ACCEPT_ALL },
    });
    assert.equal(r.status, 200);
    assert.equal(fetches(), before);
  });
});
