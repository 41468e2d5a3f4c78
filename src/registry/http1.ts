import type http from 'node:http';
import { stripHopByHop } from './headers.js';

/**
 * HTTP/1.1 framing for the direct reader: a GET/HEAD request head written out, and a response
 * head read back strictly. What this module does not accept is refused (`Unsupported`), and the
 * reader hands the request to Node's http client before any byte of the answer is used.
 */

const HEAD_LIMIT = 64 * 1024;
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

export interface Head {
  status: number;
  headers: http.OutgoingHttpHeaders;
  /** Body bytes to relay; 0 for HEAD, 204, 304. */
  length: number;
  keepAlive: boolean;
}

/** Thrown for an upstream response outside what this reader relays itself. */
export class Unsupported extends Error {}

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
export class HeadReader {
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
export function requestHead(method: string, path: string, headers: http.OutgoingHttpHeaders): string {
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
