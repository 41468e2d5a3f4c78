/**
 * Adversarial review of the authoritative tag index (cache.tagIndex; docs/security-model.md, "The
 * tag index") with the index ON, with real components: one registry:2, one redis-server, two
 * trustgate replicas sharing Redis (A, started from a config file so it can be reloaded, and B).
 * Whether the index answered is read from the gates' own metrics
 * (trustgate_tag_index_lookups_total, and manifest reads sent to registry:2).
 *
 * "HELD: …" tests are attacks that failed; "fixed (…): …" tests failed before the fix they name.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createClient } from 'redis';
import { after, before, describe, it } from 'node:test';
import { MEDIA_TYPES } from '../../src/core/manifest.js';
import { generateKeyPair } from '../../src/core/signature/sign.js';
import { bearer, getToken, request, type Reply } from '../helpers/http.js';
import { direct, pushManifest, pushRandomImage, sha256 } from '../helpers/registry-direct.js';
import { signDirect } from '../helpers/sign.js';
import { startRedis, startRegistry, type RedisHandle, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';
import {
  registryManifestReads as registryReads,
  replicaClient,
  replicaOptions,
  served,
} from '../helpers/replicas.js';
import { USERS } from '../helpers/trust-stack.js';

const OCI = MEDIA_TYPES.ociManifest;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('review: tag index attacks (index on)', { timeout: 300_000 }, () => {
  let registry: RegistryHandle;
  let redis: RedisHandle;
  let a: TestGate;
  let b: TestGate;
  const release = generateKeyPair('ecdsa-p256');

  before(async () => {
    registry = await startRegistry();
    redis = await startRedis();
    const common = {
      ...replicaOptions(registry.url, release.publicKeyPem),
      redisUrl: redis.url,
      tagIndex: { enabled: true, maxAgeSeconds: 3600 },
    };
    a = await startTestGate({ ...common, configFile: true });
    b = await startTestGate(common);
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await redis?.stop();
    await registry?.stop();
  });

  const { token, pull, put, del, pullUntil } = replicaClient();
  const signedImage = async (
    repo: string,
    tag: string,
  ): Promise<{ digest: string; bytes: Buffer; blobs: string[] }> => {
    const img = await pushRandomImage(registry.url, repo, tag);
    await signDirect(registry.url, repo, img.digest, release.pkcs8Der);
    return img;
  };
  const lookups = async (gate: TestGate, result?: string): Promise<number> =>
    (await gate.tg.metrics.tagIndexLookups.get()).values
      .filter((v) => result === undefined || v.labels.result === result)
      .reduce((n, v) => n + v.value, 0);
  /** Waits until `gate`'s index answers `repo:tag` (a hit), and returns the digest it answered. */
  const untilIndexAnswers = async (gate: TestGate, repo: string, tag: string): Promise<string> => {
    let digest = '';
    await pullUntil(
      gate,
      repo,
      tag,
      async (r) => {
        if (r.status !== 200) return false;
        const hits = await lookups(gate, 'hit');
        const again = await pull(gate, repo, tag);
        digest = served(again);
        return (await lookups(gate, 'hit')) === hits + 1;
      },
      200,
    );
    return digest;
  };

  it('HELD: index keys cannot be spliced across repositories, nested names or tag case; encoded and over-long references never reach it', async () => {
    // `repo:tag` keys: a repository name has no `:` and a tag no `:` or `/`, so these differ.
    const refs = [
      ['kc/a', 'b-c'],
      ['kc/a-b', 'c'],
      ['kc/a/b', 'c'],
      ['kc/a', 'latest'],
      ['kc/a', 'Latest'],
      ['kc/a', 'sha256'], // looks like an algorithm, is an ordinary tag
    ] as const;
    const want = new Map<string, string>();
    for (const [repo, tag] of refs) want.set(`${repo} ${tag}`, (await signedImage(repo, tag)).digest);
    assert.equal(new Set(want.values()).size, refs.length);
    for (const [repo, tag] of refs) {
      assert.equal(await untilIndexAnswers(a, repo, tag), want.get(`${repo} ${tag}`), `${repo}:${tag}`);
    }
    // Every one of them once more, now all warm: each from its own entry.
    const hits = await lookups(a, 'hit');
    for (const [repo, tag] of refs) {
      assert.equal(served(await pull(a, repo, tag)), want.get(`${repo} ${tag}`), `${repo}:${tag}`);
    }
    assert.equal(await lookups(a, 'hit'), hits + refs.length);

    // Percent-encoding, an upper-case name, a `:` in the name and a 129-character tag are refused
    // before any lookup.
    const before = await lookups(a);
    const t = await token(a, 'kc/a');
    for (const p of [
      '/v2/kc/a/manifests/%6Catest',
      '/v2/kc%2Fa/manifests/latest',
      '/v2/KC/a/manifests/latest',
      '/v2/kc/a:b/manifests/c',
      `/v2/kc/a/manifests/${'x'.repeat(129)}`,
    ]) {
      const r = await request(a.url, a.ca, { path: p, headers: { ...bearer(t), accept: OCI } });
      assert.ok(r.status >= 400 && r.status < 500, `${p}: ${r.status}`);
    }
    assert.equal(await lookups(a), before, 'no lookup for a refused reference');
  });

  it('HELD: evidence tags (sha256-<hex>, .sig, .att, .sbom) are never looked up, in any spelling trustgate reads as evidence', async () => {
    const repo = 'ev/app';
    const img = await signedImage(repo, 'v1');
    const hex = img.digest.slice('sha256:'.length);
    for (const suffix of ['.att', '.sbom'])
      await pushManifest(registry.url, repo, `sha256-${hex}${suffix}`, img.bytes, OCI);
    await pushManifest(registry.url, repo, `sha256-${hex}`, img.bytes, OCI);
    // Control: an ordinary tag is looked up.
    await untilIndexAnswers(a, repo, 'v1');
    const before = await lookups(a);
    const reads = await registryReads(a);
    const evidence = [`sha256-${hex}.sig`, `sha256-${hex}.att`, `sha256-${hex}.sbom`, `sha256-${hex}`];
    for (const tag of evidence)
      for (let i = 0; i < 2; i++) await pull(a, repo, tag, i === 0 ? 'GET' : 'HEAD');
    assert.equal(await lookups(a), before, 'no evidence tag was looked up');
    assert.ok(
      (await registryReads(a)) >= reads + evidence.length * 2,
      'every evidence pull asked the registry',
    );
  });

  it('HELD: a HEAD by tag records the digest of the bytes registry:2 sends (a GET upstream), never a header', async () => {
    const repo = 'head/app';
    const img = await signedImage(repo, 'v1');
    const h = await pull(a, repo, 'v1', 'HEAD');
    assert.equal(h.status, 200);
    assert.equal(h.headers['docker-content-digest'], img.digest);
    assert.equal(await untilIndexAnswers(a, repo, 'v1'), img.digest);
  });

  it('HELD: a PUT by tag that registry:2 rejected, or trustgate refused, records nothing; the next pull asks the registry and gets the tag as it is', async () => {
    const repo = 'rej/app';
    const img = await signedImage(repo, 'v1');
    await untilIndexAnswers(a, repo, 'v1');
    // registry:2 rejects a manifest whose blobs it does not hold (400 MANIFEST_BLOB_UNKNOWN).
    const missing = `sha256:${randomBytes(32).toString('hex')}`;
    const orphan = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI,
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: missing, size: 2 },
        layers: [],
      }),
    );
    const rejected = await put(a, repo, 'v1', orphan);
    assert.equal(rejected.status, 400, rejected.body.toString());
    const reads = await registryReads(a);
    assert.equal(served(await pull(a, repo, 'v1')), img.digest);
    assert.equal(
      await registryReads(a),
      reads + 1,
      'the entry was dropped, not replaced by the rejected digest',
    );
    // trustgate's own refusal (duplicate keys) never sends the write.
    const dup = Buffer.from(`{"schemaVersion":2,"schemaVersion":2,"mediaType":"${OCI}"}`);
    const refused = await put(a, repo, 'v1', dup);
    assert.ok(refused.status >= 400 && refused.status < 500, String(refused.status));
    assert.equal(await untilIndexAnswers(a, repo, 'v1'), img.digest);
    // The same PUT by digest naming other bytes: refused, nothing recorded.
    const mismatch = await put(a, repo, `sha256:${'0'.repeat(64)}`, img.bytes);
    assert.equal(mismatch.status, 400);
    assert.equal(served(await pull(a, repo, 'v1')), img.digest);
  });

  it("HELD: a publisher of another repository, pushing and deleting the very same manifest there, neither moves nor drops this repository's entry", async () => {
    const mine = 'px/mine';
    const theirs = 'px/theirs';
    const img = await signedImage(mine, 'v1');
    for (const blob of img.blobs) {
      const m = await direct(registry.url, 'POST', `/v2/${theirs}/blobs/uploads/?mount=${blob}&from=${mine}`);
      assert.equal(m.status, 201, m.body.toString());
    }
    assert.equal(await untilIndexAnswers(a, mine, 'v1'), img.digest);
    assert.equal(await untilIndexAnswers(b, mine, 'v1'), img.digest);
    assert.equal((await put(a, theirs, 'v1', img.bytes)).status, 201);
    assert.equal((await del(a, theirs, img.digest)).status, 202);
    assert.equal((await pull(a, theirs, 'v1')).status, 404);
    for (const gate of [a, b]) {
      const hits = await lookups(gate, 'hit');
      assert.equal(served(await pull(gate, mine, 'v1')), img.digest);
      assert.equal(await lookups(gate, 'hit'), hits + 1, 'still answered by its own entry');
    }
  });

  it('HELD: a pusher moving a tag through A while pulls race on A and B: every pull through A that starts after the PUT was answered gets the written digest; B follows', async () => {
    const repo = 'race/app';
    const x = await signedImage(repo, 'x');
    const y = await signedImage(repo, 'y');
    await pushManifest(registry.url, repo, 'v', x.bytes, OCI);
    await untilIndexAnswers(a, repo, 'v');
    await untilIndexAnswers(b, repo, 'v');
    let stop = false;
    const seen = new Set<string>();
    // Bounded background pulls (count and the stop flag) racing the writes on both replicas.
    const racer = async (gate: TestGate): Promise<void> => {
      for (let i = 0; i < 400 && !stop; i++) {
        const r = await pull(gate, repo, 'v');
        if (r.status === 200) seen.add(served(r));
      }
    };
    const racers = [racer(a), racer(a), racer(b)];
    try {
      for (let round = 0; round < 8; round++) {
        const next = round % 2 === 0 ? y : x;
        const w = await put(a, repo, 'v', next.bytes);
        assert.equal(w.status, 201, w.body.toString());
        assert.equal(served(await pull(a, repo, 'v')), next.digest, `round ${round}: A after its own PUT`);
        await pullUntil(b, repo, 'v', (r) => r.status === 200 && sha256(r.body) === next.digest);
      }
      // A DELETE by digest through A, racing the same pulls: A never serves the deleted digest after
      // answering it, and B stops serving it.
      const gone = await del(a, repo, x.digest);
      assert.equal(gone.status, 202, gone.body.toString());
      assert.equal((await pull(a, repo, 'v')).status, 404);
      await pullUntil(b, repo, 'v', (r) => r.status === 404);
    } finally {
      stop = true;
      await Promise.all(racers);
    }
    for (const d of seen)
      assert.ok(d === x.digest || d === y.digest, `only written digests were served: ${d}`);
    assert.ok((await lookups(a, 'hit')) > 0);
  });

  it('fixed (refused reload): a SIGHUP whose new file is refused still flushes the index, so a tag changed by hand is not served from it', async () => {
    const repo = 'reload/refused';
    const first = await signedImage(repo, 'v1');
    assert.equal(await untilIndexAnswers(a, repo, 'v1'), first.digest);
    // The operator moves the tag straight in registry:2 and sends SIGHUP, with a file that does
    // not validate (maxAgeSeconds below its minimum).
    const second = await signedImage(repo, 'v1');
    const setMaxAge = (n: number): void =>
      a.rewriteConfig((raw) => {
        const cache = raw['cache'] as { tagIndex?: { maxAgeSeconds?: number } };
        cache.tagIndex = { ...cache.tagIndex, maxAgeSeconds: n };
      });
    setMaxAge(0);
    try {
      assert.equal(await a.tg.reload(), false, 'the reload is refused');
      assert.equal(served(await pull(a, repo, 'v1')), second.digest, 'not the flushed entry');
    } finally {
      setMaxAge(3600);
      assert.equal(await a.tg.reload(), true);
    }
  });

  it('HELD: with Redis gone, a PUT by tag and the pulls after it succeed (asked of the registry) and are fresh; after Redis is back the index is flushed before it answers', async () => {
    const repo = 'down/app';
    const first = await signedImage(repo, 'v1');
    const second = await signedImage(repo, 'other');
    await untilIndexAnswers(a, repo, 'v1');
    await untilIndexAnswers(b, repo, 'v1');
    await redis.kill();
    try {
      const w = await put(b, repo, 'v1', second.bytes);
      assert.equal(w.status, 201, w.body.toString());
      // A never heard of it (Redis is down): it must not answer from its entry.
      assert.equal(served(await pull(a, repo, 'v1')), second.digest);
      assert.equal(served(await pull(b, repo, 'v1')), second.digest);
      // Behind trustgate's back, while Redis is down: still fresh.
      await pushManifest(registry.url, repo, 'v1', first.bytes, OCI);
      assert.equal(served(await pull(a, repo, 'v1')), first.digest);
    } finally {
      await redis.restart();
    }
    // Moved by hand while the index is reconnecting: never served the pre-outage entry.
    await pushManifest(registry.url, repo, 'v1', second.bytes, OCI);
    assert.equal(await untilIndexAnswers(a, repo, 'v1'), second.digest);
  });
});

