/**
 * Upstream faults a real registry:2 cannot be made to produce: invalid header bytes, a reset in
 * the middle of a body, a body that never comes, a lying Docker-Content-Digest. FAKE UPSTREAM: this
 * file alone uses a tiny raw `net` server in place of registry:2, only to inject these faults
 * (DESIGN.md: "a fake upstream is used only to inject faults that a real registry cannot produce").
 * Invariants: I3 (fail closed: 502/503, never an unverified byte, never a crash) and a bounded
 * answer time (fastify-reply-from's advisories: a proxy that hangs on a broken upstream).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';
import { bearer, getToken, request, type Reply } from '../helpers/http.js';

const OCI = 'application/vnd.oci.image.manifest.v1+json';
const manifest = Buffer.from(
  JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI,
    config: {
      mediaType: 'application/vnd.oci.image.config.v1+json',
      digest: `sha256:${'1'.repeat(64)}`,
      size: 2,
    },
    layers: [],
  }),
);
const digest = `sha256:${createHash('sha256').update(manifest).digest('hex')}`;

type Behaviour = (s: net.Socket) => void;
let staleCloses = 0;

function head(status: string, headers: Record<string, string | number>): string {
  return (
    `HTTP/1.1 ${status}\r\n` +
    Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('') +
    '\r\n'
  );
}

const behaviours: Record<string, Behaviour> = {
  // Header value with a raw NUL / bare CR: Node's parser must refuse it.
  'invalid-header': (s) =>
    s.end('HTTP/1.1 200 OK\r\nContent-Type: appli\x00cation/json\r\nContent-Length: 2\r\n\r\n{}'),
  'invalid-status': (s) => s.end('HTTP/1.1 2000 Whatever\r\n\r\n'),
  'reset-mid-body': (s) => {
    s.write(head('200 OK', { 'content-type': OCI, 'content-length': manifest.length }));
    s.write(manifest.subarray(0, 20));
    setTimeout(() => s.resetAndDestroy(), 50);
  },
  'close-mid-body': (s) => {
    s.write(head('200 OK', { 'content-type': OCI, 'content-length': manifest.length }));
    s.end(manifest.subarray(0, 20));
  },
  'stall-body': (s) => {
    s.write(head('200 OK', { 'content-type': OCI, 'content-length': manifest.length }));
  },
  'lying-digest': (s) =>
    s.end(
      Buffer.concat([
        Buffer.from(
          head('200 OK', {
            'content-type': OCI,
            'content-length': manifest.length,
            'docker-content-digest': `sha256:${'f'.repeat(64)}`,
          }),
        ),
        manifest,
      ]),
    ),
  // 304 to a request that named no digest: there are no bytes to serve, so nothing is served.
  'unasked-not-modified': (s) => s.end(head('304 Not Modified', {})),
  // A manifest sent chunked: the direct reader hands it to Node's http client, which reads it.
  'manifest-chunked': (s) =>
    s.write(
      head('200 OK', { 'content-type': OCI, 'transfer-encoding': 'chunked' }) +
        `${manifest.length.toString(16)}\r\n${manifest.toString('latin1')}\r\n0\r\n\r\n`,
    ),
  // A manifest followed by a smuggled second answer on the same connection.
  'manifest-smuggle': (s) =>
    s.write(
      Buffer.concat([
        Buffer.from(head('200 OK', { 'content-type': OCI, 'content-length': manifest.length })),
        manifest,
        Buffer.from(
          head('404 Not Found', { 'content-type': 'application/json', 'content-length': 2 }) + '{}',
        ),
      ]),
    ),
  // Blob reads (the direct reader, upstream.reads: direct):
  'blob-chunked': (s) =>
    s.write(
      head('200 OK', { 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked' }) +
        '5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n',
    ),
  'blob-smuggle': (s) =>
    s.write(
      head('200 OK', { 'content-type': 'application/octet-stream', 'content-length': 5 }) +
        'hello' +
        head('200 OK', { 'content-type': 'application/octet-stream', 'content-length': 4 }) +
        'EVIL',
    ),
  'blob-ok': (s) =>
    s.write(head('200 OK', { 'content-type': 'application/octet-stream', 'content-length': 4 }) + 'fine'),
  'blob-fin-mid-body': (s) => {
    s.write(head('200 OK', { 'content-type': 'application/octet-stream', 'content-length': 1_000_000 }));
    s.end(Buffer.alloc(64 * 1024, 1));
  },
  'blob-stale': (s) => {
    // The second request on a connection finds it closed (the registry's idle close racing the
    // request); a fresh connection answers.
    const n = ((s as net.Socket & { served?: number }).served ?? 0) + 1;
    (s as net.Socket & { served?: number }).served = n;
    if (n > 1) {
      staleCloses++;
      return void s.destroy();
    }
    s.write(head('200 OK', { 'content-type': 'application/octet-stream', 'content-length': 2 }) + 'ok');
  },
  'blob-no-head': () => undefined,
  'blob-stall-mid-body': (s) => {
    s.write(head('200 OK', { 'content-type': 'application/octet-stream', 'content-length': 1_000_000 }));
    s.write(Buffer.alloc(64 * 1024, 1)); // then nothing, connection open
  },
  'huge-manifest': (s) => {
    s.write(head('200 OK', { 'content-type': OCI, 'content-length': 6 * 1024 * 1024 }));
    s.end(Buffer.alloc(6 * 1024 * 1024, 0x20));
  },
  // registry:2's own 500 (review 6's fuzz run: an upload PUT), naming its storage path.
  'registry-failure': (s) => {
    const body = JSON.stringify({
      errors: [
        {
          code: 'UNKNOWN',
          message: 'unknown error',
          detail: {
            Path: '/docker/registry/v2/repositories/f/registry-failure/_uploads/x/data',
            DriverName: 'filesystem',
          },
        },
      ],
    });
    s.end(
      head('500 Internal Server Error', {
        'content-type': 'application/json',
        'content-length': body.length,
      }) + body,
    );
  },
  'blob-reset': (s) => {
    s.write(head('200 OK', { 'content-type': 'application/octet-stream', 'content-length': 1_000_000 }));
    s.write(Buffer.alloc(64 * 1024, 1));
    setTimeout(() => s.resetAndDestroy(), 100);
  },
};

describe('security: upstream faults (fake upstream)', { timeout: 120_000 }, () => {
  let fake: net.Server;
  let gate: TestGate;
  let token: string;
  const seen: string[] = [];

  before(async () => {
    fake = net.createServer((s) => {
      s.on('error', () => undefined);
      let buf = '';
      s.on('data', (b: Buffer) => {
        buf += b.toString('latin1');
        if (!buf.includes('\r\n\r\n')) return;
        const request = buf;
        const path = buf.split(' ')[1] ?? '';
        seen.push(path);
        buf = '';
        const repoKind = /^\/v2\/f\/([a-z-]+)\//.exec(path)?.[1] ?? '';
        // Signature lookups of the enforce-mode repository: reset (I3: must fail closed).
        if (path.includes('.sig')) return behaviours['reset-mid-body']!(s);
        if (repoKind === 'blob-echo') {
          // Echoes the x-note request header's bytes as the body.
          const note = Buffer.from(/\r\nx-note: ([^\r]*)\r\n/i.exec(request)?.[1] ?? '', 'latin1');
          return void s.write(
            Buffer.concat([
              Buffer.from(
                head('200 OK', { 'content-type': 'application/octet-stream', 'content-length': note.length }),
              ),
              note,
            ]),
          );
        }
        const b2 = behaviours[repoKind];
        if (b2) return b2(s);
        s.end(head('404 Not Found', { 'content-type': 'application/json', 'content-length': 2 }) + '{}');
      });
    });
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', () => r()));
    const port = (fake.address() as net.AddressInfo).port;
    gate = await startTestGate({
      registryUrl: `http://127.0.0.1:${port}`,
      users: { consumer: 'consumer-password' },
      policy: { access: [{ repos: ['**'], pull: ['consumer'], push: [], delete: [] }] },
      trustRules: [
        { repos: ['f/lying-digest'], keys: [], mode: 'off' },
        { repos: ['f/enforced'] },
        { repos: ['**'], mode: 'off' },
      ],
      extra: { upstream: { url: `http://127.0.0.1:${port}`, timeoutMs: 2000 } },
    });
    token = await getToken(gate.url, gate.ca, 'consumer', 'consumer-password', [
      ...[...Object.keys(behaviours), 'blob-echo'].map((k) => `repository:f/${k}:pull`),
      'repository:f/enforced:pull',
    ]);
  });

  after(async () => {
    await gate?.close();
    await new Promise((r) => fake?.close(r));
  });

  async function pull(kind: string, ref = 'v1'): Promise<{ r: Reply | Error; ms: number }> {
    const t0 = Date.now();
    const r = await request(gate.url, gate.ca, {
      path: `/v2/f/${kind}/manifests/${ref}`,
      headers: { ...bearer(token), accept: OCI },
    }).catch((e: unknown) => e as Error);
    return { r, ms: Date.now() - t0 };
  }
  async function alive(): Promise<void> {
    assert.equal((await request(gate.url, gate.ca, { path: '/healthz' })).status, 200);
  }

  for (const kind of [
    'invalid-header',
    'invalid-status',
    'reset-mid-body',
    'close-mid-body',
    'stall-body',
    'huge-manifest',
    'unasked-not-modified',
  ]) {
    it(`manifest pull, upstream ${kind}: a 5xx OCI error within the timeout, no manifest byte`, async () => {
      const { r, ms } = await pull(kind);
      assert.ok(!(r instanceof Error), `no answer: ${String(r)}`);
      assert.ok(
        r.status === 502 || r.status === 503,
        `${kind}: ${r.status} ${r.body.toString().slice(0, 200)}`,
      );
      assert.doesNotMatch(r.body.toString(), /schemaVersion/);
      assert.ok(ms < 5000, `answered after ${ms} ms`);
      await alive();
    });
  }

  it('a lying Docker-Content-Digest is ignored: the digest is computed from the bytes', async () => {
    const { r } = await pull('lying-digest');
    assert.ok(!(r instanceof Error));
    assert.equal(r.status, 200);
    assert.equal(r.headers['docker-content-digest'], digest);
    const { r: r2 } = await pull('lying-digest', `sha256:${'f'.repeat(64)}`);
    assert.ok(!(r2 instanceof Error));
    assert.equal(r2.status, 502, 'bytes that do not hash to the requested digest are refused');
  });

  it('an oversized upstream manifest, or bytes that miss the digest: 502 UNAVAILABLE, never MANIFEST_INVALID (issue 17)', async () => {
    // MANIFEST_INVALID is the client's fault in the distribution spec; these are the registry's.
    for (const [kind, ref] of [
      ['huge-manifest', undefined],
      ['lying-digest', `sha256:${'f'.repeat(64)}`],
    ] as const) {
      const { r } = await pull(kind, ref);
      assert.ok(!(r instanceof Error), `${kind}: no answer`);
      assert.equal(r.status, 502, kind);
      const body = JSON.parse(r.body.toString()) as { errors: Array<{ code: string }> };
      assert.equal(body.errors[0]?.code, 'UNAVAILABLE', `${kind}: ${r.body.toString()}`);
    }
  });

  it('enforce mode: a signature lookup that breaks fails closed (I3), never serves', async () => {
    behaviours['enforced'] = (s) =>
      s.end(
        Buffer.concat([
          Buffer.from(head('200 OK', { 'content-type': OCI, 'content-length': manifest.length })),
          manifest,
        ]),
      );
    const { r } = await pull('enforced');
    assert.ok(!(r instanceof Error));
    assert.ok(r.status >= 500, `served with a broken signature lookup: ${r.status}`);
    assert.ok(
      seen.some((p) => p.includes('.sig')),
      'the signature lookup was attempted',
    );
    await alive();
  });

  const blobGet = (kind: string): Promise<Reply | Error> =>
    request(gate.url, gate.ca, {
      path: `/v2/f/${kind}/blobs/sha256:${'3'.repeat(64)}`,
      headers: bearer(token),
    }).catch((e: unknown) => e as Error);

  it('manifest answer sent chunked: read through the general client, served and hashed as usual', async () => {
    const { r } = await pull('manifest-chunked');
    assert.ok(!(r instanceof Error), String(r));
    assert.equal(r.status, 200);
    assert.equal(r.headers['docker-content-digest'], digest);
    assert.deepEqual(r.body, manifest);
  });

  it('manifest answer followed by a smuggled one: the extra bytes are never read as the next answer', async () => {
    for (let i = 0; i < 3; i++) {
      const { r } = await pull('manifest-smuggle', `v${i}`);
      assert.ok(!(r instanceof Error), String(r));
      assert.equal(r.status, 200, `pull ${i}: ${r.status}`);
      assert.deepEqual(r.body, manifest);
    }
  });

  it('blob read, chunked answer: handed to the general forwarder before any byte, relayed whole', async () => {
    const r = await blobGet('blob-chunked');
    assert.ok(!(r instanceof Error), String(r));
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'helloworld');
  });

  it('blob read, bytes past Content-Length: not relayed, and the connection is never reused', async () => {
    const r = await blobGet('blob-smuggle');
    assert.ok(!(r instanceof Error), String(r));
    assert.equal(r.body.toString(), 'hello');
    for (let i = 0; i < 3; i++) {
      const next = await blobGet('blob-ok');
      assert.ok(!(next instanceof Error), String(next));
      assert.equal(next.body.toString(), 'fine', 'the smuggled second response was never read as an answer');
    }
  });

  it('blob read, FIN mid-body: a truncated transfer within the timeout, never a complete one', async () => {
    const t0 = Date.now();
    const r = await blobGet('blob-fin-mid-body');
    if (!(r instanceof Error))
      assert.ok(r.body.length < 1_000_000, `complete-looking body: ${r.body.length}`);
    assert.ok(Date.now() - t0 < 5000);
    await alive();
  });

  it('blob read, a pooled connection closed by the registry: sent once more on a new one', async () => {
    const first = await blobGet('blob-stale');
    assert.ok(!(first instanceof Error), String(first));
    assert.equal(first.body.toString(), 'ok');
    const second = await blobGet('blob-stale');
    assert.ok(!(second instanceof Error), String(second));
    assert.equal(second.status, 200);
    assert.equal(second.body.toString(), 'ok');
    assert.equal(staleCloses, 1, 'the second request went out on the pooled connection first');
  });

  it('blob read: header bytes 0x80-0xff never reach the registry (refused with 400, issue 12 item 2)', async () => {
    const before = seen.length;
    const r = await request(gate.url, gate.ca, {
      path: `/v2/f/blob-echo/blobs/sha256:${'3'.repeat(64)}`,
      headers: { ...bearer(token), 'x-note': 'caf\u00e9' },
    });
    assert.equal(r.status, 400, r.body.toString());
    assert.match(r.body.toString(), /x-note header contains a byte outside printable ASCII/);
    assert.equal(seen.length, before, 'the request went upstream');
  });

  it('blob read, the registry stalls mid-body: the client gets a truncated transfer after the upstream timeout', async () => {
    const t0 = Date.now();
    const r = await Promise.race([
      blobGet('blob-stall-mid-body'),
      new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 8000).unref()),
    ]);
    assert.notEqual(r, 'hung', 'the transfer never ended');
    if (!(r instanceof Error) && r !== 'hung') assert.ok(r.body.length < 1_000_000);
    assert.ok(Date.now() - t0 < 6000, `ended after ${Date.now() - t0} ms`);
    await alive();
  });

  it('blob read, no response head: 5xx after the upstream timeout, and trustgate stays up', async () => {
    const t0 = Date.now();
    const r = await blobGet('blob-no-head');
    assert.ok(!(r instanceof Error), String(r));
    assert.ok(r.status === 502 || r.status === 503, String(r.status));
    assert.ok(Date.now() - t0 < 5000);
    await alive();
  });

  it('a blob stream reset mid-body reaches the client as a truncated transfer, not a complete one', async () => {
    const t0 = Date.now();
    const r = await request(gate.url, gate.ca, {
      path: `/v2/f/blob-reset/blobs/sha256:${'2'.repeat(64)}`,
      headers: bearer(token),
    }).catch((e: unknown) => e as Error);
    if (!(r instanceof Error)) {
      assert.ok(
        r.status >= 500 || r.body.length < 1_000_000,
        `complete-looking body: ${r.status} ${r.body.length}`,
      );
    }
    assert.ok(Date.now() - t0 < 5000);
    await alive();
  });

  it('fixed (review 6 fuzz): a registry 5xx is answered by trustgate, never relayed with its storage paths (tags list through http-proxy, blob GET through the direct reader)', async () => {
    for (const path of [
      '/v2/f/registry-failure/tags/list',
      `/v2/f/registry-failure/blobs/sha256:${'3'.repeat(64)}`,
    ]) {
      const r = await request(gate.url, gate.ca, { path, headers: bearer(token) });
      assert.equal(r.status, 502, `${path}: ${r.status}`);
      const text = r.body.toString();
      assert.doesNotMatch(text, /docker\/registry|DriverName|_uploads/, `${path} leaked: ${text}`);
      assert.match(text, /"code":"UNAVAILABLE"/);
      assert.match(text, /the registry failed this request \(status 500\)/);
    }
    await alive();
  });
});
