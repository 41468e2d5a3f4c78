import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createClient } from 'redis';
import { createSharedState, createVerdictCache, singleReplicaBus } from '../../src/cache/index.js';
import { RedisVerdictCache } from '../../src/cache/redis-cache.js';
import { TieredVerdictCache } from '../../src/cache/tiered-cache.js';
import { MemoryVerdictCache } from '../../src/cache/verdict-cache.js';
import { configSchema } from '../../src/config/schema.js';
import { startRedis, type RedisHandle } from '../helpers/stack.js';
import { recordingLogger, SECRET, timed, trapProcessErrors, waitFor } from './util.js';

const newRaw = (url: string) => createClient({ url, socket: { reconnectStrategy: 100 } });

const verdict = { ok: false, reason: 'unsigned', message: 'no signature', signers: [], boundTags: [] };

describe('TieredVerdictCache against a real redis-server', () => {
  let redis: RedisHandle;
  let raw: ReturnType<typeof newRaw>;
  const opened: TieredVerdictCache[] = [];
  const trap = trapProcessErrors();

  async function replica(localEntries = 100): Promise<TieredVerdictCache> {
    const r = new RedisVerdictCache({
      url: redis.url,
      hmacSecret: SECRET,
      logger: recordingLogger(),
      timeoutMs: 250,
      reconnectMaxDelayMs: 200,
    });
    const t = new TieredVerdictCache(r, localEntries);
    opened.push(t);
    await t.connect();
    return t;
  }

  before(async () => {
    redis = await startRedis();
    raw = newRaw(redis.url);
    raw.on('error', () => undefined);
    await raw.connect();
  });
  after(async () => {
    await Promise.all(opened.map((c) => c.close()));
    raw.destroy();
    await redis.stop();
    trap.uninstall();
  });

  test('a set is a local hit afterwards: Redis is not asked', async () => {
    const a = await replica();
    await a.set('v:e:r:d1', verdict, 60);
    assert.equal(await raw.exists('tg:v:e:r:d1'), 1, 'written through to Redis');
    assert.deepEqual(await a.get('v:e:r:d1'), verdict);
    const s = a.stats();
    assert.equal(s.local.hits, 1);
    assert.equal(s.redis.hits + s.redis.misses, 0, 'Redis not read');
    assert.equal(s.hits, 1);
    assert.equal(s.size, 1);
    assert.equal(s.degraded, false);
  });

  test('two replicas share entries: A sets, B reads from Redis once, then from its local tier', async () => {
    const a = await replica();
    const b = await replica();
    await a.set('v:e:r:shared', verdict, 60);
    await a.set('b:e:r:blob', 1, 60);
    assert.deepEqual(await b.get('v:e:r:shared'), verdict);
    assert.deepEqual(await b.get('v:e:r:shared'), verdict);
    assert.equal(await b.get('b:e:r:blob'), 1);
    const s = b.stats();
    assert.equal(s.redis.hits, 2, 'each key read from Redis once');
    assert.equal(s.local.hits, 1);
    assert.equal(s.local.misses, 2);
    assert.equal(s.misses, 0);
    assert.equal(await b.get('v:e:r:absent'), undefined);
    assert.equal(b.stats().misses, 1);
  });

  test('the local copy never outlives the Redis entry (its PTTL bounds it)', async () => {
    const a = await replica();
    const b = await replica();
    await a.set('v:e:r:short', verdict, 60);
    // Redis will now drop it in 300 ms, although it was written (and signed) for 60 s
    assert.equal(await raw.pExpire('tg:v:e:r:short', 300), 1);
    assert.deepEqual(await b.get('v:e:r:short'), verdict); // fills B's local tier
    const gone = await waitFor(async () => (await b.get('v:e:r:short')) === undefined, 1500);
    assert.ok(gone, 'B kept serving the entry after Redis expired it');
    assert.equal(await raw.exists('tg:v:e:r:short'), 0);
  });

  test('1 s TTL: both tiers forget the entry', async () => {
    const a = await replica();
    const b = await replica();
    await a.set('v:e:r:ttl1', verdict, 1);
    assert.deepEqual(await b.get('v:e:r:ttl1'), verdict);
    assert.ok(await waitFor(async () => (await a.get('v:e:r:ttl1')) === undefined, 2500), 'A');
    assert.ok(await waitFor(async () => (await b.get('v:e:r:ttl1')) === undefined, 500), 'B');
  });

  test('delete removes both tiers here; another replica may keep its local copy (documented, ≤ its TTL)', async () => {
    const a = await replica();
    const b = await replica();
    await a.set('v:e:r:neg', verdict, 5);
    assert.deepEqual(await b.get('v:e:r:neg'), verdict); // B now holds it locally
    await a.delete('v:e:r:neg');
    assert.equal(await raw.exists('tg:v:e:r:neg'), 0);
    assert.equal(await a.get('v:e:r:neg'), undefined);
    // Policy (see TieredVerdictCache): B's local copy lingers for at most the entry's TTL.
    assert.deepEqual(await b.get('v:e:r:neg'), verdict);
    const c = await replica();
    assert.equal(await c.get('v:e:r:neg'), undefined, 'a replica without a local copy misses');
  });

  test('a forged Redis entry is a miss and is not copied into the local tier', async () => {
    const a = await replica();
    await raw.set('tg:v:e:r:forged', JSON.stringify({ e: Date.now() + 60_000, v: { ...verdict, ok: true } }));
    assert.equal(await a.get('v:e:r:forged'), undefined);
    assert.equal(await a.get('v:e:r:forged'), undefined);
    const s = a.stats();
    assert.equal(s.redis.forged, 2);
    assert.equal(s.local.hits, 0);
    assert.equal(s.size, 0);
  });

  test('the local tier is an LRU of bounded size', async () => {
    const a = await replica(16);
    for (let i = 0; i < 40; i++) await a.set(`b:e:r:${i}`, 1, 60);
    assert.equal(a.stats().size, 16);
    assert.equal(await a.get('b:e:r:0'), 1, 'evicted locally, still in Redis');
    assert.equal(a.stats().redis.hits, 1);
  });

  test('pub/sub through the replica bus (the Redis tier) reaches the other replica', async () => {
    const a = await replica();
    const b = await replica();
    const got: string[] = [];
    await a.redis.subscribe('tg:keys', (m) => void got.push(m));
    assert.equal(await b.redis.publish('tg:keys', 'nudge'), true);
    assert.ok(await waitFor(() => got.length > 0, 2000));
    assert.deepEqual(got, ['nudge']);
  });

  test('Redis down: local hits still served, other gets miss within the bound, degraded; then recovers', async () => {
    const a = await replica();
    await a.set('v:e:r:local', verdict, 60);
    await redis.kill();
    assert.deepEqual(await a.get('v:e:r:local'), verdict, 'local tier unaffected');
    const g = await timed(() => a.get('v:e:r:other'));
    assert.equal(g.value, undefined);
    assert.ok(g.ms < 400, `${g.ms} ms`);
    await a.set('v:e:r:during', verdict, 60); // Redis write dropped, local kept
    assert.deepEqual(await a.get('v:e:r:during'), verdict);
    assert.equal(a.stats().degraded, true);
    await redis.restart();
    await raw.connect().catch(() => undefined);
    assert.ok(await waitFor(() => !a.stats().degraded, 5000), 'no recovery');
    const b = await replica();
    await a.set('v:e:r:after', verdict, 60);
    assert.deepEqual(await b.get('v:e:r:after'), verdict);
    assert.deepEqual(trap.errors, []);
  });
});

