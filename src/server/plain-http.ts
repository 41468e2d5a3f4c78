/**
 * Plain HTTP sent to the TLS port. Without this, a client that forgot `https://` (curl, a
 * registry mirror configured with `http://`, `ctr --plain-http`) got a closed connection and
 * printed `EOF`. Like nginx and Go's servers, trustgate answers `400` saying what happened.
 *
 * Every TLS connection begins with a handshake record (first byte 0x16; an SSLv2-style hello has
 * the high bit set); an HTTP/1.x request line begins with an upper-case method token. The first
 * chunk of each connection is read before the TLS layer sees it, then given back to the socket,
 * where Node's TLS socket takes it as the first bytes of the handshake.
 */
import type net from 'node:net';
import type tls from 'node:tls';
import { GateError } from '../core/errors.js';
import { lingeringClose } from './body.js';
import type { Logger } from './log.js';
import { writeRawError } from './respond.js';

/** True when a connection's first bytes are an HTTP/1.x request line, not a TLS record. */
export function looksLikePlainHttp(first: Buffer): boolean {
  const b = first[0];
  return b !== undefined && b >= 0x41 && b <= 0x5a; // 'A'..'Z'
}

export interface PlainHttpGuard {
  /** Connections still waiting for their first byte (they are not HTTP connections yet). */
  readonly pending: number;
  /** Destroys the connections that have not sent a byte yet (at shutdown). */
  destroyPending(): void;
}

/**
 * Puts the check in front of the server's own connection handling (the TLS handshake). Policy:
 * a connection that sends nothing within `firstByteTimeoutMs` is closed, as an unfinished
 * handshake is (tls.Server's handshakeTimeout).
 */
export function answerPlainHttp(
  server: tls.Server,
  o: { log: Logger; firstByteTimeoutMs: number },
): PlainHttpGuard {
  const own = server.listeners('connection') as Array<(socket: net.Socket) => void>;
  server.removeAllListeners('connection');
  const pending = new Set<net.Socket>();
  server.on('connection', (socket: net.Socket) => {
    pending.add(socket);
    const timer = setTimeout(() => socket.destroy(), o.firstByteTimeoutMs);
    const settle = (): void => {
      clearTimeout(timer);
      pending.delete(socket);
      socket.off('error', onError);
      socket.off('close', settle);
    };
    const onError = (): void => {
      settle();
      socket.destroy();
    };
    socket.once('error', onError);
    socket.once('close', settle);
    socket.once('data', (first: Buffer) => {
      settle();
      socket.pause();
      if (looksLikePlainHttp(first)) {
        // An error listener for what remains of this connection (a reset while lingering).
        socket.on('error', () => socket.destroy());
        writeRawError(
          socket,
          new GateError('BAD_REQUEST', 'HTTP request to an HTTPS server: use https://'),
          o.log,
          { client: socket.remoteAddress },
        );
        lingeringClose(socket);
        return;
      }
      socket.unshift(first);
      for (const listener of own) listener.call(server, socket);
    });
  });
  return {
    get pending() {
      return pending.size;
    },
    destroyPending() {
      for (const socket of pending) socket.destroy();
    },
  };
}
