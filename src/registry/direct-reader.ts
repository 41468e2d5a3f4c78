import net from 'node:net';
import type http from 'node:http';
import { InternalFailure } from '../core/errors.js';
import { stripHopByHop, type UpstreamResponse } from './upstream.js';

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
 */

const HEAD_LIMIT = 64 * 1024;
/** Read buffers per transfer that may be on their way to the client at once. */
const IN_FLIGHT = 2;
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

export type RelayResult = 'done' | 'fallback';

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
  /** Told why an answer was handed back to the general path (for the log). */
  onFallback?: (why: string) => void;
}

interface Head {
  status: number;
  headers: http.OutgoingHttpHeaders;
  /** Body bytes to relay; 0 for HEAD, 204, 304. */
  length: number;
  keepAlive: boolean;
}

/** Thrown for an upstream response outside what this reader relays itself. */
class Unsupported extends Error {}

/** Parses a response head (status line and fields, without the final CRLF CRLF). */
export function parseResponseHead(text: string, method: string): Head {
  const lines = text.split('\r\n');
  const status = /^HTTP\/1\.([01]) ([1-5]\d\d)(?: [^\r\n]*)?$/.exec(lines[0] ?? '');
  if (!status) throw new Unsupported(`bad status line ${JSON.stringify((lines[0] ?? '').slice(0, 80))}`);
  const code = Number(status[2]);
  if (code < 200) throw new Unsupported(`interim response ${code}`);
  const headers: Record<string, string | string[]> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1).trim();
    // Policy: no obs-fold, no whitespace before the colon, no control bytes: a head another
    // parser could read differently is not relayed by this one.
    if (colon <= 0 || !TOKEN.test(name) || !FIELD_VALUE.test(value)) {
      throw new Unsupported(`bad header line ${JSON.stringify(line.slice(0, 80))}`);
    }
    const prev = headers[name];
    headers[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value];
  }
  if (headers['transfer-encoding'] !== undefined) throw new Unsupported('transfer-encoding');
  const cl = headers['content-length'];
  const noBody = method === 'HEAD' || code === 204 || code === 304;
  if (typeof cl !== 'string' || !/^\d{1,15}$/.test(cl)) {
    if (!noBody || cl !== undefined) throw new Unsupported('no single valid content-length');
  }
  const connection = String(headers['connection'] ?? '').toLowerCase();
  const keepAlive = status[1] === '1' && !/\bclose\b/.test(connection);
  stripHopByHop(headers);
  return { status: code, headers, length: noBody ? 0 : Number(cl), keepAlive };
}

/** Collects a response head across reads. */
class HeadReader {
  private text = '';
  constructor(private readonly method: string) {}

  /** No byte of the answer has arrived yet. */
  get empty(): boolean {
    return this.text === '';
  }

  /**
   * Adds one read; returns the parsed head and where the body starts in this read once the head
   * is complete. Throws (Unsupported) for a head this reader does not relay or over 64 KiB.
   */
  push(buf: Buffer, n: number): { head: Head; bodyStart: number } | undefined {
    const before = this.text.length;
    this.text += buf.toString('latin1', 0, n);
    const end = this.text.indexOf('\r\n\r\n');
    if (end < 0) {
      if (this.text.length > HEAD_LIMIT) throw new Unsupported('response head over 64 KiB');
      return undefined;
    }
    return { head: parseResponseHead(this.text.slice(0, end), this.method), bodyStart: end + 4 - before };
  }
}

