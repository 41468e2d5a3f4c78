import assert from 'node:assert/strict';
import net from 'node:net';
import type http from 'node:http';
import { InternalFailure } from '../core/errors.js';
import { upstreamFallbackChannel, type UpstreamFallbackEvent } from './events.js';
import { HeadReader, requestHead, Unsupported, type Head } from './http1.js';

/**
 * GET/HEAD answers from a plain-http registry:2, read over pooled keep-alive TCP connections:
 * blob bodies relayed to the client (`relay`) with 1 MiB read buffers handed to its TLS socket
 * without a copy, and small answers read whole (`fetch`: manifests, signatures, catalog pages).
 *
 * Why not Node's http client: it reads 64 KiB at a time and copies every body chunk out of its
 * parser, which made trustgate spend about twice nginx's CPU per MiB of blob, and it costs about
 * 100 µs more CPU per small request than this reader (bench/blob.ts, bench/manifest.ts). Here a
 * read fills a buffer, and a relayed buffer is reused only when its write has reached the kernel.
 * Only the response head is parsed, strictly; every answer this reader does not fully understand
 * (no Content-Length, Transfer-Encoding, 1xx, an oversized head) is handed back ('fallback')
 * before a byte reaches the client, and Node's http client asks again.
 *
 * Why not undici: measured against this reader in the same runs (bench/README.md, session 4),
 * undici 8 spent about three times this reader's CPU per MiB of blob (it reads the socket as a
 * stream, 64 KiB at a time, and copies each read into its WebAssembly parser) and about a fifth
 * more per manifest read.
 *
 * One exchange (`Exchange`) runs every request: send, head, body, then complete or failed (or
 * handed back before the head was used), its transitions asserted. What the answer goes to is a
 * sink in undici's handler style (`onHeaders`, `onData` with backpressure, `onComplete` /
 * `onError`): `BufferSink` reads an answer whole, `RelaySink` relays it to a client.
 */

/** Read buffers per transfer that may be on their way to the client at once. */
const IN_FLIGHT = 2;

export type RelayResult = 'done' | 'fallback';

/** A registry answer read whole. */
export interface UpstreamResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export interface DirectReaderOptions {
  host: string;
  port: number;
  /** Time allowed from sending the request to a complete response head. */
  timeoutMs: number;
  bufferBytes?: number;
  /**
   * Idle keep-alive connections kept at most (default 64). With 8, 32 concurrent manifest reads
   * opened and closed a registry connection for every read beyond the eighth (connect, accept and
   * close on both sides).
   */
  maxIdle?: number;
  /**
   * Direct reads at once; beyond this, blob reads take the general forwarder. Each holds up to
   * three read buffers while its client is slow, so this bounds the reader's memory.
   */
  maxActive?: number;
  /**
   * Named as the `source` of the fallback events this reader publishes (upstreamFallbackChannel):
   * the Upstream that owns it. Default: the reader itself.
   */
  source?: object;
}

/** Large read buffers, kept for reuse up to a bound. */
class BufferPool {
  private readonly free: Buffer[] = [];
  /** Buffers this pool handed out: only those come back (never a connection's own buffer). */
  private readonly mine = new WeakSet<Buffer>();
  constructor(
    readonly size: number,
    private readonly keep: number,
  ) {}
  take(): Buffer {
    const b = this.free.pop() ?? Buffer.allocUnsafeSlow(this.size);
    this.mine.add(b);
    return b;
  }
  give(b: Buffer): void {
    if (this.mine.has(b) && this.free.length < this.keep) this.free.push(b);
  }
}

/** Reads before a body is being relayed (a response head, an idle connection) are small. */
const SMALL_READ = 16 * 1024;

/** What a connection's reads and its end are delivered to while an exchange owns it. */
interface ConnectionOwner {
  /** True while a relayed body flows: reads then go into large pooled buffers. */
  readonly largeReads: boolean;
  data(buf: Buffer, n: number): void;
  end(err?: Error): void;
}

/** One TCP connection whose reads land in pooled buffers. */
class Connection {
  readonly socket: net.Socket;
  owner?: ConnectionOwner;
  /** Requests sent on this connection, so a stale keep-alive connection can be retried once. */
  uses = 0;
  /**
   * The buffer every read lands in until a body is relayed (heads, small answers, idle reads),
   * allocated once per connection: a fresh 16 KiB buffer per read cost one slow allocation each
   * and, at about a thousand manifest reads a second, a full garbage collection every second or
   * two (external memory pressure). Valid only until the next read: the exchange hands sinks a
   * copy of what lands here.
   */
  readonly small = Buffer.allocUnsafeSlow(SMALL_READ);

