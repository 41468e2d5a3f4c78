import { randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { entryUsable, indexTrusted, isIndexableTag, type TagIndexLookup } from '../core/tag-index.js';
import type { ParsedManifest } from '../core/manifest.js';
import type { ReplicaBus } from './bus.js';
import type { CachedManifest, ManifestCache } from './manifest-cache.js';

/** Tag moves and the index's heartbeats, between replicas. */
export const TAGS_CHANNEL = 'tg:tags';

/** cache.tagIndex, read at every use (a reload changes it). */
export interface TagIndexSettings {
  enabled: boolean;
  maxAgeSeconds: number;
}

export interface TagIndexLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface TagIndexOptions {
  settings: () => TagIndexSettings;
  bus: ReplicaBus;
  /** The manifest bytes by digest: an entry answers only while its bytes are held there. */
  manifests: ManifestCache;
  log: TagIndexLogger;
  onLookup?: (result: TagIndexLookup) => void;
  onFlush?: (reason: FlushReason) => void;
  /** Entries kept (least recently used dropped first); default 10 000. */
  maxEntries?: number;
  /** How often a heartbeat is published while the index is on (ms); default 1000. */
  heartbeatMs?: number;
  /** How old the newest returned heartbeat may be for the index to answer (ms); default 3000. */
  staleMs?: number;
  /** Monotonic clock in ms (default performance.now). */
  now?: () => number;
}

export type FlushReason = 'start' | 'bus-down' | 'bus-reconnected' | 'heartbeat-late' | 'reload';

/** When and under what one registry read or write of a tag was sent. */
export interface TagObservation {
  readonly repo: string;
  readonly tag: string;
  /** The flush generation when it was sent. */
  readonly generation: number;
  /** The repository's write number when it was sent (for a write: its own). */
  readonly writes: number;
  /** When it was sent (monotonic ms): an entry's age counts from here. */
  readonly at: number;
}

interface Entry {
  digest: string;
  at: number;
}

const MAX_MESSAGE = 1024;
const MAX_PENDING_RETRIES = 1000;

/**
 * The authoritative tag index (cache.tagIndex; docs/security-model.md, "Tag index"): which digest
 * each (repository, tag) names, as this replica last saw it in a registry answer or an accepted
 * write, so that a warm pull by tag needs no registry round trip. It only replaces the registry's
 * tag → digest answer: the bytes come from the manifest cache and are hashed and verified like
 * any others.
 *
 * Fed by: the registry's answers to tag reads (200: the digest of the bytes, 304: the held
 * digest, 404: dropped), manifest PUTs by tag through this replica once registry:2 accepted them,
 * DELETEs through this replica, and notifications from the other replicas (which can only drop
 * entries). Every write drops its tag at once and bumps its repository's write number; a read or
 * write is recorded only if no write to its repository was seen and no flush happened while it
 * was in flight, so an answer that may predate a write is never recorded after it.
 *
 * With Redis, the index answers only while it can tell it has missed no notification (see
 * core/tag-index.ts indexTrusted): any break of the subscription flushes it, and so does a late
 * heartbeat; it answers again once a heartbeat sent after the flush came back.
 */
export class TagIndex {
  private readonly settings: () => TagIndexSettings;
  private readonly bus: ReplicaBus;
  private readonly manifests: ManifestCache;
  private readonly log: TagIndexLogger;
  private readonly onLookup: (result: TagIndexLookup) => void;
  private readonly onFlush: (reason: FlushReason) => void;
  private readonly heartbeatMs: number;
  private readonly staleMs: number;
  private readonly now: () => number;
  private readonly entries: LRUCache<string, Entry>;
  /** Each repository's last write number; evicted ones raise the floor (never forgotten lower). */
  private readonly repoWrites: LRUCache<string, number>;
  private writesFloor = 0;
  private lastWrite = 0;
  /** Writes through this replica sent and not yet answered, by repository. */
  private readonly writesInFlight = new Map<string, number>();
  private generation = 0;
  /** The bus session the index was last flushed under (or started under). */
  private adoptedSession: number | undefined;
  /** Whether a session was ever adopted (the first one is the start, not a reconnection). */
  private hadSession: boolean;
  /** Tells this replica's own messages from the others'. */
  private readonly nonce = randomBytes(8).toString('hex');
  private heartbeats = 0;
  /** Heartbeats sent and not yet back, by number: when each was sent. */
  private readonly heartbeatSentAt = new Map<number, number>();
  private firstHeartbeatAfterFlush = 1;
  /** When the newest heartbeat that came back (sent after the last flush) was sent. */
  private echoSentAt: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => Promise<void>) | undefined;
  private pendingRetries = 0;
  private closed = false;

  constructor(o: TagIndexOptions) {
    this.settings = o.settings;
    this.bus = o.bus;
    this.manifests = o.manifests;
    this.log = o.log;
    this.onLookup = o.onLookup ?? (() => undefined);
    this.onFlush = o.onFlush ?? (() => undefined);
    this.heartbeatMs = o.heartbeatMs ?? 1000;
    this.staleMs = o.staleMs ?? 3000;
    this.now = o.now ?? (() => performance.now());
    this.entries = new LRUCache({ max: o.maxEntries ?? 10_000 });
    this.repoWrites = new LRUCache({
      max: 10_000,
      dispose: (n, _repo, reason) => {
        if (reason !== 'set') this.writesFloor = Math.max(this.writesFloor, n);
      },
    });
    this.adoptedSession = this.bus.deliverySession();
    this.hadSession = this.adoptedSession !== undefined;
  }

  /** Listens to the other replicas and starts the heartbeat (with Redis). Never rejects. */
  async start(): Promise<void> {
    if (!this.bus.replicated || this.closed) return;
    this.unsubscribe = await this.bus.subscribe(TAGS_CHANNEL, (m) => this.onMessage(m));
    if (this.closed) {
      await this.unsubscribe();
      return;
    }
    this.timer = setInterval(() => this.heartbeat(), this.heartbeatMs);
    this.timer.unref();
    this.heartbeat();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.unsubscribe?.();
  }

  /**
   * The digest and held bytes the index names for a pull of `repo:tag`, when it may answer;
   * undefined sends the pull to the registry.
   */
  resolve(repo: string, tag: string): { digest: string; manifest: CachedManifest } | undefined {
    const { enabled, maxAgeSeconds } = this.settings();
    if (!enabled || !isIndexableTag(tag)) return undefined;
    if (!this.trusted()) {
      this.onLookup('untrusted');
      return undefined;
    }
    const key = `${repo}:${tag}`;
    const e = this.entries.get(key);
    if (!e) {
      this.onLookup('miss');
      return undefined;
    }
    if (!entryUsable(e.at, this.now(), maxAgeSeconds)) {
      this.entries.delete(key);
      this.onLookup('expired');
      return undefined;
    }
    const manifest = this.manifests.get(repo, e.digest);
    this.onLookup(manifest ? 'hit' : 'miss');
    return manifest ? { digest: e.digest, manifest } : undefined;
  }

  /** Before a registry read of a tag: what its answer will be recorded under (undefined: off). */
  beforeRead(repo: string, tag: string): TagObservation | undefined {
    if (!this.settings().enabled || !isIndexableTag(tag)) return undefined;
    return { repo, tag, generation: this.generation, writes: this.writesOf(repo), at: this.now() };
  }

  /** The registry's answer to that read: the tag's digest, or null when it has no such tag. */
  afterRead(o: TagObservation, digest: string | null): void {
    if (digest === null) {
      this.entries.delete(`${o.repo}:${o.tag}`);
      return;
    }
    if (this.mayRecord(o)) this.entries.set(`${o.repo}:${o.tag}`, { digest, at: o.at });
  }

  /**
   * Sends a write that may move or remove `repo:tag` (a manifest PUT or DELETE by tag) with the
   * index's bookkeeping around it: beforeWrite, then afterWrite with what `accepted` makes of the
   * answer (nothing when the write failed or threw). Evidence tags are sent as they are.
   */
  async write<T>(
    repo: string,
    tag: string,
    send: () => Promise<T>,
    accepted: (answer: T) => { digest: string; manifest?: CachedManifest } | undefined,
  ): Promise<T> {
    const o = this.beforeWrite(repo, tag);
    if (!o) return send();
    let answer: { value: T } | undefined;
    try {
      answer = { value: await send() };
      return answer.value;
    } finally {
      // Off, nothing is recorded (mayRecord): `accepted` (which may parse the pushed manifest
      // again, pushedManifest) is not asked, on every manifest PUT by tag.
      await this.afterWrite(o, answer && this.settings().enabled ? accepted(answer.value) : undefined);
    }
  }

  /**
   * Before a write that may move or remove `repo:tag` is sent, whether or not the index is on: the
   * tag is dropped and the repository's write number bumped, so no read in flight is recorded
   * after the write. Undefined for evidence tags, which the index never holds.
   */
  beforeWrite(repo: string, tag: string): TagObservation | undefined {
    if (!isIndexableTag(tag)) return undefined;
    const at = this.now();
    const writes = this.bumpWrites(repo);
    this.writesInFlight.set(repo, (this.writesInFlight.get(repo) ?? 0) + 1);
    this.entries.delete(`${repo}:${tag}`);
    return { repo, tag, generation: this.generation, writes, at };
  }

  /**
   * After the write: `accepted` when registry:2 accepted a manifest PUT of these bytes under the
   * tag (its bytes are then held for pulls). The other replicas are told either way (a write
   * that failed may still have been applied); when the index is on, before the client is answered.
   */
  async afterWrite(
    o: TagObservation,
    accepted?: { digest: string; manifest?: CachedManifest },
  ): Promise<void> {
    const left = (this.writesInFlight.get(o.repo) ?? 1) - 1;
    if (left > 0) this.writesInFlight.set(o.repo, left);
    else this.writesInFlight.delete(o.repo);
    // Recorded only when no other write to the repository overlapped this one (registry:2 may have
    // applied overlapping writes in either order); either way the write's end is a write event of
    // its own, so no read that overlapped it is recorded after it.
    const record = accepted !== undefined && this.mayRecord(o);
    this.bumpWrites(o.repo);
    this.entries.delete(`${o.repo}:${o.tag}`);
    if (record) {
      if (accepted.manifest) this.manifests.set(o.repo, accepted.digest, accepted.manifest);
      this.entries.set(`${o.repo}:${o.tag}`, { digest: accepted.digest, at: o.at });
    }
    const told = this.announce(TAGS_CHANNEL, `moved ${this.nonce} ${o.repo}:${o.tag}`);
    if (this.settings().enabled) await told;
  }

  /**
   * A manifest deleted by digest (through this replica, before and after the DELETE, or told by
   * another): registry:2 removes every tag naming it, so every entry naming it goes.
   */
  forgetDigest(repo: string, digest: string): void {
    this.bumpWrites(repo);
    const prefix = `${repo}:`;
    const gone: string[] = [];
    for (const [key, e] of this.entries.entries()) {
      if (e.digest === digest && key.startsWith(prefix)) gone.push(key);
    }
    for (const key of gone) this.entries.delete(key);
  }

  /** Drops everything (SIGHUP, or a possible gap in the notifications). */
  flush(reason: FlushReason): void {
    this.entries.clear();
    this.generation++;
    this.echoSentAt = undefined;
    this.firstHeartbeatAfterFlush = this.heartbeats + 1;
    this.onFlush(reason);
    if ((reason === 'bus-down' || reason === 'heartbeat-late') && this.settings().enabled) {
      this.log.warn(
        { reason },
        'tag index flushed: pulls by tag ask the registry until the index can tell it misses no notification',
      );
    } else if (reason === 'bus-reconnected' && this.settings().enabled) {
      this.log.info(
        { reason },
        'tag index flushed on a new Redis subscription; it answers once a heartbeat returns',
      );
    }
    // A heartbeat now, so that the index answers again as soon as the bus carries it.
    if (reason !== 'bus-down') this.heartbeat();
  }

  /**
   * Publishes a hint to the other replicas; one that could not be sent is sent again (backing off
   * to 2 s) for as long as an entry could live (maxAgeSeconds), after which it no longer matters.
   */
  async announce(channel: string, message: string): Promise<void> {
    if (!this.bus.replicated) return;
    const since = this.now();
    if (!(await this.bus.publish(channel, message))) this.retry(channel, message, since, 250);
  }

  /** Entries held (tests and metrics). */
  get size(): number {
    return this.entries.size;
  }

  // -------------------------------------------------------------------------------------------

  private retry(channel: string, message: string, since: number, delayMs: number): void {
    if (this.closed) return;
    if (this.pendingRetries >= MAX_PENDING_RETRIES) {
      this.log.warn({ channel }, 'replica hint dropped: too many waiting to be sent again');
      return;
    }
    this.pendingRetries++;
    setTimeout(() => {
      this.pendingRetries--;
      if (this.closed || this.now() - since > this.settings().maxAgeSeconds * 1000) return;
      void this.bus.publish(channel, message).then((ok) => {
        if (!ok) this.retry(channel, message, since, Math.min(delayMs * 2, 2000));
      });
    }, delayMs).unref();
  }

  /**
   * A read or accepted write may be recorded: the index is on and trusted, and since it was sent
   * nothing was flushed, no write to its repository began or ended (here or, as far as told, on
   * another replica), and none is in flight now.
   */
  private mayRecord(o: TagObservation): boolean {
    return (
      this.settings().enabled &&
      this.trusted() &&
      o.generation === this.generation &&
      this.writesOf(o.repo) === o.writes &&
      !this.writesInFlight.has(o.repo)
    );
  }

  private writesOf(repo: string): number {
    return this.repoWrites.get(repo) ?? this.writesFloor;
  }

  private bumpWrites(repo: string): number {
    const n = ++this.lastWrite;
    this.repoWrites.set(repo, n);
    return n;
  }

  /** May the index answer now? Flushes on a new (or no) bus session and on a late heartbeat. */
  private trusted(): boolean {
    const session = this.adoptSession();
    const now = this.now();
    const ok = indexTrusted({
      replicated: this.bus.replicated,
      session,
      adoptedSession: this.adoptedSession,
      echoSentAtMs: this.echoSentAt,
      nowMs: now,
      staleMs: this.staleMs,
    });
    if (!ok && this.echoSentAt !== undefined) this.flush('heartbeat-late');
    return ok;
  }

  /** Policy: a delivery session other than the one the index was flushed under flushes it. */
  private adoptSession(): number | undefined {
    const session = this.bus.deliverySession();
    if (session === this.adoptedSession) return session;
    this.adoptedSession = session;
    const reason = session === undefined ? 'bus-down' : this.hadSession ? 'bus-reconnected' : 'start';
    if (session !== undefined) this.hadSession = true;
    this.flush(reason);
    return session;
  }

  private heartbeat(): void {
    if (this.closed || !this.bus.replicated || !this.settings().enabled) return;
    this.adoptSession();
    const n = ++this.heartbeats;
    const now = this.now();
    this.heartbeatSentAt.set(n, now);
    // Sent in order, so the oldest come first: those too old to matter are forgotten.
    for (const [k, at] of this.heartbeatSentAt) {
      if (now - at <= this.staleMs) break;
      this.heartbeatSentAt.delete(k);
    }
    void this.bus.publish(TAGS_CHANNEL, `hb ${this.nonce} ${n}`);
  }

  /**
   * Policy: a message is a hint: a move only drops an entry (the next pull asks the registry),
   * and only this replica's own heartbeats, with the times it recorded, count as heartbeats.
   */
  private onMessage(message: string): void {
    if (message.length > MAX_MESSAGE) return;
    const [kind, nonce, arg, extra] = message.split(' ');
    if (extra !== undefined || arg === undefined) return;
    if (kind === 'hb') {
      if (nonce !== this.nonce) return;
      const n = Number(arg);
      const sentAt = this.heartbeatSentAt.get(n);
      if (sentAt === undefined || n < this.firstHeartbeatAfterFlush) return;
      this.echoSentAt = Math.max(this.echoSentAt ?? sentAt, sentAt);
      return;
    }
    if (kind === 'moved' && nonce !== this.nonce) {
      const at = arg.lastIndexOf(':');
      if (at <= 0) return;
      const repo = arg.slice(0, at);
      this.bumpWrites(repo);
      this.entries.delete(arg);
    }
  }
}

/**
 * The bytes of a manifest PUT that registry:2 accepted, held as a pull would be served them; only
 * for a document that names its own media type (registry:2 then answers with exactly that type),
 * else undefined (the first pull reads them from the registry).
 */
export function pushedManifest(body: Buffer, manifest: ParsedManifest): CachedManifest | undefined {
  let declared: unknown;
  try {
    declared = (JSON.parse(body.toString('utf8')) as { mediaType?: unknown }).mediaType;
  } catch {
    return undefined;
  }
  return declared === manifest.mediaType
    ? { bytes: body, contentType: manifest.mediaType, parsed: manifest }
    : undefined;
}
