import type net from 'node:net';

/**
 * The write-idle deadline (issue 12, item 4: upstream pool starvation). A client connection that
 * has response bytes waiting and accepts none of them for `idleMs` is destroyed. Its response
 * closes with it, and the relay feeding that response (DirectReader or http-proxy) ends and frees
 * its upstream read, so a client that asks for a blob and never reads holds a registry
 * connection for at most this long.
 *
 * Progress is a write reaching the kernel: `bytesWritten - writableLength` (bytes handed to the
 * socket minus those still queued or in flight) grows. That is coarse: writes are up to 1 MiB
 * (DirectReader), and Linux wakes a blocked writer only when about a third of its send buffer
 * (up to 4 MiB) has drained. A client that reads steadily must take roughly 1.5 MiB per deadline:
 * with the default 30 s, one slower than about 50 KiB/s can be cut (raise limits.writeIdleSeconds
 * for such links). A client that pauses for less than the deadline between reads is never cut. A
 * connection with nothing queued (idle keep-alive, a request being read, a slow registry) is never
 * write-idle.
 *
 * One timer sweeps every watched connection (no listener per chunk: per-chunk work measurably
 * slowed blob streaming, bench/blob.ts).
 */
export class WriteIdleWatch {
  private readonly sockets = new Map<net.Socket, { done: number; since: number }>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly idleMs: number,
    private readonly onIdle: (socket: net.Socket) => void = () => undefined,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!Number.isFinite(idleMs) || idleMs <= 0) {
      throw new TypeError(`write-idle deadline must be a positive number of milliseconds (got ${idleMs})`);
    }
    // The deadline is met to within a quarter of itself, and at most a second late.
    this.timer = setInterval(() => this.sweep(), Math.max(25, Math.min(1000, idleMs / 4)));
    this.timer.unref();
  }

  /** Watches one client connection until it closes. */
  watch(socket: net.Socket): void {
    if (socket.destroyed) return;
    this.sockets.set(socket, { done: 0, since: this.now() });
    socket.once('close', () => this.sockets.delete(socket));
  }

  /** Connections watched. */
  get size(): number {
    return this.sockets.size;
  }

  private sweep(): void {
    const now = this.now();
    for (const [socket, state] of this.sockets) {
      const queued = socket.writableLength;
      const done = socket.bytesWritten - queued;
      if (queued === 0 || done !== state.done) {
        state.done = done;
        state.since = now;
        continue;
      }
      if (now - state.since < this.idleMs) continue;
      // Policy: a response the client has accepted nothing of for the deadline is cut (a
      // truncated transfer, never one that looks complete), and its relay stops with it.
      this.sockets.delete(socket);
      this.onIdle(socket);
      socket.destroy();
    }
  }

  close(): void {
    clearInterval(this.timer);
    this.sockets.clear();
  }
}