  constructor(opts: DirectReaderOptions, pool: BufferPool) {
    this.socket = net.connect({
      host: opts.host,
      port: opts.port,
      onread: {
        buffer: () => (this.owner?.largeReads ? pool.take() : this.small),
        callback: (n, buf) => {
          if (this.owner) this.owner.data(buf as Buffer, n);
          else {
            // Bytes on an idle connection: a protocol error; the connection is dropped.
            pool.give(buf as Buffer);
            this.socket.destroy();
          }
          return true;
        },
      },
    });
    this.socket.setNoDelay(true);
    this.socket.on('error', (err) => this.owner?.end(err));
    this.socket.on('end', () => this.owner?.end());
    this.socket.on('close', () => this.owner?.end(new Error('upstream connection closed')));
  }
}

/** How a sink steers the exchange it is fed by (undici's dispatch controller). */
interface ExchangeControl {
  /** Stops reading from the registry (the sink's consumer is slow); the body-idle timer stops too. */
  pause(): void;
  resume(): void;
  /** The sink's consumer went away: the exchange ends now (`onAbort`) and its connection is closed. */
  abort(): void;
  /** A body buffer handed to `onData` is no longer in use. */
  recycle(buf: Buffer): void;
}

/**
 * Where an answer goes, in undici's handler style. An exchange calls `onStart` once, `onHeaders`
 * at most once, `onData` only after it, then at most one of `onComplete`, `onError` (the registry
 * failed after the head) or `onAbort` (the sink called `abort`), and `onSettled` last, always. An
 * answer handed back, or failed before `onHeaders` returned, settles without the three.
 */
interface Sink<T> {
  /** `answer`: the upstream timeout bounds the whole answer; `head`: the head, then each idle gap. */
  readonly deadline: 'answer' | 'head';
  /** Body reads go into large pooled buffers (relays) rather than small ones. */
  readonly largeReads: boolean;
  onStart(control: ExchangeControl): void;
  /**
   * The parsed head; may lower `length` and `keepAlive`. Throw `Unsupported` to hand the request
   * back (nothing of the answer was used), anything else to fail the exchange with it.
   */
  onHeaders(head: Head): void;
  /** Body bytes `buf[from, to)`; `buf` is the sink's until it calls `recycle(buf)`. */
  onData(buf: Buffer, from: number, to: number): void;
  /** The body arrived whole: the exchange's result. */
  onComplete(): T;
  /** The registry failed after the head: the result, or throw to reject with it. */
  onError(err: Error): T;
  onAbort(): T;
  onSettled(): void;
}

type State = 'awaitingHead' | 'body' | 'complete' | 'failed' | 'handedBack';

/** The only moves an exchange makes; the last three states are final. */
const TRANSITIONS: Readonly<Record<State, readonly State[]>> = {
  awaitingHead: ['body', 'failed', 'handedBack'],
  body: ['complete', 'failed'],
  complete: [],
  failed: [],
  handedBack: [],
};

interface ExchangeEnv {
  timeoutMs: number;
  pool: BufferPool;
  /** The exchange is over: its connection goes back to the pool or is closed. */
  release(conn: Connection, reusable: boolean): void;
  /** Told why an answer was handed back. */
  handedBack(why: string): void;
}

/**
 * One GET/HEAD on one connection: the request goes out, the head is read and given to the sink,
 * the body's bytes follow (paused while the sink's consumer is slow), and the exchange settles
 * once: complete (the connection may be reused), failed, or handed back. Resolves with the sink's
 * result or 'fallback'; rejects when it failed before the sink took the head (a reused
 * connection the registry had closed rejects with StaleConnection, so it can be sent again).
 */
class Exchange<T> implements ConnectionOwner, ExchangeControl {
  private state: State = 'awaitingHead';
  private readonly headReader: HeadReader;
  private head?: Head;
  private left = 0;
  private paused = false;
  private timedOut = false;
  private deadline?: NodeJS.Timeout;
  private idle?: NodeJS.Timeout;
  private settle?: { resolve: (v: T | 'fallback') => void; reject: (err: unknown) => void };

  constructor(
    private readonly conn: Connection,
    method: string,
    private readonly sink: Sink<T>,
    private readonly env: ExchangeEnv,
  ) {
    this.headReader = new HeadReader(method);
  }

