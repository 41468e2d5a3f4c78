/**
 * The authoritative tag index's rules (cache.tagIndex, src/cache/tag-index.ts): which tags it may
 * answer for, and whether an entry may still answer. Pure: the times are passed in (monotonic
 * milliseconds of one process).
 */

/**
 * Policy: evidence tags are never answered from the index. `sha256-<hex>.sig`, `.att`, `.sbom`
 * and the referrers tags `sha256-<hex>` are read, changed and written back by clients (cosign
 * appends a signature to the `.sig` it has just read) and trustgate writes referrers tags itself;
 * a stale read there could make a client drop a signature. Pulls of them always ask the registry.
 */
export function isIndexableTag(tag: string): boolean {
  return !/^sha(?:256|384|512)-/.test(tag);
}

/** Why the index did or did not answer a pull by tag (the lookup metric's `result`). */
export type TagIndexLookup =
  /** The entry answered: no registry round trip. */
  | 'hit'
  /** No entry, or the manifest bytes it names are no longer held. */
  | 'miss'
  /** The entry is older than maxAgeSeconds: the registry is asked again. */
  | 'expired'
  /** The index may have missed a notification (bus down, reconnected, heartbeat late). */
  | 'untrusted';

/**
 * Policy: an entry answers only while it is younger than `maxAgeSeconds`, counted from when the
 * request that observed it (a registry read, or an accepted write) was SENT, so its age is never
 * understated. This is the bound on how stale a tag moved behind trustgate's back can be served.
 */
export function entryUsable(observedAtMs: number, nowMs: number, maxAgeSeconds: number): boolean {
  return nowMs - observedAtMs < maxAgeSeconds * 1000;
}

/**
 * Policy: the index answers only while this replica can tell it has heard every notification: its
 * delivery session (one unbroken subscription) is the one it started under, and a heartbeat it
 * published at most `staleMs` ago, after its last flush, came back over that subscription
 * (Redis delivers a subscriber's messages in order, so every notification Redis received before
 * that heartbeat has been applied). A process without other replicas needs neither.
 */
export function indexTrusted(s: {
  replicated: boolean;
  /** The bus's current delivery session (undefined: messages may be missed now). */
  session: number | undefined;
  /** The session the index was last flushed under. */
  adoptedSession: number | undefined;
  /** When the newest heartbeat that came back was sent, if it was sent after the last flush. */
  echoSentAtMs: number | undefined;
  nowMs: number;
  staleMs: number;
}): boolean {
  if (s.session === undefined || s.session !== s.adoptedSession) return false;
  if (!s.replicated) return true;
  return s.echoSentAtMs !== undefined && s.nowMs - s.echoSentAtMs <= s.staleMs;
}
