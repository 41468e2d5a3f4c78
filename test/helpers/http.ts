import assert from 'node:assert/strict';
import https from 'node:https';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

export interface Reply {
  status: number;
  /** The reason phrase of the status line. */
  statusMessage: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
  json(): unknown;
}

/** One HTTPS request to a test server, trusting the test CA. `path` is sent raw, unnormalised. */
export function request(
  base: string,
  ca: string,
  opts: {
    method?: string;
    path: string;
    headers?: OutgoingHttpHeaders;
    body?: Buffer | string;
    cert?: string;
    key?: string;
  },
): Promise<Reply> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: u.hostname,
        port: u.port,
        method: opts.method ?? 'GET',
        path: opts.path,
        headers: opts.headers,
        ca,
        cert: opts.cert,
        key: opts.key,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks);
          resolve({
            status: res.statusCode ?? 0,
            statusMessage: res.statusMessage ?? '',
            headers: res.headers,
            body,
            json: () => JSON.parse(body.toString('utf8')) as unknown,
          });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** Gets a bearer token from trustgate's token endpoint with Basic credentials. */
export async function getToken(
  base: string,
  ca: string,
  user: string | undefined,
  password: string | undefined,
  scopes: string[],
  service = 'trustgate',
): Promise<string> {
  const q = new URLSearchParams({ service });
  for (const s of scopes) q.append('scope', s);
  const headers: OutgoingHttpHeaders = {};
  if (user !== undefined)
    headers['authorization'] = `Basic ${Buffer.from(`${user}:${password ?? ''}`).toString('base64')}`;
  const r = await request(base, ca, { path: `/token?${q.toString()}`, headers });
  if (r.status !== 200) throw new Error(`token endpoint answered ${r.status}: ${r.body.toString()}`);
  return (r.json() as { token: string }).token;
}

export function bearer(token: string): OutgoingHttpHeaders {
  return { authorization: `Bearer ${token}` };
}

/**
 * trustgate's refusal of a blob outside every verified manifest of the repository, to a caller
 * without push there: 404 BLOB_UNKNOWN, the same whether or not registry:2 holds the blob, with
 * trustgate's own message (in the body and, for a HEAD, the reason phrase). registry:2's own 404
 * says "blob unknown to registry", so an assertion with this cannot pass on a blob that trustgate
 * forwarded and registry:2 happened not to have.
 */
export function assertBlobNotAdmitted(r: Reply, what = 'blob'): void {
  assert.equal(r.status, 404, `${what}: status ${r.status} ${r.body.toString()}`);
  const said = r.body.length > 0 ? r.body.toString() : r.statusMessage;
  assert.match(said, /belongs to no verified manifest of /, `${what}: not trustgate's refusal: ${said}`);
  if (r.body.length > 0) assert.match(said, /"code":"BLOB_UNKNOWN"/, what);
}