  run(requestText: string): Promise<T | 'fallback'> {
    return new Promise((resolve, reject) => {
      this.settle = { resolve, reject };
      const { conn, env } = this;
      conn.uses++;
      conn.owner = this;
      this.deadline = setTimeout(() => {
        this.timedOut = true;
        const what = this.sink.deadline === 'answer' ? 'no complete answer' : 'no response head';
        this.fail(new Error(`upstream gave ${what} in ${env.timeoutMs} ms`));
      }, env.timeoutMs);
      this.sink.onStart(this);
      if (this.over) return;
      // latin1: header bytes 0x80-0xff go out as the client sent them (Node reads them as latin1).
      conn.socket.write(requestText, 'latin1');
      if (conn.socket.isPaused()) conn.socket.resume();
    });
  }

  get largeReads(): boolean {
    return this.state === 'body' && this.sink.largeReads;
  }

  private get over(): boolean {
    return TRANSITIONS[this.state].length === 0;
  }

  data(buf: Buffer, n: number): void {
    const { pool } = this.env;
    if (this.over) return pool.give(buf);
    let start = 0;
    if (this.state === 'awaitingHead') {
      let got: ReturnType<HeadReader['push']>;
      try {
        got = this.headReader.push(buf, n);
      } catch (err) {
        pool.give(buf);
        return this.handBack(err);
      }
      if (!got) return pool.give(buf);
      if (!this.takeHead(got.head)) return pool.give(buf);
      start = got.bodyStart;
    }
    const take = Math.min(this.left, n - start);
    // Policy: bytes past the declared length are never used, and the connection that carried them
    // is never reused (they could be read as a second response).
    if (n - start > take && this.head) this.head.keepAlive = false;
    this.left -= take;
    if (take > 0 && buf === this.conn.small) {
      // The connection's reused buffer: the sink keeps or relays a copy, since the next read
      // lands there again.
      this.sink.onData(Buffer.from(buf.subarray(start, start + take)), 0, take);
    } else if (take > 0) this.sink.onData(buf, start, start + take);
    else pool.give(buf);
    if (this.state !== 'body') return; // the sink aborted
    if (this.left === 0) this.complete();
    else this.watchIdle();
  }

  end(err?: Error): void {
    if (this.over) return;
    this.fail(err ?? new Error('upstream closed before the answer ended'));
  }

  pause(): void {
    if (this.over || this.paused) return;
    this.paused = true;
    this.conn.socket.pause();
    clearTimeout(this.idle);
    this.idle = undefined;
  }

  resume(): void {
    if (this.over || !this.paused) return;
    this.paused = false;
    this.conn.socket.resume();
    this.watchIdle();
  }

  abort(): void {
    if (this.over) return;
    this.finish('failed', false, () => this.sink.onAbort());
  }

  recycle(buf: Buffer): void {
    this.env.pool.give(buf);
  }

  /** Gives the head to the sink; false when the exchange ended there (handed back or failed). */
  private takeHead(head: Head): boolean {
    try {
      this.sink.onHeaders(head);
    } catch (err) {
      if (err instanceof Unsupported) this.handBack(err);
      else this.finish('failed', false, () => raise(err));
      return false;
    }
    this.head = head;
    this.left = head.length;
    this.to('body');
    if (this.sink.deadline === 'head') clearTimeout(this.deadline);
    return true;
  }

  /**
   * Once the body flows, a registry that sends nothing for the upstream timeout while this
   * exchange is not holding it back (paused for a slow client) fails it.
   */
  private watchIdle(): void {
    if (this.sink.deadline === 'answer' || this.paused || this.over) return;
    if (this.idle) this.idle.refresh();
    else {
      const ms = this.env.timeoutMs;
      this.idle = setTimeout(() => this.fail(new Error(`upstream sent no body bytes for ${ms} ms`)), ms);
    }
  }

  private complete(): void {
    this.finish('complete', this.head?.keepAlive === true, () => this.sink.onComplete());
  }

  private handBack(err: unknown): void {
    this.finish('handedBack', false, () => 'fallback');
    this.env.handedBack(err instanceof Error ? err.message : String(err));
  }

  /** The registry failed: before the head the exchange rejects; after it the sink decides. */
  private fail(err: Error): void {
    if (this.over) return;
    if (this.state === 'awaitingHead') {
      const stale = this.headReader.empty && this.conn.uses > 1 && !this.timedOut;
      this.finish('failed', false, () => raise(stale ? new StaleConnection(err) : err));
      return;
    }
    this.finish('failed', false, () => this.sink.onError(err));
  }

  /** Moves to a final state, frees the connection, and settles with what `outcome` gives or throws. */
  private finish(next: State, reusable: boolean, outcome: () => T | 'fallback'): void {
    this.to(next);
    clearTimeout(this.deadline);
    clearTimeout(this.idle);
    this.conn.owner = undefined;
    this.env.release(this.conn, reusable);
    const settle = this.settle;
    assert.ok(settle, 'an exchange settles only after it ran');
    try {
      settle.resolve(outcome());
    } catch (err) {
      settle.reject(err);
    } finally {
      this.sink.onSettled();
    }
  }

