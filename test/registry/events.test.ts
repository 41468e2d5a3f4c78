/**
 * The upstream layer's observability events (src/registry/events.ts) against a real registry:2:
 * each buffered request is published once on `trustgate:upstream:request` with its kind, and a
 * Metrics that watches one Upstream counts that Upstream's requests only (two gates in one
 * process, as in the tests and benchmarks, must not count each other's), and nothing once it
 * stopped watching.
 */
import assert from 'node:assert/strict';
import diagnostics_channel from 'node:diagnostics_channel';
import { after, before, describe, it } from 'node:test';
import { Upstream } from '../../src/registry/upstream.js';
import type { UpstreamRequestEvent } from '../../src/registry/events.js';
import { Metrics } from '../../src/server/metrics.js';
import { startRegistry, type RegistryHandle } from '../helpers/stack.js';

async function count(metrics: Metrics, kind: string): Promise<number> {
  const values = (await metrics.upstreamDuration.get()).values;
  return (
    values.find(
      (v) => v.metricName === 'trustgate_upstream_duration_seconds_count' && v.labels['kind'] === kind,
    )?.value ?? 0
  );
}

describe('upstream events', { timeout: 60_000 }, () => {
  let registry: RegistryHandle;
  let a: Upstream;
  let b: Upstream;

  before(async () => {
    registry = await startRegistry();
    a = new Upstream({ url: registry.url, timeoutMs: 5000, maxSockets: 4 });
    b = new Upstream({ url: registry.url, timeoutMs: 5000, maxSockets: 4, reads: 'node' });
  });
  after(async () => {
    a?.close();
    b?.close();
    await registry?.stop();
  });

  it('each buffered request is published once, naming its Upstream and kind', async () => {
    const seen: UpstreamRequestEvent[] = [];
    const listener = (m: unknown): void => void seen.push(m as UpstreamRequestEvent);
    diagnostics_channel.subscribe('trustgate:upstream:request', listener);
    try {
      assert.equal(await a.probe(), 'ok'); // the direct reader
      assert.equal(await b.probe(), 'ok'); // Node's http client
    } finally {
      diagnostics_channel.unsubscribe('trustgate:upstream:request', listener);
    }
    assert.deepEqual(
      seen.map((e) => [e.source, e.kind]),
      [
        [a, 'probe'],
        [b, 'probe'],
      ],
    );
    assert.ok(seen.every((e) => e.seconds >= 0 && e.seconds < 5));
  });

  it('a Metrics counts the Upstream it watches, not another one, and stops when told', async () => {
    const ma = new Metrics();
    const mb = new Metrics();
    const unwatchA = ma.watchUpstream(a);
    const unwatchB = mb.watchUpstream(b);
    try {
      await a.request({ method: 'GET', path: '/v2/', maxBytes: 4096, kind: 'catalog' });
      await a.request({ method: 'GET', path: '/v2/', maxBytes: 4096, kind: 'catalog' });
      await b.request({ method: 'GET', path: '/v2/', maxBytes: 4096, kind: 'catalog' });
      assert.equal(await count(ma, 'catalog'), 2);
      assert.equal(await count(mb, 'catalog'), 1);
      unwatchA();
      await a.request({ method: 'GET', path: '/v2/', maxBytes: 4096, kind: 'catalog' });
      assert.equal(await count(ma, 'catalog'), 2, 'counted after unwatch');
    } finally {
      unwatchA();
      unwatchB();
    }
  });
});
