import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { VerdictCache } from '../cache/verdict-cache.js';
import { upstreamRequestChannel, type UpstreamRequestEvent } from '../registry/events.js';
import { verifyChannel, type VerifyEvent } from '../trust/events.js';
import { subscribeFrom } from './observe.js';

/** Prometheus metrics, on a registry of their own (never the process-global one). */
export class Metrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'trustgate_requests_total',
    help: 'Requests by route kind, method and status',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [this.registry],
  });
  readonly requestDuration = new Histogram({
    name: 'trustgate_request_duration_seconds',
    help: 'Time to answer, by route kind (streams: until the last byte)',
    labelNames: ['route'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120],
    registers: [this.registry],
  });
  readonly decisions = new Counter({
    name: 'trustgate_decisions_total',
    help: 'Decisions by verdict and reason',
    labelNames: ['verdict', 'reason'] as const,
    registers: [this.registry],
  });
  readonly verifyDuration = new Histogram({
    name: 'trustgate_verify_duration_seconds',
    help: 'Cold verification: signature fetch plus verification',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });
  readonly upstreamDuration = new Histogram({
    name: 'trustgate_upstream_duration_seconds',
    help: 'Buffered registry requests (manifests, signatures, catalog) until the full body',
    labelNames: ['kind'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
    registers: [this.registry],
  });
  readonly tagRevalidations = new Counter({
    name: 'trustgate_tag_revalidations_total',
    help: 'Conditional tag resolutions: unchanged (registry answered 304) or moved (new bytes)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly tagAnswersShared = new Counter({
    name: 'trustgate_tag_answers_shared_total',
    help: 'Pulls by tag answered by a registry answer shared with concurrent pulls of the tag (each asked for after the pull arrived)',
    registers: [this.registry],
  });
  readonly tagIndexLookups = new Counter({
    name: 'trustgate_tag_index_lookups_total',
    help: 'Pulls by tag looked up in the tag index (cache.tagIndex): hit (no registry round trip), miss, expired (older than maxAgeSeconds), untrusted (a notification may have been missed)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly tagIndexFlushes = new Counter({
    name: 'trustgate_tag_index_flushes_total',
    help: 'Tag index flushes: start, reload, bus-down, bus-reconnected, heartbeat-late',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly cacheRequests = new Counter({
    name: 'trustgate_cache_requests_total',
    help: 'Verdict cache lookups by tier and result',
    labelNames: ['tier', 'result'] as const,
    registers: [this.registry],
  });
  readonly redisUp = new Gauge({
    name: 'trustgate_redis_up',
    help: '1 when the Redis tier answers, 0 when degraded, absent without Redis',
    registers: [this.registry],
  });
  readonly upstreamUp = new Gauge({
    name: 'trustgate_upstream_up',
    help: '1 when the last readiness probe of the registry succeeded',
    registers: [this.registry],
  });
  readonly blobRelays = new Gauge({
    name: 'trustgate_blob_relays',
    help: 'Blob downloads being relayed now (bounded by limits.blobRelays)',
    registers: [this.registry],
  });
  readonly relaysRefused = new Counter({
    name: 'trustgate_blob_relays_refused_total',
    help: 'Blob downloads refused at a relay bound: identity or address (429), global (503)',
    labelNames: ['bound'] as const,
    registers: [this.registry],
  });
  readonly writeIdleClosed = new Counter({
    name: 'trustgate_write_idle_closed_total',
    help: 'Client connections closed because they accepted no response bytes for limits.writeIdleSeconds',
    registers: [this.registry],
  });
  readonly bytes = new Counter({
    name: 'trustgate_bytes_streamed_total',
    help: 'Body bytes streamed through the proxy',
    labelNames: ['direction'] as const,
    registers: [this.registry],
  });

  readonly sigstoreRootRefreshes = new Counter({
    name: 'trustgate_sigstore_root_refreshes_total',
    help: 'TUF refreshes of Sigstore trusted roots by source and outcome (updated, unchanged, failed)',
    labelNames: ['source', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly sigstoreRootValid = new Gauge({
    name: 'trustgate_sigstore_root_valid',
    help: '1 when the Sigstore source has a valid trusted root in force (the last good one after a failed refresh), 0 when none',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });
  readonly sigstoreRootVerified = new Gauge({
    name: 'trustgate_sigstore_root_last_success_timestamp_seconds',
    help: 'When the Sigstore TUF source last verified its trusted root through TUF, Unix seconds',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });

  /** Counts `upstream`'s buffered requests from its events; returns the unsubscribe. */
  watchUpstream(upstream: object): () => void {
    return subscribeFrom<UpstreamRequestEvent>(upstreamRequestChannel, upstream, ({ kind, seconds }) =>
      this.upstreamDuration.observe({ kind }, seconds),
    );
  }

  /** Times `trust`'s cold verifications from its events; returns the unsubscribe. */
  watchTrust(trust: object): () => void {
    return subscribeFrom<VerifyEvent>(verifyChannel, trust, ({ seconds }) =>
      this.verifyDuration.observe(seconds),
    );
  }

  /** Exports the cache's own counters (per tier when it has tiers) at scrape time. */
  watchCache(cache: VerdictCache): void {
    const seen = new Map<string, number>();
    const redisUp = this.redisUp;
    const bump = (tier: string, result: string, total: number): void => {
      const key = `${tier}:${result}`;
      const delta = total - (seen.get(key) ?? 0);
      if (delta > 0) this.cacheRequests.inc({ tier, result }, delta);
      seen.set(key, total);
    };
    new Gauge({
      name: 'trustgate_cache_entries',
      help: 'Entries in the in-process cache tier',
      registers: [this.registry],
      collect() {
        const s = cache.stats() as ReturnType<VerdictCache['stats']> & {
          local?: { hits: number; misses: number; size: number };
          redis?: { hits: number; misses: number; degraded: boolean };
        };
        if (s.local && s.redis) {
          bump('local', 'hit', s.local.hits);
          bump('local', 'miss', s.local.misses);
          bump('redis', 'hit', s.redis.hits);
          bump('redis', 'miss', s.redis.misses);
          redisUp.set(s.redis.degraded ? 0 : 1);
          this.set(s.local.size);
        } else {
          bump('local', 'hit', s.hits);
          bump('local', 'miss', s.misses);
          this.set(s.size);
        }
      },
    });
  }

  /** A plain-HTTP listener for /metrics (bind it to a private address). */
  async listen(host: string, port: number): Promise<{ port: number; close(): Promise<void> }> {
    const server = http.createServer((req, res) => {
      if (req.method !== 'GET' || req.url !== '/metrics') {
        res.writeHead(404).end();
        return;
      }
      this.registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': this.registry.contentType });
          res.end(text);
        },
        () => res.writeHead(500).end(),
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    return {
      port: (server.address() as AddressInfo).port,
      close: () => new Promise<void>((r) => server.close(() => r())),
    };
  }
}