describe('createVerdictCache', () => {
  const base = {
    tls: { cert: 'c', key: 'k' },
    upstream: { url: 'http://127.0.0.1:5000' },
  };

  test('without redisUrl: the embedded in-memory cache', async () => {
    const cfg = configSchema.parse(base);
    const c = createVerdictCache(cfg.cache, recordingLogger());
    assert.ok(c instanceof MemoryVerdictCache);
    await c.set('k', 1, 60);
    assert.equal(await c.get('k'), 1);
    await c.close();
  });

  test('with redisUrl: a tiered cache on that Redis', async () => {
    const redis = await startRedis();
    const log = recordingLogger();
    const cfg = configSchema.parse({ ...base, cache: { redisUrl: redis.url, hmacSecret: SECRET } });
    const c = createVerdictCache(cfg.cache, log);
    const other = createVerdictCache(cfg.cache, log);
    try {
      assert.ok(c instanceof TieredVerdictCache && other instanceof TieredVerdictCache);
      await Promise.all([c.connect(), other.connect()]);
      await c.set('v:e:r:f', verdict, 60);
      assert.deepEqual(await other.get('v:e:r:f'), verdict);
      assert.equal(other.stats().redis.hits, 1);
      assert.equal(c.stats().degraded, false);
      assert.deepEqual(log.lines, []);
    } finally {
      await Promise.all([c.close(), other.close()]);
      await redis.stop();
    }
  });

  test('createSharedState: with redisUrl the bus is Redis pub/sub between replicas; without, nobody is on it', async () => {
    const alone = createSharedState(configSchema.parse(base).cache, recordingLogger());
    assert.equal(alone.bus, singleReplicaBus);
    assert.equal(await alone.bus.publish('tg:keys', 'x'), true);
    await alone.cache.close();
    const redis = await startRedis();
    const cfg = configSchema.parse({ ...base, cache: { redisUrl: redis.url, hmacSecret: SECRET } });
    const [a, b] = [
      createSharedState(cfg.cache, recordingLogger()),
      createSharedState(cfg.cache, recordingLogger()),
    ];
    try {
      const got: string[] = [];
      await a.bus.subscribe('tg:manifest-deleted', (m) => void got.push(m));
      assert.equal(await b.bus.publish('tg:manifest-deleted', 'r@sha256:0'), true);
      assert.ok(await waitFor(() => got.length > 0, 2000));
      assert.deepEqual(got, ['r@sha256:0']);
    } finally {
      await Promise.all([a.cache.close(), b.cache.close()]);
      await redis.stop();
    }
  });

  test('with redisUrl and Redis down: returns at once, degraded, never throws', async () => {
    const redis = await startRedis();
    await redis.kill();
    const cfg = configSchema.parse({ ...base, cache: { redisUrl: redis.url, hmacSecret: SECRET } });
    const log = recordingLogger();
    // the factory does not wait for the connection (connectWaitMs is 2 s here)
    const t = await timed(async () => createVerdictCache(cfg.cache, log));
    const c = t.value;
    try {
      assert.ok(t.ms < 500, `factory blocked for ${t.ms} ms`);
      assert.ok(c instanceof TieredVerdictCache);
      assert.equal(await c.get('x'), undefined);
      await c.connect();
      assert.equal(c.stats().degraded, true);
      assert.equal(await c.get('x'), undefined);
      assert.equal(log.lines.filter((l) => l.level === 'warn').length, 1);
    } finally {
      await c.close();
      await redis.stop();
    }
  });
});
