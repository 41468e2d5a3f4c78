/**
 * The tag index's bookkeeping (src/cache/tag-index.ts) when reads and writes of one repository
 * overlap: the calls are made in the order the overlapping requests would make them. The bus is
 * the real one of a process without Redis (singleReplicaBus); replicas and Redis faults are in
 * test/e2e/tag-index.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { singleReplicaBus } from '../../src/cache/bus.js';
import { RedisVerdictCache } from '../../src/cache/redis-cache.js';
import { startRedis } from '../helpers/stack.js';
import { recordingLogger, SECRET, waitFor } from './util.js';
import { ManifestCache, type CachedManifest } from '../../src/cache/manifest-cache.js';
import { pushedManifest, TagIndex } from '../../src/cache/tag-index.js';
import { entryUsable, indexTrusted, isIndexableTag } from '../../src/core/tag-index.js';
import { digestOf, MEDIA_TYPES, parseManifest } from '../../src/core/manifest.js';

const quiet = { info: () => undefined, warn: () => undefined };

function manifest(n: number): { digest: string; held: CachedManifest } {
  const bytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociManifest,
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: `sha256:${String(n).padStart(64, '0')}`,
        size: 2,
      },
      layers: [],
    }),
  );
  const parsed = parseManifest(bytes, MEDIA_TYPES.ociManifest);
  return { digest: digestOf(bytes), held: { bytes, contentType: MEDIA_TYPES.ociManifest, parsed } };
}

function setup(maxAgeSeconds = 60): {
  index: TagIndex;
  manifests: ManifestCache;
  clock: { t: number };
  settings: { enabled: boolean; maxAgeSeconds: number };
} {
  const clock = { t: 1000 };
  const settings = { enabled: true, maxAgeSeconds };
  const manifests = new ManifestCache();
  const index = new TagIndex({
    settings: () => settings,
    bus: singleReplicaBus,
    manifests,
    log: quiet,
    now: () => clock.t,
  });
  return { index, manifests, clock, settings };
}

describe('tag index bookkeeping', () => {
  const old = manifest(1);
  const next = manifest(2);

  it('a registry answer is recorded, and answers while its bytes are held and it is younger than maxAgeSeconds', () => {
    const { index, manifests, clock } = setup(10);
    manifests.set('r', old.digest, old.held);
    const o = index.beforeRead('r', 'v1')!;
    index.afterRead(o, old.digest);
    assert.equal(index.resolve('r', 'v1')?.digest, old.digest);
    clock.t += 9_999;
    assert.equal(index.resolve('r', 'v1')?.digest, old.digest);
    clock.t += 1;
    assert.equal(index.resolve('r', 'v1'), undefined, 'expired: counted from when the read was sent');
    // Without the bytes, no answer.
    const o2 = index.beforeRead('r', 'v1')!;
    index.afterRead(o2, next.digest);
    assert.equal(index.resolve('r', 'v1'), undefined);
  });

  it('a read answered before a write, and settled after it, is not recorded over the write', async () => {
    const { index, manifests } = setup();
    manifests.set('r', old.digest, old.held);
    const read = index.beforeRead('r', 'v1')!;
    await index.write(
      'r',
      'v1',
      async () => 201,
      () => ({ digest: next.digest, manifest: next.held }),
    );
    index.afterRead(read, old.digest); // the registry's answer from before the write
    assert.equal(index.resolve('r', 'v1')?.digest, next.digest);
  });

  it('a read sent while a write is in flight is not recorded, whenever it settles', async () => {
    const { index, manifests } = setup();
    manifests.set('r', old.digest, old.held);
    let finish!: () => void;
    const writing = index.write(
      'r',
      'v1',
      () => new Promise<number>((r) => (finish = () => r(201))),
      () => undefined, // e.g. the PUT failed or timed out: it may or may not have been applied
    );
    const early = index.beforeRead('r', 'v1')!;
    index.afterRead(early, old.digest); // settles while the write is in flight
    assert.equal(index.resolve('r', 'v1'), undefined);
    const late = index.beforeRead('r', 'v1')!;
    finish();
    await writing;
    index.afterRead(late, old.digest); // settles after the write ended
    assert.equal(index.resolve('r', 'v1'), undefined);
  });

  it('overlapping writes of one repository record neither (registry:2 may apply them in either order)', async () => {
    const { index } = setup();
    let finishFirst!: () => void;
    const first = index.write(
      'r',
      'v1',
      () => new Promise<number>((r) => (finishFirst = () => r(201))),
      () => ({ digest: old.digest, manifest: old.held }),
    );
    await index.write(
      'r',
      'v1',
      async () => 201,
      () => ({ digest: next.digest, manifest: next.held }),
    );
    assert.equal(index.resolve('r', 'v1'), undefined, 'the second ended while the first was in flight');
    finishFirst();
    await first;
    assert.equal(index.resolve('r', 'v1'), undefined);
    // Alone, a write is recorded (with its bytes held for the pull).
    await index.write(
      'r',
      'v1',
      async () => 201,
      () => ({ digest: next.digest, manifest: next.held }),
    );
    assert.equal(index.resolve('r', 'v1')?.digest, next.digest);
  });

  it('a write that failed or threw drops the tag', async () => {
    const { index, manifests } = setup();
    manifests.set('r', old.digest, old.held);
    index.afterRead(index.beforeRead('r', 'v1')!, old.digest);
    assert.equal(index.resolve('r', 'v1')?.digest, old.digest);
    await assert.rejects(
      index.write(
        'r',
        'v1',
        () => Promise.reject(new Error('registry went away')),
        () => ({ digest: next.digest }),
      ),
    );
    assert.equal(index.resolve('r', 'v1'), undefined);
  });

  it('a deleted digest drops every tag of the repository naming it, and reads in flight across it', () => {
    const { index, manifests } = setup();
    manifests.set('r', old.digest, old.held);
    manifests.set('r/sub', old.digest, old.held);
    for (const tag of ['a', 'b']) index.afterRead(index.beforeRead('r', tag)!, old.digest);
    index.afterRead(index.beforeRead('r/sub', 'a')!, old.digest);
    const inFlight = index.beforeRead('r', 'c')!;
    index.forgetDigest('r', old.digest);
    index.afterRead(inFlight, old.digest);
    for (const tag of ['a', 'b', 'c']) assert.equal(index.resolve('r', tag), undefined, tag);
    assert.equal(index.resolve('r/sub', 'a')?.digest, old.digest, 'another repository keeps its entry');
  });

  it('a flush (reload) drops everything, and reads sent before it are not recorded after it', () => {
    const { index, manifests } = setup();
    manifests.set('r', old.digest, old.held);
    index.afterRead(index.beforeRead('r', 'v1')!, old.digest);
    const before = index.beforeRead('r', 'v2')!;
    index.flush('reload');
    assert.equal(index.resolve('r', 'v1'), undefined);
    index.afterRead(before, old.digest);
    assert.equal(index.resolve('r', 'v2'), undefined);
  });

  it('off: nothing is looked up or recorded; evidence tags never are', async () => {
    const { index, manifests, settings } = setup();
    manifests.set('r', old.digest, old.held);
    settings.enabled = false;
    assert.equal(index.beforeRead('r', 'v1'), undefined);
    let asked = 0;
    await index.write(
      'r',
      'v1',
      async () => 201,
      () => (asked++, { digest: old.digest }),
    );
    assert.equal(asked, 0, 'off, the accepted write is not examined (no second parse of its manifest)');
    settings.enabled = true;
    assert.equal(index.resolve('r', 'v1'), undefined);
    const sig = `sha256-${'a'.repeat(64)}.sig`;
    assert.equal(index.beforeRead('r', sig), undefined);
    assert.equal(index.beforeWrite('r', sig), undefined);
    assert.equal(index.resolve('r', sig), undefined);
  });

  it('pushed bytes are held only when the document names its own media type', () => {
    const named = manifest(3);
    assert.ok(pushedManifest(named.held.bytes, named.held.parsed!));
    const bare = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        config: JSON.parse(named.held.bytes.toString()).config,
        layers: [],
      }),
    );
    assert.equal(pushedManifest(bare, parseManifest(bare, MEDIA_TYPES.ociManifest)), undefined);
  });
});

describe('tag index rules (core/tag-index.ts)', () => {
  it('evidence tags are not indexable; others are', () => {
    for (const t of [
      `sha256-${'0'.repeat(64)}`,
      `sha256-${'0'.repeat(64)}.sig`,
      `sha256-${'0'.repeat(64)}.att`,
      'sha512-x',
    ]) {
      assert.equal(isIndexableTag(t), false, t);
    }
    for (const t of ['latest', 'v1.2.3', 'sha256', 'SHA256-x']) assert.equal(isIndexableTag(t), true, t);
  });

  it('an entry is usable strictly below maxAgeSeconds', () => {
    assert.equal(entryUsable(0, 59_999, 60), true);
    assert.equal(entryUsable(0, 60_000, 60), false);
  });

  it('trusted only on the adopted session, and with Redis only with a recent heartbeat', () => {
    const base = {
      replicated: true,
      session: 3,
      adoptedSession: 3,
      echoSentAtMs: 1000,
      nowMs: 3000,
      staleMs: 3000,
    };
    assert.equal(indexTrusted(base), true);
    assert.equal(indexTrusted({ ...base, session: undefined }), false);
    assert.equal(indexTrusted({ ...base, session: 4 }), false);
    assert.equal(indexTrusted({ ...base, echoSentAtMs: undefined }), false);
    assert.equal(indexTrusted({ ...base, nowMs: 4001 }), false);
    assert.equal(
      indexTrusted({ ...base, replicated: false, session: 0, adoptedSession: 0, echoSentAtMs: undefined }),
      true,
    );
  });
});

describe('the Redis bus delivery session (RedisVerdictCache.deliverySession)', { timeout: 60_000 }, () => {
  it('a number while subscribed; undefined while Redis is gone; a new number after it is back', async () => {
    const redis = await startRedis();
    const bus = new RedisVerdictCache({
      url: redis.url,
      hmacSecret: SECRET,
      logger: recordingLogger(),
      reconnectMaxDelayMs: 200,
    });
    try {
      assert.equal(bus.deliverySession(), undefined, 'nothing subscribed yet');
      await bus.connect();
      await bus.subscribe('tg:test', () => undefined);
      const first = bus.deliverySession();
      assert.equal(typeof first, 'number');
      await redis.kill();
      assert.ok(await waitFor(() => bus.deliverySession() === undefined, 5000), 'gone');
      await redis.restart();
      assert.ok(await waitFor(() => bus.deliverySession() !== undefined, 10_000), 'back');
      assert.notEqual(bus.deliverySession(), first, 'messages sent while it was gone may be lost');
    } finally {
      await bus.close();
      await redis.stop();
    }
    assert.equal(bus.deliverySession(), undefined, 'closed');
  });
});
