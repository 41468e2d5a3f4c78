import { LRUCache } from 'lru-cache';
import type { RedisVerdictCache } from './redis-cache.js';
import type { VerdictCache } from './verdict-cache.js';

export interface TieredCacheStats {
  /** Hits in either tier. */
  hits: number;
  /** Misses in both tiers. */
  misses: number;
  /** Entries in the local tier. */
  size: number;
  degraded: boolean;
  local: { hits: number; misses: number; size: number };
  redis: ReturnType<RedisVerdictCache['stats']>;
}

/**
 * A small in-process LRU in front of the shared Redis tier.
 *
 * get: local hit → done; else Redis (MAC-checked) → on a hit the local tier keeps the value for
 * the time Redis would still keep it (the smaller of Redis's PTTL and the expiry signed into the
 * value), never longer. set and delete go to both tiers.
 *
 * Policy: the local tier is never invalidated across replicas. Keys carry the trust epoch, so a
 * change of keys or policy makes every local entry unreachable at once on every replica. The one
 * exception is an explicit delete (TrustService.invalidate after a new signature is pushed): it
 * reaches this replica's local tier and Redis, but another replica may keep serving the old
 * (negative) verdict from its local tier for at most cache.negativeTtlSeconds. Positive verdicts
 * are never deleted, so nothing is admitted for longer than its own TTL.
 */
export class TieredVerdictCache implements VerdictCache {
  private readonly lru: LRUCache<string, { v: unknown }>;
  private localHits = 0;
  private localMisses = 0;

  constructor(
    readonly redis: RedisVerdictCache,
    localEntries: number,
  ) {
    this.lru = new LRUCache({ max: localEntries, ttlAutopurge: false });
  }

  connect(): Promise<void> {
    return this.redis.connect();
  }

  async get(key: string): Promise<unknown> {
    const e = this.lru.get(key);
    if (e !== undefined) {
      this.localHits++;
      return e.v;
    }
    this.localMisses++;
    const r = await this.redis.getEntry(key);
    if (r === undefined) return undefined;
    // Policy: the local copy lives no longer than the Redis entry it was read from.
    this.lru.set(key, { v: r.value }, { ttl: r.remainingMs });
    return r.value;
  }

  async set(key: string, value: unknown, ttlSeconds: number): Promise<void> {
    this.lru.set(key, { v: value }, { ttl: ttlSeconds * 1000 });
    await this.redis.set(key, value, ttlSeconds);
  }

  async delete(key: string): Promise<void> {
    this.lru.delete(key);
    await this.redis.delete(key);
  }

  stats(): TieredCacheStats {
    const redis = this.redis.stats();
    return {
      hits: this.localHits + redis.hits,
      misses: redis.misses,
      size: this.lru.size,
      degraded: redis.degraded,
      local: { hits: this.localHits, misses: this.localMisses, size: this.lru.size },
      redis,
    };
  }

  async close(): Promise<void> {
    this.lru.clear();
    await this.redis.close();
  }
}
