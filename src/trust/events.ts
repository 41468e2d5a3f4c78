import diagnostics_channel from 'node:diagnostics_channel';

/**
 * What the trust service tells observers, as `node:diagnostics_channel` events: it knows nothing
 * of metrics; src/server/metrics.ts subscribes. `source` is the TrustService that verified.
 */

/** A cold verification (signature fetch plus verify) finished. */
export interface VerifyEvent {
  source: object;
  seconds: number;
}

export const verifyChannel = diagnostics_channel.channel('trustgate:trust:verify');
