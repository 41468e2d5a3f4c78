import { createHmac, timingSafeEqual } from 'node:crypto';
import { createRequire } from 'node:module';
import type * as RedisModule from 'redis';
import type { ReplicaBus } from './bus.js';
import type { VerdictCache } from './verdict-cache.js';

/** The logger the cache reports state transitions to (pino's Logger fits). */
export interface CacheLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface RedisVerdictCacheOptions {
  /** redis://host:port[/db] (rediss:// for TLS). */
  url: string;
  /** The secret every value is authenticated with (cache.hmacSecret, ≥ 32 characters). */
  hmacSecret: string;
  logger: CacheLogger;
  /** Prefix of every key written (default `tg:`). Pub/sub channels are not prefixed. */
  keyPrefix?: string;
  /** Bound on every operation, in ms (cache.redisTimeoutMs, default 250). */
  timeoutMs?: number;
  /** How long connect() waits for the first connection before returning degraded (default 2000). */
  connectWaitMs?: number;
  /** Upper bound of the reconnect backoff, in ms (default 2000). */
  reconnectMaxDelayMs?: number;
  /** Commands allowed in flight before new ones are refused at once (default 1000). */
  maxQueuedCommands?: number;
  /** Clock, for the expiry signed into each value. */
  now?: () => number;
}

/** A value read from Redis, with how long it may still be kept (ms). */
export interface RedisEntry {
  value: unknown;
  remainingMs: number;
}

export interface RedisCacheStats {
  hits: number;
  misses: number;
  /** Not tracked for Redis (it would cost a DBSIZE per scrape): always 0. */
  size: number;
  degraded: boolean;
  /** Entries refused: missing/bad MAC, wrong key, unparsable, or malformed. */
  forged: number;
  /** Entries with a valid MAC whose signed expiry has passed (replayed or clock skew). */
  stale: number;
  /** Operations that failed or timed out (each is a miss or a dropped write). */
  errors: number;
}

type Client = ReturnType<typeof RedisModule.createClient>;

/**
 * node-redis, loaded by the first RedisVerdictCache: most deployments run without Redis, and the
 * client library is the largest module trustgate would otherwise load at start (about 10 MiB of
 * resident memory on Node 24, bench/README.md, session 5 memory). It is CommonJS, so a
 * synchronous require keeps the constructor synchronous.
 */
let redisModule: typeof RedisModule | undefined;
function redis(): typeof RedisModule {
  redisModule ??= createRequire(import.meta.url)('redis') as typeof RedisModule;
  return redisModule;
}
type Handler = (message: string, channel: string) => void;

const MAC_CHARS = 43; // base64url of 32 bytes, unpadded
/** Policy: verdicts are small; anything bigger read from Redis is not ours and is refused unparsed. */
const MAX_VALUE_BYTES = 64 * 1024;
const FAILED: unique symbol = Symbol('failed');
/** Redis answered with an error reply (e.g. WRONGTYPE): the connection is fine, the data is not. */
const REFUSED: unique symbol = Symbol('refused');

/**
 * The shared verdict tier, and the replicas' bus (Redis pub/sub on a second connection). Every value is `base64url(HMAC-SHA256(k, redisKey + '\0' + json)) + '.'
 * + json` where json is `{"e":<expiry ms since epoch>,"v":<value>}` and k is derived from the
 * configured secret. Reads verify the MAC over the key they were read from, so an entry forged in
 * Redis, or a genuine one copied under another key, is a miss.
 *
 * Fail-soft: every operation is bounded by `timeoutMs`; on error or timeout a get is a miss and a
 * write is dropped, and the cache reports `degraded` until Redis answers again. Nothing here
 * throws or rejects, and no client event can crash the process.
 */
export class RedisVerdictCache implements VerdictCache, ReplicaBus {
  readonly keyPrefix: string;
  readonly replicated = true;
  private readonly client: Client;
  private subscriber: Client | undefined;
  private readonly macKey: Buffer;
  private readonly timeoutMs: number;
  private readonly connectWaitMs: number;
  private readonly log: CacheLogger;
  private readonly now: () => number;
  private readonly clientOptions: Parameters<typeof RedisModule.createClient>[0];
  private readonly handlers = new Map<string, Set<Handler>>();
  /** Channels whose SUBSCRIBE Redis has confirmed (node-redis resubscribes those on reconnect). */
  private readonly confirmed = new Set<string>();
  /** Counts the subscriber's connections (each 'ready'): the delivery session's number. */
  private subscriberConnections = 0;
  /** The subscriber connection is up (ready, and no error or reconnection since). */
  private subscriberUp = false;
  private degradedSince: number | undefined;
  private lastError = '';
  private closed = false;
  private connecting: Promise<void> | undefined;
  private hits = 0;
  private misses = 0;
  private forged = 0;
  private stale = 0;
  private errors = 0;

