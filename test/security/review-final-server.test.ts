/**
 * Final review of the server side of session 5: attempts to break releaseChunksOnceWritten
 * (src/server/release-written.ts), which detaches each upload body chunk once its write to the
 * registry completed. A chunk detached while something still holds it would corrupt the upload
 * (or crash): each scenario pushes through trustgate to a real registry:2, which checks the digest
 * on the final PUT (201 only for the very bytes), and the bytes are read back from registry:2.
 * The gates run in this process, so the test counts the detaches (ArrayBuffer.prototype.transfer
 * with length 0) to show the release path really ran. A small TCP relay between trustgate and
 * registry:2 injects the faults (a slow reader, a cut connection): a fake for faults only.
 *
 * "HELD: …" tests are attacks that failed; "fixed (…): …" tests failed before the fix they name.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { bearer, getToken, request } from '../helpers/http.js';
import { rawExchange } from '../helpers/raw.js';
import { direct, sha256 } from '../helpers/registry-direct.js';
import { startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';

const USERS = { publisher: 'publisher-password' };
const REPO = 'team/uploads';
const MiB = 1024 * 1024;

/** Counts ArrayBuffer detaches to length 0 in this process (the gates run here). */
let detaches = 0;
type Transfer = (this: ArrayBuffer, n?: number) => ArrayBuffer;
const proto = ArrayBuffer.prototype as unknown as { transfer: Transfer };
const originalTransfer = proto.transfer;

/** A relay to registry:2 that can read slowly or cut connections that carry an upload body. */
interface FaultRelay {
  url: string;
  mode: 'pass' | 'slow' | 'cut';
  close(): Promise<void>;
}