/**
 * Two signed images in `repo` of a fresh registry (`v1` names the first) and a consumer's pull and
 * a publisher's PUT of `repo:v1` through `gate`.
 */
async function v1Client(
  registryUrl: string,
  gate: TestGate,
  repo: string,
  key: Uint8Array,
): Promise<{
  first: { digest: string; bytes: Buffer };
  second: { digest: string; bytes: Buffer };
  pullV1: () => Promise<Reply>;
  putV1: (body: Buffer) => Promise<Reply>;
}> {
  const first = await pushRandomImage(registryUrl, repo, 'v1');
  await signDirect(registryUrl, repo, first.digest, key);
  const second = await pushRandomImage(registryUrl, repo, 'other');
  await signDirect(registryUrl, repo, second.digest, key);
  const pullT = await getToken(gate.url, gate.ca, 'consumer', USERS.consumer, [`repository:${repo}:pull`]);
  const pushT = await getToken(gate.url, gate.ca, 'publisher', USERS.publisher, [
    `repository:${repo}:pull,push`,
  ]);
  return {
    first,
    second,
    pullV1: () =>
      request(gate.url, gate.ca, {
        path: `/v2/${repo}/manifests/v1`,
        headers: { ...bearer(pullT), accept: OCI },
      }),
    putV1: (body) =>
      request(gate.url, gate.ca, {
        method: 'PUT',
        path: `/v2/${repo}/manifests/v1`,
        headers: { ...bearer(pushT), 'content-type': OCI },
        body,
      }),
  };
}

