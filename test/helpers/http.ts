import https from 'node:https';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

export interface Reply {
  status: number;
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
