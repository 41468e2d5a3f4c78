/**
 * The write-idle deadline (issue 12, item 4: upstream pool starvation) on real TLS sockets: a
 * client that stops reading while a response is queued is closed after the deadline; one that
 * keeps reading, and an idle keep-alive connection with nothing queued, are not.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { generateDevCertificates } from '../../src/cli/certs.js';
import { WriteIdleWatch } from '../../src/server/write-idle.js';
import { makeTempDir } from '../helpers/stack.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('server: write-idle deadline', { timeout: 60_000 }, () => {
  let server: tls.Server;
  let ca: string;
  let watch: WriteIdleWatch;
  const closed: string[] = [];
  const open = new Set<tls.TLSSocket>();
  /** What the server does with each connection, by the first line the client sends. */
  const behaviour = new Map<string, (s: tls.TLSSocket) => void>();

  before(async () => {
    const dir = makeTempDir('write-idle');
    const certs = await generateDevCertificates({ dir: path.join(dir, 'certs'), hosts: ['localhost'] });
    ca = readFileSync(certs.caCert, 'utf8');
    watch = new WriteIdleWatch(600, (s) => closed.push(String((s as tls.TLSSocket & { tag?: string }).tag)));
    server = tls.createServer(
      { cert: readFileSync(certs.serverCert), key: readFileSync(certs.serverKey) },
      (s) => {
        watch.watch(s);
        s.on('error', () => undefined);
        s.once('data', (b: Buffer) => {
          const tag = b.toString().trim();
          (s as tls.TLSSocket & { tag?: string }).tag = tag;
          behaviour.get(tag)?.(s);
        });
      },
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  });
  after(async () => {
    watch.close();
    for (const s of open) s.destroy();
    await new Promise((r) => server.close(r));
  });

  /** `mib` MiB written in 1 MiB writes as fast as the client takes them, until it closes. */
  const flood =
    (mib: number) =>
    (s: tls.TLSSocket): void => {
      const chunk = Buffer.alloc(1024 * 1024, 7);
      let left = mib;
      const more = (): void => {
        while (left > 0 && !s.destroyed) {
          left--;
          if (!s.write(chunk)) return void s.once('drain', more);
        }
        s.end();
      };
      more();
    };

  const connect = (tag: string): Promise<tls.TLSSocket> =>
    new Promise((resolve) => {
      const c = tls.connect({
        host: '127.0.0.1',
        port: (server.address() as { port: number }).port,
        ca,
        servername: 'localhost',
      });
      c.on('error', () => undefined);
      c.once('secureConnect', () => {
        c.write(`${tag}\n`);
        resolve(c);
      });
    });

  it('a client that stops reading is closed after the deadline, not before', async () => {
    behaviour.set('stall', flood(32));
    const c = await connect('stall');
    c.once('data', () => c.pause());
    await sleep(300);
    assert.deepEqual(closed, [], 'not before the deadline');
    await sleep(1500);
    assert.deepEqual(closed, ['stall']);
    c.destroy();
  });

  it('a client that pauses for less than the deadline between reads, and an idle connection, stay open', async () => {
    closed.length = 0;
    // More than it can read in its bursts (about 300 MiB/s here), so the transfer never ends.
    behaviour.set('bursty', flood(16 * 1024));
    behaviour.set('idle', () => undefined);
    const bursty = await connect('bursty');
    const idle = await connect('idle');
    // Reads for 100 ms, then takes nothing for 400 ms (the deadline is 600 ms), five times.
    let got = 0;
    bursty.on('data', (b: Buffer) => (got += b.length));
    for (let i = 0; i < 5; i++) {
      bursty.resume();
      await sleep(100);
      bursty.pause();
      await sleep(400);
    }
    assert.deepEqual(closed, []);
    assert.ok(got > 0);
    assert.ok(!idle.destroyed && !bursty.destroyed);
    bursty.destroy();
    idle.destroy();
  });

  it('the deadline must be positive', () => {
    assert.throws(() => new WriteIdleWatch(0), TypeError);
  });
});