  constructor(o: RedisVerdictCacheOptions) {
    if (typeof o.hmacSecret !== 'string' || o.hmacSecret.length < 32) {
      throw new TypeError('RedisVerdictCache: hmacSecret must be a string of at least 32 characters');
    }
    this.keyPrefix = o.keyPrefix ?? 'tg:';
    this.timeoutMs = o.timeoutMs ?? 250;
    this.connectWaitMs = o.connectWaitMs ?? 2000;
    this.log = o.logger;
    this.now = o.now ?? Date.now;
    // Policy: domain separation, so the configured secret used elsewhere never yields the same MACs.
    this.macKey = createHmac('sha256', o.hmacSecret).update('trustgate verdict cache v1').digest();
    const maxDelay = o.reconnectMaxDelayMs ?? 2000;
    this.clientOptions = {
      url: o.url,
      // Policy: while disconnected, commands fail at once (a miss) instead of queueing behind a
      // dead connection; the request then verifies inline (I3).
      disableOfflineQueue: true,
      commandsQueueMaxLength: o.maxQueuedCommands ?? 1000,
      socket: {
        connectTimeout: Math.max(1000, this.timeoutMs * 4),
        // Policy: reconnect forever, with capped exponential backoff and jitter.
        reconnectStrategy: (retries: number) =>
          Math.min(maxDelay, 50 * 2 ** Math.min(retries, 10)) + Math.floor(Math.random() * 50),
      },
    };
    this.client = this.makeClient('main');
    // Nothing connects until connect(): the first state is "not yet known", reported as degraded
    // only once an attempt failed.
  }

  /**
   * Starts connecting and waits at most `connectWaitMs` for the connection. Never rejects: with
   * Redis down the cache runs degraded and recovers by itself when Redis comes up.
   */
  connect(): Promise<void> {
    this.connecting ??= this.startConnecting();
    return this.connecting;
  }

  private async startConnecting(): Promise<void> {
    if (this.closed) return;
    const ready = new Promise<void>((resolve) => this.client.once('ready', () => resolve()));
    this.client.connect().catch((err: unknown) => {
      if (!this.closed) this.markDegraded(err);
    });
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<'timeout'>((r) => {
      timer = setTimeout(() => r('timeout'), this.connectWaitMs);
    });
    const r = await Promise.race([ready.then(() => 'ready' as const), waited]);
    clearTimeout(timer);
    if (r === 'timeout') this.markDegraded(new Error(`no connection within ${this.connectWaitMs} ms`));
  }

  async get(key: string): Promise<unknown> {
    const raw = await this.bounded('get', () => this.client.get(this.keyPrefix + key));
    if (raw === REFUSED) this.forged++;
    if (raw === FAILED || raw === REFUSED || raw === null || raw === undefined) {
      this.misses++;
      return undefined;
    }
    const value = this.open(this.keyPrefix + key, raw);
    if (value === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    return value.v;
  }

  /**
   * Like get, with how long the entry may still be kept: the smaller of Redis's own PTTL and the
   * expiry signed into the value (read atomically with MULTI, one round trip).
   */
  async getEntry(key: string): Promise<RedisEntry | undefined> {
    const full = this.keyPrefix + key;
    const reply = await this.bounded('get', () => this.client.multi().get(full).pTTL(full).exec());
    if (reply === REFUSED) this.forged++;
    if (reply === FAILED || reply === REFUSED || !Array.isArray(reply)) {
      this.misses++;
      return undefined;
    }
    const [raw, pttl] = reply as unknown[];
    if (raw === null || raw === undefined) {
      this.misses++;
      return undefined;
    }
    const opened = this.open(full, raw);
    if (opened === undefined) {
      this.misses++;
      return undefined;
    }
    let remainingMs = opened.e - this.now();
    // PTTL is -1 for a key without expiry (only a replay by someone with Redis access): the
    // signed expiry alone then bounds it.
    if (typeof pttl === 'number' && pttl >= 0) remainingMs = Math.min(remainingMs, pttl);
    if (remainingMs <= 0) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    return { value: opened.v, remainingMs };
  }

  async set(key: string, value: unknown, ttlSeconds: number): Promise<void> {
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1) return;
    const full = this.keyPrefix + key;
    let sealed: string;
    try {
      sealed = this.seal(full, value, this.now() + ttlSeconds * 1000);
    } catch {
      return; // not JSON-able (a bug in the caller): nothing is cached
    }
    await this.bounded('set', () => this.client.set(full, sealed, { EX: ttlSeconds }));
  }

  async delete(key: string): Promise<void> {
    await this.bounded('delete', () => this.client.del(this.keyPrefix + key));
  }

