/**
 * releaseChunksOnceWritten (src/server/release-written.ts), the upload relay's memory bound: over a
 * real loopback TCP connection, chunks piped into the wrapped socket arrive intact and in order,
 * and afterwards exactly the chunks that own their whole ArrayBuffer (and are not tiny) have been
 * detached, their memory freed without waiting for a garbage collection; slices of a shared
 * buffer, small chunks and writes that bring their own callback are left alone. The memory effect
 * itself is measured by bench/rss.ts.
 */
import assert from 'node:assert/strict';
import { createHash, randomFillSync } from 'node:crypto';
import net from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { it } from 'node:test';
import { releaseChunksOnceWritten } from '../../src/server/release-written.js';

function isDetached(b: Buffer): boolean {
  return (b.buffer as unknown as { detached: boolean }).detached;
}

it('frees whole-buffer chunks once written, leaves shared and small ones, and delivers every byte', async () => {
  // What a TLS socket hands the relay: one fresh 16 KiB buffer per record.
  const whole = Array.from({ length: 64 }, () => randomFillSync(Buffer.allocUnsafeSlow(16 * 1024)));
  // A body chunk that shares its memory with other bytes (e.g. the request head): a slice.
  const shared = randomFillSync(Buffer.allocUnsafeSlow(32 * 1024));
  const slice = shared.subarray(8 * 1024, 24 * 1024);
  const small = randomFillSync(Buffer.allocUnsafeSlow(1024));
  const chunks = [...whole.slice(0, 32), slice, small, ...whole.slice(32)];
  const expected = createHash('sha256');
  let expectedBytes = 0;
  for (const c of chunks) {
    expected.update(c);
    expectedBytes += c.length;
  }
  const expectedDigest = expected.digest('hex');

  let received = 0;
  const got = createHash('sha256');
  const server = net.createServer((s) => {
    // A slow reader at first, so pipe() meets backpressure through the wrapped write.
    s.pause();
    setTimeout(() => s.resume(), 50);
    s.on('data', (b: Buffer) => {
      received += b.length;
      got.update(b);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  try {
    const closed = new Promise<void>((r) => server.once('connection', (s) => s.once('close', () => r())));
    const out = net.connect({ host: '127.0.0.1', port });
    releaseChunksOnceWritten(out);
    await pipeline(Readable.from(chunks, { objectMode: false }), out);
    await closed;
  } finally {
    server.close();
  }

  assert.equal(received, expectedBytes);
  assert.equal(
    got.digest('hex'),
    expectedDigest,
    'every byte arrived, in order, before its buffer was freed',
  );
  for (const [i, c] of whole.entries()) {
    assert.ok(isDetached(c), `whole chunk ${i} was freed after its write`);
    assert.equal(c.length, 0);
  }
  assert.ok(!isDetached(shared), 'a slice of a shared buffer is never freed');
  assert.equal(slice.length, 16 * 1024);
  assert.ok(!isDetached(small), 'a small chunk is left to the garbage collector');
});

it('a write with its own callback or encoding goes through untouched', async () => {
  const server = net.createServer((s) => s.resume());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  try {
    const out = net.connect({ host: '127.0.0.1', port });
    releaseChunksOnceWritten(out);
    const b = randomFillSync(Buffer.allocUnsafeSlow(16 * 1024));
    let called = false;
    await new Promise<void>((resolve, reject) =>
      out.write(b, (err) => {
        called = true;
        if (err) reject(err);
        else resolve();
      }),
    );
    assert.ok(called);
    assert.ok(!isDetached(b), "the caller's callback owns the buffer's fate");
    out.end();
    await new Promise<void>((r) => out.once('close', () => r()));
  } finally {
    server.close();
  }
});
