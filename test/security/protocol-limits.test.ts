/**
 * Issue 12 ("Protocol answers still missing", black-box acceptance run), items 7, 8 and 9, through
 * trustgate against a real registry:2:
 *
 * - Finding 7: a body over its limit (manifest PUT over 4 MiB, /token form, admin JSON) got a
 *   connection reset, or no answer until the whole body had arrived, instead of a 413 the client
 *   can read. Now: the answer goes out at once with `Connection: close`, the rest of the body is
 *   read and dropped for a bounded amount and time, and only then is the connection closed.
 * - Finding 8: a request head over the limits (bytes or header lines) got a bare 400, a reset,
 *   or was served with the extra header lines silently dropped. Now: 431 with an OCI error body.
 * - Finding 9: a manifest whose layers carry `urls` (foreign layers) reached registry:2, which
 *   answered 500 UNKNOWN. Now: 400 MANIFEST_INVALID unless `manifests.layerUrls` allows the URLs.
 *
 * The raw TLS client here behaves like curl: it reads while it sends, stops sending once it has
 * a whole answer, and reports a reset (ECONNRESET/EPIPE) as the failure it is for such a client.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import net from 'node:net';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';
import { bearer, getToken, request } from '../helpers/http.js';
import { direct, pushBlob } from '../helpers/registry-direct.js';

const OCI = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const DOCKER = 'application/vnd.docker.distribution.manifest.v2+json';
const MiB = 1024 * 1024;
const users = { alice: 'alice-password-1', root: 'root-password-1' };

interface RawAnswer {
  status?: number;
  headers: Record<string, string>;
  body: string;
  /** The error the client saw (ECONNRESET, EPIPE), if any. */
  error?: string;
  /** How the connection ended: the server closed it, an error, or the client gave up. */
  ended: 'closed' | 'error' | 'timeout';
  /** Milliseconds from the start to the complete answer, and to the end of the connection. */
  answeredMs?: number;
  endedMs: number;
  /** Body bytes the client got onto the wire before it stopped. */
  sent: number;
}

/**
 * One request over a fresh TLS connection. `body` is written chunk by chunk (with backpressure)
 * until it is all sent or a complete answer has arrived; then the client waits for the server to
 * close, at most `maxMs` in all.
 */
function rawRequest(
  port: number,
  ca: string,
  head: string,
  body: Iterable<Buffer> = [],
  o: { maxMs?: number } = {},
): Promise<RawAnswer> {
  const maxMs = o.maxMs ?? 20_000;
  const started = Date.now();
  return new Promise((resolve) => {
    let received = Buffer.alloc(0);
    let answer: Omit<RawAnswer, 'ended' | 'endedMs' | 'error' | 'sent'> | undefined;
    let error: string | undefined;
    let sent = 0;
    let finished = false;
    const s = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost' });
    const gone = new Promise((r) => s.once('close', r));
    const finish = (ended: RawAnswer['ended']): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      s.destroy();
      resolve({
        ...(answer ?? { headers: {}, body: received.toString('latin1') }),
        error,
        ended,
        endedMs: Date.now() - started,
        sent,
      });
    };
    const timer = setTimeout(() => finish('timeout'), maxMs);
    const parse = (): void => {
      const text = received.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end < 0 || answer) return;
      const lines = text.slice(0, end).split('\r\n');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(lines[0] ?? '')?.[1]);
      const headers: Record<string, string> = {};
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      const length = Number(headers['content-length'] ?? 0);
      if (text.length - end - 4 < length) return;
      answer = {
        status,
        headers,
        body: text.slice(end + 4, end + 4 + length),
        answeredMs: Date.now() - started,
      };
    };
    s.on('data', (b: Buffer) => {
      received = Buffer.concat([received, b]);
      parse();
    });
    s.on('end', () => finish('closed'));
    s.on('close', () => finish(error ? 'error' : 'closed'));
    s.on('error', (e: NodeJS.ErrnoException) => {
      error = e.code ?? e.message;
      finish('error');
    });
    s.once('secureConnect', async () => {
      s.write(head);
      for (const chunk of body) {
        if (finished || answer || s.destroyed) break;
        const ok = s.write(chunk);
        sent += chunk.length;
        if (!ok) await Promise.race([new Promise((r) => s.once('drain', r)), gone]);
      }
    });
  });
}

