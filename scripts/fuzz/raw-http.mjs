// A raw HTTP/1.1-over-TLS client for the fuzz run: the request line and headers are written as
// given (duplicate headers, any case, non-ASCII bytes, odd targets), which Node's http client
// refuses to send. One connection per request (`Connection: close`), from a distinct loopback
// source address per request, so trustgate's audit record (`client`) names the request it is for.
import { Buffer } from 'node:buffer';
import { setTimeout as delay } from 'node:timers';
import { clearTimeout } from 'node:timers';
import tls from 'node:tls';

/** 127.a.b.c for request n: unique for 15 million requests, all on the loopback interface. */
export function sourceAddress(n) {
  const c = 1 + (n % 250);
  const b = 1 + (Math.floor(n / 250) % 250);
  const a = 1 + (Math.floor(n / 62_500) % 250);
  return `127.${a}.${b}.${c}`;
}

function parseHead(buf, end) {
  const text = buf.subarray(0, end).toString('latin1');
  const lines = text.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
  if (!m) return null;
  const headers = {};
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':');
    if (i <= 0) continue;
    const k = line.slice(0, i).trim().toLowerCase();
    const v = line.slice(i + 1).trim();
    (headers[k] ??= []).push(v);
  }
  return { status: Number(m[1]), headers };
}

/** Returns { consumed, body } when the chunked body is complete, else null. */
function dechunk(buf, start) {
  const parts = [];
  let p = start;
  for (let guard = 0; guard < 100_000; guard++) {
    const eol = buf.indexOf('\r\n', p, 'latin1');
    if (eol === -1) return null;
    const size = parseInt(buf.subarray(p, eol).toString('latin1').split(';')[0], 16);
    if (!Number.isFinite(size)) return { body: Buffer.concat(parts), consumed: buf.length, malformed: true };
    if (size === 0) {
      const trailerEnd = buf.indexOf('\r\n\r\n', eol, 'latin1');
      if (trailerEnd === -1 && buf.indexOf('\r\n', eol + 2, 'latin1') !== eol + 2) return null;
      return { body: Buffer.concat(parts), consumed: buf.length };
    }
    if (buf.length < eol + 2 + size + 2) return null;
    parts.push(buf.subarray(eol + 2, eol + 2 + size));
    p = eol + 2 + size + 2;
  }
  return null;
}

/**
 * Tries to read one complete final response from `buf`. `closed`: the peer has closed, so a body
 * without framing ends here.
 */
function tryResponse(buf, isHead, closed) {
  let off = 0;
  for (let guard = 0; guard < 8; guard++) {
    const end = buf.indexOf('\r\n\r\n', off, 'latin1');
    if (end === -1) return null;
    const head = parseHead(buf.subarray(off), end - off);
    if (!head) return { status: 'unparsable', headers: {}, body: buf };
    const bodyStart = end + 4;
    if (head.status >= 100 && head.status < 200) {
      off = bodyStart; // interim response (100 Continue): the final one follows
      continue;
    }
    if (isHead || head.status === 204 || head.status === 304) return { ...head, body: Buffer.alloc(0) };
    const te = (head.headers['transfer-encoding'] ?? []).join(',').toLowerCase();
    if (te.includes('chunked')) {
      const d = dechunk(buf, bodyStart);
      if (d) return { ...head, body: d.body };
      return closed ? { ...head, body: buf.subarray(bodyStart), truncated: true } : null;
    }
    const cl = head.headers['content-length']?.[0];
    if (cl !== undefined) {
      const n = Number(cl);
      if (buf.length - bodyStart >= n) return { ...head, body: buf.subarray(bodyStart, bodyStart + n) };
      return closed ? { ...head, body: buf.subarray(bodyStart), truncated: true } : null;
    }
    return closed ? { ...head, body: buf.subarray(bodyStart) } : null;
  }
  return null;
}

/**
 * Sends one request. `target` and header values are JS strings written as UTF-8 (so a value can
 * carry NBSP, NEL or U+0130 as the bytes a real client would send); `headers` is a list of
 * [name, value] pairs, sent in order, duplicates included.
 */
/** One TLS client context for the run (building one per connection parses the CA every time). */
export function clientContext(ca) {
  return { secureContext: tls.createSecureContext({ ca }), session: undefined };
}

export function rawRequest({ port, tlsCache, localAddress, method, target, headers, body, timeoutMs }) {
  const lines = [`${method} ${target} HTTP/1.1`, ...headers.map(([k, v]) => `${k}: ${v}`), '', ''];
  const head = Buffer.from(lines.join('\r\n'), 'utf8');
  const payload = body && body.length > 0 ? Buffer.concat([head, body]) : head;
  const isHead = method === 'HEAD';
  return new Promise((resolve) => {
    let done = false;
    let buf = Buffer.alloc(0);
    let socket;
    const finish = (r) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket?.destroy();
      resolve(r);
    };
    const timer = delay(() => finish({ status: 'timeout', headers: {}, body: Buffer.alloc(0) }), timeoutMs);
    try {
      socket = tls.connect({
        host: '127.0.0.1',
        port,
        secureContext: tlsCache.secureContext,
        servername: 'localhost',
        localAddress,
        session: tlsCache.session,
      });
    } catch (e) {
      finish({ status: 'client-error', error: String(e), headers: {}, body: Buffer.alloc(0) });
      return;
    }
    socket.on('session', (s) => (tlsCache.session = s));
    socket.once('secureConnect', () => socket.write(payload));
    socket.on('data', (c) => {
      buf = buf.length === 0 ? c : Buffer.concat([buf, c]);
      const r = tryResponse(buf, isHead, false);
      if (r) finish(r);
    });
    const onClose = () => {
      const r = tryResponse(buf, isHead, true);
      finish(r ?? { status: buf.length === 0 ? 'closed' : 'unparsable', headers: {}, body: buf });
    };
    socket.on('end', onClose);
    socket.on('close', onClose);
    socket.on('error', (e) => {
      const r = tryResponse(buf, isHead, true);
      finish(r ?? { status: 'reset', error: e.code ?? String(e), headers: {}, body: buf });
    });
  });
}
