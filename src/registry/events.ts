import diagnostics_channel from 'node:diagnostics_channel';

/**
 * What the upstream layer tells observers, as `node:diagnostics_channel` events (as undici does):
 * the layer knows nothing of metrics or logs; src/server/metrics.ts and the composition root
 * subscribe (src/server/observe.ts). Every event names the Upstream it came from (`source`), so
 * two gates in one process (tests, benchmarks) each count only their own.
 */

/** A buffered registry request (manifest, signature, catalog, probe…) read whole. */
export interface UpstreamRequestEvent {
  source: object;
  /** Label for metrics: manifest, signature, catalog, probe, other. */
  kind: string;
  seconds: number;
}

/** An answer the direct reader handed back to Node's http client before any byte was used. */
export interface UpstreamFallbackEvent {
  source: object;
  why: string;
}

export const upstreamRequestChannel = diagnostics_channel.channel('trustgate:upstream:request');
export const upstreamFallbackChannel = diagnostics_channel.channel('trustgate:upstream:fallback');
