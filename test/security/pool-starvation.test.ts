/**
 * Issue 12, item 4: upstream pool starvation (security, fail-open medium). An adversarial review
 * found that about 280 TLS connections with tiny receive windows, each asking for a signed blob and
 * never reading it, hung tag lists, blob pulls, uploads and manifest pushes for every user for more
 * than 40 s: every blob relay held an upstream connection for as long as its client did not read,
 * and blob relays and the control plane shared one pool. Any identity allowed to pull one signed
 * image could do it.
 *
 * Against real registry:2, with both blob read engines (`upstream.reads`: `direct`, `node`) and a
 * scaled-down pool (upstream.maxSockets 16, limits.blobRelays 8, per identity 4, per address 6,
 * write-idle deadline 10 s), this file stalls blob downloads from three identities over TLS
 * connections that pause and never read, and shows:
 *   (b) the relays past each bound are refused at once: 429 TOOMANYREQUESTS for the identity and
 *       address bounds, 503 UNAVAILABLE for the global bound, each with Retry-After;
 *   (a) meanwhile another identity's manifest GET (cold: signature read), tag list, upload start and
 *       cancel, manifest push, and a whole blob download from another address answer promptly;
 *   (c) the stalled responses are destroyed after the write-idle deadline, their relays freed (the
 *       clients see truncated transfers) and the abusive identity may download again.
 * Before the fix, the 40 stalled downloads of one identity took the 16 direct reads and all 16
 * pooled sockets: (a) timed out, (b) saw no refusal, (c) saw no connection closed.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { generateKeyPair } from '../../src/core/signature/sign.js';
import { startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';
import { getToken } from '../helpers/http.js';
import { pushBlob, pushManifest, pushRandomImage, sha256 } from '../helpers/registry-direct.js';
import { signDirect } from '../helpers/sign.js';

const OCI = 'application/vnd.oci.image.manifest.v1+json';
const BLOB_BYTES = 24 * 1024 * 1024;
const WRITE_IDLE_SECONDS = 10;
const BOUNDS = { blobRelays: 8, blobRelaysPerIdentity: 4, blobRelaysPerAddress: 6 };
/** Every answer the control plane owes within this while the stalls hold. */
const PROMPT_MS = 3000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Loopback source addresses: the abusers share one, the third abuser and the victim have their own. */
const ABUSER_ADDRESS = '127.0.0.2';
const OTHER_ABUSER_ADDRESS = '127.0.0.3';
const VICTIM_ADDRESS = '127.0.0.4';

interface Stalled {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** From sending the request to the whole answer (refusals) or its head (200). */
  ms: number;
  socket: tls.TLSSocket;
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  ms: number;
}

