/**
 * Fault injection with the real components: registry:2 killed and restarted during pulls and
 * pushes, Redis stopped / restarted / frozen (SIGSTOP: a slow Redis), clients that abort uploads.
 * Invariants: no unsigned manifest byte reaches a pull-only client (I1), fail closed (I3), no
 * accepted push lost or corrupted (I5), the process never exits and recovers by itself.
 * Only processes this file started are signalled, by PID.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import https from 'node:https';
import { after, before, describe, it } from 'node:test';
import { generateKeyPair } from '../../src/core/signature/sign.js';
import { startRedis, startRegistry, type RedisHandle, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';
import { bearer, getToken, request, type Reply } from '../helpers/http.js';
import { direct, pushRandomImage, sha256 } from '../helpers/registry-direct.js';
import { signDirect } from '../helpers/sign.js';

const OCI = 'application/vnd.oci.image.manifest.v1+json';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('security: fault injection (registry:2, redis, clients)', { timeout: 300_000 }, () => {
  let registry: RegistryHandle;
  let redis: RedisHandle;
  let gate: TestGate;
  let signed: { digest: string };
  let unsignedDigest: string;
  let pullTok: string;
  let pushTok: string;
  const release = generateKeyPair('ecdsa-p256');
  const users = { consumer: 'consumer-password', publisher: 'publisher-password' };

  before(async () => {
    registry = await startRegistry();
    redis = await startRedis();
    gate = await startTestGate({
      registryUrl: registry.url,
      redisUrl: redis.url,
      users,
      policy: {
        access: [{ repos: ['**'], pull: ['consumer', 'publisher'], push: ['publisher'], delete: [] }],
      },
      trustRules: [{ repos: ['**'], keys: ['release'] }],
      trustedKeys: { release: release.publicKeyPem },
      // Few upstream sockets, short timeout: a leaked upstream request shows up as a hang.
      extra: { upstream: { url: registry.url, timeoutMs: 3000, maxSockets: 4 } },
    });
    signed = await pushRandomImage(registry.url, 'prod/app', 'v1');
    await signDirect(registry.url, 'prod/app', signed.digest, release.pkcs8Der);
    unsignedDigest = (await pushRandomImage(registry.url, 'prod/app', 'unsigned')).digest;
    pullTok = await getToken(gate.url, gate.ca, 'consumer', users.consumer, ['repository:prod/app:pull']);
    pushTok = await getToken(gate.url, gate.ca, 'publisher', users.publisher, [
      'repository:prod/up:pull,push',
    ]);
  });

  after(async () => {
    await gate?.close();
    await redis?.stop();
    await registry?.stop();
  });

  const pull = (ref: string): Promise<Reply | Error> =>
    request(gate.url, gate.ca, {
      path: `/v2/prod/app/manifests/${ref}`,
      headers: { ...bearer(pullTok), accept: OCI },
    }).catch((e: unknown) => e as Error);

  function checkPull(r: Reply | Error, ref: string, tally: Record<string, number>): void {
    const k = r instanceof Error ? 'error' : String(r.status);
    tally[k] = (tally[k] ?? 0) + 1;
    if (r instanceof Error) return;
    if (r.status === 200) {
      assert.ok(ref === 'v1' || ref === signed.digest, `unsigned ${ref} was served`);
      assert.equal(sha256(r.body), signed.digest);
    } else {
      assert.ok([403, 502, 503].includes(r.status), `${ref}: ${r.status} ${r.body.toString()}`);
      assert.doesNotMatch(r.body.toString(), /schemaVersion/);
    }
  }

  async function recovers(what: string): Promise<number> {
    const t0 = Date.now();
    for (let i = 0; i < 100; i++) {
      const r = await pull('v1');
      if (!(r instanceof Error) && r.status === 200) return Date.now() - t0;
      await sleep(200);
    }
    assert.fail(`${what}: no successful pull within 20 s`);
  }

  it('registry:2 killed and restarted during pulls: only verified bytes, 5xx meanwhile, recovers', async () => {
    const tally: Record<string, number> = {};
    let stop = false;
    const load = (async () => {
      for (let i = 0; !stop && i < 400; i++) {
        const ref = i % 3 === 0 ? 'unsigned' : 'v1';
        checkPull(await pull(ref), ref, tally);
      }
    })();
    await sleep(300);
    await registry.kill();
    await sleep(1000);
    await registry.restart();
    await sleep(300);
    stop = true;
    await load;
    const ms = await recovers('registry restart');
    console.log(
      `# registry kill during pulls: ${JSON.stringify(tally)}, first pull after restart ok in ${ms} ms`,
    );
    assert.ok((tally['502'] ?? 0) + (tally['503'] ?? 0) > 0, 'the outage was seen');
    assert.ok((tally['200'] ?? 0) > 0);
  });

  async function upload(body: Buffer | (() => AsyncIterable<Buffer>)): Promise<Reply | Error> {
    const start = await request(gate.url, gate.ca, {
      method: 'POST',
      path: '/v2/prod/up/blobs/uploads/',
      headers: bearer(pushTok),
    });
    if (start.status !== 202) return new Error(`start ${start.status}`);
    const loc = new URL(String(start.headers.location), gate.url);
    const data = typeof body === 'function' ? undefined : body;
    return new Promise((resolve) => {
      const u = new URL(gate.url);
      const req = https.request(
        {
          host: u.hostname,
          port: u.port,
          method: 'PATCH',
          path: loc.pathname + loc.search,
          headers: { ...bearer(pushTok), 'content-type': 'application/octet-stream' },
          ca: gate.ca,
          agent: false,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              statusMessage: res.statusMessage ?? '',
              headers: res.headers,
              body: Buffer.concat(chunks),
              json: () => ({}),
            }),
          );
          res.on('error', (e) => resolve(e));
        },
      );
      req.on('error', (e) => resolve(e));
      if (data) req.end(data);
      else
        void (async () => {
          try {
            for await (const c of (body as () => AsyncIterable<Buffer>)())
              if (!req.write(c)) await new Promise((r) => req.once('drain', r));
            req.end();
          } catch {
            req.destroy();
          }
        })();
    });
  }

  async function pushWhole(data: Buffer): Promise<number> {
    const start = await request(gate.url, gate.ca, {
      method: 'POST',
      path: '/v2/prod/up/blobs/uploads/',
      headers: bearer(pushTok),
    });
    if (start.status !== 202) return start.status;
    const loc = new URL(String(start.headers.location), gate.url);
    loc.searchParams.set('digest', sha256(data));
    const put = await request(gate.url, gate.ca, {
      method: 'PUT',
      path: loc.pathname + loc.search,
      headers: { ...bearer(pushTok), 'content-type': 'application/octet-stream' },
      body: data,
    });
    return put.status;
  }

  it('registry:2 killed during a streaming blob push: the push fails, nothing half-written is served, a retry lands intact', async () => {
    const data = randomBytes(8 * 1024 * 1024);
    const chunks = async function* (): AsyncIterable<Buffer> {
      for (let off = 0; off < data.length; off += 256 * 1024) {
        yield data.subarray(off, off + 256 * 1024);
        await sleep(20);
      }
    };
    const p = upload(chunks);
    await sleep(200);
    await registry.kill();
    const r = await p;
    assert.ok(
      r instanceof Error || r.status >= 500,
      `accepted during the outage: ${r instanceof Error ? r : r.status}`,
    );
    await registry.restart();
    await recovers('registry restart after push');
    assert.equal((await direct(registry.url, 'HEAD', `/v2/prod/up/blobs/${sha256(data)}`)).status, 404);
    assert.equal(await pushWhole(data), 201);
    const got = await direct(registry.url, 'GET', `/v2/prod/up/blobs/${sha256(data)}`);
    assert.equal(sha256(got.body), sha256(data), 'the accepted push arrived intact');
  });

  it('clients aborting mid-upload free the upstream request (4 upstream sockets, 12 aborts) and the process stays up', async () => {
    const aborts = Array.from({ length: 12 }, async () => {
      const start = await request(gate.url, gate.ca, {
        method: 'POST',
        path: '/v2/prod/up/blobs/uploads/',
        headers: bearer(pushTok),
      });
      const loc = new URL(String(start.headers.location), gate.url);
      const u = new URL(gate.url);
      await new Promise<void>((resolve) => {
        const req = https.request({
          host: u.hostname,
          port: u.port,
          method: 'PATCH',
          path: loc.pathname + loc.search,
          headers: { ...bearer(pushTok), 'content-type': 'application/octet-stream' },
          ca: gate.ca,
          agent: false,
        });
        req.on('error', () => resolve());
        req.write(randomBytes(512 * 1024));
        setTimeout(() => {
          req.destroy();
          resolve();
        }, 300);
      });
    });
    await Promise.all(aborts);
    const t0 = Date.now();
    assert.equal(await pushWhole(Buffer.from('after the aborts')), 201);
    const ms = await recovers('after aborts');
    assert.ok(Date.now() - t0 < 5000, `upstream sockets were not freed: ${Date.now() - t0} ms`);
    assert.ok(ms < 1000);
    assert.equal((await request(gate.url, gate.ca, { path: '/healthz' })).status, 200);
  });

  it('Redis stopped, restarted and frozen (SIGSTOP): verdicts stay right, answers stay bounded', async () => {
    const tally: Record<string, number> = {};
    const round = async (label: string): Promise<void> => {
      const t0 = Date.now();
      for (const ref of ['v1', 'unsigned', 'v1', unsignedDigest, signed.digest])
        checkPull(await pull(ref), ref, tally);
      const ms = Date.now() - t0;
      console.log(`# redis ${label}: 5 pulls in ${ms} ms`);
      assert.ok(ms < 15_000, `${label}: ${ms} ms`);
    };
    await round('up');
    await redis.kill();
    await round('down');
    await redis.restart();
    await round('restarted');
    process.kill(redis.pid, 'SIGSTOP');
    try {
      await round('frozen');
    } finally {
      process.kill(redis.pid, 'SIGCONT');
    }
    await round('thawed');
    console.log(`# redis faults: ${JSON.stringify(tally)}`);
    assert.ok((tally['200'] ?? 0) >= 10, 'signed pulls kept working through the Redis faults');
    assert.equal(tally['error'] ?? 0, 0);
  });
});
