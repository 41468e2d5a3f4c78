/**
 * Request bodies trustgate reads whole (manifest PUTs, the /token form, admin JSON), each with a
 * limit, and what happens to a connection after a refusal that leaves a body unread.
 *
 * Policy (lingering close, as nginx's `lingering_close`): a request refused while its body is still
 * arriving is answered at once with `Connection: close`; then trustgate shuts its side (FIN) and
 * reads and drops what the client still sends, at most LINGER.maxBytes or LINGER.maxMs (and
 * LINGER.idleMs without a byte), and only then closes. Closing a socket that still has unread
 * bytes makes the kernel answer with a reset, and a client still sending its body then fails on
 * its next write, before it ever reads the answer (curl: "Send failure: Connection reset").
 * Node's own choices are both wrong here: destroying the request resets; keeping the connection
 * reads the rest of the body however large it is declared.
 */
import type http from 'node:http';
import type net from 'node:net';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { GateError } from '../core/errors.js';

export const LINGER = {
  /** Bytes read and dropped after a refusal before the connection is cut. */
  maxBytes: 64 * 1024 * 1024,
  /** Time from the refusal to the end of the connection, at most. */
  maxMs: 30_000,
  /** Time without a byte from the client after which the connection is closed. */
  idleMs: 5_000,
};

/** Sockets whose connection ends after the current answer, with their linger budget. */
const lingering = new WeakMap<net.Socket, Linger>();

class Linger {
  private bytes = 0;
  private idle: NodeJS.Timeout | undefined;
  private readonly total: NodeJS.Timeout;

  constructor(private readonly socket: net.Socket) {
    this.total = setTimeout(() => socket.destroy(), LINGER.maxMs).unref();
    this.arm();
    socket.once('close', () => {
      clearTimeout(this.total);
      clearTimeout(this.idle);
    });
  }

  take(n: number): void {
    this.bytes += n;
    if (this.bytes > LINGER.maxBytes) this.socket.destroy();
    else this.arm();
  }

  private arm(): void {
    clearTimeout(this.idle);
    this.idle = setTimeout(() => this.socket.destroy(), LINGER.idleMs).unref();
  }
}

/** True when the connection of `socket` ends after its current answer (a body was refused). */
export function isClosing(socket: net.Socket): boolean {
  return lingering.has(socket);
}

/**
 * The request's connection ends after this answer, the lingering way: what the body still sends
 * is dropped (within the budget, which starts now), and when Node closes the connection after the
 * answer (Connection: close), it lingers instead of closing at once. Idempotent.
 */
export function closeAfterAnswer(req: http.IncomingMessage): void {
  const socket = req.socket;
  if (lingering.has(socket) || socket.destroyed) return;
  const linger = new Linger(socket);
  lingering.set(socket, linger);
  req.on('data', (c: Buffer) => linger.take(c.length));
  req.resume();
  // Node closes a connection after a `Connection: close` answer with socket.destroySoon() (end,
  // then destroy as soon as the answer is flushed). This socket lingers instead.
  socket.destroySoon = () => lingeringClose(socket);
}

/**
 * Before an error answer is written: when the request's body has not all arrived (or was refused),
 * the answer says `Connection: close` and the connection lingers (see above) instead of Node
 * reading the rest of the body, however large, to keep the connection.
 */
export function closeIfBodyUnread(res: http.ServerResponse): void {
  const req = res.req as http.IncomingMessage | undefined;
  if (!req || res.headersSent) return;
  if (req.complete && !lingering.has(req.socket)) return;
  res.shouldKeepAlive = false;
  closeAfterAnswer(req);
}

/**
 * Ends a connection that carries no more HTTP: sends what was written and a FIN, then reads and
 * drops what arrives (within the budget) until the client closes, and only then closes. Used after
 * an answer that closes the connection, and after a request head Node could not parse.
 */
export function lingeringClose(socket: net.Socket): void {
  if (socket.destroyed) return;
  let linger = lingering.get(socket);
  if (!linger) {
    linger = new Linger(socket);
    lingering.set(socket, linger);
  }
  const budget = linger;
  socket.end();
  // Nothing after this answer is a request: the HTTP parser gets no more bytes (adding a 'data'
  // listener takes the socket back from a parser that reads it natively).
  socket.removeAllListeners('data');
  socket.on('data', (b: Buffer) => budget.take(b.length));
  socket.once('end', () => socket.destroy());
  socket.resume();
}

