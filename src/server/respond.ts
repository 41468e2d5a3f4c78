import http from 'node:http';
import type net from 'node:net';
import { GateError, toGateError } from '../core/errors.js';
import { closeIfBodyUnread } from './body.js';
import type { Logger } from './log.js';

/** The longest reason phrase trustgate writes (the status line stays one short line in any log). */
export const MAX_REASON_PHRASE = 200;

/**
 * The reason phrase of an error answer. Policy: a 4xx that trustgate decided carries its message
 * after the standard phrase (`403 Forbidden: prod/app@sha256:… has no valid signature …`),
 * because some clients print only the status line: containerd (so kubelet's pod events) resolves
 * a tag with HEAD, which has no body, and drops the body of a refused token request. The message
 * is already what the client may see (the body carries it); it is reduced to printable ASCII
 * (no CR/LF, nothing Node or a client's parser would refuse) and cut at MAX_REASON_PHRASE.
 * 5xx keep the bare standard phrase: their message says nothing more than the code.
 */
export function reasonPhrase(status: number, message: string): string {
  const standard = http.STATUS_CODES[status] ?? 'Error';
  if (status < 400 || status >= 500) return standard;
  const text = message
    .replace(/\u2026/g, '...')
    .replace(/[\r\n\t]+/g, ' ')
    .replace(/[^\x20-\x7e]/g, '?')
    .trim();
  const phrase = text ? `${standard}: ${text}` : standard;
  return phrase.length <= MAX_REASON_PHRASE ? phrase : `${phrase.slice(0, MAX_REASON_PHRASE - 3)}...`;
}

/**
 * The one place that writes an error response. The client gets the OCI error JSON with the
 * actionable message; the log gets code, status and the internal detail.
 */
export function sendError(
  res: http.ServerResponse,
  err: unknown,
  log: Logger,
  context: Record<string, unknown> = {},
): GateError {
  const e = toGateError(err);
  const level = e.status >= 500 ? 'error' : 'info';
  log[level]({ ...context, code: e.code, status: e.status, detail: e.logDetail ?? e.detail }, e.message);
  return writeError(res, e);
}

/**
 * Writes the OCI error answer of `err` (mapped at the edge by toGateError), for a caller that
 * logged it already: the one writer of OCI error JSON, status and reason phrase.
 */
export function writeError(res: http.ServerResponse, err: unknown): GateError {
  const e = toGateError(err);
  if (res.headersSent) {
    // Policy: a stream that already started cannot carry an error body; cut it so the client
    // sees a truncated transfer and never mistakes a partial body for a complete one.
    res.destroy();
    return e;
  }
  // A refused request whose body is still arriving: this answer ends the connection (lingering).
  closeIfBodyUnread(res);
  const body = JSON.stringify(e.toBody());
  res.writeHead(e.status, reasonPhrase(e.status, e.message), {
    ...e.headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'docker-distribution-api-version': 'registry/2.0',
  });
  res.end(body);
  return e;
}

/**
 * An OAuth2 error answer of the token endpoint (RFC 6749 section 5.2), with the same reason
 * phrase as every other error: containerd prints only `unexpected status: <status line>` when its
 * OAuth2 POST is refused.
 */
export function sendOAuthError(
  res: http.ServerResponse,
  status: number,
  error: string,
  description: string,
  headers: Record<string, string> = {},
): void {
  closeIfBodyUnread(res);
  const body = JSON.stringify({ error, error_description: description });
  res.writeHead(status, reasonPhrase(status, description), {
    ...headers,
    'cache-control': 'no-store',
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

/**
 * The same error for a connection that has no response object: a request head Node refused to
 * parse (too large, malformed). Written as raw HTTP/1.1 with `Connection: close`; the caller then
 * closes the connection. Nothing is written when an answer on this connection already started.
 */
export function writeRawError(
  socket: net.Socket,
  err: unknown,
  log: Logger,
  context: Record<string, unknown> = {},
): GateError {
  const e = toGateError(err);
  log.info({ ...context, code: e.code, status: e.status, detail: e.logDetail ?? e.detail }, e.message);
  // Node's own clientError writer checks the same: an answer in flight must not be corrupted.
  const inFlight = (socket as net.Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (!socket.writable || inFlight?.headersSent) return e;
  const body = JSON.stringify(e.toBody());
  const headers = {
    ...e.headers,
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': String(Buffer.byteLength(body)),
    'Docker-Distribution-Api-Version': 'registry/2.0',
    Connection: 'close',
  };
  const head = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  socket.write(`HTTP/1.1 ${e.status} ${reasonPhrase(e.status, e.message)}\r\n${head}\r\n${body}`);
  return e;
}

export function sendJson(
  res: http.ServerResponse,
  status: number,
  value: unknown,
  headers: Record<string, string> = {},
): void {
  const body = JSON.stringify(value);
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

export { GateError };