for (const engine of ['direct', 'node'] as const) {
  describe(`security: upstream pool starvation (reads: ${engine})`, { timeout: 240_000 }, () => {
    let registry: RegistryHandle;
    let gate: TestGate;
    const release = generateKeyPair('ecdsa-p256');
    const users = {
      mallory: 'mallory-password',
      eve: 'eve-password',
      trudy: 'trudy-password',
      carol: 'carol-password',
      alice: 'alice-password',
    };
    type User = keyof typeof users;
    const tokens = new Map<User, string>();
    let blobDigest = '';
    let manifestBytes: Buffer;
    let other: { digest: string };
    const sockets: tls.TLSSocket[] = [];
    const stalls = new Map<string, Stalled[]>();
    let stallStarted = 0;

    before(async () => {
      registry = await startRegistry();
      gate = await startTestGate({
        registryUrl: registry.url,
        users,
        policy: {
          access: [
            {
              repos: ['starve/**'],
              pull: ['mallory', 'eve', 'trudy', 'carol', 'alice'],
              push: ['alice'],
              delete: [],
            },
          ],
        },
        trustRules: [{ repos: ['starve/**'], keys: ['release'] }],
        trustedKeys: { release: release.publicKeyPem },
        extra: {
          upstream: { url: registry.url, timeoutMs: 10_000, maxSockets: 16, reads: engine },
          limits: { writeIdleSeconds: WRITE_IDLE_SECONDS, ...BOUNDS },
        },
      });
      // A signed image with one multi-MiB layer, far more than the socket buffers hold.
      blobDigest = await pushBlob(registry.url, 'starve/app', randomBytes(BLOB_BYTES));
      const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux' }));
      const configDigest = await pushBlob(registry.url, 'starve/app', config);
      manifestBytes = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI,
          config: {
            mediaType: 'application/vnd.oci.image.config.v1+json',
            digest: configDigest,
            size: config.length,
          },
          layers: [
            { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: blobDigest, size: BLOB_BYTES },
          ],
        }),
      );
      const digest = await pushManifest(registry.url, 'starve/app', 'v1', manifestBytes, OCI);
      await signDirect(registry.url, 'starve/app', digest, release.pkcs8Der);
      // A second signed image nobody has pulled: its first pull reads the signature upstream.
      other = await pushRandomImage(registry.url, 'starve/other', 'v1');
      await signDirect(registry.url, 'starve/other', other.digest, release.pkcs8Der);
      for (const u of Object.keys(users) as User[]) {
        const actions = u === 'alice' ? 'pull,push' : 'pull';
        tokens.set(
          u,
          await getToken(gate.url, gate.ca, u, users[u], [
            `repository:starve/app:${actions}`,
            `repository:starve/other:pull`,
          ]),
        );
      }
      // The abusers' pull of the signed manifest admits its blobs for pull-only identities.
      const pulled = await send('mallory', ABUSER_ADDRESS, 'GET', '/v2/starve/app/manifests/v1', {
        accept: OCI,
      });
      assert.equal(pulled.status, 200, pulled.body.toString());
    });

    after(async () => {
      for (const s of sockets) s.destroy();
      await gate?.close();
      await registry?.stop();
    });

    /** One HTTPS request from a chosen loopback address, bounded in time (status 0: no answer). */
    function send(
      user: User,
      localAddress: string,
      method: string,
      path: string,
      headers: Record<string, string> = {},
      body?: Buffer,
      timeoutMs = 10_000,
    ): Promise<Answer> {
      const u = new URL(gate.url);
      const t0 = performance.now();
      return new Promise((resolve) => {
        const done = (a: Omit<Answer, 'ms'>): void => resolve({ ...a, ms: performance.now() - t0 });
        const req = https.request(
          {
            host: u.hostname,
            port: u.port,
            method,
            path,
            localAddress,
            ca: gate.ca,
            agent: false,
            headers: {
              authorization: `Bearer ${tokens.get(user) ?? ''}`,
              ...(body ? { 'content-length': String(body.length) } : {}),
              ...headers,
            },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () =>
              done({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
            );
            res.on('error', () => done({ status: 0, headers: {}, body: Buffer.alloc(0) }));
          },
        );
        req.setTimeout(timeoutMs, () => req.destroy(new Error('timeout')));
        req.on('error', () => done({ status: 0, headers: {}, body: Buffer.alloc(0) }));
        req.end(body);
      });
    }

    /**
     * A blob GET over a TLS connection that stops reading as soon as the response head is in (it
     * never reads the body: once Node has buffered 16 KiB it reads no more), so the kernel's receive
     * window closes. A refusal is read whole. Resolves on the head (or after `headMs`, status 0).
     */
    function stall(user: User, localAddress: string, headMs = 8000): Promise<Stalled> {
      const u = new URL(gate.url);
      return new Promise((resolve) => {
        const socket = tls.connect({
          socket: net.connect({ host: '127.0.0.1', port: Number(u.port), localAddress }),
          ca: gate.ca,
          servername: 'localhost',
        });
        sockets.push(socket);
        let t0 = 0;
        let text = '';
        let head: { status: number; headers: Record<string, string>; bodyAt: number } | undefined;
        const finish = (status: number): void => {
          clearTimeout(timer);
          socket.removeAllListeners('data');
          resolve({
            status,
            headers: head?.headers ?? {},
            body: head ? text.slice(head.bodyAt) : '',
            ms: performance.now() - t0,
            socket,
          });
        };
        const timer = setTimeout(() => finish(0), headMs);
        socket.on('error', () => undefined);
        socket.once('secureConnect', () => {
          t0 = performance.now();
          socket.write(
            `GET /v2/starve/app/blobs/${blobDigest} HTTP/1.1\r\nHost: ${u.host}\r\n` +
              `Authorization: Bearer ${tokens.get(user) ?? ''}\r\n\r\n`,
          );
        });
        socket.on('data', (b: Buffer) => {
          text += b.toString('latin1');
          if (!head) {
            const end = text.indexOf('\r\n\r\n');
            if (end < 0) return;
            const lines = text.slice(0, end).split('\r\n');
            const headers: Record<string, string> = {};
            for (const l of lines.slice(1)) {
              const c = l.indexOf(':');
              headers[l.slice(0, c).toLowerCase()] = l.slice(c + 1).trim();
            }
            head = { status: Number(lines[0]?.split(' ')[1]), headers, bodyAt: end + 4 };
            if (head.status === 200) {
              // The abuse: the body is never read.
              socket.pause();
              finish(200);
              return;
            }
          }
          if (head && text.length - head.bodyAt >= Number(head.headers['content-length'] ?? 0)) {
            finish(head.status);
            socket.destroy();
          }
        });
      });
    }

    const metric = async (name: string): Promise<number> => {
      const all = await gate.tg.metrics.registry.getMetricsAsJSON();
      const m = all.find((x) => x.name === name) as { values: Array<{ value: number }> } | undefined;
      return m ? m.values.reduce((a, v) => a + v.value, 0) : NaN;
    };
    /** Polls `ok` every 100 ms for up to `ms`; whether it came true. */
    const poll = async (ok: () => Promise<boolean>, ms: number): Promise<boolean> => {
      const deadline = Date.now() + ms;
      for (;;) {
        if (await ok()) return true;
        if (Date.now() >= deadline) return false;
        await sleep(100);
      }
    };

    it('(b) downloads past the identity, address and global bounds are refused at once with Retry-After', async () => {
      stallStarted = Date.now();
      // 40 stalled downloads from one identity and address: far more than the direct reads (16)
      // and the pooled sockets (16) together.
      stalls.set(
        'mallory',
        await Promise.all(Array.from({ length: 40 }, () => stall('mallory', ABUSER_ADDRESS))),
      );
      // A second identity on the same address, then a third identity elsewhere.
      stalls.set('eve', await Promise.all(Array.from({ length: 4 }, () => stall('eve', ABUSER_ADDRESS))));
      stalls.set(
        'trudy',
        await Promise.all(Array.from({ length: 4 }, () => stall('trudy', OTHER_ABUSER_ADDRESS))),
      );

      const tally = (who: string): Record<string, number> => {
        const t: Record<string, number> = {};
        for (const s of stalls.get(who) ?? []) t[s.status] = (t[s.status] ?? 0) + 1;
        return t;
      };
      assert.deepEqual(
        tally('mallory'),
        { 200: 4, 429: 36 },
        'mallory: 4 relays, the rest refused (identity bound)',
      );
      assert.deepEqual(
        tally('eve'),
        { 200: 2, 429: 2 },
        'eve: the address has room for 2 more (address bound)',
      );
      assert.deepEqual(
        tally('trudy'),
        { 200: 2, 503: 2 },
        'trudy: the process has room for 2 more (global bound)',
      );
      for (const [who, list] of stalls) {
        for (const s of list.filter((x) => x.status !== 200)) {
          assert.ok(s.ms < PROMPT_MS, `${who}: refusal after ${Math.round(s.ms)} ms`);
          assert.match(s.headers['retry-after'] ?? '', /^[1-9]\d*$/, `${who}: Retry-After`);
          assert.match(s.headers['content-type'] ?? '', /^application\/json/);
          const err = (JSON.parse(s.body) as { errors: Array<{ code: string; message: string }> }).errors[0]!;
          if (s.status === 429) {
            assert.equal(err.code, 'TOOMANYREQUESTS');
            assert.match(
              err.message,
              who === 'mallory' ? /mallory.*limit per identity is 4/ : /limit per address is 6/,
            );
          } else {
            assert.equal(err.code, 'UNAVAILABLE');
            assert.match(err.message, /maximum of 8 blob downloads/);
          }
        }
      }
      assert.equal(await metric('trustgate_blob_relays'), 8);
      assert.equal(await metric('trustgate_blob_relays_refused_total'), 40);
    });

    it('(a) while the stalls hold, the control plane and another client’s blob download answer promptly', async () => {
      // trudy gives up her two relays (closing them frees them at once); mallory's and eve's
      // stay stalled throughout.
      for (const s of stalls.get('trudy') ?? []) s.socket.destroy();
      await poll(async () => (await metric('trustgate_blob_relays')) <= 6, 3000);

      // Sequential, each bounded: a hang shows up as "no answer" after twice PROMPT_MS.
      const t = PROMPT_MS * 2;
      const problems: string[] = [];
      const check = async (name: string, want: number, p: Promise<Answer>): Promise<Answer> => {
        const a = await p;
        if (a.status !== want) {
          problems.push(`${name}: ${a.status || 'no answer'} after ${Math.round(a.ms)} ms (want ${want})`);
        } else if (a.ms > PROMPT_MS) problems.push(`${name}: ${Math.round(a.ms)} ms`);
        return a;
      };
      const at = VICTIM_ADDRESS;
      await check(
        'manifest GET, cold (signature read)',
        200,
        send('carol', at, 'GET', '/v2/starve/other/manifests/v1', { accept: OCI }, undefined, t),
      );
      await check('tag list', 200, send('carol', at, 'GET', '/v2/starve/app/tags/list', {}, undefined, t));
      const start = await check(
        'upload start',
        202,
        send('alice', at, 'POST', '/v2/starve/app/blobs/uploads/', { 'content-length': '0' }, undefined, t),
      );
      if (start.status === 202) {
        const loc = new URL(String(start.headers.location), gate.url);
        await check(
          'upload cancel',
          204,
          send('alice', at, 'DELETE', loc.pathname + loc.search, {}, undefined, t),
        );
      }
      await check(
        'manifest push',
        201,
        send('alice', at, 'PUT', '/v2/starve/app/manifests/v2', { 'content-type': OCI }, manifestBytes, t),
      );
      const blob = await send(
        'carol',
        at,
        'GET',
        `/v2/starve/app/blobs/${blobDigest}`,
        {},
        undefined,
        20_000,
      );
      if (blob.status !== 200 || sha256(blob.body) !== blobDigest) {
        problems.push(
          `another client's blob download: ${blob.status || 'no answer'}, ${blob.body.length} bytes after ${Math.round(blob.ms)} ms`,
        );
      }
      // The stalled relays were still held while all of this answered (carol's own relay ends with
      // its response's close, which may come just after her client saw the last byte).
      const held = await poll(async () => (await metric('trustgate_blob_relays')) === 6, 2000);
      assert.deepEqual(problems, []);
      assert.ok(
        held,
        `the six stalled relays were held throughout (${await metric('trustgate_blob_relays')})`,
      );
      assert.ok(
        Date.now() - stallStarted < WRITE_IDLE_SECONDS * 1000,
        'checked within the write-idle deadline',
      );
    });

    it('(c) stalled responses are destroyed after the write-idle deadline and their relays freed', async () => {
      // The deadline, its one-second sweep, and a margin for a loaded machine.
      await sleep(Math.max(0, stallStarted + WRITE_IDLE_SECONDS * 1000 + 3000 - Date.now()));
      // Each stalled client, reading again, gets a transfer that ends short of the blob.
      const held = [...(stalls.get('mallory') ?? []), ...(stalls.get('eve') ?? [])]
        .filter((s) => s.status === 200)
        .slice(0, 6);
      assert.ok(held.length > 0);
      const received = await Promise.all(
        held.map(
          (s) =>
            new Promise<number | 'no end'>((resolve) => {
              let n = s.body.length;
              const timer = setTimeout(() => resolve('no end'), 10_000);
              const end = (): void => {
                clearTimeout(timer);
                resolve(n);
              };
              s.socket.on('data', (b: Buffer) => (n += b.length));
              s.socket.once('end', end);
              s.socket.once('close', end);
              s.socket.resume();
            }),
        ),
      );
      for (const r of received) {
        assert.notEqual(r, 'no end', 'the stalled transfer was still open');
        assert.ok(
          typeof r === 'number' && r < BLOB_BYTES,
          `a complete body after the deadline: ${String(r)} bytes`,
        );
      }
      assert.equal(await metric('trustgate_write_idle_closed_total'), 6);
      assert.ok(await poll(async () => (await metric('trustgate_blob_relays')) === 0, 3000), 'relays freed');
      // The abusive identity may download again: its relays were freed.
      const again = await send(
        'mallory',
        ABUSER_ADDRESS,
        'GET',
        `/v2/starve/app/blobs/${blobDigest}`,
        {},
        undefined,
        20_000,
      );
      assert.equal(again.status, 200);
      assert.equal(sha256(again.body), blobDigest);
    });
  });
}