  stats(): RedisCacheStats {
    return {
      hits: this.hits,
      misses: this.misses,
      size: 0,
      degraded: this.degradedSince !== undefined,
      forged: this.forged,
      stale: this.stale,
      errors: this.errors,
    };
  }

  get degraded(): boolean {
    return this.degradedSince !== undefined;
  }

  /** Publishes a nudge; false when it could not be sent (Redis down or slow). Never rejects. */
  async publish(channel: string, message: string): Promise<boolean> {
    const r = await this.bounded('publish', () => this.client.publish(channel, message));
    return r !== FAILED && r !== REFUSED;
  }

  /**
   * Calls `handler` for every message on `channel`, on a second connection. The subscription
   * survives Redis restarts (and is made once Redis is up if it is down now). Returns the
   * function that removes the handler. Never rejects.
   *
   * Policy: a message is a hint, never an instruction: anyone who can reach Redis can publish, so
   * handlers re-read their own source of truth (e.g. the keyring reloads its directory).
   */
  async subscribe(channel: string, handler: Handler): Promise<() => Promise<void>> {
    let set = this.handlers.get(channel);
    if (!set) {
      set = new Set();
      this.handlers.set(channel, set);
    }
    set.add(handler);
    const sub = await this.ensureSubscriber();
    if (sub.isReady) await this.subscribeChannel(channel);
    return async () => {
      const s = this.handlers.get(channel);
      s?.delete(handler);
      if (s && s.size === 0) {
        this.handlers.delete(channel);
        this.confirmed.delete(channel);
        if (this.subscriber?.isReady) {
          const sub = this.subscriber;
          await this.bounded('unsubscribe', () => sub.unsubscribe(channel), false);
        }
      }
    };
  }