async function startFaultRelay(target: RegistryHandle): Promise<FaultRelay> {
  const sockets = new Set<net.Socket>();
  const relay: FaultRelay = { url: '', mode: 'pass', close: async () => undefined };
  const server = net.createServer((client) => {
    const up = net.connect(target.port, '127.0.0.1');
    sockets.add(client).add(up);
    let cutBytes = 0;
    client.on('data', (d: Buffer) => {
      if (relay.mode === 'cut') cutBytes += d.length;
      if (cutBytes > 3 * MiB) {
        client.destroy();
        up.destroy();
        return;
      }
      up.write(d);
      if (relay.mode === 'slow') {
        // A registry that reads 64 KiB at a time with pauses: trustgate's writes wait on it.
        client.pause();
        setTimeout(() => client.resume(), 3);
      }
    });
    up.on('data', (d: Buffer) => client.write(d));
    const end = (): void => {
      client.destroy();
      up.destroy();
      sockets.delete(client);
      sockets.delete(up);
    };
    for (const s of [client, up]) {
      s.on('error', end);
      s.on('close', end);
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  relay.url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  relay.close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  };
  return relay;
}

describe('review: upload chunks freed once written (release-written.ts)', { timeout: 300_000 }, () => {
  let registry: RegistryHandle;
  let relay: FaultRelay;
  let gate: TestGate;
  let faulty: TestGate;

  before(async () => {
    proto.transfer = function (this: ArrayBuffer, n?: number) {
      if (n === 0) detaches++;
      return originalTransfer.call(this, n);
    };
    registry = await startRegistry();
    relay = await startFaultRelay(registry);
    const common = {
      users: USERS,
      policy: { access: [{ repos: ['**'], pull: ['publisher'], push: ['publisher'], delete: [] }] },
    };
    gate = await startTestGate({ ...common, registryUrl: registry.url });
    faulty = await startTestGate({ ...common, registryUrl: relay.url });
  });
  after(async () => {
    proto.transfer = originalTransfer;
    await gate?.close();
    await faulty?.close();
    await relay?.close();
    await registry?.stop();
  });

  const token = (g: TestGate): Promise<string> =>
    getToken(g.url, g.ca, 'publisher', USERS.publisher, [`repository:${REPO}:pull,push`]);

  /** Opens an upload session through `g`: the path (with registry:2's _state) to send to. */
  async function begin(g: TestGate, t: string): Promise<string> {
    const r = await request(g.url, g.ca, {
      method: 'POST',
      path: `/v2/${REPO}/blobs/uploads/`,
      headers: { ...bearer(t), 'content-length': '0' },
    });
    assert.equal(r.status, 202, r.body.toString());
    const loc = new URL(String(r.headers['location']), 'https://x');
    return loc.pathname + loc.search;
  }

  /** The head of a monolithic upload PUT (the digest registry:2 checks) of `bytes`. */
  function putHead(g: TestGate, t: string, upload: string, bytes: Buffer, chunked = false): string {
    return (
      `PUT ${upload}&digest=${sha256(bytes)} HTTP/1.1\r\nHost: ${g.host}\r\nAuthorization: Bearer ${t}\r\n` +
      `Content-Type: application/octet-stream\r\n` +
      (chunked ? 'Transfer-Encoding: chunked\r\n\r\n' : `Content-Length: ${bytes.length}\r\n\r\n`)
    );
  }

  /** registry:2 holds exactly `bytes` under their digest. */
  async function assertStored(bytes: Buffer, what: string): Promise<void> {
    const r = await direct(registry.url, 'GET', `/v2/${REPO}/blobs/${sha256(bytes)}`);
    assert.equal(r.status, 200, `${what}: registry GET ${r.status}`);
    assert.equal(sha256(r.body), sha256(bytes), `${what}: the stored bytes are the pushed bytes`);
  }

  it('HELD: pipelined uploads on one keep-alive connection, in tiny and 16 KiB TLS records, chunked and not', async () => {
    const t = await token(gate);
    const a = randomBytes(3 * MiB + 123);
    const b = randomBytes(2 * MiB + 7);
    const c = randomBytes(MiB + 5);
    const [ua, ub, uc] = [await begin(gate, t), await begin(gate, t), await begin(gate, t)];
    const parts: Array<Buffer | string> = [putHead(gate, t, ua, a)];
    // A: one huge write (16 KiB records), its last record shared with B's head.
    parts.push(Buffer.concat([a, Buffer.from(putHead(gate, t, ub, b))]));
    // B: tiny records (97 bytes) for its first 64 KiB, then 1 MiB writes.
    for (let i = 0; i < 64 * 1024; i += 97) parts.push(b.subarray(i, Math.min(i + 97, 64 * 1024)));
    for (let i = 64 * 1024; i < b.length; i += MiB) parts.push(b.subarray(i, i + MiB));
    // C: chunked transfer encoding, odd chunk sizes, the last chunk and the terminator pipelined.
    parts.push(putHead(gate, t, uc, c, true));
    for (let i = 0, n = 1; i < c.length; i += n, n = n * 7 + 1 > 300_000 ? 1 : n * 7 + 1) {
      const piece = c.subarray(i, i + n);
      parts.push(
        Buffer.concat([Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n')]),
      );
    }
    parts.push('0\r\n\r\n');
    const before = detaches;
    const r = await rawExchange(gate.tg.port, gate.ca, parts, { idleMs: 3000, maxMs: 60_000 });
    assert.deepEqual(r.statuses, [201, 201, 201], r.text.slice(0, 2000));
    assert.ok(detaches - before > 100, `upload chunks were released (${detaches - before} detaches)`);
    await assertStored(a, 'A');
    await assertStored(b, 'B');
    await assertStored(c, 'C');
  });

  it('HELD: a client that aborts mid-upload and retries; the gate still relays every byte', async () => {
    const t = await token(gate);
    const blob = randomBytes(6 * MiB);
    const first = await begin(gate, t);
    await new Promise<void>((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port: gate.tg.port, ca: gate.ca, servername: 'localhost' });
      s.on('error', () => resolve());
      s.once('secureConnect', () => {
        s.write(putHead(gate, t, first, blob));
        s.write(blob.subarray(0, 4 * MiB), () => setTimeout(() => (s.destroy(), resolve()), 50));
      });
    });
    const before = detaches;
    const retry = await request(gate.url, gate.ca, {
      method: 'PUT',
      path: `${await begin(gate, t)}&digest=${sha256(blob)}`,
      headers: { ...bearer(t), 'content-type': 'application/octet-stream' },
      body: blob,
    });
    assert.equal(retry.status, 201, retry.body.toString());
    assert.ok(detaches > before, 'the retry released its chunks');
    await assertStored(blob, 'retried');
  });

  it('HELD: a slow registry (writes wait on backpressure), and a registry connection cut mid-upload then retried', async () => {
    const t = await token(faulty);
    const slow = randomBytes(5 * MiB + 1);
    relay.mode = 'slow';
    const before = detaches;
    const r1 = await request(faulty.url, faulty.ca, {
      method: 'PUT',
      path: `${await begin(faulty, t)}&digest=${sha256(slow)}`,
      headers: { ...bearer(t), 'content-type': 'application/octet-stream' },
      body: slow,
    });
    assert.equal(r1.status, 201, r1.body.toString());
    assert.ok(detaches > before, 'chunks were released while the registry read slowly');
    await assertStored(slow, 'slow');

    const cut = randomBytes(6 * MiB);
    const upload = await begin(faulty, t);
    relay.mode = 'cut';
    const r2 = await request(faulty.url, faulty.ca, {
      method: 'PUT',
      path: `${upload}&digest=${sha256(cut)}`,
      headers: { ...bearer(t), 'content-type': 'application/octet-stream' },
      body: cut,
    }).catch((err: Error) => ({ status: 0, body: Buffer.from(err.message) }));
    assert.notEqual(r2.status, 201, 'a cut registry connection is not a stored blob');
    relay.mode = 'pass';
    const r3 = await request(faulty.url, faulty.ca, {
      method: 'PUT',
      path: `${await begin(faulty, t)}&digest=${sha256(cut)}`,
      headers: { ...bearer(t), 'content-type': 'application/octet-stream' },
      body: cut,
    });
    assert.equal(r3.status, 201, r3.body.toString());
    await assertStored(cut, 'retried after a cut');
  });

  it('fixed (final review): registry:2 refusing an upload before its body was read (unknown session) left the connection hanging, the rest of the body never read and a pipelined request never answered; now the answer closes the connection (lingering) and the client retries on a new one', async () => {
    const t = await token(gate);
    const refused = randomBytes(2 * MiB);
    const good = randomBytes(3 * MiB + 17);
    const unknown = `/v2/${REPO}/blobs/uploads/00000000-0000-4000-8000-000000000000?_state=x`;
    const upload = await begin(gate, t);
    const r = await rawExchange(
      gate.tg.port,
      gate.ca,
      [putHead(gate, t, unknown, refused), refused, putHead(gate, t, upload, good), good],
      { idleMs: 3000, maxMs: 60_000 },
    );
    assert.deepEqual(r.statuses, [404], r.text.slice(0, 2000));
    assert.ok(r.closed, 'the connection ends after the early answer instead of hanging');
    assert.match(r.text, /\r\nconnection: close\r\n/i);
    const retry = await rawExchange(gate.tg.port, gate.ca, [putHead(gate, t, upload, good), good], {
      idleMs: 3000,
      maxMs: 60_000,
    });
    assert.deepEqual(retry.statuses, [201], retry.text.slice(0, 2000));
    await assertStored(good, 'retried after an early refusal');
  });

  it('HELD: an mTLS client (identity from its certificate) pushing two pipelined uploads on one connection', async () => {
    const g = await startTestGate({
      registryUrl: registry.url,
      mtls: true,
      policy: {
        access: [{ repos: ['**'], pull: ['mtls:CN=build-01'], push: ['mtls:CN=build-01'], delete: [] }],
      },
    });
    try {
      const client = g.clientCert!;
      const begin = async (): Promise<string> => {
        const r = await request(g.url, g.ca, {
          method: 'POST',
          path: `/v2/${REPO}/blobs/uploads/`,
          headers: { 'content-length': '0' },
          ...client,
        });
        assert.equal(r.status, 202, r.body.toString());
        const loc = new URL(String(r.headers['location']), 'https://x');
        return loc.pathname + loc.search;
      };
      const blobs = [randomBytes(3 * MiB + 11), randomBytes(2 * MiB + 3)];
      const uploads = [await begin(), await begin()];
      const head = (i: number): string =>
        `PUT ${uploads[i]}&digest=${sha256(blobs[i]!)} HTTP/1.1\r\nHost: ${g.host}\r\n` +
        `Content-Type: application/octet-stream\r\nContent-Length: ${blobs[i]!.length}\r\n\r\n`;
      const before = detaches;
      const text = await new Promise<string>((resolve, reject) => {
        const got: Buffer[] = [];
        const s = tls.connect({
          host: '127.0.0.1',
          port: g.tg.port,
          ca: g.ca,
          servername: 'localhost',
          ...client,
        });
        const done = setTimeout(() => s.destroy(), 60_000);
        s.on('data', (b: Buffer) => {
          got.push(b);
          const t = Buffer.concat(got).toString('latin1');
          if ((t.match(/HTTP\/1\.1 \d{3} /g) ?? []).length >= 2) s.end();
        });
        s.on('error', reject);
        s.on('close', () => (clearTimeout(done), resolve(Buffer.concat(got).toString('latin1'))));
        s.once('secureConnect', () => {
          s.write(head(0));
          s.write(Buffer.concat([blobs[0]!, Buffer.from(head(1))]));
          for (let i = 0; i < blobs[1]!.length; i += 5000) s.write(blobs[1]!.subarray(i, i + 5000));
        });
      });
      assert.deepEqual(
        [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1])),
        [201, 201],
        text.slice(0, 2000),
      );
      assert.ok(detaches - before > 100, `upload chunks were released (${detaches - before} detaches)`);
      await assertStored(blobs[0]!, 'mTLS 1');
      await assertStored(blobs[1]!, 'mTLS 2');
    } finally {
      await g.close();
    }
  });

  it("fixed (final review): an audit file's lines keep their shape (no `stream` field, which only tells audit records apart on the main log) and stay redacted", async () => {
    const dir = path.join(gate.dir, 'audit-file-gate');
    const auditFile = path.join(dir, 'audit.log');
    const g = await startTestGate({
      registryUrl: registry.url,
      users: USERS,
      policy: { access: [{ repos: ['**'], pull: ['publisher'], push: ['publisher'], delete: [] }] },
      extra: { log: { level: 'silent', auditFile } },
    });
    try {
      const t = await token(g);
      const r = await request(g.url, g.ca, {
        path: `/v2/${REPO}/manifests/missing?access_token=AUDIT-FILE-SECRET`,
        headers: bearer(t),
      });
      assert.equal(r.status, 404, r.body.toString());
    } finally {
      await g.close().catch(() => undefined);
    }
    let lines: Array<Record<string, unknown>> = [];
    for (let i = 0; i < 50 && lines.length === 0; i++) {
      try {
        lines = readFileSync(auditFile, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as Record<string, unknown>);
      } catch {
        /* not written yet */
      }
      if (lines.length === 0) await new Promise((res) => setTimeout(res, 100));
    }
    const decision = lines.find((l) => l['audit'] === 'decision' && l['route'] === 'manifest');
    assert.ok(decision, `a manifest decision in the audit file: ${JSON.stringify(lines)}`);
    assert.equal(decision['svc'], 'trustgate');
    assert.ok(
      !('stream' in decision),
      `the audit file's line shape is unchanged: ${JSON.stringify(decision)}`,
    );
    assert.ok(!JSON.stringify(lines).includes('AUDIT-FILE-SECRET'));
  });
});
