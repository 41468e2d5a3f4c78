import type { Config } from '../config/schema.js';
import { RedisVerdictCache, type CacheLogger } from './redis-cache.js';
import { TieredVerdictCache } from './tiered-cache.js';
import { MemoryVerdictCache, type VerdictCache } from './verdict-cache.js';
import { singleReplicaBus, type ReplicaBus } from './bus.js';

export { MemoryVerdictCache, type VerdictCache } from './verdict-cache.js';
export { RedisVerdictCache, type CacheLogger, type RedisEntry, type RedisCacheStats } from './redis-cache.js';
export { TieredVerdictCache, type TieredCacheStats } from './tiered-cache.js';
export { singleReplicaBus, type ReplicaBus } from './bus.js';

/** The verdict cache and the bus to the other replicas, built from one cache config. */
export interface SharedState {
  cache: VerdictCache;
  /** Redis pub/sub with Redis; without it a bus with nobody on it. */
  bus: ReplicaBus;
}

/**
 * The verdict cache and replica bus for a configuration: without `redisUrl` the embedded in-memory LRU; with it
 * a local LRU in front of Redis. The Redis connection is started here and never blocks: until it
 * is up every Redis read is a miss (requests verify inline), and with Redis down trustgate runs
 * degraded and recovers by itself. Await `connect()` on the cache (TieredVerdictCache) to wait
 * for it, bounded by `connectWaitMs` (default 2 s). The bus shares the Redis configuration.
 */
export function createSharedState(
  config: Config['cache'],
  logger: CacheLogger,
  opts: CacheOptions = {},
): SharedState {
  if (!config.redisUrl) return { cache: new MemoryVerdictCache(config.localEntries), bus: singleReplicaBus };
  if (!config.hmacSecret) {
    // The schema refuses this already; kept for callers that build the config by hand.
    throw new TypeError('cache.hmacSecret (at least 32 characters) is required when cache.redisUrl is set');
  }
  const redis = new RedisVerdictCache({
    url: config.redisUrl,
    hmacSecret: config.hmacSecret,
    logger,
    timeoutMs: config.redisTimeoutMs,
    ...opts,
  });
  const tiered = new TieredVerdictCache(redis, config.localEntries);
  void tiered.connect(); // never rejects
  return { cache: tiered, bus: redis };
}

type CacheOptions = { connectWaitMs?: number; keyPrefix?: string; reconnectMaxDelayMs?: number };

/** The verdict cache alone (see createSharedState). */
export function createVerdictCache(
  config: Config['cache'],
  logger: CacheLogger,
  opts: CacheOptions = {},
): VerdictCache {
  return createSharedState(config, logger, opts).cache;
}
