/**
 * A small Docker Registry HTTP API v2 client for the CLI (`trustgate sign | verify | copy`), the
 * other side of trustgate: the proxy's own client of registry:2 is src/registry/upstream.ts.
 *
 * Decision: node:http(s) with one keep-alive Agent per client rather than fetch. Node's global fetch
 * can only take a custom CA or a client certificate per client through undici's Dispatcher, and
 * undici is not a dependency (the proxy measured it and kept its own reader: docs/security-model.md); https.Agent takes `ca`, `cert`, `key` and `rejectUnauthorized` directly.
 *
 * Talks to trustgate (HTTPS, Docker token auth, optional mTLS) and to a plain registry:2 on loopback.
 */
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import type { Readable } from 'node:stream';
import {
  MANIFEST_ACCEPT,
  MAX_MANIFEST_BYTES,
  MEDIA_TYPES,
  digestOf,
  isValidDigest,
  parseManifest,
} from '../core/manifest.js';
import { isValidRepoName, isValidTag } from '../core/reference.js';
import { ADMIN_SCOPE } from '../core/scope.js';

const MAX_ADMIN_BODY_BYTES = 16 * 1024 * 1024;
/** Default cap for getBlob: it is for small blobs (signature payloads, configs). */
export const DEFAULT_MAX_BLOB_BYTES = 4 * 1024 * 1024;
const MAX_ERROR_BODY_BYTES = 64 * 1024;
const MAX_TOKEN_BODY_BYTES = 1024 * 1024;
const MAX_REDIRECTS = 5;

export interface RegistryClientOptions {
  /** `https://host:port`; `http://` only for a loopback host. */
  baseUrl: string;
  /** Extra trusted CA certificates (PEM), added to Node's built-in roots. */
  ca?: string[];
  /** Client certificate and key (PEM) for mTLS. */
  cert?: string;
  key?: string;
  /** Policy: false disables certificate checks (skopeo's --tls-verify=false); the caller warns. */
  tlsVerify?: boolean;
  username?: string;
  password?: string;
  userAgent?: string;
  /** Idle socket timeout per request, ms. */
  timeoutMs?: number;
}

export interface Manifest {
  bytes: Uint8Array;
  /** The Content-Type the registry served, without parameters. */
  mediaType: string;
  /** Computed from `bytes`; never taken from Docker-Content-Digest. */
  digest: string;
}

export interface RegistryErrorEntry {
  code: string;
  message: string;
  detail?: unknown;
}

/** An HTTP answer the client did not expect, with the registry's own code and message when it sent one. */
export class RegistryError extends Error {
  readonly status: number;
  readonly errors: RegistryErrorEntry[];
  readonly operation: string;

  constructor(operation: string, status: number, errors: RegistryErrorEntry[], fallback?: string) {
    const what =
      errors.length > 0
        ? errors.map((e) => `${e.code}: ${e.message}`).join('; ')
        : (fallback ?? `HTTP ${status}`);
    super(`${operation}: ${status === 0 ? '' : `${status} `}${what}`);
    this.name = 'RegistryError';
    this.status = status;
    this.errors = errors;
    this.operation = operation;
  }

  /** The first OCI error code, if any. */
  get code(): string | undefined {
    return this.errors[0]?.code;
  }
}

export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127(?:\.\d{1,3}){3}$/.test(h);
}

interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses one WWW-Authenticate challenge: `Scheme k=v, k="quoted, value"`. Null when unparsable. */
export function parseChallenge(header: string): Challenge | null {
  const m = /^\s*([A-Za-z][A-Za-z0-9._~+/-]*)\s*(.*)$/s.exec(header);
  if (m === null) return null;
  const scheme = (m[1] as string).toLowerCase();
  let rest = m[2] as string;
  const params: Record<string, string> = {};
  const re = /^\s*,?\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*/s;
  while (rest.trim() !== '' && rest.trim() !== ',') {
    const p = re.exec(rest);
    if (p === null) return null;
    const key = (p[1] as string).toLowerCase();
    const value = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : (p[3] ?? '');
    // Policy: a challenge repeating a parameter is ambiguous; refuse it rather than pick one.
    if (Object.prototype.hasOwnProperty.call(params, key)) return null;
    params[key] = value;
    rest = rest.slice(p[0].length);
  }
  return { scheme, params };
}

