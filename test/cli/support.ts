/**
 * Support for the CLI and registry-client tests: in-memory CLI I/O, small images pushed with the
 * client under test, test certificates (openssl), and an HTTPS Docker-token-auth front for a real
 * registry:2 (the stand-in for trustgate until the server is finished).
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { CliIo } from '../../src/cli/registry-opts.js';
import type { RegistryClient } from '../../src/cli/registry-client.js';

export const sha256 = (b: Uint8Array | string): string =>
  `sha256:${createHash('sha256').update(b).digest('hex')}`;

class Sink extends Writable {
  text = '';
  isTTY = false;
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString('utf8');
    cb();
  }
}

export interface MemoryIo {
  io: CliIo;
  out(): string;
  err(): string;
  /** Feeds text to stdin (for a fake terminal). */
  type(text: string): void;
}

export function memoryIo(env: NodeJS.ProcessEnv = {}, opts: { tty?: boolean; now?: Date } = {}): MemoryIo {
  const stdout = new Sink();
  const stderr = new Sink();
  const stdin = new PassThrough() as PassThrough & { isTTY?: boolean; setRawMode?: (m: boolean) => unknown };
  if (opts.tty === true) {
    stdin.isTTY = true;
    stdin.setRawMode = () => stdin;
  }
  const now = opts.now;
  return {
    io: { stdout, stderr, stdin, env, now: () => now ?? new Date() },
    out: () => stdout.text,
    err: () => stderr.text,
    type: (t) => stdin.write(t),
  };
}

export interface PushedImage {
  digest: string;
  bytes: Uint8Array;
  mediaType: string;
  blobs: string[];
}

/** Pushes a tiny OCI image (config + one layer) with the client; `seed` makes it unique. */
export async function pushImage(
  client: RegistryClient,
  repo: string,
  ref: string,
  seed: string,
): Promise<PushedImage> {
  const layer = new TextEncoder().encode(`layer ${seed} ${randomBytes(8).toString('hex')}`);
  const config = new TextEncoder().encode(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      rootfs: { type: 'layers', diff_ids: [sha256(layer)] },
    }),
  );
  const l = await client.uploadBlob(repo, layer);
  const c = await client.uploadBlob(repo, config);
  const mediaType = 'application/vnd.oci.image.manifest.v1+json';
  const bytes = new TextEncoder().encode(
    JSON.stringify({
      schemaVersion: 2,
      mediaType,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: c.digest, size: c.size },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: l.digest, size: l.size }],
    }),
  );
  const digest = await client.putManifest(repo, ref, bytes, mediaType);
  return { digest, bytes, mediaType, blobs: [c.digest, l.digest] };
}

/** Pushes an OCI index over already pushed images. */
export async function pushIndex(
  client: RegistryClient,
  repo: string,
  ref: string,
  children: PushedImage[],
): Promise<PushedImage> {
  const mediaType = 'application/vnd.oci.image.index.v1+json';
  const arch = ['amd64', 'arm64', 'riscv64', 's390x'];
  const bytes = new TextEncoder().encode(
    JSON.stringify({
      schemaVersion: 2,
      mediaType,
      manifests: children.map((c, i) => ({
        mediaType: c.mediaType,
        digest: c.digest,
        size: c.bytes.length,
        platform: { architecture: arch[i % arch.length], os: 'linux' },
      })),
    }),
  );
  const digest = await client.putManifest(repo, ref, bytes, mediaType);
  return { digest, bytes, mediaType, blobs: [] };
}

export interface TestCerts {
  dir: string;
  caFile: string;
  ca: string;
  serverCert: string;
  serverKey: string;
  /** A skopeo-style cert dir: ca.crt + client.cert + client.key. */
  certDir: string;
  /** A cert dir with only ca.crt. */
  caOnlyDir: string;
  clientCert: string;
  clientKey: string;
}

