/**
 * Metrics fed by events (src/server/observe.ts): a gate's cold verification of a signed image is
 * published on `trustgate:trust:verify` and timed in its own `trustgate_verify_duration_seconds`;
 * a warm pull (cached verdict) publishes nothing. Real registry:2, real signature.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTrustStack, type TrustStack } from '../helpers/trust-stack.js';
import { pushRandomImage } from '../helpers/registry-direct.js';
import { signDirect } from '../helpers/sign.js';

describe('metrics from events', { timeout: 120_000 }, () => {
  let stack: TrustStack;
  before(async () => {
    stack = await startTrustStack();
  });
  after(async () => {
    await stack?.stop();
  });

  const verifications = async (): Promise<number> =>
    (await stack.gate.tg.metrics.verifyDuration.get()).values.find(
      (v) => v.metricName === 'trustgate_verify_duration_seconds_count',
    )?.value ?? 0;

  it('a cold verification is timed once; a warm pull is not', async () => {
    const img = await pushRandomImage(stack.registry.url, 'obs/app', 'v1');
    await signDirect(stack.registry.url, 'obs/app', img.digest, stack.release.pkcs8Der);
    const before = await verifications();
    assert.equal((await stack.pull('obs/app', img.digest)).status, 200);
    assert.equal(await verifications(), before + 1);
    assert.equal((await stack.pull('obs/app', img.digest)).status, 200);
    assert.equal(await verifications(), before + 1, 'a cached verdict was timed as a verification');
  });
});
