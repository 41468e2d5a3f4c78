/**
 * Blob GET/HEAD through trustgate against a real registry:2, with both blob read engines
 * (`upstream.reads`: `direct`, the pooled zero-copy reader, and `node`, http-proxy-3): full
 * bodies, HEAD, Range and unsatisfiable Range, unknown blobs, and a client that aborts mid-body
 * followed by more reads on the same pooled connections (nothing left over may leak into them).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import https from 'node:https';
import { after, before, describe, it } from 'node:test';
import { startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';
import { bearer, getToken, request } from '../helpers/http.js';
import { pushBlob, sha256 } from '../helpers/registry-direct.js';

for (const engine of ['direct', 'node'] as const) {
  describe(`e2e: blob reads through trustgate (reads: ${engine})`, { timeout: 120_000 }, () => {
    let registry: RegistryHandle;
    let gate: TestGate;
    let token: string;
    const blob = randomBytes(3 * 1024 * 1024 + 17);
    let digest: string;

    before(async () => {
      registry = await startRegistry();
      gate = await startTestGate({
        registryUrl: registry.url,
        users: { pub: 'publisher-password' },
        policy: { access: [{ repos: ['blobs/**'], pull: ['pub'], push: ['pub'], delete: [] }] },
        trustRules: [{ repos: ['blobs/**'], mode: 'off' }],
        extra: { upstream: { url: registry.url, timeoutMs: 5000, reads: engine } },
      });
      digest = await pushBlob(registry.url, 'blobs/app', blob);
      token = await getToken(gate.url, gate.ca, 'pub', 'publisher-password', [
        'repository:blobs/app:pull,push',
      ]);
    });
    after(async () => {
      await gate?.close();
      await registry?.stop();
    });

    const get = (path: string, headers: Record<string, string> = {}, method = 'GET') =>
      request(gate.url, gate.ca, { method, path, headers: { ...bearer(token), ...headers } });

    it('GET: the whole blob, byte-identical, with length and digest headers', async () => {
      for (let i = 0; i < 3; i++) {
        const r = await get(`/v2/blobs/app/blobs/${digest}`);
        assert.equal(r.status, 200);
        assert.equal(r.headers['content-length'], String(blob.length));
        assert.equal(r.headers['docker-content-digest'], digest);
        assert.equal(sha256(r.body), digest);
      }
    });

    it('HEAD: status and length, no body; then a GET on the same pool is intact', async () => {
      const h = await get(`/v2/blobs/app/blobs/${digest}`, {}, 'HEAD');
      assert.equal(h.status, 200);
      assert.equal(h.headers['content-length'], String(blob.length));
      assert.equal(h.body.length, 0);
      const r = await get(`/v2/blobs/app/blobs/${digest}`);
      assert.equal(sha256(r.body), digest);
    });

    it('Range: 206 with the exact slice; an unsatisfiable range is the registry 416', async () => {
      const r = await get(`/v2/blobs/app/blobs/${digest}`, { range: 'bytes=100-1048675' });
      assert.equal(r.status, 206);
      assert.equal(r.headers['content-range'], `bytes 100-1048675/${blob.length}`);
      assert.deepEqual(r.body, blob.subarray(100, 1048676));
      const tail = await get(`/v2/blobs/app/blobs/${digest}`, { range: 'bytes=-10' });
      assert.equal(tail.status, 206);
      assert.deepEqual(tail.body, blob.subarray(blob.length - 10));
      // registry:2 (2.8) frames its 416 with the whole blob's length and sends a few bytes.
      const bad = await statusAndEnd(`/v2/blobs/app/blobs/${digest}`, { range: `bytes=${blob.length + 5}-` });
      assert.equal(bad.status, 416);
      if (engine === 'direct') {
        // The direct reader answers it with an empty, properly framed body.
        assert.equal(bad.end, 'complete');
        assert.equal(bad.bytes, 0);
      } else {
        // http-proxy relays the registry's framing; the response must at least end, not hang.
        assert.ok(bad.bytes < blob.length, 'no complete-looking body');
      }
      const after = await get(`/v2/blobs/app/blobs/${digest}`);
      assert.equal(sha256(after.body), digest);
    });

    /** Status, body bytes and how the body ended ('complete' or 'aborted'), within 10 s. */
    const statusAndEnd = (
      path: string,
      headers: Record<string, string>,
    ): Promise<{ status: number; bytes: number; end: 'complete' | 'aborted' }> =>
      new Promise((resolve, reject) => {
        const u = new URL(gate.url);
        const req = https.get(
          {
            host: u.hostname,
            port: u.port,
            path,
            headers: { ...bearer(token), ...headers },
            ca: gate.ca,
            agent: false,
          },
          (res) => {
            let bytes = 0;
            res.on('data', (c: Buffer) => (bytes += c.length));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, end: 'complete' }));
            res.on('error', () => resolve({ status: res.statusCode ?? 0, bytes, end: 'aborted' }));
            res.on('aborted', () => resolve({ status: res.statusCode ?? 0, bytes, end: 'aborted' }));
          },
        );
        req.setTimeout(10_000, () => req.destroy(new Error('no end within 10 s')));
        req.on('error', reject);
      });

    it('an unknown blob is the registry 404 BLOB_UNKNOWN', async () => {
      const r = await get(`/v2/blobs/app/blobs/sha256:${'0'.repeat(64)}`);
      assert.equal(r.status, 404);
      assert.match(r.body.toString(), /BLOB_UNKNOWN/);
    });

    it('a client that aborts mid-body frees its connection; later reads are intact', async () => {
      for (let i = 0; i < 3; i++) {
        await new Promise<void>((resolve, reject) => {
          const u = new URL(gate.url);
          const req = https.get(
            {
              host: u.hostname,
              port: u.port,
              path: `/v2/blobs/app/blobs/${digest}`,
              headers: bearer(token),
              ca: gate.ca,
              agent: false,
            },
            (res) => {
              let got = 0;
              res.on('data', (c: Buffer) => {
                got += c.length;
                if (got > 256 * 1024) {
                  req.destroy();
                  resolve();
                }
              });
              res.on('end', () => reject(new Error('the whole body arrived before the abort')));
            },
          );
          req.on('error', () => undefined);
        });
      }
      const all = await Promise.all(Array.from({ length: 6 }, () => get(`/v2/blobs/app/blobs/${digest}`)));
      for (const r of all) assert.equal(sha256(r.body), digest);
      const h = await request(gate.url, gate.ca, { path: '/healthz' });
      assert.equal(h.status, 200);
    });
  });
}