interface CachedToken {
  token: string;
  expiresAt: number;
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  res: http.IncomingMessage;
  url: URL;
}

type Body = Uint8Array | Readable | undefined;

interface RequestSpec {
  method: string;
  /** Absolute URL or a path on the base URL. */
  url: URL | string;
  headers?: http.OutgoingHttpHeaders;
  body?: Body;
  /** Scopes this request needs, e.g. `repository:app:pull`. */
  scopes: string[];
  /** Human name of the operation for error messages. */
  operation: string;
}

function headerValue(h: string | string[] | undefined): string | undefined {
  return Array.isArray(h) ? h[0] : h;
}

function bareContentType(ct: string | undefined): string {
  if (ct === undefined) return '';
  const semi = ct.indexOf(';');
  return (semi === -1 ? ct : ct.slice(0, semi)).trim().toLowerCase();
}

/** A body larger than the reader allows (not a registry failure: the caller may skip it). */
export class BodyTooLargeError extends Error {
  override name = 'BodyTooLargeError';
}

async function readAll(res: http.IncomingMessage, max: number, what: string): Promise<Buffer> {
  const declared = Number(res.headers['content-length']);
  if (Number.isFinite(declared) && declared > max) {
    res.destroy();
    throw new BodyTooLargeError(`${what} is ${declared} bytes, more than the ${max} allowed`);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const c of res) {
    const chunk = c as Buffer;
    total += chunk.length;
    if (total > max) {
      res.destroy();
      throw new BodyTooLargeError(`${what} is larger than the ${max} bytes allowed`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function parseErrorBody(body: Buffer): RegistryErrorEntry[] {
  try {
    const doc = JSON.parse(body.toString('utf8')) as { errors?: unknown };
    if (!Array.isArray(doc.errors)) return [];
    return doc.errors
      .filter((e): e is Record<string, unknown> => typeof e === 'object' && e !== null)
      .map((e) => ({
        code: typeof e.code === 'string' ? e.code : 'UNKNOWN',
        message: typeof e.message === 'string' ? e.message : '',
        ...(e.detail !== undefined ? { detail: e.detail } : {}),
      }));
  } catch {
    return [];
  }
}

function encodeRepo(repo: string): string {
  // Repository names are [a-z0-9._/-]; refuse anything else rather than percent-encode it (I2).
  if (!isValidRepoName(repo)) {
    throw new TypeError(`invalid repository name ${JSON.stringify(repo)}`);
  }
  return repo;
}

function checkRef(ref: string): string {
  if (!isValidDigest(ref) && !isValidTag(ref)) {
    throw new TypeError(`invalid tag or digest ${JSON.stringify(ref)}`);
  }
  return ref;
}

function checkDigest(d: string): string {
  if (!isValidDigest(d)) throw new TypeError(`invalid digest ${JSON.stringify(d)}`);
  return d;
}

/**
 * Merges scopes per resource (`repository:a:push` + `repository:a:pull` = `repository:a:pull,push`),
 * sorted, so a challenge naming a subset of what we asked for does not make a new token cache key.
 */
export function normalizeScopes(scopes: readonly string[]): string[] {
  const byResource = new Map<string, Set<string>>();
  const other = new Set<string>();
  for (const s of scopes) {
    const i = s.lastIndexOf(':');
    const head = s.slice(0, i);
    if (i <= 0 || !head.includes(':')) {
      other.add(s);
      continue;
    }
    const set = byResource.get(head) ?? new Set<string>();
    for (const a of s.slice(i + 1).split(',')) if (a !== '') set.add(a);
    byResource.set(head, set);
  }
  const out = [...other];
  for (const [head, actions] of byResource) out.push(`${head}:${[...actions].sort().join(',')}`);
  return out.sort();
}

const pullScope = (repo: string): string => `repository:${repo}:pull`;
const pushScope = (repo: string): string => `repository:${repo}:pull,push`;

export class RegistryClient {
  readonly base: URL;
  private readonly agent: http.Agent;
  private readonly opts: RegistryClientOptions;
  private readonly tokens = new Map<string, CachedToken>();
  /** The last Bearer challenge seen, so later requests can fetch a token before asking. */
  private bearer: { realm: URL; service: string | undefined } | undefined;
  private basicOnly = false;
  /** Number of token requests made (for tests and --debug). */
  tokenRequests = 0;

  constructor(opts: RegistryClientOptions) {
    const base = new URL(opts.baseUrl);
    if (base.protocol !== 'https:' && base.protocol !== 'http:') {
      throw new TypeError(`registry URL must be https://host[:port], not ${opts.baseUrl}`);
    }
    // Policy: plain HTTP carries credentials and unverified bytes; only loopback may use it.
    if (base.protocol === 'http:' && !isLoopbackHost(base.hostname)) {
      throw new TypeError(`plain http is only allowed to a loopback registry, not ${base.host}`);
    }
    if (base.pathname !== '/' || base.search !== '' || base.username !== '' || base.password !== '') {
      throw new TypeError('registry URL must be scheme://host[:port] only');
    }
    this.base = base;
    this.opts = opts;
    this.agent =
      base.protocol === 'https:'
        ? new https.Agent({
            keepAlive: true,
            maxSockets: 8,
            // Policy: extra CAs are added to the built-in roots (as skopeo's --cert-dir does).
            ...(opts.ca && opts.ca.length > 0 ? { ca: [...tls.rootCertificates, ...opts.ca] } : {}),
            ...(opts.cert !== undefined ? { cert: opts.cert } : {}),
            ...(opts.key !== undefined ? { key: opts.key } : {}),
            rejectUnauthorized: opts.tlsVerify !== false,
          })
        : new http.Agent({ keepAlive: true, maxSockets: 8 });
  }

  close(): void {
    this.agent.destroy();
  }

  private get hasCreds(): boolean {
    return this.opts.username !== undefined && this.opts.username !== '';
  }

  private basicHeader(): string {
    return `Basic ${Buffer.from(`${this.opts.username ?? ''}:${this.opts.password ?? ''}`).toString('base64')}`;
  }

  /** One HTTP exchange, no auth logic. */
  private send(method: string, url: URL, headers: http.OutgoingHttpHeaders, body: Body): Promise<Reply> {
    const mod = url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const req = mod.request(
        url,
        {
          method,
          agent: url.origin === this.base.origin ? this.agent : undefined,
          headers: { 'user-agent': this.opts.userAgent ?? 'trustgate-cli', ...headers },
          // Only used when the agent is not ours (token realm or redirect on another origin).
          ...(url.protocol === 'https:'
            ? {
                ...(this.opts.ca && this.opts.ca.length > 0
                  ? { ca: [...tls.rootCertificates, ...this.opts.ca] }
                  : {}),
                rejectUnauthorized: this.opts.tlsVerify !== false,
              }
            : {}),
        },
        (res) => resolve({ status: res.statusCode ?? 0, headers: res.headers, res, url }),
      );
      req.setTimeout(this.opts.timeoutMs ?? 60_000, () => {
        req.destroy(new Error(`${method} ${url.host}${url.pathname}: timed out`));
      });
      req.on('error', (err) => reject(new RegistryError(`${method} ${url.pathname}`, 0, [], err.message)));
      if (body === undefined) req.end();
      else if (body instanceof Uint8Array) req.end(body);
      else {
        body.on('error', (err) => req.destroy(err));
        body.pipe(req);
      }
    });
  }

  private scopeKey(scopes: string[]): string {
    return normalizeScopes(scopes).join(' ');
  }

  private cachedToken(scopes: string[]): string | undefined {
    const t = this.tokens.get(this.scopeKey(scopes));
    if (t === undefined) return undefined;
    if (Date.now() >= t.expiresAt) {
      this.tokens.delete(this.scopeKey(scopes));
      return undefined;
    }
    return t.token;
  }

  /** The Docker token flow: GET realm?service=&scope=… with Basic credentials. */
  private async fetchToken(scopes: string[]): Promise<string> {
    const b = this.bearer;
    if (b === undefined) throw new Error('no bearer challenge seen');
    const url = new URL(b.realm.href);
    if (b.service !== undefined) url.searchParams.set('service', b.service);
    for (const s of normalizeScopes(scopes)) url.searchParams.append('scope', s);
    const headers: http.OutgoingHttpHeaders = { accept: 'application/json' };
    // Policy: Basic credentials go only to a realm reached over TLS (or loopback); checked in
    // acceptChallenge before the realm is remembered.
    if (this.hasCreds) headers.authorization = this.basicHeader();
    this.tokenRequests++;
    const r = await this.send('GET', url, headers, undefined);
    const body = await readAll(r.res, MAX_TOKEN_BODY_BYTES, 'token response');
    if (r.status !== 200) {
      const errs = parseErrorBody(body);
      const hint =
        r.status === 401
          ? this.hasCreds
            ? ' (wrong username or password?)'
            : ' (no credentials given: set TRUSTGATE_USERNAME and TRUSTGATE_PASSWORD, or --username)'
          : '';
      throw new RegistryError(`token request to ${url.host}${url.pathname}${hint}`, r.status, errs);
    }
    let doc: Record<string, unknown>;
    try {
      doc = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
    } catch {
      throw new RegistryError(`token request to ${url.host}`, r.status, [], 'answer is not JSON');
    }
    const token =
      typeof doc.token === 'string' && doc.token !== ''
        ? doc.token
        : typeof doc.access_token === 'string'
          ? doc.access_token
          : '';
    if (token === '')
      throw new RegistryError(`token request to ${url.host}`, r.status, [], 'no token in answer');
    const ttl = typeof doc.expires_in === 'number' && doc.expires_in > 0 ? doc.expires_in : 60;
    // Refresh 10 s early so a token never expires between use and arrival.
    this.tokens.set(this.scopeKey(scopes), { token, expiresAt: Date.now() + Math.max(ttl - 10, 1) * 1000 });
    return token;
  }

  private acceptChallenge(header: string | undefined, operation: string): Challenge {
    const ch = header === undefined ? null : parseChallenge(header);
    if (ch === null) {
      throw new RegistryError(operation, 401, [], 'authentication required, but no usable challenge');
    }
    if (ch.scheme === 'bearer') {
      const realmText = ch.params.realm;
      if (realmText === undefined)
        throw new RegistryError(operation, 401, [], 'Bearer challenge has no realm');
      let realm: URL;
      try {
        realm = new URL(realmText);
      } catch {
        throw new RegistryError(operation, 401, [], `Bearer realm ${JSON.stringify(realmText)} is not a URL`);
      }
      // Policy: the realm receives our password; it must be https, or http on loopback only.
      if (!(realm.protocol === 'https:' || (realm.protocol === 'http:' && isLoopbackHost(realm.hostname)))) {
        throw new RegistryError(
          operation,
          401,
          [],
          `refusing to send credentials to token realm ${realm.origin} (not https)`,
        );
      }
      this.bearer = { realm, service: ch.params.service };
    }
    return ch;
  }

  /** Sends a request with authentication; retries once after a 401 when the body can be replayed. */
  private async request(spec: RequestSpec): Promise<Reply> {
    const url = typeof spec.url === 'string' ? new URL(spec.url, this.base) : spec.url;
    const replayable = !(spec.body !== undefined && !(spec.body instanceof Uint8Array));
    let scopes = spec.scopes;
    const authHeader = async (): Promise<string | undefined> => {
      if (this.basicOnly) return this.hasCreds ? this.basicHeader() : undefined;
      const cached = this.cachedToken(scopes);
      if (cached !== undefined) return `Bearer ${cached}`;
      if (this.bearer !== undefined) return `Bearer ${await this.fetchToken(scopes)}`;
      return undefined;
    };
    for (let attempt = 0; ; attempt++) {
      const headers: http.OutgoingHttpHeaders = { ...spec.headers };
      const auth = await authHeader();
      if (auth !== undefined) headers.authorization = auth;
      const r = await this.send(spec.method, url, headers, spec.body);
      if (r.status !== 401 || attempt > 0 || !replayable) return r;
      r.res.resume();
      const ch = this.acceptChallenge(headerValue(r.headers['www-authenticate']), spec.operation);
      if (ch.scheme === 'basic') {
        if (!this.hasCreds) {
          throw new RegistryError(
            spec.operation,
            401,
            [],
            'the registry wants a username and password (set TRUSTGATE_USERNAME and TRUSTGATE_PASSWORD)',
          );
        }
        this.basicOnly = true;
      } else if (ch.scheme === 'bearer') {
        const extra = (ch.params.scope ?? '').split(' ').filter((s) => s !== '');
        // Drop a cached token for these scopes: it was refused (expired or revoked).
        this.tokens.delete(this.scopeKey(scopes));
        scopes = normalizeScopes([...scopes, ...extra]);
      } else {
        throw new RegistryError(spec.operation, 401, [], `unsupported auth scheme ${ch.scheme}`);
      }
    }
  }

  /** request() that follows redirects for GET/HEAD; Authorization is dropped on another origin. */
  private async requestFollow(spec: RequestSpec): Promise<Reply> {
    let r = await this.request(spec);
    for (let i = 0; i < MAX_REDIRECTS && [301, 302, 303, 307, 308].includes(r.status); i++) {
      const loc = headerValue(r.headers.location);
      r.res.resume();
      if (loc === undefined)
        throw new RegistryError(spec.operation, r.status, [], 'redirect without Location');
      const next = new URL(loc, r.url);
      // Policy: no downgrade to plain http except on loopback.
      if (next.protocol !== 'https:' && !(next.protocol === 'http:' && isLoopbackHost(next.hostname))) {
        throw new RegistryError(spec.operation, r.status, [], `refusing redirect to ${next.origin}`);
      }
      if (next.origin === this.base.origin) r = await this.request({ ...spec, url: next });
      // Policy: our token or password never follows a redirect to another origin (blob storage).
      else r = await this.send(spec.method, next, { ...spec.headers }, undefined);
    }
    return r;
  }

  private async fail(r: Reply, operation: string): Promise<never> {
    let body: Buffer = Buffer.alloc(0);
    try {
      // A HEAD answer has no body; this then ends at once.
      body = await readAll(r.res, MAX_ERROR_BODY_BYTES, 'error body');
    } catch {
      /* an unreadable error body still gives the status */
    }
    throw new RegistryError(operation, r.status, parseErrorBody(body));
  }

  /** Resolves an upload Location (relative or absolute) on our origin. */
  private uploadUrl(r: Reply, operation: string): URL {
    const loc = headerValue(r.headers.location);
    if (loc === undefined || loc === '')
      throw new RegistryError(operation, r.status, [], 'no upload Location');
    const url = new URL(loc, r.url);
    // Policy: our credentials go only to the registry we were pointed at.
    if (url.origin !== this.base.origin) {
      throw new RegistryError(
        operation,
        r.status,
        [],
        `upload Location points to another origin ${url.origin}`,
      );
    }
    return url;
  }

  private static withDigest(url: URL, digest: string): URL {
    const out = new URL(url.href);
    // Appended by hand: re-serialising the registry's opaque _state parameter is avoided.
    out.search = `${out.search === '' ? '?' : `${out.search}&`}digest=${encodeURIComponent(digest)}`;
    return out;
  }

  /**
   * A JSON request to trustgate's admin API (`/admin/v1/...`) over the same TLS, mTLS and token
   * flow as the registry calls. The token asks for `registry:admin:*` alone (trustgate grants it to
   * admins only and refuses registry tokens there); it is cached apart from registry tokens, by
   * scope. With an admin client certificate no token is needed. Non-2xx answers throw
   * RegistryError with trustgate's message.
   */
  async adminRequest(method: string, pathname: string, body?: unknown): Promise<unknown> {
    if (!pathname.startsWith('/admin/v1/')) throw new TypeError('admin paths start with /admin/v1/');
    const operation = `${method} ${pathname.split('?')[0]}`;
    const bytes = body === undefined ? undefined : new TextEncoder().encode(JSON.stringify(body));
    const r = await this.request({
      method,
      url: pathname,
      headers: {
        accept: 'application/json',
        ...(bytes !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      body: bytes,
      scopes: [ADMIN_SCOPE],
      operation,
    });
    const answer = await readAll(r.res, MAX_ADMIN_BODY_BYTES, 'admin API answer');
    if (r.status < 200 || r.status >= 300)
      throw new RegistryError(operation, r.status, parseErrorBody(answer));
    try {
      return JSON.parse(answer.toString('utf8')) as unknown;
    } catch {
      throw new RegistryError(operation, r.status, [], 'answer is not JSON');
    }
  }

  /** Ping `/v2/` (and authenticate when asked). True when the registry answers 200. */
  async ping(): Promise<boolean> {
    const r = await this.request({ method: 'GET', url: '/v2/', scopes: [], operation: 'GET /v2/' });
    r.res.resume();
    return r.status === 200;
  }

  /**
   * GET a manifest. The digest is computed from the received bytes (I1); when `ref` is a digest,
   * the bytes must hash to it.
   */
  async getManifest(
    repo: string,
    ref: string,
    accept: readonly string[] = MANIFEST_ACCEPT,
    opts: { forPush?: boolean } = {},
  ): Promise<Manifest> {
    const m = await this.getManifestIfExists(repo, ref, accept, opts);
    if (m === null) throw new RegistryError(`GET manifest ${repo}:${ref}`, 404, [], 'manifest unknown');
    return m;
  }

  /**
   * As getManifest, but null when the registry answers 404. `forPush` asks for a pull,push token:
   * trustgate serves unsigned manifests only to identities whose token grants push (publishers).
   */
  async getManifestIfExists(
    repo: string,
    ref: string,
    accept: readonly string[] = MANIFEST_ACCEPT,
    opts: { forPush?: boolean } = {},
  ): Promise<Manifest | null> {
    const operation = `GET manifest ${repo}${isValidDigest(ref) ? '@' : ':'}${ref}`;
    const r = await this.requestFollow({
      method: 'GET',
      url: `/v2/${encodeRepo(repo)}/manifests/${checkRef(ref)}`,
      headers: { accept: accept.join(', ') },
      scopes: [opts.forPush === true ? pushScope(repo) : pullScope(repo)],
      operation,
    });
    if (r.status === 404) {
      r.res.resume();
      return null;
    }
    if (r.status !== 200) return this.fail(r, operation);
    const bytes = new Uint8Array(await readAll(r.res, MAX_MANIFEST_BYTES, 'manifest'));
    const digest = digestOf(bytes, isValidDigest(ref) ? ref : 'sha256:');
    // Policy (I1): never trust Docker-Content-Digest; by-digest answers must hash to the digest.
    if (isValidDigest(ref) && digest !== ref) {
      throw new RegistryError(
        operation,
        r.status,
        [],
        `the registry sent bytes that hash to ${digest}, not ${ref}`,
      );
    }
    const mediaType = bareContentType(headerValue(r.headers['content-type']));
    return { bytes, mediaType, digest };
  }

  /** PUT a manifest under a tag or digest; returns the digest of the bytes. */
  async putManifest(repo: string, ref: string, bytes: Uint8Array, mediaType: string): Promise<string> {
    const operation = `PUT manifest ${repo}${isValidDigest(ref) ? '@' : ':'}${ref}`;
    const digest = digestOf(bytes, isValidDigest(ref) ? ref : 'sha256:');
    if (isValidDigest(ref) && digest !== ref)
      throw new TypeError(`manifest bytes hash to ${digest}, not ${ref}`);
    const r = await this.request({
      method: 'PUT',
      url: `/v2/${encodeRepo(repo)}/manifests/${checkRef(ref)}`,
      headers: { 'content-type': mediaType, 'content-length': String(bytes.length) },
      body: bytes,
      scopes: [pushScope(repo)],
      operation,
    });
    if (r.status !== 201 && r.status !== 200) return this.fail(r, operation);
    r.res.resume();
    const said = headerValue(r.headers['docker-content-digest']);
    if (said !== undefined && said !== digest) {
      throw new RegistryError(operation, r.status, [], `the registry stored ${said}, not ${digest}`);
    }
    return digest;
  }

  /** HEAD a blob: whether it is linked in `repo`, and its size. */
  async headBlob(repo: string, digest: string): Promise<{ exists: boolean; size?: number }> {
    const operation = `HEAD blob ${repo}@${digest}`;
    const r = await this.requestFollow({
      method: 'HEAD',
      url: `/v2/${encodeRepo(repo)}/blobs/${checkDigest(digest)}`,
      scopes: [pullScope(repo)],
      operation,
    });
    r.res.resume();
    if (r.status === 404) return { exists: false };
    if (r.status !== 200) return this.fail(r, operation);
    const size = Number(r.headers['content-length']);
    return Number.isSafeInteger(size) ? { exists: true, size } : { exists: true };
  }

  /**
   * The OCI 1.1 referrers of `digest` (trustgate serves this API over registry:2): the digests it
   * lists; undefined from a registry without the API (404).
   */
  async getReferrers(
    repo: string,
    digest: string,
    opts: { forPush?: boolean } = {},
  ): Promise<string[] | undefined> {
    const operation = `GET referrers ${repo}@${digest}`;
    const r = await this.requestFollow({
      method: 'GET',
      url: `/v2/${encodeRepo(repo)}/referrers/${digest}`,
      headers: { accept: MEDIA_TYPES.ociIndex },
      // trustgate lists the referrers of an unsigned digest only to a token that grants push.
      scopes: [opts.forPush === true ? pushScope(repo) : pullScope(repo)],
      operation,
    });
    if (r.status === 404) {
      r.res.resume();
      return undefined;
    }
    if (r.status !== 200) return this.fail(r, operation);
    const index = parseManifest(
      await readAll(r.res, MAX_MANIFEST_BYTES, 'referrers index'),
      MEDIA_TYPES.ociIndex,
    );
    return index.manifests.map((d) => d.digest);
  }

  /** GET a small blob whole; its bytes must hash to `digest`. */
  async getBlob(
    repo: string,
    digest: string,
    maxBytes = DEFAULT_MAX_BLOB_BYTES,
    opts: { forPush?: boolean } = {},
  ): Promise<Uint8Array> {
    const { stream } = await this.openBlob(repo, digest, opts);
    const bytes = new Uint8Array(await readAll(stream, maxBytes, `blob ${digest}`));
    const got = digestOf(bytes, digest);
    if (got !== digest) {
      throw new RegistryError(
        `GET blob ${repo}@${digest}`,
        200,
        [],
        `the registry sent bytes that hash to ${got}`,
      );
    }
    return bytes;
  }

  /** Opens a blob as a stream (for copying large blobs; the receiving registry checks the digest). */
  async openBlob(
    repo: string,
    digest: string,
    opts: { forPush?: boolean } = {},
  ): Promise<{ stream: http.IncomingMessage; size?: number }> {
    const operation = `GET blob ${repo}@${digest}`;
    const r = await this.requestFollow({
      method: 'GET',
      url: `/v2/${encodeRepo(repo)}/blobs/${checkDigest(digest)}`,
      scopes: [opts.forPush === true ? pushScope(repo) : pullScope(repo)],
      operation,
    });
    if (r.status !== 200) return this.fail(r, operation);
    const size = Number(r.headers['content-length']);
    return Number.isSafeInteger(size) ? { stream: r.res, size } : { stream: r.res };
  }

  private async startUpload(
    repo: string,
    query: string,
    operation: string,
    scopes: string[],
  ): Promise<Reply> {
    return this.request({
      method: 'POST',
      url: `/v2/${encodeRepo(repo)}/blobs/uploads/${query}`,
      headers: { 'content-length': '0' },
      scopes,
      operation,
    });
  }

  private async finishUpload(
    repo: string,
    location: URL,
    digest: string,
    body: Uint8Array | Readable,
    size: number | undefined,
    operation: string,
  ): Promise<void> {
    const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/octet-stream' };
    if (size !== undefined) headers['content-length'] = String(size);
    const r = await this.request({
      method: 'PUT',
      url: RegistryClient.withDigest(location, digest),
      headers,
      body,
      scopes: [pushScope(repo)],
      operation,
    });
    if (r.status !== 201) return this.fail(r, operation);
    r.res.resume();
  }

  /** Uploads bytes as a blob (POST + monolithic PUT); returns its digest and size. */
  async uploadBlob(repo: string, bytes: Uint8Array): Promise<{ digest: string; size: number }> {
    const digest = digestOf(bytes);
    const operation = `upload blob ${repo}@${digest}`;
    const r = await this.startUpload(repo, '', operation, [pushScope(repo)]);
    if (r.status !== 202) return this.fail(r, operation);
    r.res.resume();
    await this.finishUpload(repo, this.uploadUrl(r, operation), digest, bytes, bytes.length, operation);
    return { digest, size: bytes.length };
  }

  /**
   * Mounts `digest` from repository `from` into `repo`. When the registry opens an upload instead
   * (202: it could or would not mount), the blob is streamed from `from` into that upload.
   */
  async mountBlob(repo: string, from: string, digest: string): Promise<'mounted' | 'uploaded'> {
    const operation = `mount blob ${digest} from ${from} into ${repo}`;
    const q = `?mount=${encodeURIComponent(checkDigest(digest))}&from=${encodeURIComponent(encodeRepo(from))}`;
    const r = await this.startUpload(repo, q, operation, [pushScope(repo), pullScope(from)]);
    if (r.status === 201) {
      r.res.resume();
      return 'mounted';
    }
    if (r.status !== 202) return this.fail(r, operation);
    r.res.resume();
    const location = this.uploadUrl(r, operation);
    const { stream, size } = await this.openBlob(from, digest);
    await this.finishUpload(repo, location, digest, stream, size, operation);
    return 'uploaded';
  }

  /** All tags of a repository (follows `Link: <…>; rel="next"` pagination on the same origin). */
  async listTags(repo: string): Promise<string[]> {
    const operation = `list tags of ${repo}`;
    const out: string[] = [];
    let url: URL = new URL(`/v2/${encodeRepo(repo)}/tags/list`, this.base);
    for (let page = 0; page < 1000; page++) {
      const r = await this.requestFollow({ method: 'GET', url, scopes: [pullScope(repo)], operation });
      if (r.status === 404) {
        r.res.resume();
        return out;
      }
      if (r.status !== 200) return this.fail(r, operation);
      const doc = JSON.parse((await readAll(r.res, MAX_MANIFEST_BYTES, 'tag list')).toString('utf8')) as {
        tags?: unknown;
      };
      if (Array.isArray(doc.tags)) for (const t of doc.tags) if (typeof t === 'string') out.push(t);
      const link = headerValue(r.headers.link);
      const next = link === undefined ? null : /<([^>]+)>\s*;\s*rel="?next"?/.exec(link);
      if (next === null) return out;
      url = new URL(next[1] as string, url);
      if (url.origin !== this.base.origin) return out;
    }
    return out;
  }
}