describe('review: tag index off (the default) with Redis', { timeout: 120_000 }, () => {
  it('HELD: off, a replica publishes only its write hints (no heartbeat), looks nothing up, and with Redis gone its PUTs and pulls still succeed', async (t) => {
    if (process.env['TRUSTGATE_TEST_TAG_INDEX'] === '1') return t.skip('the tag index is forced on');
    const registry = await startRegistry();
    const redis = await startRedis();
    const release = generateKeyPair('ecdsa-p256');
    const gate = await startTestGate({
      registryUrl: registry.url,
      redisUrl: redis.url,
      users: { ...USERS },
      policy: {
        access: [{ repos: ['**'], pull: ['consumer', 'publisher'], push: ['publisher'], delete: [] }],
      },
      trustRules: [{ repos: ['**'], keys: ['release'] }],
      trustedKeys: { release: release.publicKeyPem },
    });
    const listener = createClient({ url: redis.url });
    listener.on('error', () => undefined);
    const heard: string[] = [];
    try {
      await listener.connect();
      await listener.subscribe('tg:tags', (m) => heard.push(m));
      const repo = 'off/app';
      const { first, second, pullV1, putV1 } = await v1Client(registry.url, gate, repo, release.pkcs8Der);
      for (let i = 0; i < 3; i++) assert.equal(sha256((await pullV1()).body), first.digest);
      assert.equal((await putV1(second.bytes)).status, 201);
      assert.equal(sha256((await pullV1()).body), second.digest);
      // Two heartbeat periods (1 s each) pass; then a marker shows everything sent before it arrived.
      await sleep(2500);
      await listener.publish('tg:tags', 'marker');
      for (let i = 0; i < 100 && !heard.includes('marker'); i++) await sleep(20);
      assert.deepEqual(
        heard.map((m) => m.replace(/^moved [0-9a-f]{16} /, 'moved N ')),
        [`moved N ${repo}:v1`, 'marker'],
        'one write hint, no heartbeat',
      );
      assert.equal((await gate.tg.metrics.tagIndexLookups.get()).values.length, 0);
      // Redis gone: requests that succeed without it still do.
      await redis.kill();
      assert.equal((await putV1(first.bytes)).status, 201);
      assert.equal(sha256((await pullV1()).body), first.digest);
    } finally {
      await listener.close().catch(() => undefined);
      await gate.close();
      await redis.stop();
      await registry.stop();
    }
  });
});