/** A throwaway CA, a server certificate for 127.0.0.1 and a client certificate, via the openssl CLI. */
export function makeCerts(dir: string): TestCerts {
  const p = (n: string): string => path.join(dir, n);
  const ossl = (args: string[]): void => {
    execFileSync('openssl', args, { stdio: 'pipe' });
  };
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ossl([
    'req',
    '-x509',
    ...ec,
    '-keyout',
    p('ca.key'),
    '-out',
    p('ca.pem'),
    '-subj',
    '/CN=cli-test-ca',
    '-days',
    '2',
  ]);
  writeFileSync(p('server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  writeFileSync(p('client.ext'), 'extendedKeyUsage=clientAuth\n');
  for (const who of ['server', 'client']) {
    ossl(['req', ...ec, '-keyout', p(`${who}.key`), '-out', p(`${who}.csr`), '-subj', `/CN=${who}`]);
    ossl([
      'x509', '-req', '-in', p(`${who}.csr`), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial',
      '-out', p(`${who}.pem`), '-days', '2', '-extfile', p(`${who}.ext`),
    ]); // prettier-ignore
  }
  const read = (n: string): string => execFileSync('cat', [p(n)], { encoding: 'utf8' });
  const certDir = p('certs.d');
  const caOnlyDir = p('ca-only.d');
  execFileSync('mkdir', ['-p', certDir, caOnlyDir]);
  writeFileSync(path.join(certDir, 'ca.crt'), read('ca.pem'));
  writeFileSync(path.join(certDir, 'client.cert'), read('client.pem'));
  writeFileSync(path.join(certDir, 'client.key'), read('client.key'));
  writeFileSync(path.join(caOnlyDir, 'ca.crt'), read('ca.pem'));
  return {
    dir,
    caFile: p('ca.pem'),
    ca: read('ca.pem'),
    serverCert: read('server.pem'),
    serverKey: read('server.key'),
    certDir,
    caOnlyDir,
    clientCert: read('client.pem'),
    clientKey: read('client.key'),
  };
}

export interface TokenFront {
  url: string;
  host: string;
  /** Token requests received, with the scopes asked. */
  tokenRequests: Array<{ scopes: string[]; user: string | undefined }>;
  /** Upload POSTs received (query string as sent). */
  uploadPosts: string[];
  /** When true, `mount`/`from` are removed from upload POSTs (a registry that will not mount). */
  stripMount: boolean;
  /** Manifest paths whose GET body is altered (one byte appended) on the way out. */
  tamper: Set<string>;
  /** When true, upload Locations are rewritten to be relative. */
  relativeLocations: boolean;
  close(): Promise<void>;
}

/**
 * An HTTPS front for a real registry:2 that speaks the Docker token flow: /v2/* needs a bearer
 * token carrying the right scope, /token gives one for Basic `user:pass`. With `mtls`, a client
 * certificate from the test CA is required. A fault injector too (stripMount, tamper).
 */
export async function startTokenFront(
  registryUrl: string,
  certs: TestCerts,
  opts: { user: string; password: string; mtls?: boolean },
): Promise<TokenFront> {
  const upstream = new URL(registryUrl);
  const tokens = new Map<string, string[]>();
  const state = {
    tokenRequests: [] as TokenFront['tokenRequests'],
    uploadPosts: [] as string[],
    stripMount: false,
    tamper: new Set<string>(),
    relativeLocations: false,
  };
  let origin = '';
  const grants = (scopes: string[], repo: string, action: string): boolean =>
    scopes.some((s) => {
      const m = /^repository:(.+):([a-z,*]+)$/.exec(s);
      return m !== null && m[1] === repo && (m[2] as string).split(',').includes(action);
    });

  const server = https.createServer(
    {
      cert: certs.serverCert,
      key: certs.serverKey,
      ca: certs.ca,
      requestCert: true,
      rejectUnauthorized: false,
    },
    (req, res) => {
      const sock = req.socket as TLSSocket;
      if (opts.mtls === true && !sock.authorized) {
        res.writeHead(403, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ errors: [{ code: 'DENIED', message: 'client certificate required' }] }));
        return;
      }
      const url = new URL(req.url ?? '/', origin);
      if (url.pathname === '/token') {
        const auth = req.headers.authorization ?? '';
        const dec = auth.startsWith('Basic ') ? Buffer.from(auth.slice(6), 'base64').toString() : '';
        const user = dec.includes(':') ? dec.slice(0, dec.indexOf(':')) : undefined;
        const scopes = url.searchParams.getAll('scope');
        state.tokenRequests.push({ scopes, user });
        if (dec !== `${opts.user}:${opts.password}`) {
          res.writeHead(401, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'bad credentials' }] }));
          return;
        }
        const token = randomBytes(16).toString('hex');
        tokens.set(token, scopes);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ token, expires_in: 300, issued_at: new Date().toISOString() }));
        return;
      }
      const m = /^\/v2\/(.+?)\/(manifests|blobs|tags)\//.exec(url.pathname);
      const repo = m?.[1];
      const needs: Array<[string, string]> = [];
      if (repo !== undefined) {
        needs.push([repo, req.method === 'GET' || req.method === 'HEAD' ? 'pull' : 'push']);
        const from = url.searchParams.get('from');
        if (from !== null) needs.push([from, 'pull']);
      }
      const bearer = (req.headers.authorization ?? '').replace(/^Bearer /, '');
      const granted = tokens.get(bearer);
      const ok = granted !== undefined && needs.every(([r, a]) => grants(granted, r, a));
      if (!ok) {
        const scope = needs.length > 0 ? `,scope="repository:${needs[0]![0]}:${needs[0]![1]}"` : '';
        res.writeHead(401, {
          'content-type': 'application/json',
          'www-authenticate': `Bearer realm="${origin}/token",service="cli-test"${scope}`,
        });
        res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }));
        return;
      }
      if (req.method === 'POST' && url.pathname.endsWith('/blobs/uploads/')) {
        state.uploadPosts.push(url.search);
        if (state.stripMount) {
          url.searchParams.delete('mount');
          url.searchParams.delete('from');
        }
      }
      const headers = { ...req.headers };
      delete headers.authorization;
      headers['x-forwarded-proto'] = 'https';
      const up = http.request(
        {
          host: upstream.hostname,
          port: upstream.port,
          method: req.method,
          path: url.pathname + url.search,
          headers,
        },
        (ur) => {
          const h = { ...ur.headers };
          if (state.relativeLocations && typeof h.location === 'string') {
            const loc = new URL(h.location, origin);
            h.location = loc.pathname + loc.search;
          }
          if (req.method === 'GET' && state.tamper.has(url.pathname)) {
            const chunks: Buffer[] = [];
            ur.on('data', (c: Buffer) => chunks.push(c));
            ur.on('end', () => {
              const body = Buffer.concat([...chunks, Buffer.from(' ')]);
              h['content-length'] = String(body.length);
              res.writeHead(ur.statusCode ?? 502, h);
              res.end(body);
            });
            return;
          }
          res.writeHead(ur.statusCode ?? 502, h);
          ur.pipe(res);
        },
      );
      up.on('error', () => {
        res.writeHead(502);
        res.end();
      });
      req.pipe(up);
    },
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  origin = `https://127.0.0.1:${port}`;
  const front = state as unknown as TokenFront;
  front.url = origin;
  front.host = `127.0.0.1:${port}`;
  front.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  return front;
}
