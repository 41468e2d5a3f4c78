import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createClient } from 'redis';
import { RedisVerdictCache, type RedisVerdictCacheOptions } from '../../src/cache/redis-cache.js';
import { startRedis, type RedisHandle } from '../helpers/stack.js';
import { recordingLogger, seal, SECRET, timed, trapProcessErrors, waitFor } from './util.js';

const newRaw = (url: string) => createClient({ url, socket: { reconnectStrategy: 100 } });
type Raw = ReturnType<typeof newRaw>;

const caches: RedisVerdictCache[] = [];
function makeCache(
  url: string,
  o: Partial<RedisVerdictCacheOptions> = {},
): { cache: RedisVerdictCache; log: ReturnType<typeof recordingLogger> } {
  const log = recordingLogger();
  const cache = new RedisVerdictCache({
    url,
    hmacSecret: SECRET,
    logger: log,
    timeoutMs: 250,
    reconnectMaxDelayMs: 200,
    connectWaitMs: 2000,
    ...o,
  });
  caches.push(cache);
  return { cache, log };
}

async function rawClient(url: string): Promise<Raw> {
  const c = newRaw(url);
  c.on('error', () => undefined);
  await c.connect();
  return c;
}

const verdict = { ok: true, reason: 'signed', message: 'ok', signers: ['release'], boundTags: [] };

