/**
 * Hints between replicas: a small publish/subscribe channel (Redis pub/sub when a Redis is
 * configured, src/cache/redis-cache.ts). Policy: a message is a hint, never an instruction: anyone
 * who can reach Redis can publish, so a handler only re-reads its own source of truth or drops a
 * cached copy.
 */
export interface ReplicaBus {
  /** Sends a hint; false when it could not be sent (Redis down or slow). Never rejects. */
  publish(channel: string, message: string): Promise<boolean>;
  /** Calls `handler` for every message on `channel`; resolves to the function that stops it. Never rejects. */
  subscribe(
    channel: string,
    handler: (message: string, channel: string) => void,
  ): Promise<() => Promise<void>>;
}

/** The bus of a process without Redis: there is nobody to tell and nobody tells it anything. */
export const singleReplicaBus: ReplicaBus = {
  publish: () => Promise.resolve(true),
  subscribe: () => Promise.resolve(() => Promise.resolve()),
};
