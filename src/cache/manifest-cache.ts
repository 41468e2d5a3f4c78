import { LRUCache } from 'lru-cache';
import type { ParsedManifest } from '../core/manifest.js';

export interface CachedManifest {
  bytes: Buffer;
  contentType: string | undefined;
  /** The strict parse of these bytes under this content type, once done. */
  parsed?: ParsedManifest;
}

/**
 * Manifest bytes by (repository, digest), in process. Bytes under a digest never change, so a warm
 * pull by digest needs no registry round trip; the verdict is still checked on every request and
 * the bytes are re-hashed before they are sent. Policy: entries live at most `ttlSeconds`, so a
 * manifest deleted from the registry stops being served by digest after that long.
 */
export class ManifestCache {
  private readonly lru: LRUCache<string, CachedManifest>;
  /** The digest each (repository, tag) last resolved to: only a hint for a conditional request. */
  private readonly tags: LRUCache<string, string>;

  constructor(maxBytes = 64 * 1024 * 1024, ttlSeconds = 300, maxTags = 10_000) {
    this.lru = new LRUCache({
      maxSize: maxBytes,
      sizeCalculation: (m) => m.bytes.length + 128,
      ttl: ttlSeconds * 1000,
    });
    this.tags = new LRUCache({ max: maxTags, ttl: ttlSeconds * 1000 });
  }

  /** Remembers that `tag` resolved to `digest` in the registry just now. */
  rememberTag(repo: string, tag: string, digest: string): void {
    this.tags.set(`${repo}:${tag}`, digest);
  }

  /**
   * The digest `tag` last resolved to, with that manifest's bytes, when both are still held: the
   * registry can then answer "unchanged" (304) instead of sending the bytes again.
   */
  lastResolved(repo: string, tag: string): { digest: string; manifest: CachedManifest } | undefined {
    const digest = this.tags.get(`${repo}:${tag}`);
    const manifest = digest === undefined ? undefined : this.get(repo, digest);
    return digest !== undefined && manifest ? { digest, manifest } : undefined;
  }

  get(repo: string, digest: string): CachedManifest | undefined {
    return this.lru.get(`${repo}@${digest}`);
  }

  set(repo: string, digest: string, m: CachedManifest): void {
    this.lru.set(`${repo}@${digest}`, m);
  }

  delete(repo: string, digest: string): void {
    // Tag hints naming it go unused from now on: lastResolved needs the bytes too.
    this.lru.delete(`${repo}@${digest}`);
  }
}
