/**
 * Attacks on the verdict caches with a real redis-server and a real registry:2, observed as pulls
 * through trustgate (unit tests of the MAC format live in test/cache; the forged-entry case of
 * test/trust/replicas-redis.test.ts is not repeated): genuine MAC'd entries moved to another key,
 * old epochs after a key change, a replayed genuine refusal, garbage and huge values, a paused
 * Redis (CLIENT PAUSE), what goes into keys (never a tag or a Host), the in-process manifest
 * cache against registry content changed underneath, and blob admission across teams.
 *
 * Two replicas share Redis, keys and token keys; B is the "cold" reader whose local tier has not
 * seen an entry, so what it does is decided by what it reads from Redis.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createClient } from 'redis';
import type { TieredVerdictCache } from '../../src/cache/tiered-cache.js';
import { generateKeyPair } from '../../src/core/signature/sign.js';
import {
  makeTempDir,
  removeTempDir,
  startRedis,
  startRegistry,
  type RedisHandle,
  type RegistryHandle,
} from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';
import { assertBlobNotAdmitted, bearer, getToken, request, type Reply } from '../helpers/http.js';
import { rawExchange } from '../helpers/raw.js';
import { direct, pushBlob, pushManifest, pushRandomImage, sha256 } from '../helpers/registry-direct.js';
import { signDirect } from '../helpers/sign.js';

const OCI = 'application/vnd.oci.image.manifest.v1+json';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const newRaw = (url: string) => createClient({ url });
const KEY_SHAPE =
  /^tg:[vbc]:[0-9a-f]{32}:[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*:sha256:[0-9a-f]{64}$/;

describe('security: verdict cache poisoning (real Redis, real registry:2)', { timeout: 240_000 }, () => {
  let registry: RegistryHandle;
  let redis: RedisHandle;
  let a: TestGate;
  let b: TestGate;
  let shared: string;
  let keysDir: string;
  let raw: ReturnType<typeof newRaw>;
  const release = generateKeyPair('ecdsa-p256');
  const keyA = generateKeyPair('ecdsa-p256');
  const keyB = generateKeyPair('ed25519');
  const rot = generateKeyPair('ecdsa-p256');
  const users = {
    consumer: 'consumer-password',
    'pub-a': 'publisher-a-password',
    janitor: 'janitor-password',
  };

  before(async () => {
    [registry, redis] = await Promise.all([startRegistry(), startRedis()]);
    shared = makeTempDir('poison');
    keysDir = path.join(shared, 'trusted');
    mkdirSync(keysDir);
    for (const [n, k] of Object.entries({ release, 'key-a': keyA, 'key-b': keyB, rot }))
      writeFileSync(path.join(keysDir, `${n}.pub`), k.publicKeyPem);
    const common = {
      registryUrl: registry.url,
      redisUrl: redis.url,
      users,
      keysDir,
      tokenKeyDir: path.join(shared, 'token'),
      policy: {
        access: [
          { repos: ['mc/**'], pull: ['consumer', 'janitor'], push: [], delete: ['janitor'] },
          { repos: ['**'], pull: ['consumer'], push: [], delete: [] },
          { repos: ['team-a/**'], pull: ['pub-a'], push: ['pub-a'], delete: [] },
          { repos: ['team-b/**'], pull: ['pub-a'], push: [], delete: [] },
        ],
      },
      trustRules: [
        { repos: ['team-a/**'], keys: ['key-a'] },
        { repos: ['team-b/**'], keys: ['key-b'] },
        { repos: ['rot/**'], keys: ['rot'] },
        { repos: ['**'], keys: ['release'] },
      ],
    };
    a = await startTestGate(common);
    b = await startTestGate(common);
    await Promise.all([
      (a.tg.cache as TieredVerdictCache).connect(),
      (b.tg.cache as TieredVerdictCache).connect(),
    ]);
    raw = newRaw(redis.url);
    raw.on('error', () => undefined);
    await raw.connect();
  });

  after(async () => {
    raw?.destroy();
    await a?.close();
    await b?.close();
    await Promise.all([registry?.stop(), redis?.stop()]);
    if (shared) removeTempDir(shared);
  });

  const tokens = new Map<string, string>();
  const tok = async (g: TestGate, repo: string, user: keyof typeof users = 'consumer', actions = 'pull') => {
    const k = `${g.url} ${user} ${repo} ${actions}`;
    if (!tokens.has(k))
      tokens.set(k, await getToken(g.url, g.ca, user, users[user], [`repository:${repo}:${actions}`]));
    return tokens.get(k)!;
  };
  const pull = async (
    g: TestGate,
    repo: string,
    ref: string,
    headers: Record<string, string> = {},
  ): Promise<Reply> =>
    request(g.url, g.ca, {
      path: `/v2/${repo}/manifests/${ref}`,
      headers: { ...bearer(await tok(g, repo)), accept: OCI, ...headers },
    });
  const blob = async (g: TestGate, repo: string, digest: string, user: keyof typeof users = 'consumer') =>
    request(g.url, g.ca, { path: `/v2/${repo}/blobs/${digest}`, headers: bearer(await tok(g, repo, user)) });
  const key = (kind: 'v' | 'b' | 'c', repo: string, digest: string, g: TestGate = a) =>
    `tg:${kind}:${g.tg.trust.epoch()}:${repo}:${digest}`;
  const redisStats = (g: TestGate) => (g.tg.cache as TieredVerdictCache).stats().redis;
  const signed = async (repo: string, k = release) => {
    const img = await pushRandomImage(registry.url, repo, 'v1');
    await signDirect(registry.url, repo, img.digest, k.pkcs8Der);
    return img;
  };

  it('a genuine MAC-valid entry copied under another repository (same digest) or another digest is ignored', async () => {
    const img = await signed('prod/signed');
    assert.equal((await pull(a, 'prod/signed', 'v1')).status, 200);
    const genuine = await raw.get(key('v', 'prod/signed', img.digest));
    assert.ok(genuine, 'A wrote the positive verdict to Redis');
    const blobValue = await raw.get(key('b', 'prod/signed', img.blobs[1]!));
    assert.ok(blobValue, 'A admitted the layers in Redis');
    // The very same manifest bytes, unsigned in another repository: only the key differs.
    for (const bl of img.blobs) {
      const src = await direct(registry.url, 'GET', `/v2/prod/signed/blobs/${bl}`);
      await pushBlob(registry.url, 'prod/copy', src.body);
    }
    await pushManifest(registry.url, 'prod/copy', 'v1', img.bytes, OCI);
    const victim = await pushRandomImage(registry.url, 'prod/signed', 'unsigned');
    await raw.set(key('v', 'prod/copy', img.digest), genuine, { EX: 600 });
    await raw.set(key('b', 'prod/copy', img.blobs[1]!), blobValue, { EX: 600 });
    await raw.set(key('v', 'prod/signed', victim.digest), genuine, { EX: 600 });
    await raw.set(key('b', 'prod/signed', victim.blobs[1]!), blobValue, { EX: 600 });
    const forged0 = redisStats(b).forged;
    assertBlobNotAdmitted(await blob(b, 'prod/copy', img.blobs[1]!), 'copied blob admission');
    assertBlobNotAdmitted(await blob(b, 'prod/signed', victim.blobs[1]!), 'copied blob admission');
    for (const [repo, ref] of [
      ['prod/copy', 'v1'],
      ['prod/copy', img.digest],
      ['prod/signed', 'unsigned'],
      ['prod/signed', victim.digest],
    ] as const) {
      const r = await pull(b, repo, ref);
      assert.equal(r.status, 403, `${repo}:${ref}: ${r.status}`);
      assert.doesNotMatch(r.body.toString(), /schemaVersion/);
    }
    assert.ok(redisStats(b).forged > forged0, 'B counted the moved entries as forged');
    assert.equal((await pull(b, 'prod/signed', 'v1')).status, 200, 'control: the original is a hit on B');
  });

  it('a replayed genuine refusal cannot block a newly signed image beyond negativeTtlSeconds (1 s)', async () => {
    const img = await pushRandomImage(registry.url, 'neg/app', 'v1');
    const t0 = Date.now();
    assert.equal((await pull(a, 'neg/app', 'v1')).status, 403);
    const k = key('v', 'neg/app', img.digest);
    const refusal = await raw.get(k);
    assert.ok(refusal && /"ok":false/.test(refusal), String(refusal));
    await signDirect(registry.url, 'neg/app', img.digest, release.pkcs8Der);
    // Someone with Redis access keeps putting the old refusal back, without its short TTL.
    let replaying = true;
    const replayer = (async () => {
      for (let i = 0; replaying && i < 200; i++) {
        await raw.set(k, refusal, { EX: 3600 });
        await sleep(20);
      }
    })();
    try {
      for (const g of [a, b]) {
        let ms = -1;
        for (let i = 0; i < 60; i++) {
          const r = await pull(g, 'neg/app', 'v1');
          if (r.status === 200) {
            assert.equal(sha256(r.body), img.digest);
            ms = Date.now() - t0;
            break;
          }
          assert.equal(r.status, 403);
          await sleep(50);
        }
        assert.ok(ms >= 0 && ms < 1000 + 1500, `${g === a ? 'A' : 'B'}: signed image refused for ${ms} ms`);
      }
    } finally {
      replaying = false;
      await replayer;
    }
    assert.ok(
      redisStats(a).stale + redisStats(b).stale > 0,
      'the replayed entry was read and refused as stale',
    );
  });

  it('garbage, huge and wrong-type values under the exact keys: refusals stay refusals, signed images still pull', async () => {
    const kinds: Array<[string, (k: string) => Promise<unknown>]> = [
      ['random bytes', (k) => raw.set(k, randomBytes(200).toString('latin1'))],
      ['10 MiB string', (k) => raw.set(k, `${'A'.repeat(43)}.${'{'.repeat(10 * 1024 * 1024)}`)],
      ['plain JSON verdict', (k) => raw.set(k, JSON.stringify({ e: Date.now() + 6e5, v: { ok: true } }))],
      [
        'a list',
        async (k) => {
          await raw.del(k);
          await raw.rPush(k, ['{"ok":true}']);
        },
      ],
      [
        'a hash',
        async (k) => {
          await raw.del(k);
          await raw.hSet(k, 'ok', 'true');
        },
      ],
      ['MAC-shaped with a bad MAC', (k) => raw.set(k, `${'A'.repeat(43)}.{"e":9999999999999,"v":1}`)],
    ];
    for (const [i, [what, write]] of kinds.entries()) {
      const unsigned = await pushRandomImage(registry.url, `junk/u${i}`, 'v1');
      const good = await signed(`junk/s${i}`);
      await write(key('v', `junk/u${i}`, unsigned.digest));
      await write(key('b', `junk/u${i}`, unsigned.blobs[1]!));
      await write(key('v', `junk/s${i}`, good.digest));
      const t0 = Date.now();
      const u = await pull(b, `junk/u${i}`, 'v1');
      assert.equal(u.status, 403, `${what}: unsigned ${u.status}`);
      assertBlobNotAdmitted(await blob(b, `junk/u${i}`, unsigned.blobs[1]!), `${what}: blob`);
      const s = await pull(b, `junk/s${i}`, 'v1');
      assert.equal(s.status, 200, `${what}: signed ${s.status}`);
      assert.ok(Date.now() - t0 < 5000, `${what}: ${Date.now() - t0} ms`);
    }
    const ready = await request(b.url, b.ca, { path: '/readyz' });
    assert.equal(ready.status, 200, ready.body.toString());
  });

  it('a Redis paused with CLIENT PAUSE (slow answers) never turns a refusal into a pass', async () => {
    const unsigned = await pushRandomImage(registry.url, 'slow/u', 'v1');
    const good = await signed('slow/s');
    await tok(b, 'slow/u');
    await tok(b, 'slow/s');
    const errors0 = redisStats(b).errors;
    await raw.sendCommand(['CLIENT', 'PAUSE', '2500']);
    const pausedAt = Date.now();
    try {
      for (const [repo, ref, status] of [
        ['slow/u', 'v1', 403],
        ['slow/s', 'v1', 200],
        ['slow/u', unsigned.digest, 403],
        ['slow/s', good.digest, 200],
      ] as const) {
        const t0 = Date.now();
        const r = await pull(b, repo, ref);
        assert.equal(r.status, status, `${repo}@${ref} while Redis is paused: ${r.status}`);
        assert.ok(Date.now() - t0 < 2000, `${repo}: ${Date.now() - t0} ms`);
      }
      assertBlobNotAdmitted(await blob(b, 'slow/u', unsigned.blobs[1]!));
      assert.equal((await blob(b, 'slow/s', good.blobs[1]!)).status, 200, 'admitted in the local tier');
      assert.ok(redisStats(b).errors > errors0, 'the pause was felt: Redis operations timed out');
    } finally {
      await sleep(Math.max(0, 2600 - (Date.now() - pausedAt)));
    }
    // The writes queued during the pause land late; what lands is what was decided.
    await sleep(300);
    const late = await raw.get(key('v', 'slow/u', unsigned.digest));
    if (late) assert.match(late, /"ok":false/);
    assert.equal((await pull(a, 'slow/u', 'v1')).status, 403, 'after the pause, on the other replica');
  });

  it('keys carry repository and digest only: tags and Host headers never reach a key', async () => {
    const img = await signed('keys/app');
    await pushManifest(registry.url, 'keys/app', 'release-candidate', img.bytes, OCI);
    await pushRandomImage(registry.url, 'keys/app', 'evilhost-unsigned');
    // Raw requests: an HTTPS client would also use the Host for SNI and certificate checks.
    const t = await tok(a, 'keys/app');
    for (const host of ['evil.example', 'localhost:1', a.host, 'keys-app-v1']) {
      for (const ref of ['v1', 'release-candidate', 'evilhost-unsigned', img.digest]) {
        const r = await rawExchange(
          a.tg.port,
          a.ca,
          `GET /v2/keys/app/manifests/${ref} HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${t}\r\nAccept: ${OCI}\r\nConnection: close\r\n\r\n`,
          { idleMs: 1000, maxMs: 5000 },
        );
        const want = ref === 'evilhost-unsigned' ? 403 : 200;
        assert.deepEqual(r.statuses, [want], `${host} ${ref}: ${r.text.slice(0, 120)}`);
      }
    }
    const all = await raw.keys('tg:*');
    assert.ok(all.some((k) => k === key('v', 'keys/app', img.digest)));
    for (const k of all) {
      assert.match(k, KEY_SHAPE, k);
      assert.doesNotMatch(k, /release-candidate|evil|keys-app-v1|:v1(?::|$)/, k);
    }
  });

  it('manifest bytes cached in process are re-hashed; registry content changed underneath is never served', async () => {
    const img = await signed('mc/app');
    const other = await pushRandomImage(registry.url, 'mc/app', 'unsigned');
    const warm = await pull(a, 'mc/app', img.digest);
    assert.equal(warm.status, 200);
    // Overwrite the manifest blob in registry:2's storage with other (valid, unsigned) bytes.
    const hex = img.digest.slice(7);
    const file = path.join(registry.dataDir, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
    writeFileSync(file, other.bytes);
    const upstream = await direct(registry.url, 'GET', `/v2/mc/app/manifests/${img.digest}`, undefined, {
      accept: OCI,
    });
    assert.equal(sha256(upstream.body), other.digest, 'registry:2 now serves other bytes under the digest');
    // A: from its manifest cache, the original bytes (hashed again before sending).
    const fromCache = await pull(a, 'mc/app', img.digest);
    assert.equal(fromCache.status, 200);
    assert.equal(sha256(fromCache.body), img.digest);
    // B: Redis says the digest is verified, but the bytes it fetches do not hash to it.
    const cold = await pull(b, 'mc/app', img.digest);
    assert.equal(cold.status, 502, cold.body.toString());
    assert.doesNotMatch(cold.body.toString(), /schemaVersion/);
    // By tag, the tampered bytes are a different (unsigned) manifest: refused.
    assert.equal((await pull(b, 'mc/app', 'v1')).status, 403);
    writeFileSync(file, img.bytes);

    // Deleted upstream: a replica that holds the bytes keeps serving them by digest for at most
    // min(positiveTtlSeconds, 300) s (Policy in cache/manifest-cache.ts); a cold one answers 404.
    const del = await signed('mc/del');
    assert.equal((await pull(a, 'mc/del', del.digest)).status, 200);
    assert.equal((await direct(registry.url, 'DELETE', `/v2/mc/del/manifests/${del.digest}`)).status, 202);
    const kept = await pull(a, 'mc/del', del.digest);
    assert.equal(kept.status, 200);
    assert.equal(sha256(kept.body), del.digest);
    assert.equal((await pull(b, 'mc/del', del.digest)).status, 404);
    assert.equal((await pull(a, 'mc/del', 'v1')).status, 404, 'a tag is always resolved upstream');

    // Deleted THROUGH trustgate: the replica that accepted the delete stops serving the bytes at once.
    const gone = await signed('mc/gone');
    assert.equal((await pull(a, 'mc/gone', gone.digest)).status, 200);
    const delTok = await tok(a, 'mc/gone', 'janitor', 'delete');
    const deleted = await request(a.url, a.ca, {
      method: 'DELETE',
      path: `/v2/mc/gone/manifests/${gone.digest}`,
      headers: bearer(delTok),
    });
    assert.equal(deleted.status, 202, deleted.body.toString());
    assert.equal((await pull(a, 'mc/gone', gone.digest)).status, 404, 'served after its own delete');
  });

  it('blob admission cannot be primed by a publisher of team-a for team-b', async () => {
    // team-b holds an unsigned image; its layer X is what team-a's publisher wants readable there.
    const victim = await pushRandomImage(registry.url, 'team-b/app', 'v1');
    const x = victim.blobs[1]!;
    const xBytes = (await direct(registry.url, 'GET', `/v2/team-b/app/blobs/${x}`)).body;
    // team-a's publisher builds and signs (with team-a's key) an image around the same layer.
    await pushBlob(registry.url, 'team-a/app', xBytes);
    const cfg = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
    const cfgDigest = await pushBlob(registry.url, 'team-a/app', cfg);
    const m = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI,
        config: {
          mediaType: 'application/vnd.oci.image.config.v1+json',
          digest: cfgDigest,
          size: cfg.length,
        },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: x, size: xBytes.length }],
      }),
    );
    const d = await pushManifest(registry.url, 'team-a/app', 'v1', m, OCI);
    await signDirect(registry.url, 'team-a/app', d, keyA.pkcs8Der);
    // key-a is not trusted for team-b: the same signature scheme there gets nothing.
    await signDirect(registry.url, 'team-b/app', victim.digest, keyA.pkcs8Der);
    for (const g of [a, b]) {
      assert.equal((await pull(g, 'team-a/app', 'v1')).status, 200, 'team-a image verified');
      assert.equal((await blob(g, 'team-a/app', x)).status, 200, 'X admitted in team-a');
      assertBlobNotAdmitted(await blob(g, 'team-b/app', x), 'X primed in team-b for a consumer');
      assertBlobNotAdmitted(await blob(g, 'team-b/app', x, 'pub-a'), 'X primed in team-b for pub-a');
      assert.equal((await pull(g, 'team-b/app', 'v1')).status, 403, 'key-a signed team-b');
    }
    // pub-a cannot mount X from team-a into team-b, nor push a signature artifact there.
    const mount = await request(a.url, a.ca, {
      method: 'POST',
      path: `/v2/team-b/app/blobs/uploads/?mount=${x}&from=team-a/app`,
      headers: bearer(await tok(a, 'team-b/app', 'pub-a', 'pull,push')),
    });
    assert.ok(mount.status === 401 || mount.status === 403, `mount: ${mount.status}`);
    const keys = await raw.keys('tg:b:*:team-b/*');
    assert.ok(!keys.some((k) => k.endsWith(`:${x}`)), keys.join('\n'));
  });

  it('an old epoch is unreachable after a key change, and a moved MAC-valid entry does not bring it back', async () => {
    const img = await signed('rot/app', rot);
    assert.equal((await pull(a, 'rot/app', 'v1')).status, 200);
    const e1 = a.tg.trust.epoch();
    const oldKey = key('v', 'rot/app', img.digest);
    const oldValue = await raw.get(oldKey);
    assert.ok(oldValue);
    writeFileSync(path.join(keysDir, 'rot.meta.json'), JSON.stringify({ revoked: true }));
    try {
      for (let i = 0; i < 60 && (a.tg.trust.epoch() === e1 || b.tg.trust.epoch() === e1); i++)
        await sleep(100);
      assert.notEqual(a.tg.trust.epoch(), e1);
      assert.equal(b.tg.trust.epoch(), a.tg.trust.epoch());
      const e2Key = key('v', 'rot/app', img.digest);
      await raw.set(e2Key, oldValue, { EX: 600 });
      for (const g of [a, b]) {
        const r = await pull(g, 'rot/app', 'v1');
        assert.equal(r.status, 403, `${g === a ? 'A' : 'B'} after revocation: ${r.status}`);
        assert.match(r.body.toString(), /revoked/);
      }
      assert.equal(await raw.exists(oldKey), 1, 'the old entry is still in Redis, only unreachable');
    } finally {
      rmSync(path.join(keysDir, 'rot.meta.json'));
    }
  });
});
