/**
 * Two trustgate replicas sharing one real Redis, one keys/ directory and one registry:2: verdicts
 * are shared, forged Redis entries are ignored, revocation on one is seen by the other within 2 s,
 * Redis going away degrades to inline verification (never open), and single flight holds.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createClient } from 'redis';
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
import { bearer, getToken, request, type Reply } from '../helpers/http.js';
import { pushRandomImage } from '../helpers/registry-direct.js';
import { signDirect } from '../helpers/sign.js';

const ACCEPT = 'application/vnd.oci.image.manifest.v1+json';

describe('replicas sharing Redis', { timeout: 120_000 }, () => {
  let registry: RegistryHandle;
  let redis: RedisHandle;
  let a: TestGate;
  let b: TestGate;
  let shared: string;
  const release = generateKeyPair('ed25519');
  const password = 'reader-password';

  before(async () => {
    [registry, redis] = await Promise.all([startRegistry(), startRedis()]);
    shared = makeTempDir('replicas');
    const keysDir = path.join(shared, 'trusted');
    const tokenKeyDir = path.join(shared, 'token');
    mkdirSync(keysDir);
    writeFileSync(path.join(keysDir, 'release.pub'), release.publicKeyPem);
    const common = {
      registryUrl: registry.url,
      users: { reader: password, janitor: password },
      policy: {
        access: [{ repos: ['prod/**'], pull: ['reader', 'janitor'], push: [], delete: ['janitor'] }],
      },
      trustRules: [{ repos: ['prod/**'], keys: ['release'] }],
      redisUrl: redis.url,
      keysDir,
      tokenKeyDir,
    };
    a = await startTestGate(common);
    b = await startTestGate(common);
  });

  after(async () => {
    await a?.close();
    await b?.close();
    await Promise.all([registry?.stop(), redis?.stop()]);
    if (shared) removeTempDir(shared);
  });

  const pull = async (g: TestGate, repo: string, ref: string): Promise<Reply> => {
    const t = await getToken(g.url, g.ca, 'reader', password, [`repository:${repo}:pull`]);
    return request(g.url, g.ca, {
      path: `/v2/${repo}/manifests/${ref}`,
      headers: { ...bearer(t), accept: ACCEPT },
    });
  };
  const signed = async (repo: string): Promise<string> => {
    const img = await pushRandomImage(registry.url, repo, 'v1');
    await signDirect(registry.url, repo, img.digest, release.pkcs8Der, {
      dockerReference: `localhost/${repo}`,
    });
    return img.digest;
  };

  it('a verdict computed on replica A is a Redis hit on replica B (no signature fetch on B)', async () => {
    await signed('prod/shared');
    assert.equal((await pull(a, 'prod/shared', 'v1')).status, 200);
    const before = b.tg.trust.signatureFetches;
    assert.equal((await pull(b, 'prod/shared', 'v1')).status, 200);
    assert.equal(b.tg.trust.signatureFetches, before, 'B verified nothing itself');
  });

  it('an entry forged directly in Redis is ignored: the unsigned image stays refused', async () => {
    const img = await pushRandomImage(registry.url, 'prod/forged', 'v1');
    const key = `tg:v:${a.tg.trust.epoch()}:prod/forged:${img.digest}`;
    const raw = createClient({ url: redis.url });
    raw.on('error', () => {});
    await raw.connect();
    try {
      const verdict = {
        ok: true,
        reason: 'signed',
        message: 'forged',
        signers: ['release'],
        boundTags: [],
        at: Date.now(),
      };
      await raw.set(key, JSON.stringify(verdict), { EX: 600 });
      await raw.set(key.replace('tg:', ''), JSON.stringify(verdict), { EX: 600 });
      const r = await pull(b, 'prod/forged', 'v1');
      assert.equal(r.status, 403, r.body.toString());
    } finally {
      raw.destroy();
    }
  });

  it('200 simultaneous pulls of a new signed image fetch its signature once per replica', async () => {
    await signed('prod/flight');
    const t = await getToken(a.url, a.ca, 'reader', password, ['repository:prod/flight:pull']);
    const before = a.tg.trust.signatureFetches;
    const replies = await Promise.all(
      Array.from({ length: 200 }, () =>
        request(a.url, a.ca, {
          path: '/v2/prod/flight/manifests/v1',
          headers: { ...bearer(t), accept: ACCEPT },
        }),
      ),
    );
    assert.ok(replies.every((r) => r.status === 200));
    assert.equal(a.tg.trust.signatureFetches - before, 1);
  });

  it('a key revoked on disk through replica A is refused on replica B within 2 s', async () => {
    await signed('prod/revoke');
    assert.equal((await pull(b, 'prod/revoke', 'v1')).status, 200);
    writeFileSync(path.join(a.keysDir, 'release.meta.json'), JSON.stringify({ revoked: true }));
    const started = Date.now();
    let status = 200;
    while (Date.now() - started < 2000 && status === 200) {
      status = (await pull(b, 'prod/revoke', 'v1')).status;
      if (status === 200) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(status, 403, 'refused on B within 2 s');
    writeFileSync(path.join(a.keysDir, 'release.meta.json'), JSON.stringify({ revoked: false }));
    await new Promise((r) => setTimeout(r, 1500));
  });

  it('a manifest deleted through replica A stops being served by digest from replica B at once', async () => {
    const digest = await signed('prod/gone');
    assert.equal((await pull(b, 'prod/gone', digest)).status, 200); // B now holds the bytes
    const t = await getToken(a.url, a.ca, 'janitor', password, ['repository:prod/gone:delete']);
    const del = await request(a.url, a.ca, {
      method: 'DELETE',
      path: `/v2/prod/gone/manifests/${digest}`,
      headers: bearer(t),
    });
    assert.equal(del.status, 202, del.body.toString());
    const deadline = Date.now() + 2000;
    let status = 200;
    while (Date.now() < deadline && status === 200) {
      status = (await pull(b, 'prod/gone', digest)).status;
      if (status === 200) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(status, 404, 'B still served the deleted manifest from its cache');
  });

  it('Redis stopped: signed images still pull (inline verification), unsigned stay refused, readiness shows degraded; then it recovers', async () => {
    const digest = await signed('prod/outage');
    const unsigned = await pushRandomImage(registry.url, 'prod/outage-unsigned', 'v1');
    await redis.kill();
    const ok = await pull(a, 'prod/outage', digest);
    assert.equal(ok.status, 200);
    assert.equal((await pull(a, 'prod/outage-unsigned', unsigned.digest)).status, 403);
    const ready = (await request(a.url, a.ca, { path: '/readyz' })).json() as {
      cache: { degraded: boolean };
    };
    assert.equal(ready.cache.degraded, true);
    await redis.restart();
    const deadline = Date.now() + 10_000;
    let degraded = true;
    while (Date.now() < deadline && degraded) {
      await pull(a, 'prod/outage', 'v1');
      degraded = (
        (await request(a.url, a.ca, { path: '/readyz' })).json() as { cache: { degraded: boolean } }
      ).cache.degraded;
      if (degraded) await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(degraded, false, 'recovered by itself');
  });
});