describe('RedisVerdictCache against a real redis-server', () => {
  let redis: RedisHandle;
  let raw: Raw;
  const trap = trapProcessErrors();

  before(async () => {
    redis = await startRedis();
    raw = await rawClient(redis.url);
  });
  after(async () => {
    await Promise.all(caches.map((c) => c.close()));
    raw.destroy();
    await redis.stop();
    trap.uninstall();
  });

  test('set then get is a hit; the stored form is MAC "." JSON under the tg: prefix with EX', async () => {
    const { cache } = makeCache(redis.url);
    await cache.connect();
    assert.equal(cache.stats().degraded, false);
    await cache.set('v:e1:prod/app:sha256:aa', verdict, 60);
    await cache.set('b:e1:prod/app:sha256:bb', 1, 60);
    await cache.set('c:e1:prod/app:sha256:cc', 'sha256:parent', 60);
    assert.deepEqual(await cache.get('v:e1:prod/app:sha256:aa'), verdict);
    assert.equal(await cache.get('b:e1:prod/app:sha256:bb'), 1);
    assert.equal(await cache.get('c:e1:prod/app:sha256:cc'), 'sha256:parent');

    const stored = await raw.get('tg:v:e1:prod/app:sha256:aa');
    assert.ok(stored);
    assert.match(stored, /^[A-Za-z0-9_-]{43}\.\{"e":\d+,"v":\{/);
    assert.equal(stored, seal('tg:v:e1:prod/app:sha256:aa', stored.slice(44)));
    const ttl = await raw.ttl('tg:v:e1:prod/app:sha256:aa');
    assert.ok(ttl > 50 && ttl <= 60, `ttl ${ttl}`);
    assert.equal(await raw.exists('v:e1:prod/app:sha256:aa'), 0, 'nothing written without the prefix');
    const s = cache.stats();
    assert.equal(s.hits, 3);
    assert.equal(s.misses, 0);
    assert.equal(s.forged, 0);
  });

  test('an absent key is a miss; delete removes; the key prefix is configurable', async () => {
    const { cache } = makeCache(redis.url, { keyPrefix: 'other:' });
    await cache.connect();
    assert.equal(await cache.get('v:e1:nope:sha256:00'), undefined);
    await cache.set('k1', { a: 1 }, 60);
    assert.equal(await raw.exists('other:k1'), 1);
    assert.deepEqual(await cache.get('k1'), { a: 1 });
    await cache.delete('k1');
    assert.equal(await raw.exists('other:k1'), 0);
    assert.equal(await cache.get('k1'), undefined);
    assert.equal(cache.stats().misses, 2);
    assert.equal(cache.stats().forged, 0, 'a plain miss is not a forgery');
  });

  test('an entry written with a 1 s TTL is gone after it expires', async () => {
    const { cache } = makeCache(redis.url);
    await cache.connect();
    await cache.set('ttl:1', verdict, 1);
    assert.deepEqual(await cache.get('ttl:1'), verdict);
    const entry = await cache.getEntry('ttl:1');
    assert.ok(entry && entry.remainingMs > 0 && entry.remainingMs <= 1000, JSON.stringify(entry));
    const gone = await waitFor(async () => (await cache.get('ttl:1')) === undefined, 2500);
    assert.ok(gone, 'still a hit 2.5 s after a 1 s TTL');
    assert.equal(await raw.exists('tg:ttl:1'), 0);
  });

  test('forged entries are misses and are counted: no MAC, bad MAC, other secret, copied key', async () => {
    const { cache } = makeCache(redis.url);
    await cache.connect();
    const json = JSON.stringify({ e: Date.now() + 60_000, v: verdict });
    // no MAC at all: the plain value an attacker with Redis access would write
    await raw.set('tg:f:plain', JSON.stringify(verdict));
    // a MAC-shaped prefix that is wrong (one character changed)
    const good = seal('tg:f:bad', json);
    await raw.set('tg:f:bad', (good[0] === 'A' ? 'B' : 'A') + good.slice(1));
    // a correct construction under another secret
    await raw.set('tg:f:secret', seal('tg:f:secret', json, 'another-secret-0123456789abcdef-012'));
    // a genuine value (written by the cache) copied under another key
    await cache.set('f:genuine', verdict, 60);
    assert.deepEqual(await cache.get('f:genuine'), verdict, 'the original is a hit');
    const genuine = await raw.get('tg:f:genuine');
    assert.ok(genuine);
    await raw.set('tg:f:copied', genuine);
    // the MAC binds the full key, prefix included: a value for another prefix is refused too
    await raw.set('tg:f:prefix', seal('other:f:prefix', json));

    const before = cache.stats();
    for (const k of ['f:plain', 'f:bad', 'f:secret', 'f:copied', 'f:prefix']) {
      assert.equal(await cache.get(k), undefined, k);
      assert.equal(await cache.getEntry(k), undefined, k);
    }
    const after = cache.stats();
    assert.equal(after.forged - before.forged, 10);
    assert.equal(after.hits, before.hits);
    assert.equal(after.misses - before.misses, 10);
    assert.equal(after.degraded, false, 'forgeries are not an outage');
  });

  test('garbage is a miss: random bytes, huge values, valid MAC over bad JSON, wrong Redis type', async () => {
    const { cache, log } = makeCache(redis.url);
    await cache.connect();
    const bytes = Buffer.from([0xff, 0xfe, 0x00, 0x2e, 0x80, 0x81, 0xc3, 0x28, 0x0a, 0x0d]);
    await raw.set('tg:g:bytes', bytes);
    await raw.set('tg:g:empty', '');
    await raw.set(
      'tg:g:huge',
      seal('tg:g:huge', JSON.stringify({ e: Date.now() + 60_000, v: 'x'.repeat(70_000) })),
    );
    await raw.set('tg:g:badjson', seal('tg:g:badjson', '{"e":1,"v":'));
    await raw.set('tg:g:array', seal('tg:g:array', '[1,2]'));
    await raw.set('tg:g:noexp', seal('tg:g:noexp', '{"v":1}'));
    await raw.set('tg:g:nov', seal('tg:g:noexp', `{"e":${Date.now() + 60_000}}`));
    await raw.hSet('tg:g:hash', 'f', 'v'); // GET answers WRONGTYPE
    await raw.set('tg:g:dot', '.'.repeat(50));
    const keys = [
      'g:bytes',
      'g:empty',
      'g:huge',
      'g:badjson',
      'g:array',
      'g:noexp',
      'g:nov',
      'g:hash',
      'g:dot',
    ];
    for (const k of keys) {
      assert.equal(await cache.get(k), undefined, k);
      assert.equal(await cache.getEntry(k), undefined, k);
    }
    const s = cache.stats();
    assert.equal(s.forged, keys.length * 2);
    assert.equal(s.hits, 0);
    assert.equal(s.degraded, false);
    assert.deepEqual(log.lines, [], 'garbage is counted, not logged as an outage');
  });

  test('a genuine value replayed past its signed expiry (re-SET without TTL) is a miss', async () => {
    const { cache } = makeCache(redis.url);
    await cache.connect();
    const json = JSON.stringify({ e: Date.now() - 1000, v: verdict });
    await raw.set('tg:r:old', seal('tg:r:old', json)); // no EX: Redis would keep it forever
    assert.equal(await cache.get('r:old'), undefined);
    assert.equal(await cache.getEntry('r:old'), undefined);
    assert.equal(cache.stats().stale, 2);
    assert.equal(cache.stats().forged, 0);
    // the same with a future expiry and no Redis TTL: getEntry bounds it by the signed expiry
    await raw.set('tg:r:noexp', seal('tg:r:noexp', JSON.stringify({ e: Date.now() + 5000, v: 1 })));
    const e = await cache.getEntry('r:noexp');
    assert.ok(e && e.value === 1 && e.remainingMs <= 5000 && e.remainingMs > 3000, JSON.stringify(e));
  });

  test('values that are not JSON-able, and bad TTLs, are not written (and do not throw)', async () => {
    const { cache } = makeCache(redis.url);
    await cache.connect();
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    await cache.set('n:cyclic', cyclic, 60);
    await cache.set('n:undef', undefined, 60);
    await cache.set('n:big', 1n, 60);
    await cache.set('n:ttl0', 1, 0);
    await cache.set('n:ttlfrac', 1, 0.5);
    for (const k of ['n:cyclic', 'n:undef', 'n:big', 'n:ttl0', 'n:ttlfrac']) {
      assert.equal(await raw.exists(`tg:${k}`), 0, k);
    }
  });

  test('the constructor refuses a short secret', () => {
    assert.throws(
      () => new RedisVerdictCache({ url: redis.url, hmacSecret: 'short', logger: recordingLogger() }),
      TypeError,
    );
  });

  test('slow Redis (CLIENT PAUSE 1000): operations return a miss within the timeout, then recover', async () => {
    const { cache, log } = makeCache(redis.url);
    await cache.connect();
    await cache.set('slow:1', verdict, 60);
    await raw.sendCommand(['CLIENT', 'PAUSE', '1000', 'ALL']);
    const t0 = Date.now();
    const g = await timed(() => cache.get('slow:1'));
    assert.equal(g.value, undefined);
    assert.ok(g.ms >= 200 && g.ms < 600, `get took ${g.ms} ms`);
    const s = await timed(() => cache.set('slow:2', verdict, 60));
    assert.ok(s.ms < 600, `set took ${s.ms} ms`);
    const d = await timed(() => cache.delete('slow:1'));
    assert.ok(d.ms < 600, `delete took ${d.ms} ms`);
    assert.equal(cache.stats().degraded, true);
    assert.equal(log.lines.filter((l) => l.level === 'warn').length, 1, 'warned once for three failures');
    // after the pause: answers again, and the state goes back by itself
    await new Promise((r) => setTimeout(r, Math.max(0, 1100 - (Date.now() - t0))));
    const back = await waitFor(
      async () => (await cache.get('slow:1')) !== undefined || !cache.degraded,
      2000,
    );
    assert.ok(back);
    assert.equal(cache.stats().degraded, false);
    assert.equal(log.lines.filter((l) => l.level === 'info').length, 1, 'recovery logged once');
    // Policy check: the writes issued during the pause were late, not refused; whatever they did, a
    // fresh write is a hit.
    await cache.set('slow:3', verdict, 60);
    assert.deepEqual(await cache.get('slow:3'), verdict);
  });

  test('pub/sub: a message published by one instance reaches the other; a failing handler breaks nothing', async () => {
    const a = makeCache(redis.url).cache;
    const b = makeCache(redis.url).cache;
    await Promise.all([a.connect(), b.connect()]);
    const got: Array<[string, string]> = [];
    const unsubThrow = await a.subscribe('tg:keys', () => {
      throw new Error('handler bug');
    });
    const unsub = await a.subscribe('tg:keys', (m, ch) => void got.push([m, ch]));
    assert.equal(await b.publish('tg:keys', 'reload'), true);
    assert.ok(await waitFor(() => got.length > 0, 2000), 'message not delivered within 2 s');
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(got, [['reload', 'tg:keys']], 'delivered exactly once');
    await unsub();
    await unsubThrow();
    assert.equal(await b.publish('tg:keys', 'again'), true);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(got.length, 1, 'no delivery after unsubscribe');
  });

  test('no unhandled rejection or uncaught exception was seen in this file so far', () => {
    assert.deepEqual(trap.errors, []);
  });
});

describe('RedisVerdictCache when Redis dies, restarts, or is down at start', () => {
  const trap = trapProcessErrors();
  let redis: RedisHandle;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await Promise.all(caches.map((c) => c.close()));
    await redis.stop();
    trap.uninstall();
  });

  test('Redis killed mid-run: misses within the timeout, degraded, one warning; restart: recovers and hits again', async () => {
    const { cache, log } = makeCache(redis.url);
    const sub = makeCache(redis.url).cache;
    await Promise.all([cache.connect(), sub.connect()]);
    const got: string[] = [];
    await sub.subscribe('tg:keys', (m) => void got.push(m));
    await cache.set('d:1', verdict, 60);
    assert.deepEqual(await cache.get('d:1'), verdict);

    await redis.kill(); // SIGKILL: no goodbye on the socket beyond the RST/FIN from the kernel
    for (let i = 0; i < 20; i++) {
      const r = await timed(() => cache.get('d:1'));
      assert.equal(r.value, undefined);
      assert.ok(r.ms < 400, `get #${i} took ${r.ms} ms with Redis down`);
    }
    const w = await timed(() => Promise.all([cache.set('d:2', verdict, 60), cache.delete('d:1')]));
    assert.ok(w.ms < 400, `writes took ${w.ms} ms with Redis down`);
    assert.equal(await cache.publish('tg:keys', 'lost'), false);
    assert.equal(cache.stats().degraded, true);
    // let a few reconnect attempts fail (each emits 'error' inside node-redis)
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(log.lines.filter((l) => l.level === 'warn').length, 1, 'warned exactly once');
    assert.equal(log.lines.filter((l) => l.level === 'info').length, 0);

    await redis.restart();
    const recovered = await waitFor(() => !cache.stats().degraded, 5000);
    assert.ok(recovered, 'did not recover within 5 s of the restart');
    assert.equal(log.lines.filter((l) => l.level === 'info').length, 1, 'recovery logged once');
    assert.equal(await cache.get('d:1'), undefined, 'the restarted Redis has no data');
    await cache.set('d:3', verdict, 60);
    assert.deepEqual(await cache.get('d:3'), verdict);
    // the subscription is restored on the new server by itself
    const delivered = await waitFor(async () => {
      await cache.publish('tg:keys', 'after-restart');
      return got.includes('after-restart');
    }, 5000);
    assert.ok(delivered, 'subscription not restored after the restart');
    assert.ok(!got.includes('lost'));
    assert.deepEqual(trap.errors, []);
  });

  test('Redis down at start: connect() returns within its bound, runs degraded, recovers when Redis comes up', async () => {
    await redis.kill();
    const { cache, log } = makeCache(redis.url, { connectWaitMs: 500 });
    const c = await timed(() => cache.connect());
    assert.ok(c.ms < 1000, `connect took ${c.ms} ms`);
    assert.equal(cache.stats().degraded, true);
    const got: string[] = [];
    // subscribing while Redis is down neither blocks beyond its bound nor is lost
    const s = await timed(() => cache.subscribe('tg:keys', (m) => void got.push(m)));
    assert.ok(s.ms < 3000, `subscribe took ${s.ms} ms`);
    const g = await timed(() => cache.get('x'));
    assert.equal(g.value, undefined);
    assert.ok(g.ms < 100, `a get while disconnected should fail fast, took ${g.ms} ms`);
    await cache.set('x', 1, 60);

    await redis.restart();
    assert.ok(await waitFor(() => !cache.stats().degraded, 5000), 'did not recover');
    assert.equal(log.lines.filter((l) => l.level === 'warn').length, 1);
    assert.equal(log.lines.filter((l) => l.level === 'info').length, 1);
    await cache.set('x', 1, 60);
    assert.equal(await cache.get('x'), 1);
    const delivered = await waitFor(async () => {
      await cache.publish('tg:keys', 'up');
      return got.includes('up');
    }, 5000);
    assert.ok(delivered, 'a subscription made while Redis was down was lost');
    assert.deepEqual(trap.errors, []);
  });

  test('close() with Redis down returns promptly, and the cache stays silent afterwards', async () => {
    const { cache, log } = makeCache(redis.url, { connectWaitMs: 300 });
    await cache.connect();
    await redis.kill();
    await cache.get('y'); // notices the outage
    const c = await timed(() => cache.close());
    assert.ok(c.ms < 1000, `close took ${c.ms} ms`);
    const n = log.lines.length;
    assert.equal(await cache.get('y'), undefined);
    await cache.set('y', 1, 60);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(log.lines.length, n, 'no logs after close');
    await redis.restart();
    assert.deepEqual(trap.errors, []);
  });
});
