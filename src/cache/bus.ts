/**
 * Hints between replicas: a small publish/subscribe channel (Redis pub/sub when a Redis is
 * configured, src/cache/redis-cache.ts). Policy: a message is a hint, never an instruction: anyone
 * who can reach Redis can publish, so a handler only re-reads its own source of truth or drops a
 * cached copy.
 */
export interface ReplicaBus {
  /** True when other replicas may be on the bus (Redis); false for a process alone. */
  readonly replicated: boolean;
  /** Sends a hint; false when it could not be sent (Redis down or slow). Never rejects. */
  publish(channel: string, message: string): Promise<boolean>;
  /** Calls `handler` for every message on `channel`; resolves to the function that stops it. Never rejects. */
  subscribe(
    channel: string,
    handler: (message: string, channel: string) => void,
  ): Promise<() => Promise<void>>;
  /**
   * The current unbroken delivery session: a number that stays the same while every subscribed
   * channel is confirmed on one live connection, and changes after every reconnection; undefined
   * while messages may be missed (no connection, or a subscription not yet confirmed). Whoever
   * relies on having heard every message keeps the session it started under and starts over when
   * it changes (src/cache/tag-index.ts). A bus with nobody on it is always session 0.
   */
  deliverySession(): number | undefined;
}

/** The bus of a process without Redis: there is nobody to tell and nobody tells it anything. */
export const singleReplicaBus: ReplicaBus = {
  replicated: false,
  publish: () => Promise.resolve(true),
  subscribe: () => Promise.resolve(() => Promise.resolve()),
  deliverySession: () => 0,
};