describe(
  'review: tag index against a faulty registry (a fault proxy in front of registry:2)',
  { timeout: 120_000 },
  () => {
    it('HELD: a 304 to an unconditional read, a PUT answered 201 with another digest, or 202, is never recorded', async () => {
      const registry = await startRegistry();
      const release = generateKeyPair('ecdsa-p256');
      // Policy of this test: a fake only for the faults; every other request reaches registry:2.
      let fault: 'none' | 'unconditional-304' | 'put-other-digest' | 'put-202' = 'none';
      const upstream = new URL(registry.url);
      const proxy = http.createServer((req, res) => {
        const isManifest = /^\/v2\/fault\/app\/manifests\/v1$/.test(req.url ?? '');
        if (
          isManifest &&
          req.method === 'GET' &&
          fault === 'unconditional-304' &&
          !req.headers['if-none-match']
        ) {
          req.resume();
          res.writeHead(304).end();
          return;
        }
        const out = http.request(
          {
            host: upstream.hostname,
            port: upstream.port,
            method: req.method,
            path: req.url,
            headers: req.headers,
          },
          (up) => {
            const headers = { ...up.headers };
            let status = up.statusCode ?? 502;
            if (isManifest && req.method === 'PUT' && status === 201) {
              if (fault === 'put-other-digest') headers['docker-content-digest'] = `sha256:${'1'.repeat(64)}`;
              if (fault === 'put-202') status = 202;
            }
            res.writeHead(status, headers);
            up.pipe(res);
          },
        );
        out.on('error', () => res.destroy());
        req.pipe(out);
      });
      await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
      const gate = await startTestGate({
        registryUrl: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
        users: { ...USERS },
        policy: {
          access: [{ repos: ['**'], pull: ['consumer', 'publisher'], push: ['publisher'], delete: [] }],
        },
        trustRules: [{ repos: ['**'], keys: ['release'] }],
        trustedKeys: { release: release.publicKeyPem },
        tagIndex: { enabled: true, maxAgeSeconds: 3600 },
      });
      try {
        const repo = 'fault/app';
        const { first, second, pullV1, putV1 } = await v1Client(registry.url, gate, repo, release.pkcs8Der);
        const count = async (result: string): Promise<number> =>
          (await gate.tg.metrics.tagIndexLookups.get()).values.find((v) => v.labels.result === result)
            ?.value ?? 0;

        fault = 'unconditional-304';
        const bad = await pullV1();
        assert.ok(bad.status >= 500, `a 304 to an unconditional read is a registry failure: ${bad.status}`);
        fault = 'none';
        assert.equal(await count('hit'), 0);
        assert.equal(sha256((await pullV1()).body), first.digest, 'learned from the real answer');
        assert.equal(sha256((await pullV1()).body), first.digest);
        assert.equal(await count('hit'), 1, 'only the real answer was recorded');

        for (const f of ['put-other-digest', 'put-202'] as const) {
          fault = f;
          const body = f === 'put-other-digest' ? second.bytes : first.bytes;
          const w = await putV1(body);
          fault = 'none';
          assert.ok(w.status === 201 || w.status === 202, `${f}: ${w.status}`);
          const hits = await count('hit');
          assert.equal(sha256((await pullV1()).body), sha256(body), `${f}: the registry was asked`);
          assert.equal(await count('hit'), hits, `${f}: not answered from the index`);
        }
      } finally {
        await gate.close();
        await new Promise<void>((r) => proxy.close(() => r()));
        await registry.stop();
      }
    });
  },
);