  private to(next: State): void {
    if (!TRANSITIONS[this.state].includes(next)) assert.fail(`upstream exchange: ${this.state} → ${next}`);
    this.state = next;
  }
}

/** Reads an answer whole, at most `maxBytes` of body (more is a 502, never truncated). */
class BufferSink implements Sink<UpstreamResponse> {
  readonly deadline = 'answer';
  readonly largeReads = false;
  private head?: Head;
  private readonly chunks: Buffer[] = [];
  private size = 0;

  constructor(private readonly maxBytes: number) {}

  onStart(): void {}

  onHeaders(head: Head): void {
    if (head.length > this.maxBytes) throw responseTooLarge(this.maxBytes);
    this.head = head;
  }

  onData(buf: Buffer, from: number, to: number): void {
    this.chunks.push(buf.subarray(from, to));
    this.size += to - from;
  }

  onComplete(): UpstreamResponse {
    assert.ok(this.head, 'an answer completes after its head');
    return {
      status: this.head.status,
      headers: this.head.headers as http.IncomingHttpHeaders,
      // Every chunk is already the sink's own copy (see Exchange.data): one needs no second copy,
      // and a manifest usually arrives in the read that carried its head.
      body: this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size),
    };
  }

  onError(err: Error): never {
    throw err;
  }

  onAbort(): never {
    throw new Error('upstream read aborted');
  }

  onSettled(): void {}
}

/**
 * Relays an answer to a client: the head as it came (less hop-by-hop headers), then each read
 * buffer handed to the client's socket without a copy, at most IN_FLIGHT of them on their way at
 * once (reading pauses beyond that), each reused when its write has reached the kernel.
 */
class RelaySink implements Sink<RelayResult> {
  readonly deadline = 'head';
  readonly largeReads = true;
  private control?: ExchangeControl;
  private inFlight = 0;

  constructor(
    private readonly res: http.ServerResponse,
    private readonly client: net.Socket,
  ) {}

  /** The client went away: the upstream transfer stops with it. */
  private readonly onClientClose = (): void => this.control?.abort();

  onStart(control: ExchangeControl): void {
    this.control = control;
    // The response's own 'close' does not come for a pipelined request whose turn never came;
    // the connection's does.
    this.res.once('close', this.onClientClose);
    this.client.once('close', this.onClientClose);
  }

  onHeaders(head: Head): void {
    // Policy: a registry failure is never relayed (its body names storage paths): handed back
    // before a byte went out, the general path answers it with trustgate's own error.
    if (head.status >= 500) throw new Unsupported(`registry answered ${head.status}`);
    if (head.status === 416) {
      // registry:2 (2.8) declares the whole blob's length on a 416 and sends a few bytes of text:
      // relayed as it is, the client would wait for bytes that never come.
      // Policy: the status and Content-Range go out with an empty body; the connection is not reused.
      head.headers['content-length'] = '0';
      head.length = 0;
      head.keepAlive = false;
    }
    try {
      this.res.writeHead(head.status, head.headers);
    } catch (err) {
      // Node refused a header the registry sent: nothing went out yet.
      throw new Unsupported(String(err));
    }
  }

  onData(buf: Buffer, from: number, to: number): void {
    const control = this.control;
    assert.ok(control, 'data comes after the start');
    if (this.res.destroyed) {
      control.recycle(buf);
      return control.abort();
    }
    this.inFlight++;
    this.res.write(buf.subarray(from, to), () => {
      this.inFlight--;
      control.recycle(buf);
      if (this.inFlight < IN_FLIGHT) control.resume();
    });
    if (this.inFlight >= IN_FLIGHT) control.pause();
  }

  onComplete(): RelayResult {
    this.res.end();
    return 'done';
  }

  onError(err: Error): RelayResult {
    // Policy: after the head went out, a broken upstream ends the client's response early, so the
    // client sees a short body (and its digest check fails), never a complete one.
    this.res.destroy(err);
    return 'done';
  }

  onAbort(): RelayResult {
    return 'done';
  }

  onSettled(): void {
    this.res.off('close', this.onClientClose);
    this.client.off('close', this.onClientClose);
  }
}

export class DirectReader {
  private readonly idle: Connection[] = [];
  private readonly pool: BufferPool;
  private readonly maxIdle: number;
  private readonly maxActive: number;
  private readonly env: ExchangeEnv;
  private active = 0;