  /**
   * The subscriber connection's number while it is up and every subscribed channel is confirmed
   * on it, else undefined (see ReplicaBus). node-redis resubscribes the confirmed channels before
   * it reports a reconnection ready, so a new number means: messages sent meanwhile may be lost.
   */
  deliverySession(): number | undefined {
    if (this.closed || !this.subscriber?.isReady || !this.subscriberUp) return undefined;
    for (const channel of this.handlers.keys()) if (!this.confirmed.has(channel)) return undefined;
    return this.subscriberConnections;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const c of [this.client, this.subscriber]) {
      if (!c?.isOpen) continue;
      // Policy: a graceful QUIT when Redis answers in time, else the socket is destroyed.
      const r = await this.bounded('close', () => c.close(), false);
      if (typeof r === 'symbol' && c.isOpen) c.destroy();
    }
  }

  // -------------------------------------------------------------------------------------------

  private makeClient(role: 'main' | 'subscriber'): Client {
    const c = redis().createClient(this.clientOptions);
    // Policy: node-redis emits 'error' on every failed (re)connect; without a listener that
    // would crash the process. Errors only move the state to degraded.
    c.on('error', (err: unknown) => {
      if (this.closed) return;
      // The subscriber's state is not the cache's: its failures are recorded, not reported.
      if (role === 'main') this.markDegraded(err);
      else {
        this.lastError = describe(err);
        this.subscriberUp = false;
      }
    });
    c.on('ready', () => {
      if (role === 'main') this.markHealthy();
      else {
        this.subscriberConnections++;
        this.subscriberUp = true;
        void this.resubscribePending();
      }
    });
    if (role === 'subscriber') {
      // Policy: any sign of a broken connection ends the delivery session at once (messages sent
      // until the next 'ready' may be lost; pub/sub keeps nothing for absent subscribers).
      for (const event of ['end', 'reconnecting'] as const) c.on(event, () => (this.subscriberUp = false));
    }
    return c;
  }

  private async ensureSubscriber(): Promise<Client> {
    if (this.subscriber) return this.subscriber;
    const sub = this.makeClient('subscriber');
    this.subscriber = sub;
    const ready = new Promise<void>((resolve) => sub.once('ready', () => resolve()));
    sub.connect().catch((err: unknown) => (this.lastError = describe(err)));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([ready, new Promise<void>((r) => (timer = setTimeout(r, this.connectWaitMs)))]);
    clearTimeout(timer);
    return sub;
  }

  /** After (re)connecting: subscribe the channels Redis has not confirmed yet. */
  private async resubscribePending(): Promise<void> {
    for (const channel of this.handlers.keys()) {
      if (!this.confirmed.has(channel)) await this.subscribeChannel(channel);
    }
  }

  private async subscribeChannel(channel: string): Promise<void> {
    const sub = this.subscriber;
    if (!sub || this.closed) return;
    const r = await this.bounded('subscribe', () => sub.subscribe(channel, this.onMessage), false);
    if (r !== FAILED && r !== REFUSED && this.handlers.has(channel)) this.confirmed.add(channel);
  }

  /** One listener for every channel: node-redis keeps listeners in a Set, so re-subscribing is idempotent. */
  private readonly onMessage = (message: string, channel: string): void => this.dispatch(channel, message);

  private dispatch(channel: string, message: string): void {
    for (const h of this.handlers.get(channel) ?? []) {
      try {
        h(message, channel);
      } catch (err) {
        // Policy: a failing handler never breaks delivery to the others, nor the process.
        this.log.error({ err: describe(err), channel }, 'cache: pub/sub handler failed');
      }
    }
  }

  /**
   * Runs one Redis operation with a deadline. node-redis's own command timeout stops counting
   * once a command is written, so a paused or sleeping server needs this race. A late reply is
   * dropped; a late rejection is swallowed.
   */
  private async bounded<T>(
    op: string,
    fn: () => Promise<T>,
    /** false for operations on the subscriber connection and for close(). */
    reportsHealth = true,
  ): Promise<T | typeof FAILED | typeof REFUSED> {
    if (this.closed && op !== 'close') return FAILED;
    let timer: NodeJS.Timeout | undefined;
    try {
      const p = Promise.resolve().then(fn);
      p.catch(() => undefined);
      const timeout = new Promise<typeof FAILED>((resolve) => {
        timer = setTimeout(() => resolve(FAILED), this.timeoutMs);
      });
      const r = await Promise.race([p, timeout]);
      if (r === FAILED) {
        this.errors++;
        if (reportsHealth) this.markDegraded(new Error(`${op} timed out after ${this.timeoutMs} ms`));
        else this.lastError = `${op} timed out after ${this.timeoutMs} ms`;
        return FAILED;
      }
      if (reportsHealth) this.markHealthy();
      return r;
    } catch (err) {
      this.errors++;
      if (err instanceof redis().ErrorReply) {
        // Policy: an error reply (WRONGTYPE on a key someone overwrote, …) is a refused value,
        // not an outage: the caller counts it and misses; the state stays as it is.
        this.lastError = describe(err);
        return REFUSED;
      }
      if (reportsHealth) this.markDegraded(err);
      else this.lastError = describe(err);
      return FAILED;
    } finally {
      clearTimeout(timer);
    }
  }

  private markDegraded(err: unknown): void {
    this.lastError = describe(err);
    if (this.degradedSince !== undefined || this.closed) return;
    this.degradedSince = this.now();
    this.log.warn(
      { err: this.lastError },
      'verdict cache: Redis unavailable, running degraded (misses; writes dropped)',
    );
  }

  private markHealthy(): void {
    if (this.degradedSince === undefined || this.closed) return;
    const ms = this.now() - this.degradedSince;
    this.degradedSince = undefined;
    this.log.info({ degradedMs: ms, lastError: this.lastError }, 'verdict cache: Redis recovered');
  }

  private mac(fullKey: string, json: string): string {
    return createHmac('sha256', this.macKey).update(fullKey).update('\0').update(json).digest('base64url');
  }

  private seal(fullKey: string, value: unknown, expiresAt: number): string {
    const json = JSON.stringify({ e: expiresAt, v: value });
    if (typeof json !== 'string' || value === undefined) throw new TypeError('value is not JSON-able');
    return `${this.mac(fullKey, json)}.${json}`;
  }

  /**
   * Verifies and opens a value read under `fullKey`. Anything but a well-formed value with a
   * valid MAC for this very key is undefined (and counted).
   */
  private open(fullKey: string, raw: unknown): { e: number; v: unknown } | undefined {
    // Policy: a MAC check comes before any parse; what fails it is never looked at further.
    if (typeof raw !== 'string' || raw.length > MAX_VALUE_BYTES || raw.charCodeAt(MAC_CHARS) !== 0x2e) {
      this.forged++;
      return undefined;
    }
    const json = raw.slice(MAC_CHARS + 1);
    const got = Buffer.from(raw.slice(0, MAC_CHARS), 'latin1');
    const want = Buffer.from(this.mac(fullKey, json), 'latin1');
    // Policy: constant-time comparison of the canonical encodings (equal lengths by construction).
    if (got.length !== want.length || !timingSafeEqual(got, want)) {
      this.forged++;
      return undefined;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(json);
    } catch {
      this.forged++;
      return undefined;
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      this.forged++;
      return undefined;
    }
    const p = parsed as Record<string, unknown>;
    const e = p['e'];
    if (typeof e !== 'number' || !Number.isFinite(e) || !('v' in p)) {
      this.forged++;
      return undefined;
    }
    // Policy: a genuine entry past its signed expiry (e.g. re-SET without TTL by someone with
    // Redis access) is a miss: an old verdict cannot be replayed forever.
    if (e <= this.now()) {
      this.stale++;
      return undefined;
    }
    return { e, v: p['v'] };
  }
}

function describe(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return String(err);
}
