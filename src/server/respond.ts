import type http from 'node:http';
import { GateError, toGateError } from '../core/errors.js';
import type { Logger } from './log.js';

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
  if (res.headersSent) {
    // Policy: a stream that already started cannot carry an error body; cut it so the client
    // sees a truncated transfer and never mistakes a partial body for a complete one.
    res.destroy();
    return e;
  }
  const body = JSON.stringify(e.toBody());
  res.writeHead(e.status, {
    ...e.headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'docker-distribution-api-version': 'registry/2.0',
  });
  res.end(body);
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