  constructor(private readonly opts: DirectReaderOptions) {
    this.maxIdle = opts.maxIdle ?? 64;
    this.maxActive = opts.maxActive ?? 16;
    this.pool = new BufferPool(opts.bufferBytes ?? 1024 * 1024, 2 * IN_FLIGHT + 2);
    const source = opts.source ?? this;
    this.env = {
      timeoutMs: opts.timeoutMs,
      pool: this.pool,
      release: (conn, reusable) => this.release(conn, reusable),
      handedBack: (why) => {
        if (upstreamFallbackChannel.hasSubscribers) {
          upstreamFallbackChannel.publish({ source, why } satisfies UpstreamFallbackEvent);
        }
      },
    };
  }

  /**
   * Relays one GET/HEAD from registry:2 to `res`. Resolves 'fallback' when nothing was sent and the
   * general forwarder should take the request (the upstream answer was not one this reader
   * relays, or the request has header bytes it will not serialise). Rejects, with nothing sent,
   * when the registry could not be reached or gave no head in time. Once the head is relayed,
   * failures end the client's response early (a truncated transfer, never a complete-looking one).
   */
  async relay(
    method: 'GET' | 'HEAD',
    path: string,
    headers: http.OutgoingHttpHeaders,
    res: http.ServerResponse,
    client: net.Socket,
  ): Promise<RelayResult> {
    // The client left while the request was authorised: nothing to read for it.
    if (client.destroyed || res.destroyed) return 'done';
    // Policy: the reader's memory is bounded; past `maxActive` reads, blobs take the general path.
    if (this.active >= this.maxActive) return 'fallback';
    let head: string;
    try {
      head = requestHead(method, path, headers);
    } catch {
      return 'fallback';
    }
    this.active++;
    try {
      return await this.withConnection((conn) =>
        new Exchange(conn, method, new RelaySink(res, client), this.env).run(head),
      );
    } finally {
      this.active--;
    }
  }

  /**
   * One GET/HEAD answer read whole (manifests, signatures, catalog pages): at most `maxBytes` of
   * body (more is a 502, never truncated), the whole answer within the upstream timeout.
   * Resolves 'fallback' when the answer is not one this reader parses (nothing is kept of it).
   */
  async fetch(
    method: 'GET' | 'HEAD',
    path: string,
    headers: http.OutgoingHttpHeaders,
    maxBytes: number,
  ): Promise<UpstreamResponse | 'fallback'> {
    let head: string;
    try {
      head = requestHead(method, path, headers);
    } catch {
      return 'fallback';
    }
    return this.withConnection((conn) =>
      new Exchange(conn, method, new BufferSink(maxBytes), this.env).run(head),
    );
  }

  /**
   * Runs one exchange on an idle pooled connection or a new one. A keep-alive connection the
   * registry closed meanwhile fails before any answer: GET and HEAD are safe to send once more,
   * on a new connection.
   */
  private async withConnection<T>(run: (conn: Connection) => Promise<T>): Promise<T> {
    let reused = this.idle.pop();
    while (reused && (reused.socket.destroyed || reused.socket.readyState !== 'open')) {
      reused.socket.destroy();
      reused = this.idle.pop();
    }
    try {
      return await run(reused ?? new Connection(this.opts, this.pool));
    } catch (err) {
      if (reused && err instanceof StaleConnection) return await run(new Connection(this.opts, this.pool));
      throw err instanceof StaleConnection ? err.cause : err;
    }
  }

  /** An exchange is over: the connection goes back to the pool or is closed. */
  private release(conn: Connection, reusable: boolean): void {
    if (reusable && this.idle.length < this.maxIdle) {
      // Reading while idle, so a close by the registry is noticed before the next use.
      conn.socket.resume();
      this.idle.push(conn);
    } else conn.socket.destroy();
  }

  /** Direct reads at once at most (`maxActive`). */
  get capacity(): number {
    return this.maxActive;
  }

  /** Direct reads in progress. */
  get activeReads(): number {
    return this.active;
  }

  close(): void {
    for (const c of this.idle.splice(0)) c.socket.destroy();
  }
}

/** A registry answer over what its reader may buffer: refused, never truncated. */
export function responseTooLarge(maxBytes: number): InternalFailure {
  return new InternalFailure('upstream-body-too-large', `upstream response exceeds ${maxBytes} bytes`);
}

function raise(err: unknown): never {
  throw err;
}

/** A reused connection failed before any answer (the registry had closed it). */
class StaleConnection extends Error {
  constructor(override readonly cause: Error) {
    super(cause.message);
  }
}