/** Serialises a GET/HEAD request; refuses header bytes that could split it. */
function requestHead(method: string, path: string, headers: http.OutgoingHttpHeaders): string {
  let out = `${method} ${path} HTTP/1.1\r\n`;
  for (const [name, raw] of Object.entries(headers)) {
    if (raw === undefined) continue;
    for (const v of Array.isArray(raw) ? raw : [raw]) {
      const value = String(v);
      if (!TOKEN.test(name) || !FIELD_VALUE.test(value)) throw new Unsupported(`header ${name}`);
      out += `${name}: ${value}\r\n`;
    }
  }
  return `${out}\r\n`;
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

/** What a connection's reads are delivered to while a transfer owns it. */
interface Sink {
  /** True once the head is relayed: reads then go into large pooled buffers. */
  relaying: boolean;
  data(buf: Buffer, n: number): void;
  end(err?: Error): void;
}

/** Reads before a body is being relayed (a response head, an idle connection) are small. */
const SMALL_READ = 16 * 1024;
const EMPTY = Buffer.alloc(0);

/** One TCP connection whose reads land in pooled buffers. */
class Connection {
  readonly socket: net.Socket;
  sink?: Sink;
  /** Requests sent on this connection, so a stale keep-alive connection can be retried once. */
  uses = 0;
  /**
   * The buffer every read lands in until a body is relayed (heads, small answers, idle reads),
   * allocated once per connection: a fresh 16 KiB buffer per read cost one slow allocation each
   * and, at about a thousand manifest reads a second, a full garbage collection every second or
   * two (external memory pressure). Valid only until the next read, so sinks copy what they keep.
   */
  readonly small = Buffer.allocUnsafeSlow(SMALL_READ);

  constructor(opts: DirectReaderOptions, pool: BufferPool) {
    this.socket = net.connect({
      host: opts.host,
      port: opts.port,
      onread: {
        buffer: () => (this.sink?.relaying ? pool.take() : this.small),
        callback: (n, buf) => {
          if (this.sink) this.sink.data(buf as Buffer, n);
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
    this.socket.on('error', (err) => this.sink?.end(err));
    this.socket.on('end', () => this.sink?.end());
    this.socket.on('close', () => this.sink?.end(new Error('upstream connection closed')));
  }
}

export class DirectReader {
  private readonly idle: Connection[] = [];
  private readonly pool: BufferPool;
  private readonly maxIdle: number;
  private readonly maxActive: number;
  private active = 0;

  constructor(private readonly opts: DirectReaderOptions) {
    this.maxIdle = opts.maxIdle ?? 64;
    this.maxActive = opts.maxActive ?? 16;
    this.pool = new BufferPool(opts.bufferBytes ?? 1024 * 1024, 2 * IN_FLIGHT + 2);
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
      return await this.withConnection((conn) => this.exchange(conn, method, head, res, client));
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
    return this.withConnection((conn) => this.exchangeWhole(conn, method, head, maxBytes));
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
    conn.sink = undefined;
    if (reusable && this.idle.length < this.maxIdle) {
      // Reading while idle, so a close by the registry is noticed before the next use.
      conn.socket.resume();
      this.idle.push(conn);
    } else conn.socket.destroy();
  }

  private exchangeWhole(
    conn: Connection,
    method: string,
    requestText: string,
    maxBytes: number,
  ): Promise<UpstreamResponse | 'fallback'> {
    conn.uses++;
    return new Promise((resolve, reject) => {
      const head = new HeadReader(method);
      let parsed: Head | undefined;
      let left = 0;
      // Reads land in the connection's reused buffer: the body is copied into its own buffer.
      let body = EMPTY;
      let filled = 0;
      let finished = false;
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        fail(new Error(`upstream gave no complete answer in ${this.opts.timeoutMs} ms`));
      }, this.opts.timeoutMs);
      const end = (reusable: boolean): void => {
        finished = true;
        clearTimeout(timer);
        this.release(conn, reusable);
      };
      const fail = (err: Error): void => {
        if (finished) return;
        end(false);
        reject(!parsed && head.empty && conn.uses > 1 && !timedOut ? new StaleConnection(err) : err);
      };
      const complete = (): void => {
        if (finished || !parsed) return;
        end(parsed.keepAlive);
        resolve({ status: parsed.status, headers: parsed.headers as http.IncomingHttpHeaders, body });
      };
      conn.sink = {
        relaying: false,
        data: (buf, n) => {
          if (finished) return;
          let start = 0;
          if (!parsed) {
            let got: ReturnType<HeadReader['push']>;
            try {
              got = head.push(buf, n);
            } catch (err) {
              this.opts.onFallback?.(err instanceof Error ? err.message : String(err));
              end(false);
              return resolve('fallback');
            }
            if (!got) return;
            parsed = got.head;
            start = got.bodyStart;
            left = parsed.length;
            if (left > maxBytes) {
              end(false);
              return reject(
                new InternalFailure('upstream-body-too-large', `upstream response exceeds ${maxBytes} bytes`),
              );
            }
            body = left > 0 ? Buffer.allocUnsafe(left) : EMPTY;
          }
          const take = Math.min(left, n - start);
          // Policy: bytes past the declared length are dropped with the connection.
          if (n - start > take) parsed.keepAlive = false;
          if (take > 0) filled += buf.copy(body, filled, start, start + take);
          left -= take;
          if (left === 0) complete();
        },
        end: (err) => {
          if (finished) return;
          if (parsed && left === 0) return complete();
          fail(err ?? new Error('upstream closed before the answer ended'));
        },
      };
      conn.socket.write(requestText, 'latin1');
      if (conn.socket.isPaused()) conn.socket.resume();
    });
  }

  private exchange(
    conn: Connection,
    method: string,
    requestText: string,
    res: http.ServerResponse,
    client: net.Socket,
  ): Promise<RelayResult> {
    const { socket } = conn;
    const pool = this.pool;
    conn.uses++;
    return new Promise<RelayResult>((resolve, reject) => {
      const headReader = new HeadReader(method);
      let parsed: Head | undefined;
      let left = 0;
      let inFlight = 0;
      let finished = false;
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        fail(new Error(`upstream gave no response head in ${this.opts.timeoutMs} ms`));
      }, this.opts.timeoutMs);

      // Once the body flows, a registry that sends nothing for the upstream timeout while this
      // reader is not holding it back (paused for a slow client) ends the transfer early.
      let stall: NodeJS.Timeout | undefined;
      const watchStall = (on: boolean): void => {
        if (!on || finished) {
          clearTimeout(stall);
          stall = undefined;
        } else if (stall) stall.refresh();
        else {
          stall = setTimeout(
            () => fail(new Error(`upstream sent no body bytes for ${this.opts.timeoutMs} ms`)),
            this.opts.timeoutMs,
          );
        }
      };
      const detach = (reusable: boolean): void => {
        finished = true;
        clearTimeout(timer);
        watchStall(false);
        res.off('close', onClientClose);
        client.off('close', onClientClose);
        this.release(conn, reusable);
      };
      const finish = (outcome: RelayResult, reusable: boolean): void => {
        if (finished) return;
        detach(reusable);
        resolve(outcome);
      };
      const fail = (err: Error): void => {
        if (finished) return;
        if (!parsed) {
          detach(false);
          reject(headReader.empty && conn.uses > 1 && !timedOut ? new StaleConnection(err) : err);
          return;
        }
        // Policy: after the head went out, a broken upstream ends the client's response early, so
        // the client sees a short body (and its digest check fails), never a complete one.
        res.destroy(err);
        finish('done', false);
      };
      const onClientClose = (): void => {
        // The client went away: the upstream transfer stops with it.
        if (!finished) finish('done', false);
      };
      // The response's own 'close' does not come for a pipelined request whose turn never came;
      // the connection's does.
      res.once('close', onClientClose);
      client.once('close', onClientClose);

      const release = (buf: Buffer) => (): void => {
        inFlight--;
        pool.give(buf);
        if (!finished && inFlight < IN_FLIGHT && socket.isPaused()) {
          socket.resume();
          watchStall(true);
        }
      };
      const relay = (buf: Buffer, from: number, to: number): void => {
        if (res.destroyed) {
          pool.give(buf);
          finish('done', false);
          return;
        }
        if (from === to) {
          pool.give(buf);
          return;
        }
        if (buf === conn.small) {
          // The connection's reused buffer (the read that held the head): its bytes are copied,
          // since the next read may land in it before this write has gone out.
          res.write(Buffer.from(buf.subarray(from, to)));
          return;
        }
        inFlight++;
        res.write(buf.subarray(from, to), release(buf));
        if (inFlight >= IN_FLIGHT) {
          socket.pause();
          watchStall(false);
        }
      };
      const bodyDone = (): void => {
        res.end();
        finish('done', parsed?.keepAlive === true);
      };

      const sink: Sink = {
        relaying: false,
        data: (buf, n) => {
          if (finished) return pool.give(buf);
          let start = 0;
          if (!parsed) {
            let got: ReturnType<HeadReader['push']>;
            try {
              got = headReader.push(buf, n);
            } catch (err) {
              pool.give(buf);
              return fallbackNow(err instanceof Error ? err.message : String(err));
            }
            if (!got) return pool.give(buf);
            parsed = got.head;
            clearTimeout(timer);
            if (parsed.status === 416) {
              // registry:2 (2.8) declares the whole blob's length on a 416 and sends a few bytes
              // of text: relayed as it is, the client would wait for bytes that never come.
              // Policy: the status and Content-Range go out with an empty body; the connection
              // is not reused.
              parsed.headers['content-length'] = '0';
              parsed.length = 0;
              parsed.keepAlive = false;
            }
            try {
              res.writeHead(parsed.status, parsed.headers);
            } catch (err) {
              // Node refused a header the registry sent: nothing went out yet.
              parsed = undefined;
              pool.give(buf);
              return fallbackNow(String(err));
            }
            left = parsed.length;
            sink.relaying = left > 0;
            start = got.bodyStart;
          }
          const take = Math.min(left, n - start);
          watchStall(left - take > 0);
          if (n - start > take) {
            // Policy: bytes past the declared length are not relayed, and the connection that
            // carried them is never reused (they could be read as a second response).
            parsed.keepAlive = false;
          }
          left -= take;
          relay(buf, start, start + take);
          if (left === 0) bodyDone();
        },
        end: (err) => {
          if (finished) return;
          if (parsed && left === 0) return bodyDone();
          fail(err ?? new Error('upstream closed before the response ended'));
        },
      };
      conn.sink = sink;
      const fallbackNow = (why: string): void => {
        this.opts.onFallback?.(why);
        finish('fallback', false);
      };

      // latin1: header bytes 0x80-0xff go out as the client sent them (Node reads them as latin1).
      socket.write(requestText, 'latin1');
      if (socket.isPaused()) socket.resume();
    });
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

/** A reused connection failed before any answer (the registry had closed it). */
class StaleConnection extends Error {
  constructor(override readonly cause: Error) {
    super(cause.message);
  }
}
