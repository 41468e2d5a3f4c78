import type http from 'node:http';

/**
 * Header rules at the upstream boundary: what describes one hop and never crosses the proxy, and
 * which client headers reach registry:2. Used by both readers of the registry (DirectReader and
 * Node's http client) and by the streaming forwarder.
 */

/** Headers that describe one hop and never cross the proxy (RFC 9110 §7.6.1). */
export const HOP_BY_HOP = [
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
];

/** Client headers that must never reach the registry. */
const CLIENT_ONLY = [
  ...HOP_BY_HOP,
  // Policy: the client's forwarding claims are ignored, so upload Location headers always name
  // trustgate's own address and registry:2 never sees a spoofed scheme or host.
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-forwarded-port',
  'x-forwarded-prefix',
  'x-real-ip',
  // Policy: trustgate's own credentials stop here; registry:2 runs without auth behind us.
  'authorization',
  'cookie',
];

/** Removes hop-by-hop headers plus any header named in `Connection`. Mutates and returns `headers`. */
export function stripHopByHop<T extends Record<string, unknown>>(headers: T): T {
  const conn = headers['connection'];
  if (typeof conn === 'string') {
    for (const name of conn.split(',')) delete headers[name.trim().toLowerCase()];
  }
  for (const h of HOP_BY_HOP) delete headers[h];
  return headers;
}

/**
 * End-to-end headers that a client's `Connection` header may not remove on the way upstream.
 * Policy (I2): `Connection` names hop-by-hop extensions only; removing Host made registry:2 build
 * absolute Location URLs from its own internal address (leaking it), and the others carry the
 * request's framing and the type trustgate decided on.
 */
const KEPT_END_TO_END = new Set(['host', 'content-length', 'content-type', 'transfer-encoding']);

/** Builds the upstream request headers from the client's, removing what must not be forwarded. */
export function upstreamRequestHeaders(
  incoming: http.IncomingHttpHeaders,
  proto: 'https' | 'http' = 'https',
): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = { ...incoming };
  const conn = incoming['connection'];
  if (typeof conn === 'string') {
    for (const raw of conn.split(',')) {
      const name = raw.trim().toLowerCase();
      if (!KEPT_END_TO_END.has(name)) delete out[name];
    }
  }
  for (const h of CLIENT_ONLY) delete out[h];
  // registry:2 builds absolute Location URLs from Host and X-Forwarded-Proto.
  out['x-forwarded-proto'] = proto;
  return out;
}

/** The first value of a header that may arrive as a list. */
export function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}
