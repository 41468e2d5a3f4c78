import { LRUCache } from 'lru-cache';

/**
 * Where verdicts live between requests. Keys never contain a tag (a tag moves; a digest does
 * not) and always contain the trust epoch, so a change of keys or policy makes every earlier
 * verdict unreachable at once.
 */
export interface VerdictCache {
  get(key: string): Promise<unknown>;
  set(key: string, value: unknown, ttlSeconds: number): Promise<void>;
  delete(key: string): Promise<void>;
  /** Figures for health and metrics. */
  stats(): { hits: number; misses: number; size: number; degraded?: boolean };
  close(): Promise<void>;
}

/** The in-process tier: an LRU with per-entry TTL. Also the whole cache when no Redis is configured. */
export class MemoryVerdictCache implements VerdictCache {
  private readonly lru: LRUCache<string, { v: unknown }>;
  private hits = 0;
  private misses = 0;

  constructor(maxEntries: number) {
    this.lru = new LRUCache({ max: maxEntries, ttlAutopurge: false });
  }

  async get(key: string): Promise<unknown> {
    const e = this.lru.get(key);
    if (e === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    return e.v;
  }

  async set(key: string, value: unknown, ttlSeconds: number): Promise<void> {
    this.lru.set(key, { v: value }, { ttl: ttlSeconds * 1000 });
  }

  async delete(key: string): Promise<void> {
    this.lru.delete(key);
  }

  stats(): { hits: number; misses: number; size: number } {
    return { hits: this.hits, misses: this.misses, size: this.lru.size };
  }

  async close(): Promise<void> {
    this.lru.clear();
  }
}
