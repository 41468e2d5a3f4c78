/**
 * The direct blob reader against a real registry:2, driven by a plain HTTP server in this test
 * (the reader's own contract, without trustgate's pipeline around it): its memory bound (reads
 * past `maxActive` go to the general path), a pipelined client that disconnects, and a client
 * already gone before the read starts; and the bytes it hands out while every head and small answer
 * is read into one reused buffer per connection.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { DirectReader, type RelayResult } from '../../src/registry/direct-reader.js';
import { startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { pushBlob } from '../helpers/registry-direct.js';

describe('blob reader against registry:2', { timeout: 60_000 }, () => {
  let registry: RegistryHandle;
  let reader: DirectReader;
  let server: http.Server;
  let port: number;
  let big: string;
  let small: string;
  const outcomes: RelayResult[] = [];
  const lateReads: Array<{ outcome: RelayResult; headersSent: boolean }> = [];

  before(async () => {
    registry = await startRegistry();
    big = await pushBlob(registry.url, 'live/app', randomBytes(8 * 1024 * 1024));
    small = await pushBlob(registry.url, 'live/app', randomBytes(1000));
    const u = new URL(registry.url);
    reader = new DirectReader({ host: u.hostname, port: Number(u.port), timeoutMs: 5000, maxActive: 2 });
    server = http.createServer((req, res) => {
      // /slow/…: the read starts 200 ms late, as after a slow authentication.
      const slow = req.url?.startsWith('/slow/') === true;
      const path = slow ? (req.url ?? '').slice(5) : (req.url ?? '');
      const delay = slow ? new Promise((r) => setTimeout(r, 200)) : Promise.resolve();
      void delay
        .then(() => reader.relay('GET', path, { host: u.host }, res, req.socket))
        .then(
          (o) => {
            outcomes.push(o);
            if (slow) lateReads.push({ outcome: o, headersSent: res.headersSent });
            if (o === 'fallback') res.writeHead(299).end('fallback');
          },
          () => res.writeHead(502).end(),
        );
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as net.AddressInfo).port;
  });
  after(async () => {
    reader?.close();
    server?.closeAllConnections();
    await new Promise((r) => server?.close(r));
    await registry?.stop();
  });

  const until = async (cond: () => boolean, what: string): Promise<void> => {
    for (let i = 0; i < 100 && !cond(); i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(cond(), what);
  };

  /** A GET whose body is not read until `release()`. */
  function stalled(digest: string): { status: Promise<number>; release(): void } {
    let release = (): void => undefined;
    const status = new Promise<number>((resolve, reject) => {
      const req = http.get(
        { host: '127.0.0.1', port, path: `/v2/live/app/blobs/${digest}`, agent: false },
        (res) => {
          res.pause();
          release = () => {
            res.resume();
            req.destroy();
          };
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
    });
    return { status, release: () => release() };
  }

  it('past maxActive reads, a read is handed to the general path instead of holding more buffers', async () => {
    const a = stalled(big);
    const b = stalled(big);
    assert.equal(await a.status, 200);
    assert.equal(await b.status, 200);
    assert.equal(reader.activeReads, 2);
    const c = await new Promise<number>((resolve) =>
      http.get({ host: '127.0.0.1', port, path: `/v2/live/app/blobs/${small}`, agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      }),
    );
    assert.equal(c, 299, 'the third read fell back');
    a.release();
    b.release();
    await until(() => reader.activeReads === 0, 'the stalled reads ended with their clients');
  });

  it('a client that pipelines two GETs and disconnects frees both reads', async () => {
    const sock = net.connect(port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    sock.write(
      `GET /v2/live/app/blobs/${big} HTTP/1.1\r\nHost: x\r\n\r\n` +
        `GET /v2/live/app/blobs/${big} HTTP/1.1\r\nHost: x\r\n\r\n`,
    );
    sock.pause(); // read nothing: the first answer backs up, the second has no socket yet
    await until(() => reader.activeReads === 2, 'both reads started');
    await new Promise((r) => setTimeout(r, 100));
    sock.destroy();
    await until(() => reader.activeReads === 0, `reads still active: ${reader.activeReads}`);
  });

  const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

  it('answers read whole are their own bytes: later reads on the same connection never change them', async () => {
    // 40 KiB spans several reads of the connection's 16 KiB buffer; the small blob fits in the
    // head's read. Sequential fetches reuse one pooled connection, so an answer that still pointed
    // into the reused buffer would be overwritten by the next one.
    const mid = await pushBlob(registry.url, 'live/app', randomBytes(40 * 1024));
    const u = new URL(registry.url);
    const kept: Array<{ digest: string; body: Buffer }> = [];
    for (let i = 0; i < 6; i++) {
      for (const digest of [mid, small]) {
        const got = await reader.fetch('GET', `/v2/live/app/blobs/${digest}`, { host: u.host }, 1 << 20);
        assert.notEqual(got, 'fallback');
        if (got === 'fallback') return;
        assert.equal(got.status, 200);
        kept.push({ digest, body: got.body });
      }
    }
    for (const k of kept) assert.equal(sha(k.body), k.digest, 'a kept answer changed after later reads');
  });

  it('relayed bodies that arrived with their head reach the client intact', async () => {
    // Keep-alive GETs of the small blob, 2 at a time (the reader's maxActive here): its body
    // arrives in the same read as the head, in the connection's reused buffer, and goes to the
    // client after the next read may have landed there.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
    const get = (): Promise<Buffer> =>
      new Promise((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port, path: `/v2/live/app/blobs/${small}`, agent }, (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () =>
              res.statusCode === 200
                ? resolve(Buffer.concat(chunks))
                : reject(new Error(`${res.statusCode}`)),
            );
          })
          .on('error', reject);
      });
    try {
      const bodies = await Promise.all(Array.from({ length: 24 }, get));
      for (const b of bodies) assert.equal(sha(b), small);
    } finally {
      agent.destroy();
    }
  });

  it('a client gone before the read starts: nothing is asked of the registry, nothing written', async () => {
    const req = http.get({ host: '127.0.0.1', port, path: `/slow/v2/live/app/blobs/${big}`, agent: false });
    req.on('error', () => undefined);
    setTimeout(() => req.destroy(), 50);
    await until(() => lateReads.length === 1, 'the late read returned');
    assert.deepEqual(lateReads[0], { outcome: 'done', headersSent: false });
    assert.equal(reader.activeReads, 0);
  });
});