/** `total` bytes in 64 KiB chunks, raw (for Content-Length) or chunked-encoded. */
function* bytes(total: number, chunked = false, fill = 0x20): Generator<Buffer> {
  const piece = Buffer.alloc(64 * 1024, fill);
  for (let left = total; left > 0; left -= piece.length) {
    const b = left >= piece.length ? piece : piece.subarray(0, left);
    yield chunked ? Buffer.concat([Buffer.from(`${b.length.toString(16)}\r\n`), b, Buffer.from('\r\n')]) : b;
  }
  if (chunked) yield Buffer.from('0\r\n\r\n');
}

/** Runs a command without blocking the event loop (trustgate runs in this process). */
function run(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 60_000, maxBuffer: 16 * MiB }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

function ociError(a: { body: string }): { code: string; message: string } {
  const parsed = JSON.parse(a.body) as { errors: Array<{ code: string; message: string }> };
  assert.equal(parsed.errors.length, 1, a.body);
  return parsed.errors[0]!;
}

/** The answer a client like curl must be able to read: status, body, Connection: close, no reset. */
function assertRefusal(a: RawAnswer, status: number, what: string): void {
  assert.equal(a.error, undefined, `${what}: the client saw ${a.error} (answer: ${a.status ?? 'none'})`);
  assert.equal(a.status, status, `${what}: ${a.status} ${a.body.slice(0, 200)}`);
  assert.equal(a.headers['connection'], 'close', `${what}: Connection: close`);
  assert.equal(a.ended, 'closed', `${what}: the server must close the connection (${a.ended})`);
}

