/**
 * A minimal streaming registry client for the benchmarks: http or https (trusting a given CA),
 * Docker token auth (Basic credentials at the realm named in a Bearer challenge), blob uploads
 * that stream from a file or a generator, and blob downloads that discard into a counter.
 * Nothing is buffered whole.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import http, { type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import https from 'node:https';
import { Readable } from 'node:stream';

export interface ClientOptions {
  /** PEM CA for https targets. */
  ca?: string;
  creds?: { username: string; password: string };
}

export interface Transfer {
  seconds: number;
  bytes: number;
  digest?: string;
}

function parseChallenge(h: string | undefined): Record<string, string> | undefined {
  if (!h || !/^Bearer\s/i.test(h)) return undefined;
  const out: Record<string, string> = {};
  for (const m of h.slice(7).matchAll(/(\w+)="([^"]*)"/g)) if (m[1]) out[m[1]] = m[2] ?? '';
  return out;
}

async function readBody(res: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export class RegistryClient {
  private auth: string | undefined;
  constructor(
    readonly base: string,
    private readonly opts: ClientOptions = {},
  ) {}

  private send(
    method: string,
    urlOrPath: string,
    headers: OutgoingHttpHeaders = {},
    body?: Readable | Buffer,
  ): Promise<IncomingMessage> {
    const u = new URL(urlOrPath, this.base);
    const lib = u.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const req = lib.request(
        u,
        {
          method,
          agent: false,
          headers: { ...(this.auth ? { authorization: this.auth } : {}), ...headers },
          ...(u.protocol === 'https:' ? { ca: this.opts.ca, servername: 'localhost' } : {}),
        },
        resolve,
      );
      req.on('error', reject);
      req.setTimeout(300_000, () => req.destroy(new Error(`${method} ${u.pathname}: timeout`)));
      if (body instanceof Readable) {
        body.on('error', (e) => req.destroy(e));
        body.pipe(req);
      } else req.end(body);
    });
  }

  /** Fetches a token for `scopes` if the server challenges with Bearer; Basic otherwise. */
  async login(scopes: string[]): Promise<void> {
    const res = await this.send('GET', '/v2/');
    await readBody(res);
    if (res.statusCode === 200) return;
    const ch = parseChallenge(res.headers['www-authenticate']);
    if (res.statusCode === 401 && ch?.['realm']) {
      const t = new URL(ch['realm']);
      if (ch['service']) t.searchParams.set('service', ch['service']);
      for (const s of scopes) t.searchParams.append('scope', s);
      const basic = this.opts.creds
        ? `Basic ${Buffer.from(`${this.opts.creds.username}:${this.opts.creds.password}`).toString('base64')}`
        : undefined;
      const saved = this.auth;
      this.auth = basic;
      const tr = await this.send('GET', t.toString());
      const text = await readBody(tr);
      this.auth = saved;
      if (tr.statusCode !== 200) throw new Error(`token: ${tr.statusCode} ${text}`);
      const j = JSON.parse(text) as { token?: string; access_token?: string };
      const token = j.token ?? j.access_token;
      if (!token) throw new Error('token: no token in the response');
      this.auth = `Bearer ${token}`;
      return;
    }
    if (res.statusCode === 401 && this.opts.creds) {
      this.auth = `Basic ${Buffer.from(`${this.opts.creds.username}:${this.opts.creds.password}`).toString('base64')}`;
      return;
    }
    throw new Error(`GET /v2/: unexpected ${res.statusCode}`);
  }

  private async expect(res: IncomingMessage, status: number, what: string): Promise<void> {
    if (res.statusCode !== status) throw new Error(`${what}: ${res.statusCode} ${await readBody(res)}`);
    await readBody(res);
  }

  /**
   * Monolithic upload: POST to open a session, then one PUT ?digest= carrying the whole blob from
   * a file. (registry 2.8 does not complete a POST ?digest= with a body: it opens a session.)
   */
  async pushBlobFile(repo: string, file: string, digest: string, size: number): Promise<void> {
    const start = await this.send('POST', `/v2/${repo}/blobs/uploads/`, { 'content-length': '0' });
    const loc = start.headers.location;
    await this.expect(start, 202, 'start upload');
    if (!loc) throw new Error('start upload: no Location');
    const u = new URL(loc, this.base);
    u.searchParams.set('digest', digest);
    const res = await this.send(
      'PUT',
      u.toString(),
      { 'content-type': 'application/octet-stream', 'content-length': String(size) },
      createReadStream(file),
    );
    await this.expect(res, 201, `monolithic upload of ${digest}`);
  }

  /**
   * POST, one streamed PATCH, then PUT ?digest= (what docker does for one chunk); the digest is
   * computed while streaming. Returns the pushed digest and the timing.
   */
  async pushBlobStream(repo: string, source: AsyncIterable<Buffer>, size: number): Promise<Transfer> {
    const t0 = process.hrtime.bigint();
    const start = await this.send('POST', `/v2/${repo}/blobs/uploads/`, { 'content-length': '0' });
    const loc1 = start.headers.location;
    await this.expect(start, 202, 'start upload');
    if (!loc1) throw new Error('start upload: no Location');
    const hash = createHash('sha256');
    const body = Readable.from(
      (async function* () {
        for await (const c of source) {
          hash.update(c);
          yield c;
        }
      })(),
    );
    const patch = await this.send(
      'PATCH',
      loc1,
      { 'content-type': 'application/octet-stream', 'content-length': String(size) },
      body,
    );
    const loc2 = patch.headers.location;
    await this.expect(patch, 202, 'PATCH upload');
    if (!loc2) throw new Error('PATCH upload: no Location');
    const digest = `sha256:${hash.digest('hex')}`;
    const u = new URL(loc2, this.base);
    u.searchParams.set('digest', digest);
    const put = await this.send('PUT', u.toString(), { 'content-length': '0' });
    await this.expect(put, 201, 'PUT upload');
    return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, bytes: size, digest };
  }

  /** GET a blob, discarding the body (hashing it when `verify`). */
  async getBlob(repo: string, digest: string, verify = false): Promise<Transfer> {
    const t0 = process.hrtime.bigint();
    const res = await this.send('GET', `/v2/${repo}/blobs/${digest}`);
    if (res.statusCode !== 200) throw new Error(`GET blob: ${res.statusCode} ${await readBody(res)}`);
    const hash = verify ? createHash('sha256') : undefined;
    let bytes = 0;
    await new Promise<void>((resolve, reject) => {
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        hash?.update(c);
      });
      res.on('end', resolve);
      res.on('error', reject);
      res.on('aborted', () => reject(new Error('GET blob: aborted')));
    });
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const got = hash ? `sha256:${hash.digest('hex')}` : undefined;
    if (got && got !== digest) throw new Error(`GET blob: content is ${got}, expected ${digest}`);
    return { seconds, bytes, ...(got ? { digest: got } : {}) };
  }
}
