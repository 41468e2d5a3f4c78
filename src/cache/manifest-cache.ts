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

  constructor(maxBytes = 64 * 1024 * 1024, ttlSeconds = 300) {
    this.lru = new LRUCache({
      maxSize: maxBytes,
      sizeCalculation: (m) => m.bytes.length + 128,
      ttl: ttlSeconds * 1000,
    });
  }

  get(repo: string, digest: string): CachedManifest | undefined {
    return this.lru.get(`${repo}@${digest}`);
  }

  set(repo: string, digest: string, m: CachedManifest): void {
    this.lru.set(`${repo}@${digest}`, m);
  }

  delete(repo: string, digest: string): void {
    this.lru.delete(`${repo}@${digest}`);
  }
}
