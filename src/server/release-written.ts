import type { Writable } from 'node:stream';

/** Chunks smaller than this are left to the garbage collector: too few bytes to matter. */
const MIN_RELEASED_BYTES = 4096;

/**
 * Makes `out` free the memory of each whole-buffer chunk written to it as soon as the write has
 * completed (reached the kernel), instead of when V8 next collects.
 *
 * Why: an upload reaches trustgate as one fresh 16 KiB buffer per TLS record, relayed to the
 * registry and then garbage. V8 frees a buffer only when a collection finds its holder dead, and
 * on a relay (little JavaScript garbage per byte) Node 24's young generation rarely fills, so dead
 * upload buffers piled up to V8's 64 MiB external-memory trigger: about 80 MiB of peak RSS while
 * streaming an upload (bench/rss.ts; bench/README.md, session 5 memory). Detaching a buffer
 * (`ArrayBuffer.prototype.transfer(0)`) frees its memory at once.
 *
 * Policy: only a Buffer that covers its whole ArrayBuffer is released, so no other view can
 * share its memory (a chunk that also held request headers, or Node's pooled small buffers, are
 * slices and are left alone). The caller guarantees that nothing else keeps the chunk: here, the
 * request body piped to the registry, which nobody else reads.
 */
export function releaseChunksOnceWritten(out: Writable): void {
  const write = out.write;
  out.write = function (this: Writable, chunk: unknown, ...rest: unknown[]): boolean {
    // pipe() writes with the chunk alone; any other call goes through untouched.
    if (rest.length > 0 || !ownsWholeBuffer(chunk)) {
      return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
    }
    return (write as (c: Buffer, cb: (err?: Error | null) => void) => boolean).call(this, chunk, (err) => {
      if (!err) release(chunk);
    });
  } as Writable['write'];
}

/** ES2024 ArrayBuffer members (Node 24 has them; this project's TypeScript lib predates them). */
interface Detachable {
  readonly detached: boolean;
  transfer(newLength?: number): ArrayBuffer;
}

function ownsWholeBuffer(chunk: unknown): chunk is Buffer {
  return (
    Buffer.isBuffer(chunk) &&
    chunk.byteLength >= MIN_RELEASED_BYTES &&
    chunk.byteOffset === 0 &&
    chunk.buffer instanceof ArrayBuffer &&
    chunk.byteLength === chunk.buffer.byteLength &&
    !(chunk.buffer as unknown as Detachable).detached
  );
}

function release(chunk: Buffer): void {
  try {
    (chunk.buffer as unknown as Detachable).transfer(0);
  } catch {
    // A buffer that cannot be detached is left to the garbage collector.
  }
}