/**
 * Reads a request body of at most `max` bytes. Policy: more is refused, never truncated; a
 * declared Content-Length over the limit is refused before a byte of the body is read. The
 * refusal (`tooLarge`) closes the connection after the answer (closeAfterAnswer).
 */
export function readBody(req: http.IncomingMessage, max: number, tooLarge: () => GateError): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer): void => {
      size += c.length;
      if (size > max) return refuse();
      chunks.push(c);
    };
    const refuse = (): void => {
      settled = true;
      req.off('data', onData);
      chunks.length = 0;
      closeAfterAnswer(req);
      reject(tooLarge());
    };
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > max) return refuse();
    req.on('data', onData);
    req.once('end', () => {
      if (settled) return;
      settled = true;
      resolve(Buffer.concat(chunks, size));
    });
    req.once('error', (err) => {
      if (settled) return;
      settled = true;
      reject(err);
    });
    req.once('close', () => {
      if (settled) return;
      settled = true;
      reject(new GateError('CLIENT_ABORTED', 'the client went away before its body ended'));
    });
  });
}

/** True when the request has a body to read (a Content-Length over 0, or a Transfer-Encoding). */
function hasBody(req: http.IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}

/** The charset parameter of the Content-Type, lowercased; undefined when absent. */
function charsetOf(req: http.IncomingMessage): string | undefined {
  return /;\s*charset\s*=\s*"?([^";\s]+)"?/i.exec(req.headers['content-type'] ?? '')?.[1]?.toLowerCase();
}

/** The body as UTF-8 text; a Content-Encoding or a charset other than UTF-8 is refused. */
async function readText(req: http.IncomingMessage, max: number, tooLarge: () => GateError): Promise<string> {
  const encoding = (req.headers['content-encoding'] ?? 'identity').toLowerCase();
  const charset = charsetOf(req);
  if (encoding !== 'identity' || (charset !== undefined && charset !== 'utf-8')) {
    // Policy: no compressed or re-encoded bodies (nothing trustgate's clients send); a decoder is
    // one more parser an unauthenticated client could aim at.
    closeAfterAnswer(req);
    throw new GateError(
      'UNSUPPORTED_MEDIA_TYPE',
      'request bodies are accepted only as identity-encoded UTF-8',
    );
  }
  return (await readBody(req, max, tooLarge)).toString('utf8');
}

/**
 * Express middleware: an `application/json` body of at most `max` bytes into `req.body` (an object
 * or an array, like body-parser's strict mode). Other bodies are left unread (`req.body` undefined).
 * Errors go to the router's error handler as GateErrors.
 */
export function jsonBody(max: number, tooLarge: () => GateError): RequestHandler {
  return (req: Request, _res: Response, next: NextFunction) => {
    if (!hasBody(req) || !req.is('application/json')) return next();
    readText(req, max, tooLarge)
      .then((text) => {
        let value: unknown;
        try {
          value = JSON.parse(text);
        } catch (err) {
          throw new GateError('BAD_REQUEST', 'request body is not valid JSON', {
            logDetail: String(err),
          });
        }
        if (typeof value !== 'object' || value === null) {
          throw new GateError('BAD_REQUEST', 'request body must be a JSON object');
        }
        req.body = value;
        next();
      })
      .catch(next);
  };
}

/**
 * Express middleware: an `application/x-www-form-urlencoded` body of at most `max` bytes and
 * `maxParams` parameters into `req.body`, a prototype-less object whose repeated keys hold arrays
 * (so a caller can refuse them). Other bodies are left unread (`req.body` undefined).
 */
export function formBody(max: number, maxParams: number, tooLarge: () => GateError): RequestHandler {
  return (req: Request, _res: Response, next: NextFunction) => {
    if (!hasBody(req) || !req.is('application/x-www-form-urlencoded')) return next();
    readText(req, max, tooLarge)
      .then((text) => {
        const params = new URLSearchParams(text);
        const out = Object.create(null) as Record<string, string | string[]>;
        let count = 0;
        for (const [k, v] of params) {
          if (++count > maxParams) {
            throw new GateError('BAD_REQUEST', `too many form parameters (at most ${maxParams})`);
          }
          const prev = out[k];
          out[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
        }
        req.body = out;
        next();
      })
      .catch(next);
  };
}
