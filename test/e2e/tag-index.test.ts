/**
 * The authoritative tag index (cache.tagIndex; docs/security-model.md, "Tag index") with real
 * components: one registry:2, one redis-server, two trustgate replicas sharing Redis (A and B,
 * maxAgeSeconds 3600 so that nothing here expires by age unless a test says so) and one replica
 * without Redis (`solo`, maxAgeSeconds 2). Whether the index answered is read from the gates' own
 * metrics: trustgate_tag_index_lookups_total and the count of manifest reads sent to registry:2
 * (trustgate_upstream_duration_seconds{kind="manifest"}).
 *
 * Faults are real too: Redis is killed and restarted, and paused with SIGSTOP (by its PID).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MEDIA_TYPES } from '../../src/core/manifest.js';
import { encryptCosignKey } from '../../src/core/signature/keyfile.js';
import { generateKeyPair } from '../../src/core/signature/sign.js';
import { signCommand } from '../../src/cli/sign.js';
import { memoryIo } from '../cli/support.js';
import { bearer, getToken, request } from '../helpers/http.js';
import { pushManifest, pushRandomImage, sha256 } from '../helpers/registry-direct.js';
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

describe('tag index (cache.tagIndex)', { timeout: 300_000 }, () => {
  let registry: RegistryHandle;
  let redis: RedisHandle;
  let a: TestGate;
  let b: TestGate;
  let solo: TestGate;
  const release = generateKeyPair('ecdsa-p256');

  before(async () => {
    registry = await startRegistry();
    redis = await startRedis();
    const common = replicaOptions(registry.url, release.publicKeyPem);
    a = await startTestGate({
      ...common,
      redisUrl: redis.url,
      tagIndex: { enabled: true, maxAgeSeconds: 3600 },
      configFile: true,
    });
    b = await startTestGate({
      ...common,
      redisUrl: redis.url,
      tagIndex: { enabled: true, maxAgeSeconds: 3600 },
    });
    solo = await startTestGate({ ...common, tagIndex: { enabled: true, maxAgeSeconds: 2 } });
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await solo?.close();
    await redis?.stop();
    await registry?.stop();
  });

  const { pull, put, del, pullUntil } = replicaClient();
  /** A signed image pushed straight to registry:2 under `tag`. */
  const signedImage = async (repo: string, tag: string): Promise<{ digest: string; bytes: Buffer }> => {
    const img = await pushRandomImage(registry.url, repo, tag);
    await signDirect(registry.url, repo, img.digest, release.pkcs8Der);
    return img;
  };
  const lookups = async (gate: TestGate, result: string): Promise<number> =>
    (await gate.tg.metrics.tagIndexLookups.get()).values.find((v) => v.labels.result === result)?.value ?? 0;
  /** Waits until `gate`'s index answers again (a hit on an entry it just learned). */
  const untilIndexAnswers = async (gate: TestGate, repo: string, tag: string): Promise<void> => {
    await pullUntil(
      gate,
      repo,
      tag,
      async (r) => {
        const hits = await lookups(gate, 'hit');
        const again = await pull(gate, repo, tag);
        return r.status === 200 && again.status === 200 && (await lookups(gate, 'hit')) > hits;
      },
      200,
    );
  };

  it('a warm pull by tag is answered from the index: no registry round trip, the same verified bytes; the verdict is still checked', async () => {
    const repo = 'idx/warm';
    const img = await signedImage(repo, 'v1');
    // A replica's index answers once its first heartbeat has come back over Redis.
    await untilIndexAnswers(a, repo, 'v1');
    const reads = await registryReads(a);
    const hits = await lookups(a, 'hit');
    for (let i = 0; i < 3; i++) {
      const r = await pull(a, repo, 'v1');
      assert.deepEqual(r.body, img.bytes);
      assert.equal(served(r), img.digest);
    }
    assert.equal(await registryReads(a), reads, 'no manifest read reached registry:2');
    assert.equal(await lookups(a, 'hit'), hits + 3);

    // Everything after the tag's resolution is as without the index: with the key withdrawn, the
    // digest the index names is refused.
    const keyFile = path.join(a.keysDir, 'release.pub');
    rmSync(keyFile);
    a.tg.keyring.reload();
    try {
      const refused = await pull(a, repo, 'v1');
      assert.equal(refused.status, 403, refused.body.toString());
      assert.doesNotMatch(refused.body.toString(), /schemaVersion/);
      assert.equal(await lookups(a, 'hit'), hits + 4, 'the refusal came after an index answer');
    } finally {
      writeFileSync(keyFile, release.publicKeyPem);
      a.tg.keyring.reload();
    }
    assert.equal(served(await pull(a, repo, 'v1')), img.digest);
  });

  it('a tag moved through this replica is served fresh at once, from the index (the accepted PUT is recorded)', async () => {
    const repo = 'idx/local-move';
    const first = await signedImage(repo, 'v1');
    const second = await signedImage(repo, 'other');
    await untilIndexAnswers(a, repo, 'v1');
    assert.equal(served(await pull(a, repo, 'v1')), first.digest);
    const put1 = await put(a, repo, 'v1', second.bytes);
    assert.equal(put1.status, 201, put1.body.toString());
    const reads = await registryReads(a);
    const hits = await lookups(a, 'hit');
    assert.equal(served(await pull(a, repo, 'v1')), second.digest);
    assert.equal(await lookups(a, 'hit'), hits + 1, 'answered by the entry the PUT wrote');
    assert.equal(await registryReads(a), reads);
    // And back again.
    assert.equal((await put(a, repo, 'v1', first.bytes)).status, 201);
    assert.equal(served(await pull(a, repo, 'v1')), first.digest);
  });

  it('a tag moved through another replica sharing Redis is served fresh once its notification arrived (not by age)', async () => {
    const repo = 'idx/remote-move';
    const first = await signedImage(repo, 'v1');
    const second = await signedImage(repo, 'other');
    await untilIndexAnswers(a, repo, 'v1');
    assert.equal(served(await pull(a, repo, 'v1')), first.digest);
    assert.equal((await put(b, repo, 'v1', second.bytes)).status, 201);
    const r = await pullUntil(a, repo, 'v1', (r) => r.status === 200 && sha256(r.body) === second.digest);
    assert.equal(served(r), second.digest);
    // Learned again from the registry, then answered from the index.
    const hits = await lookups(a, 'hit');
    assert.equal(served(await pull(a, repo, 'v1')), second.digest);
    assert.equal(await lookups(a, 'hit'), hits + 1);
  });

  it('a manifest deleted through this replica or another is not served by any of its tags', async () => {
    for (const [via, name] of [
      [a, 'local'],
      [b, 'remote'],
    ] as const) {
      const repo = `idx/deleted-${name}`;
      const img = await signedImage(repo, 'v1');
      await pushManifest(registry.url, repo, 'v2', img.bytes, OCI);
      await untilIndexAnswers(a, repo, 'v1');
      await untilIndexAnswers(a, repo, 'v2');
      const gone = await del(via, repo, img.digest);
      assert.equal(gone.status, 202, gone.body.toString());
      for (const tag of ['v1', 'v2']) {
        const r = await pullUntil(a, repo, tag, (r) => r.status !== 200);
        assert.equal(r.status, 404, `${name} ${tag}: ${r.status} ${r.body.toString()}`);
        assert.match(r.body.toString(), /MANIFEST_UNKNOWN/);
      }
    }
    // A DELETE by tag (registry:2 2.8 refuses it; newer ones untag) drops the entry either way:
    // the next pull asks the registry.
    const repo = 'idx/deleted-tag';
    const img = await signedImage(repo, 'v1');
    await untilIndexAnswers(a, repo, 'v1');
    await del(a, repo, 'v1');
    const reads = await registryReads(a);
    const r = await pull(a, repo, 'v1');
    assert.equal(await registryReads(a), reads + 1, 'asked the registry after the DELETE');
    if (r.status === 200) assert.equal(served(r), img.digest);
    else assert.equal(r.status, 404);
  });

  it('Redis down: the index stops answering and pulls ask the registry; after reconnecting it is flushed before it answers again', async () => {
    const repo = 'idx/redis-down';
    const one = await signedImage(repo, 'one');
    const two = await signedImage(repo, 'two');
    const moved = await signedImage(repo, 'moved');
    await untilIndexAnswers(a, repo, 'one');
    await untilIndexAnswers(a, repo, 'two');
    await redis.kill();
    try {
      // While Redis is down a tag moved behind trustgate's back is served fresh: the index does
      // not answer, the registry does.
      const untrusted = await lookups(a, 'untrusted');
      const reads = await registryReads(a);
      await pushManifest(registry.url, repo, 'one', moved.bytes, OCI);
      assert.equal(served(await pull(a, repo, 'one')), moved.digest);
      assert.equal(await registryReads(a), reads + 1);
      assert.ok((await lookups(a, 'untrusted')) > untrusted);
      // `two` moves too, and is not pulled while Redis is down: A's entry for it predates the gap.
      await pushManifest(registry.url, repo, 'two', moved.bytes, OCI);
    } finally {
      await redis.restart();
    }
    await untilIndexAnswers(a, repo, 'one');
    // maxAgeSeconds is an hour: only the flush on reconnection can have dropped the old entry.
    assert.equal(
      served(await pull(a, repo, 'two')),
      moved.digest,
      'the entry from before the gap was flushed',
    );
    assert.notEqual(two.digest, moved.digest);
    assert.notEqual(one.digest, moved.digest);
  });

  it('a silent Redis (SIGSTOP): the index stops answering once its heartbeat is late, and answers again after SIGCONT', async () => {
    const repo = 'idx/redis-paused';
    await signedImage(repo, 'v1');
    await untilIndexAnswers(a, repo, 'v1');
    const untrusted = await lookups(a, 'untrusted');
    process.kill(redis.pid, 'SIGSTOP');
    try {
      // The heartbeat may be up to 3 s old before the index stops answering; then it must stop.
      await pullUntil(a, repo, 'v1', async () => (await lookups(a, 'untrusted')) > untrusted, 150);
    } finally {
      process.kill(redis.pid, 'SIGCONT');
    }
    await untilIndexAnswers(a, repo, 'v1');
  });

  it('an entry older than maxAgeSeconds asks the registry again; a tag moved behind trustgate is served stale at most that long (the stated cost)', async () => {
    const repo = 'idx/age';
    const first = await signedImage(repo, 'v1');
    const second = await signedImage(repo, 'other');
    assert.equal(served(await pull(solo, repo, 'v1')), first.digest);
    assert.equal(served(await pull(solo, repo, 'v1')), first.digest);
    // Moved in registry:2 directly: solo does not know, and answers from its entry (stale).
    await pushManifest(registry.url, repo, 'v1', second.bytes, OCI);
    const hits = await lookups(solo, 'hit');
    assert.equal(served(await pull(solo, repo, 'v1')), first.digest, 'served stale (the documented cost)');
    assert.equal(await lookups(solo, 'hit'), hits + 1);
    // Past maxAgeSeconds (2) from the registry read that made the entry, the registry is asked.
    await sleep(2100);
    const expired = await lookups(solo, 'expired');
    const reads = await registryReads(solo);
    assert.equal(served(await pull(solo, repo, 'v1')), second.digest);
    assert.equal(await lookups(solo, 'expired'), expired + 1);
    assert.equal(await registryReads(solo), reads + 1);
  });

  it('signature pushes through trustgate (a .sig, a bundle referrer) are seen at once by a tag the index answers', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'trustgate-tag-index-'));
    try {
      const keyFile = path.join(dir, 'release.key');
      writeFileSync(keyFile, encryptCosignKey(release.pkcs8Der, 'pw'));
      writeFileSync(path.join(dir, 'ca.crt'), a.ca);
      for (const format of ['legacy', 'bundle']) {
        const repo = `idx/sign-${format}`;
        const img = await pushRandomImage(registry.url, repo, 'v1');
        assert.equal((await pull(a, repo, 'v1')).status, 403);
        const hits = await lookups(a, 'hit');
        assert.equal((await pull(a, repo, 'v1')).status, 403);
        assert.equal(await lookups(a, 'hit'), hits + 1, 'the unsigned tag is in the index');
        const io = memoryIo({ TRUSTGATE_KEY_PASSPHRASE: 'pw', TRUSTGATE_PASSWORD: USERS.publisher });
        const code = await signCommand(
          [
            `${a.host}/${repo}@${img.digest}`,
            '--key',
            keyFile,
            '--format',
            format,
            '--ca-file',
            path.join(dir, 'ca.crt'),
            '--username',
            'publisher',
          ],
          io.io,
        );
        assert.equal(code, 0, io.err());
        const r = await pull(a, repo, 'v1');
        assert.equal(served(r), img.digest, `${format}: signed through trustgate, pulls at once`);
        assert.equal(await lookups(a, 'hit'), hits + 2, `${format}: the tag was still answered by the index`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('evidence tags (sha256-<hex>.sig) are never answered from the index', async () => {
    const repo = 'idx/evidence';
    const img = await signedImage(repo, 'v1');
    const sigTag = `sha256-${img.digest.slice(7)}.sig`;
    const counted = async (): Promise<number> =>
      (await lookups(a, 'hit')) + (await lookups(a, 'miss')) + (await lookups(a, 'untrusted'));
    const before = await counted();
    const reads = await registryReads(a);
    for (let i = 0; i < 2; i++) assert.equal((await pull(a, repo, sigTag)).status, 200);
    assert.equal(await registryReads(a), reads + 2);
    assert.equal(await counted(), before, 'not looked up');
  });

  it('a reload flushes the index; turned off by a reload, every pull by tag asks the registry again', async () => {
    const repo = 'idx/reload';
    const img = await signedImage(repo, 'v1');
    await untilIndexAnswers(a, repo, 'v1');
    const setEnabled = async (enabled: boolean): Promise<void> => {
      a.rewriteConfig((raw) => {
        const cache = raw['cache'] as { tagIndex?: { enabled?: boolean } };
        cache.tagIndex = { ...cache.tagIndex, enabled };
      });
      assert.equal(await a.tg.reload(), true);
    };
    await setEnabled(false);
    try {
      const reads = await registryReads(a);
      const hits = await lookups(a, 'hit');
      for (let i = 0; i < 2; i++) assert.equal(served(await pull(a, repo, 'v1')), img.digest);
      assert.equal(await registryReads(a), reads + 2);
      assert.equal(await lookups(a, 'hit'), hits);
    } finally {
      await setEnabled(true);
    }
    const reads = await registryReads(a);
    const r = await pull(a, repo, 'v1');
    assert.equal(served(r), img.digest);
    assert.equal(await registryReads(a), reads + 1, 'the first pull after the reload asked the registry');
    await untilIndexAnswers(a, repo, 'v1');
  });
});

describe('tag index off (the default)', { timeout: 120_000 }, () => {
  it('every pull by tag asks the registry, and nothing is looked up', async (t) => {
    if (process.env['TRUSTGATE_TEST_TAG_INDEX'] === '1') return t.skip('the tag index is forced on');
    const registry = await startRegistry();
    const release = generateKeyPair('ecdsa-p256');
    const gate = await startTestGate({
      registryUrl: registry.url,
      users: { consumer: USERS.consumer },
      policy: { access: [{ repos: ['**'], pull: ['consumer'], push: [], delete: [] }] },
      trustRules: [{ repos: ['**'], keys: ['release'] }],
      trustedKeys: { release: release.publicKeyPem },
    });
    try {
      const img = await pushRandomImage(registry.url, 'off/app', 'v1');
      await signDirect(registry.url, 'off/app', img.digest, release.pkcs8Der);
      const t0 = await getToken(gate.url, gate.ca, 'consumer', USERS.consumer, ['repository:off/app:pull']);
      for (let i = 0; i < 3; i++) {
        const r = await request(gate.url, gate.ca, {
          path: '/v2/off/app/manifests/v1',
          headers: { ...bearer(t0), accept: OCI },
        });
        assert.equal(r.status, 200);
      }
      const reads = (await gate.tg.metrics.upstreamDuration.get()).values.find(
        (v) => v.metricName === 'trustgate_upstream_duration_seconds_count' && v.labels.kind === 'manifest',
      )?.value;
      assert.equal(reads, 3);
      assert.equal((await gate.tg.metrics.tagIndexLookups.get()).values.length, 0);
    } finally {
      await gate.close();
      await registry.stop();
    }
  });
});