describe('security: protocol limits (issue 12, items 7-9)', { timeout: 300_000 }, () => {
  let registry: RegistryHandle;
  let gate: TestGate;
  let aliceToken: string;
  let rootToken: string;
  let config: string;
  let layer: string;

  before(async () => {
    registry = await startRegistry();
    gate = await startTestGate({
      registryUrl: registry.url,
      users,
      policy: {
        admins: ['root'],
        access: [{ repos: ['scratch/**'], pull: ['alice'], push: ['alice'], delete: [] }],
      },
      trustRules: [{ repos: ['**'], mode: 'off' }],
    });
    aliceToken = await getToken(gate.url, gate.ca, 'alice', users.alice, [
      'repository:scratch/alice:pull,push',
    ]);
    // The admin API takes only a token asked for the scope registry:admin:*, alone.
    rootToken = await getToken(gate.url, gate.ca, 'root', users.root, ['registry:admin:*']);
    config = await pushBlob(registry.url, 'scratch/alice', Buffer.from('{}'));
    layer = await pushBlob(registry.url, 'scratch/alice', Buffer.from('layer bytes'));
  });

  after(async () => {
    await gate?.close();
    await registry?.stop();
  });

  const manifestHead = (tag: string, framing: string): string =>
    `PUT /v2/scratch/alice/manifests/${tag} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${aliceToken}\r\n` +
    `Content-Type: ${OCI}\r\n${framing}\r\n`;
  const stored = async (tag: string): Promise<number> =>
    (await direct(registry.url, 'HEAD', `/v2/scratch/alice/manifests/${tag}`, undefined, { accept: OCI }))
      .status;

  // -------------------------------------------------------------------------------------------
  // Finding 7: oversized bodies
  // -------------------------------------------------------------------------------------------
  describe('finding 7: a body over its limit gets its 413, not a reset', () => {
    it('manifest PUT over 4 MiB with Content-Length: 413 MANIFEST_INVALID, Connection: close', async () => {
      const size = 5 * MiB;
      const a = await rawRequest(
        gate.tg.port,
        gate.ca,
        manifestHead('big-cl', `Content-Length: ${size}\r\n`),
        bytes(size),
      );
      assertRefusal(a, 413, 'Content-Length');
      assert.equal(ociError(a).code, 'MANIFEST_INVALID');
      assert.equal(await stored('big-cl'), 404);
    });

    it('manifest PUT over 4 MiB, chunked: 413 MANIFEST_INVALID, Connection: close', async () => {
      const a = await rawRequest(
        gate.tg.port,
        gate.ca,
        manifestHead('big-chunked', 'Transfer-Encoding: chunked\r\n'),
        bytes(5 * MiB, true),
      );
      assertRefusal(a, 413, 'chunked');
      assert.equal(ociError(a).code, 'MANIFEST_INVALID');
      assert.equal(await stored('big-chunked'), 404);
    });

    it('a huge declared length is answered at once, and trustgate ends the connection', async () => {
      // The client announces 1 GiB and sends 1 MiB: it gets its answer immediately, and trustgate
      // ends the connection (FIN) instead of keeping it to read the other 1023 MiB.
      const a = await rawRequest(
        gate.tg.port,
        gate.ca,
        manifestHead('huge', `Content-Length: ${1024 * MiB}\r\n`),
        bytes(MiB),
        { maxMs: 20_000 },
      );
      assertRefusal(a, 413, 'declared 1 GiB');
      assert.ok(a.answeredMs !== undefined && a.answeredMs < 3000, `answered after ${a.answeredMs} ms`);
      assert.ok(a.endedMs < 15_000, `closed after ${a.endedMs} ms`);
    });

    it('what is discarded after the answer is bounded (a client that never stops sending)', async () => {
      // A client that ignores the answer and the FIN and streams on (half-open): trustgate reads
      // and drops a bounded amount, then closes (a reset is expected here: the answer was out long
      // before).
      const tcp = net.connect({ host: '127.0.0.1', port: gate.tg.port, allowHalfOpen: true });
      const s = tls.connect({ socket: tcp, ca: gate.ca, servername: 'localhost' });
      let text = '';
      let sent = 0;
      let gone = false;
      const closed = new Promise<void>((r) => {
        s.on('close', () => r());
        s.on('error', () => r());
      });
      void closed.then(() => (gone = true));
      s.on('data', (b: Buffer) => (text += b.toString('latin1')));
      s.on('end', () => undefined);
      await new Promise((r) => s.once('secureConnect', r));
      s.write(manifestHead('flood', `Content-Length: ${4096 * MiB}\r\n`));
      const piece = Buffer.alloc(256 * 1024, 0x20);
      const deadline = Date.now() + 60_000;
      while (!gone && sent < 1024 * MiB && Date.now() < deadline) {
        sent += piece.length;
        if (!s.write(piece)) await Promise.race([new Promise((r) => s.once('drain', r)), closed]);
      }
      s.destroy();
      await closed;
      assert.match(text, /^HTTP\/1\.1 413 /, text.slice(0, 200));
      assert.ok(sent > 64 * MiB, `trustgate closed after ${Math.round(sent / MiB)} MiB: it must linger`);
      assert.ok(sent < 256 * MiB, `trustgate read on: ${Math.round(sent / MiB)} MiB sent before it closed`);
    });

    it('the /token POST form over 16 KiB: 413 (OAuth2 body), Content-Length and chunked', async () => {
      const head = (framing: string): string =>
        `POST /token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n${framing}\r\n`;
      const cl = await rawRequest(
        gate.tg.port,
        gate.ca,
        head(`Content-Length: ${MiB}\r\n`),
        bytes(MiB, false, 0x61),
      );
      assertRefusal(cl, 413, '/token Content-Length');
      assert.equal((JSON.parse(cl.body) as { error: string }).error, 'invalid_request');
      const ch = await rawRequest(
        gate.tg.port,
        gate.ca,
        head('Transfer-Encoding: chunked\r\n'),
        bytes(MiB, true, 0x61),
      );
      assertRefusal(ch, 413, '/token chunked');
      // Before: the form parser read the whole declared body before answering (no answer here).
      const huge = await rawRequest(
        gate.tg.port,
        gate.ca,
        head(`Content-Length: ${1024 * MiB}\r\n`),
        bytes(64 * 1024, false, 0x61),
      );
      assertRefusal(huge, 413, '/token declared 1 GiB');
    });

    it('admin API JSON over 64 KiB: 413 with an OCI error body, Content-Length and chunked', async () => {
      const head = (framing: string): string =>
        `POST /admin/v1/keys HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${rootToken}\r\n` +
        `Content-Type: application/json\r\n${framing}\r\n`;
      const json = (n: number): Buffer[] => [
        Buffer.from('{"name":"big","pem":"'),
        ...bytes(n, false, 0x61),
        Buffer.from('"}'),
      ];
      const n = MiB;
      const cl = await rawRequest(gate.tg.port, gate.ca, head(`Content-Length: ${n + 23}\r\n`), json(n));
      assertRefusal(cl, 413, 'admin Content-Length');
      assert.equal(ociError(cl).code, 'SIZE_INVALID');
      const chunks = json(n).map((b) =>
        Buffer.concat([Buffer.from(`${b.length.toString(16)}\r\n`), b, Buffer.from('\r\n')]),
      );
      const ch = await rawRequest(gate.tg.port, gate.ca, head('Transfer-Encoding: chunked\r\n'), [
        ...chunks,
        Buffer.from('0\r\n\r\n'),
      ]);
      assertRefusal(ch, 413, 'admin chunked');
      assert.equal(ociError(ch).code, 'SIZE_INVALID');
    });

    it('a refusal before the body is read (401) ends the connection instead of reading the body', async () => {
      // The same class: Node keeps a connection by reading the rest of a refused request's body,
      // however large it is declared. An error answer to a body still arriving now closes.
      const a = await rawRequest(
        gate.tg.port,
        gate.ca,
        `POST /admin/v1/keys HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${1024 * MiB}\r\n\r\n`,
        bytes(MiB),
      );
      assertRefusal(a, 401, 'unauthenticated admin POST');
      const b = await rawRequest(
        gate.tg.port,
        gate.ca,
        manifestHead('no-token', `Content-Length: ${1024 * MiB}\r\n`).replace(
          /Authorization: [^\r]*\r\n/,
          '',
        ),
        bytes(MiB),
      );
      assertRefusal(b, 401, 'manifest PUT without a token');
    });

    it('real clients read the 413: curl (Content-Length and chunked) and Node https', async (t) => {
      const file = path.join(gate.dir, 'big-manifest.json');
      const doc = `{"schemaVersion":2,"mediaType":"${OCI}","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"${config}","size":2},"layers":[],"annotations":{"pad":"${'x'.repeat(5 * MiB)}"}}`;
      writeFileSync(file, doc);
      const r = await request(gate.url, gate.ca, {
        method: 'PUT',
        path: '/v2/scratch/alice/manifests/node-big',
        headers: { ...bearer(aliceToken), 'content-type': OCI },
        body: doc,
      });
      assert.equal(r.status, 413, 'Node https client');
      assert.equal(r.headers['connection'], 'close');
      if ((await run('curl', ['--version'])).code !== 0) {
        t.skip('curl is not installed');
        return;
      }
      writeFileSync(path.join(gate.dir, 'ca.pem'), gate.ca);
      for (const extra of [[], ['-H', 'Transfer-Encoding: chunked']]) {
        // Not spawnSync: trustgate runs in this process and must keep serving meanwhile.
        const out = await run('curl', [
          '-sS',
          '--cacert',
          path.join(gate.dir, 'ca.pem'),
          '-X',
          'PUT',
          '-H',
          `Authorization: Bearer ${aliceToken}`,
          '-H',
          `Content-Type: ${OCI}`,
          ...extra,
          '--data-binary',
          `@${file}`,
          '-w',
          '\n%{http_code}',
          `${gate.url.replace('127.0.0.1', 'localhost')}/v2/scratch/alice/manifests/curl-big`,
        ]);
        assert.equal(out.code, 0, `curl ${extra.join(' ')} failed: ${out.stderr}`);
        assert.match(out.stdout, /MANIFEST_INVALID[\s\S]*\n413$/, out.stdout.slice(-300));
      }
      assert.equal(await stored('curl-big'), 404);
    });
  });

  // -------------------------------------------------------------------------------------------
  // Finding 8: request heads over the limits
  // -------------------------------------------------------------------------------------------
  describe('finding 8: a request head over the limits gets 431 with an OCI error body', () => {
    const targets = [
      'GET /v2/ HTTP/1.1',
      'GET /token?service=trustgate HTTP/1.1',
      'GET /admin/v1/keys HTTP/1.1',
    ];

    it('64 KiB of header bytes: 431 on /v2, /token and /admin', async () => {
      for (const line of targets) {
        const a = await rawRequest(
          gate.tg.port,
          gate.ca,
          `${line}\r\nHost: localhost\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`,
        );
        assertRefusal(a, 431, `${line} with 64 KiB of headers`);
        assert.equal(ociError(a).code, 'UNSUPPORTED');
        assert.match(a.headers['content-type'] ?? '', /^application\/json/);
      }
    });

    it('64 KiB of header bytes in many lines (and a body behind them): 431, no reset', async () => {
      const many = Array.from({ length: 64 }, (_, i) => `X-Pad-${i}: ${'b'.repeat(1000)}\r\n`).join('');
      const a = await rawRequest(
        gate.tg.port,
        gate.ca,
        manifestHead('head-big', `${many}Content-Length: ${MiB}\r\n`),
        bytes(MiB),
      );
      assertRefusal(a, 431, 'header lines of 1000 bytes');
    });

    it('1,100 header lines: 431 on /v2, /token and /admin (before: the extra lines were dropped)', async () => {
      const lines = Array.from({ length: 1100 }, (_, i) => `X-H${i}: ${i}\r\n`).join('');
      for (const line of targets) {
        const a = await rawRequest(gate.tg.port, gate.ca, `${line}\r\nHost: localhost\r\n${lines}\r\n`);
        assertRefusal(a, 431, `${line} with 1,100 header lines`);
        assert.equal(ociError(a).code, 'UNSUPPORTED');
      }
    });

    it('heads within the limits are served (100 lines; 24 KiB, e.g. a large bearer token)', async () => {
      const lines = Array.from({ length: 97 }, (_, i) => `X-H${i}: ${i}\r\n`).join('');
      const auth = `Authorization: Bearer ${aliceToken}\r\n`;
      const a = await rawRequest(
        gate.tg.port,
        gate.ca,
        `GET /v2/ HTTP/1.1\r\nHost: localhost\r\n${auth}${lines}Connection: close\r\n\r\n`,
      );
      assert.equal(a.status, 200, a.body);
      const b = await rawRequest(
        gate.tg.port,
        gate.ca,
        `GET /v2/ HTTP/1.1\r\nHost: localhost\r\n${auth}X-Big: ${'c'.repeat(24 * 1024)}\r\nConnection: close\r\n\r\n`,
      );
      assert.equal(b.status, 200, b.body);
    });
  });

  // -------------------------------------------------------------------------------------------
  // Finding 9: layer URLs (foreign / non-distributable layers)
  // -------------------------------------------------------------------------------------------
  describe('finding 9: layer URLs are refused with 400 MANIFEST_INVALID unless allowlisted', () => {
    const image = (
      layerExtra: string,
      o: { type?: string; mediaType?: string; configExtra?: string } = {},
    ): string =>
      `{"schemaVersion":2,"mediaType":"${o.mediaType ?? OCI}","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"${config}","size":2${o.configExtra ?? ''}},` +
      `"layers":[{"mediaType":"${o.type ?? 'application/vnd.oci.image.layer.v1.tar'}","digest":"${layer}","size":11${layerExtra}}]}`;
    const putVia = (g: TestGate, token: string, tag: string, body: string, ct = OCI) =>
      request(g.url, g.ca, {
        method: 'PUT',
        path: `/v2/scratch/alice/manifests/${tag}`,
        headers: { ...bearer(token), 'content-type': ct },
        body,
      });

    it('a layer with urls is refused by default (before: registry:2 answered 500 UNKNOWN)', async () => {
      const r = await putVia(
        gate,
        aliceToken,
        'foreign',
        image(',"urls":["https://layers.example.com/a.tar"]'),
      );
      assert.equal(r.status, 400, r.body.toString());
      assert.equal(ociError({ body: r.body.toString() }).code, 'MANIFEST_INVALID');
      assert.equal(await stored('foreign'), 404);
    });

    it('every layer media type is checked: registry:2 itself skips urls on other types (no check, no blob)', async () => {
      // registry:2 v2.8 validates urls only on the OCI tar / tar+gzip / non-distributable layer
      // types and the Docker foreign type; on any other type a descriptor with urls is accepted
      // unchecked and its blob need not exist. Shown directly against registry:2 first.
      const absent = `sha256:${'a'.repeat(64)}`;
      const sneaky = image(',"urls":["http://127.0.0.1:1/x"]', {
        type: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
        mediaType: DOCKER,
      })
        .replace(layer, absent)
        .replace(
          'application/vnd.oci.image.config.v1+json',
          'application/vnd.docker.container.image.v1+json',
        );
      const d = await direct(
        registry.url,
        'PUT',
        '/v2/scratch/alice/manifests/direct-sneaky',
        Buffer.from(sneaky),
        {
          'content-type': DOCKER,
        },
      );
      assert.equal(d.status, 201, `registry:2 (control): ${d.body.toString()}`);
      const r = await putVia(gate, aliceToken, 'sneaky', sneaky, DOCKER);
      assert.equal(r.status, 400, r.body.toString());
      assert.equal(ociError({ body: r.body.toString() }).code, 'MANIFEST_INVALID');
      assert.equal(await stored('sneaky'), 404);
    });

    it('a case variant of the urls key ("URLs", which Go reads as urls) is refused', async () => {
      for (const [i, key] of ['URLs', 'Urls', 'URLS'].entries()) {
        const r = await putVia(gate, aliceToken, `variant${i}`, image(`,"${key}":["http://127.0.0.1:1/x"]`));
        assert.equal(r.status, 400, `${key}: ${r.status} ${r.body.toString()}`);
        assert.equal(ociError({ body: r.body.toString() }).code, 'MANIFEST_INVALID');
        assert.equal(await stored(`variant${i}`), 404, key);
      }
    });

    it('urls on a config descriptor or an index entry are refused; a Docker foreign layer needs urls', async () => {
      const cfg = await putVia(
        gate,
        aliceToken,
        'cfg-urls',
        image('', { configExtra: ',"urls":["https://layers.example.com/c"]' }),
      );
      assert.equal(cfg.status, 400, cfg.body.toString());
      const child = image('');
      await putVia(gate, aliceToken, 'child', child);
      const childDigest = (
        await direct(registry.url, 'HEAD', '/v2/scratch/alice/manifests/child', undefined, { accept: OCI })
      ).headers['docker-content-digest'];
      const index = `{"schemaVersion":2,"mediaType":"${OCI_INDEX}","manifests":[{"mediaType":"${OCI}","digest":"${String(childDigest)}","size":${child.length},"urls":["https://layers.example.com/m"]}]}`;
      const idx = await putVia(gate, aliceToken, 'idx-urls', index, OCI_INDEX);
      assert.equal(idx.status, 400, idx.body.toString());
      const foreign = image('', {
        type: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
        mediaType: DOCKER,
      }).replace(
        'application/vnd.oci.image.config.v1+json',
        'application/vnd.docker.container.image.v1+json',
      );
      const f = await putVia(gate, aliceToken, 'foreign-no-urls', foreign, DOCKER);
      assert.equal(f.status, 400, f.body.toString());
      for (const tag of ['cfg-urls', 'idx-urls', 'foreign-no-urls'])
        assert.equal(await stored(tag), 404, tag);
    });

    describe('with manifests.layerUrls.allow', () => {
      // gateDefault forwards to a registry:2 with its default validation (no URL allowed);
      // gateAllowing forwards to one whose validation.manifests.urls.allow matches ours.
      let registryAllowing: RegistryHandle;
      let gateDefault: TestGate;
      let gateAllowing: TestGate;
      const layerUrls = { allow: ['^https://layers\\.example\\.com/'], deny: ['/blocked/'] };
      const tokenFor = (g: TestGate) =>
        getToken(g.url, g.ca, 'alice', users.alice, ['repository:scratch/alice:pull,push']);

      before(async () => {
        registryAllowing = await startRegistry({ manifestUrls: layerUrls });
        const common = {
          users,
          policy: { access: [{ repos: ['scratch/**'], pull: ['alice'], push: ['alice'], delete: [] }] },
          trustRules: [{ repos: ['**'], mode: 'off' as const }],
          extra: { manifests: { layerUrls } },
        };
        gateDefault = await startTestGate({ registryUrl: registry.url, ...common });
        gateAllowing = await startTestGate({ registryUrl: registryAllowing.url, ...common });
        await pushBlob(registryAllowing.url, 'scratch/alice', Buffer.from('{}'));
        await pushBlob(registryAllowing.url, 'scratch/alice', Buffer.from('layer bytes'));
      });

      after(async () => {
        await gateDefault?.close();
        await gateAllowing?.close();
        await registryAllowing?.stop();
      });

      it('an allowlisted URL is forwarded: registry:2 with a matching allow stores it (201)', async () => {
        const t = await tokenFor(gateAllowing);
        const body = image(',"urls":["https://layers.example.com/a.tar"]', {
          type: 'application/vnd.oci.image.layer.nondistributable.v1.tar',
        });
        const r = await putVia(gateAllowing, t, 'allowed', body);
        assert.equal(r.status, 201, r.body.toString());
        const got = await direct(
          registryAllowing.url,
          'GET',
          '/v2/scratch/alice/manifests/allowed',
          undefined,
          {
            accept: OCI,
          },
        );
        assert.equal(got.body.toString(), body);
      });

      it('an allowlisted URL is forwarded: registry:2 with its default validation answers 500 UNKNOWN', async () => {
        // registry:2 v2.8 with no validation section allows no URL at all (allow = "^$") and
        // answers 500 UNKNOWN + MANIFEST_BLOB_UNKNOWN; trustgate relays that answer. Configure
        // registry:2's validation.manifests.urls.allow to match manifests.layerUrls.allow.
        const t = await tokenFor(gateDefault);
        const r = await putVia(
          gateDefault,
          t,
          'allowed',
          image(',"urls":["https://layers.example.com/a.tar"]'),
        );
        assert.equal(r.status, 500, r.body.toString());
        const codes = (JSON.parse(r.body.toString()) as { errors: Array<{ code: string }> }).errors.map(
          (e) => e.code,
        );
        assert.deepEqual([...new Set(codes)].sort(), ['MANIFEST_BLOB_UNKNOWN', 'UNKNOWN']);
        assert.equal(await stored('allowed'), 404);
      });

      it('a URL that is not allowed, denied, not http(s), or has a fragment is refused by trustgate', async () => {
        const t = await tokenFor(gateAllowing);
        const cases = [
          'https://elsewhere.example.org/a.tar',
          'https://layers.example.com/blocked/a.tar',
          'ftp://layers.example.com/a.tar',
          'https://layers.example.com/a.tar#frag',
        ];
        for (const [i, u] of cases.entries()) {
          // One good URL and one bad one: every URL must pass.
          const body = image(`,"urls":["https://layers.example.com/ok.tar",${JSON.stringify(u)}]`);
          const r = await putVia(gateAllowing, t, `bad${i}`, body);
          assert.equal(r.status, 400, `${u}: ${r.status} ${r.body.toString()}`);
          assert.equal(ociError({ body: r.body.toString() }).code, 'MANIFEST_INVALID');
          const d = await direct(
            registryAllowing.url,
            'HEAD',
            `/v2/scratch/alice/manifests/bad${i}`,
            undefined,
            {
              accept: OCI,
            },
          );
          assert.equal(d.status, 404, u);
        }
      });
    });
  });
});
