/**
 * The route parser: the one place that decides which (repository, kind, reference, action) a /v2
 * request touches (I2). Pure: the raw request line in, one typed Route out, or a GateError.
 *
 * What registry:2 (v2.8.2) does with a request, and so what this parser must agree with:
 * - gorilla/mux matches the *decoded* path (`UseEncodedPath` off), so `%2f` in a name becomes a `/`;
 * - before matching, mux cleans the path (`.`, `..`, `//`) and answers a 301 to the cleaned path;
 * - `StrictSlash(true)`: a route declared without a trailing slash also matches with one (and the
 *   reverse) and answers a 301 to the declared form; only `/v2/` and `.../blobs/uploads/` end in `/`;
 * - routes are tried in order: base, tags list, manifest, blob, upload start, upload chunk, catalog
 *   (and `<name>/referrers/<digest>`, which registry:2 lacks and trustgate serves itself).
 *   Every variable but `name` excludes `/`, so the last segments alone choose the route and the name
 *   is everything before them (the name regex is greedy): `/v2/a/manifests/manifests/x` is the
 *   manifest `x` of repository `a/manifests`, and `/v2/a/manifests/tags/list` is the tag list of
 *   `a/manifests`. No two route suffixes overlap, so this parser makes exactly registry's choice;
 * - the handlers read `mount`, `from`, `digest` and `_state` with `r.FormValue`, which also reads an
 *   urlencoded or multipart body, and which takes the first of duplicate keys; Go (≥ 1.17) drops a
 *   query pair that contains `;`.
 *
 * Policy: this parser accepts only the canonical spelling of each route and refuses everything else,
 * rather than normalising, so the raw request line can be forwarded unchanged and means the same
 * thing upstream.
 */
import { badRequest, GateError } from './errors.js';
import { isValidDigest, isValidRepoName, isValidTag } from './reference.js';
import type { Reference, Route } from './types.js';

export interface RawRequest {
  method: string;
  url: string;
  contentType?: string;
  /** Declared body length (`Content-Length`), when the request has one. */
  contentLength?: string;
  /** True when the request is chunked (`Transfer-Encoding`), so its body length is unknown. */
  chunked?: boolean;
  /** Header names and values as received (Node's rawHeaders: name, value, name, value, …). */
  rawHeaders?: readonly string[];
}

/**
 * Characters allowed in the path. Names use `[a-z0-9._-]` and `/`; tags add `A-Z`; digests add `:`;
 * upload ids add `=`. Policy: everything else is refused before any route is considered, which covers
 * `%` (any percent-encoding, even of a harmless byte: registry names never need it), `\`, `;`, `#`,
 * whitespace, control characters, NUL and non-ASCII.
 */
const PATH_CHARS = /^[A-Za-z0-9._:=/-]*$/;

/** distribution's upload-chunk route: `{uuid:[a-zA-Z0-9-_.=]+}`. */
const UPLOAD_ID = /^[A-Za-z0-9_.=-]+$/;

/** A query key as a client writes it. Policy: no encoded or `+` characters in keys. */
const QUERY_KEY = /^[A-Za-z0-9_.-]+$/;

/** Raw query characters: RFC 3986 query characters, minus `;` (Go drops such a pair) and `&`/`=`. */
const QUERY_VALUE_RAW = /^[A-Za-z0-9\-._~!$'()*+,:@/?=%]*$/;

/** Methods registry:2 serves on each route (gorilla/handlers MethodHandler: exact, case-sensitive). */
const METHODS = {
  // The base handler answers any method; we pass only the two a client uses to ping.
  base: ['GET', 'HEAD'],
  catalog: ['GET'],
  tags: ['GET'],
  referrers: ['GET', 'HEAD'],
  manifest: ['GET', 'HEAD', 'PUT', 'DELETE'],
  blob: ['GET', 'HEAD', 'DELETE'],
  'upload-start': ['POST'],
  upload: ['GET', 'PATCH', 'PUT', 'DELETE'],
} as const satisfies Record<Route['kind'], readonly string[]>;

/** Parses one /v2 request into exactly one Route, or throws a GateError. */
export function parseRoute(req: RawRequest): Route {
  checkHeaderValues(req.rawHeaders ?? []);
  const { path, query } = splitTarget(req.url);
  checkPathChars(path);
  const route = matchPath(req.method, path);
  checkBody(req, route.kind);
  const params = parseQuery(query);
  return withQuery(req.method, route, params);
}

/** A route before its query parameters are read. */
type Matched =
  | { kind: 'base' }
  | { kind: 'catalog' }
  | { kind: 'tags'; repo: string }
  | { kind: 'referrers'; repo: string; digest: string }
  | { kind: 'manifest'; repo: string; ref: Reference }
  | { kind: 'blob'; repo: string; digest: string }
  | { kind: 'upload-start'; repo: string }
  | { kind: 'upload'; repo: string; uuid: string };

function splitTarget(url: string): { path: string; query: string | undefined } {
  // Policy: origin-form only (`/path?query`). An absolute URI or `*` names a target that the
  // registry would resolve differently from us (and a proxy has no business relaying).
  if (!url.startsWith('/'))
    throw badRequest('the request target must be an absolute path', { logDetail: { url } });
  // Policy: a fragment never belongs in a request line; Go would keep it as part of the path.
  if (url.includes('#'))
    throw badRequest('the request target must not contain a fragment', { logDetail: { url } });
  const q = url.indexOf('?');
  if (q === -1) return { path: url, query: undefined };
  return { path: url.slice(0, q), query: url.slice(q + 1) };
}

function checkPathChars(path: string): void {
  if (!PATH_CHARS.test(path)) {
    // Policy: percent-encoding anywhere in the path is refused: mux matches the decoded path, so
    // `%2f` would split a name and `%2e%2e` would climb; and no valid route needs it.
    const why = path.includes('%') ? 'percent-encoding' : 'characters outside the registry grammar';
    throw new GateError('NAME_INVALID', `the request path contains ${why}`, { logDetail: { path } });
  }
}

/** `segments` is the path after the leading `/`, split on `/` (so it starts with `v2`). */
function checkSegments(path: string, segments: string[]): void {
  for (const [i, seg] of segments.entries()) {
    // Policy: dot segments are refused, not resolved: mux would redirect to the cleaned path.
    if (seg === '.' || seg === '..') {
      throw new GateError('NAME_INVALID', 'the request path contains a dot segment', { logDetail: { path } });
    }
    // Policy: an empty segment (`//`, or a trailing `/` where the route has none) is refused:
    // mux would redirect to a different path. The trailing `/` of `/v2/` and of
    // `/blobs/uploads/` is the one allowed empty last segment.
    if (seg === '' && !(i === segments.length - 1 && allowsTrailingSlash(segments))) {
      throw new GateError('NAME_INVALID', 'the request path contains an empty segment', {
        logDetail: { path },
      });
    }
  }
}

function allowsTrailingSlash(segments: string[]): boolean {
  const n = segments.length;
  if (n === 2 && segments[0] === 'v2') return true;
  return n >= 5 && segments[0] === 'v2' && segments[n - 3] === 'blobs' && segments[n - 2] === 'uploads';
}

function notFound(path: string): GateError {
  // Policy: an unknown path is a plain 404 (registry:2 answers 404 with no error code). The code
  // is UNSUPPORTED: it is not NAME_UNKNOWN, because no repository was looked at.
  return new GateError('NO_SUCH_ENDPOINT', 'unknown path: not a registry v2 API route', {
    logDetail: { path },
  });
}

function matchPath(method: string, path: string): Matched {
  // Policy: `/v2` without the slash is refused: registry:2 only redirects it to `/v2/`.
  if (!path.startsWith('/v2/')) throw notFound(path);
  checkSegments(path, path.slice(1).split('/'));
  if (path === '/v2/') return checkMethod(method, { kind: 'base' });
  if (path === '/v2/_catalog') return checkMethod(method, { kind: 'catalog' });
  const segs = path.slice('/v2/'.length).split('/');
  const n = segs.length;
  const last = segs[n - 1] ?? '';
  const second = segs[n - 2];
  const third = segs[n - 3];
  // The suffix chooses the route (see the header comment); the name is everything before it.
  let m: { kind: Matched['kind']; nameSegs: number } | undefined;
  if (second === 'tags' && last === 'list') m = { kind: 'tags', nameSegs: n - 2 };
  // registry:2 has no referrers route (it answers 404); trustgate serves this one itself, so no
  // upstream reading of the path can differ. A digest always has `:`, which no other suffix has.
  else if (second === 'referrers' && last.includes(':')) m = { kind: 'referrers', nameSegs: n - 2 };
  else if (second === 'manifests') m = { kind: 'manifest', nameSegs: n - 2 };
  else if (third === 'blobs' && second === 'uploads' && last === '')
    m = { kind: 'upload-start', nameSegs: n - 3 };
  else if (third === 'blobs' && second === 'uploads') m = { kind: 'upload', nameSegs: n - 3 };
  else if (second === 'blobs' && last !== 'uploads') m = { kind: 'blob', nameSegs: n - 2 };
  // `blobs/uploads/<id>` never overlaps `blobs/<digest>`: an upload id has no `:` and a digest does.
  // `blobs/uploads` without the slash is a 404 here (registry:2 only redirects it).
  if (m === undefined || m.nameSegs < 1) throw notFound(path);
  const repo = segs.slice(0, m.nameSegs).join('/');
  if (!isValidRepoName(repo)) {
    throw new GateError('NAME_INVALID', 'invalid repository name', { logDetail: { repo } });
  }
  switch (m.kind) {
    case 'tags':
      return checkMethod(method, { kind: 'tags', repo });
    case 'referrers':
      return checkMethod(method, { kind: 'referrers', repo, digest: parseDigest(last, 'subject digest') });
    case 'manifest':
      return checkMethod(method, { kind: 'manifest', repo, ref: parseReference(last) });
    case 'blob':
      return checkMethod(method, { kind: 'blob', repo, digest: parseDigest(last, 'blob digest') });
    case 'upload-start':
      return checkMethod(method, { kind: 'upload-start', repo });
    case 'upload':
      if (!UPLOAD_ID.test(last)) {
        throw new GateError('BLOB_UPLOAD_INVALID', 'invalid upload id', { logDetail: { uuid: last } });
      }
      return checkMethod(method, { kind: 'upload', repo, uuid: last });
    default:
      throw notFound(path);
  }
}

/**
 * A manifest reference is a digest if it contains `:` (the tag grammar has none), else a tag.
 * Policy: a `:` reference that is not a canonical sha256/sha512 digest is refused; registry:2 would
 * fall back to reading it as a tag.
 */
function parseReference(ref: string): Reference {
  if (ref.includes(':')) return { digest: parseDigest(ref, 'manifest digest') };
  if (!isValidTag(ref)) {
    throw new GateError('MANIFEST_INVALID', 'invalid manifest reference: not a valid tag', {
      logDetail: { ref },
    });
  }
  return { tag: ref };
}

function parseDigest(d: string, what: string): string {
  if (!isValidDigest(d)) {
    throw new GateError(
      'DIGEST_INVALID',
      `invalid ${what}: only sha256 and sha512 digests in lowercase hex`,
      {
        logDetail: { digest: d },
      },
    );
  }
  return d;
}

function checkMethod<M extends Matched>(method: string, m: M): M {
  const allowed: readonly string[] = METHODS[m.kind];
  if (!allowed.includes(method)) {
    throw new GateError('UNSUPPORTED', `method ${method.slice(0, 16)} is not allowed on this route`, {
      headers: { Allow: allowed.join(', ') },
    });
  }
  return m;
}

/**
 * Header values: visible ASCII, space and tab only. Policy (I2): every byte outside that is refused
 * on every /v2 request, whichever header carries it. Node reads such bytes as latin1, while Go
 * decodes them as UTF-8 and then folds and trims with Unicode rules: `strings.ToLower` maps
 * U+0130 (İ) to `i` and U+212A (Kelvin) to `k`, and `strings.TrimSpace` strips U+0085 and U+00A0.
 * `Content-Type: applİcation/x-www-form-urlencoded` was read as a form by registry:2 and not by us.
 * No registry client sends non-ASCII header bytes, so refusing them all closes the class.
 */
const HEADER_VALUE = /^[\t\x20-\x7e]*$/;

function checkHeaderValues(raw: readonly string[]): void {
  for (let i = 1; i < raw.length; i += 2) {
    if (!HEADER_VALUE.test(raw[i]!)) {
      const name = raw[i - 1]!.toLowerCase();
      throw badRequest(`the ${name.slice(0, 64)} header contains a byte outside printable ASCII`, {
        logDetail: { name },
      });
    }
  }
}

const FORM_TYPES = ['application/x-www-form-urlencoded', 'multipart/'];

function checkBody(req: RawRequest, kind: Route['kind']): void {
  if (req.contentType === undefined) return;
  // Policy: no form body on a request that carries one. registry:2's FormValue would read
  // `mount`/`from`/`digest`/`_state` from it (I2, I4) and consume a blob as a form. A substring test
  // on the lowercased header catches every spelling Go's ParseMediaType would accept (the value is
  // ASCII here, so Go's and JavaScript's lowercasing agree). An empty body (Content-Length: 0,
  // as curl -d '' and Python's urllib send) holds no form and is let through: the forwarder sends
  // every upload request upstream as application/octet-stream anyway.
  if (req.method !== 'POST' && req.method !== 'PUT' && req.method !== 'PATCH') return;
  if (req.contentLength === '0' && req.chunked !== true) return;
  const ct = req.contentType.toLowerCase();
  if (FORM_TYPES.some((t) => ct.includes(t))) {
    throw new GateError('UNSUPPORTED_MEDIA_TYPE', `a form body is not accepted on the ${kind} route`, {
      logDetail: { contentType: req.contentType },
    });
  }
}

/** Decodes like Go's url.QueryUnescape (`+` is a space), refusing what Go would drop or mangle. */
function decodeQueryValue(raw: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === 0x25 /* % */) {
      const hex = raw.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) throw badRequest('invalid percent-encoding in the query');
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else if (c === 0x2b /* + */) bytes.push(0x20);
    else bytes.push(c);
  }
  // Policy: no control characters (NUL included) in a decoded value.
  if (bytes.some((b) => b < 0x20 || b === 0x7f)) throw badRequest('control character in the query');
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(new Uint8Array(bytes));
  } catch {
    throw badRequest('the query is not valid UTF-8');
  }
}

function parseQuery(query: string | undefined): Map<string, string> {
  const params = new Map<string, string>();
  if (query === undefined || query === '') return params;
  const seen = new Set<string>();
  for (const pair of query.split('&')) {
    const eq = pair.indexOf('=');
    const key = eq === -1 ? pair : pair.slice(0, eq);
    const raw = eq === -1 ? '' : pair.slice(eq + 1);
    // Policy: keys are plain (no `%`, `+`, `;`, empty key or empty pair), so no layer decodes a key
    // differently from Go's ParseQuery.
    if (!QUERY_KEY.test(key)) throw badRequest('invalid query key', { logDetail: { key } });
    // Policy: no duplicate keys, compared case-insensitively: FormValue takes the first, other
    // parsers the last, and a case variant invites a layer that folds case.
    const folded = key.toLowerCase();
    if (seen.has(folded)) throw badRequest(`duplicate query key: ${key}`);
    seen.add(folded);
    if (!QUERY_VALUE_RAW.test(raw)) throw badRequest(`invalid characters in query value of ${key}`);
    params.set(key, decodeQueryValue(raw));
  }
  return params;
}

function checkPageSize(params: Map<string, string>): void {
  const n = params.get('n');
  // Policy: `n` is a plain positive decimal integer (no sign, no leading zero, at most 9 digits).
  if (n !== undefined && !/^[1-9][0-9]{0,8}$/.test(n)) {
    throw badRequest('query parameter n must be a positive integer');
  }
}

function withQuery(method: string, m: Matched, params: Map<string, string>): Route {
  switch (m.kind) {
    case 'base':
      return { kind: 'base', action: null };
    case 'catalog':
      checkPageSize(params);
      return { kind: 'catalog', action: 'catalog' };
    case 'tags':
      checkPageSize(params);
      return { kind: 'tags', repo: m.repo, action: 'pull' };
    case 'referrers':
      return referrers(m.repo, m.digest, params);
    case 'manifest':
      return {
        kind: 'manifest',
        repo: m.repo,
        ref: m.ref,
        action: method === 'PUT' ? 'push' : method === 'DELETE' ? 'delete' : 'pull',
      };
    case 'blob':
      return {
        kind: 'blob',
        repo: m.repo,
        digest: m.digest,
        action: method === 'DELETE' ? 'delete' : 'pull',
      };
    case 'upload-start':
      return uploadStart(m.repo, params);
    case 'upload':
      return uploadChunk(method, m.repo, m.uuid, params);
  }
}

/** `type/subtype` as RFC 6838 allows it (what an artifactType filter names). */
const MEDIA_TYPE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$/;

function referrers(repo: string, digest: string, params: Map<string, string>): Route {
  for (const key of params.keys()) {
    if (key !== 'artifactType') throw badRequest(`unknown query parameter ${key} on the referrers API`);
  }
  const artifactType = params.get('artifactType');
  if (artifactType !== undefined && !MEDIA_TYPE.test(artifactType)) {
    throw badRequest('artifactType must be a media type (type/subtype)');
  }
  return { kind: 'referrers', repo, digest, action: 'pull', ...(artifactType ? { artifactType } : {}) };
}

function uploadStart(repo: string, params: Map<string, string>): Route {
  const mount = params.get('mount');
  const from = params.get('from');
  const digest = params.get('digest');
  const route: Extract<Route, { kind: 'upload-start' }> = { kind: 'upload-start', repo, action: 'push' };
  // Policy: `mount` and `from` come together or not at all. registry:2 silently starts a plain
  // upload when one is missing; a request that says half a mount is refused as malformed.
  if ((mount === undefined) !== (from === undefined)) {
    throw badRequest('a blob mount needs both mount= and from=');
  }
  if (mount !== undefined && from !== undefined) {
    // Policy: a mount and a monolithic digest together are refused: registry:2 tries the mount and
    // then falls back to an upload; one request means one thing.
    if (digest !== undefined) throw badRequest('mount= and digest= cannot be combined');
    if (!isValidRepoName(from)) {
      throw new GateError('NAME_INVALID', 'invalid repository name in from=', { logDetail: { from } });
    }
    route.mount = { from, digest: parseDigest(mount, 'mount digest') };
  }
  if (digest !== undefined) route.digest = parseDigest(digest, 'upload digest');
  return route;
}

function uploadChunk(method: string, repo: string, uuid: string, params: Map<string, string>): Route {
  const digest = params.get('digest');
  const route: Extract<Route, { kind: 'upload' }> = { kind: 'upload', repo, uuid, action: 'push' };
  if (method === 'PUT') {
    // registry:2 refuses to complete an upload without a digest; so do we, before forwarding.
    if (digest === undefined) throw new GateError('DIGEST_INVALID', 'completing an upload needs digest=');
    route.digest = parseDigest(digest, 'upload digest');
  } else if (digest !== undefined) {
    // Policy: registry:2 ignores digest= except on PUT; refuse it rather than carry a value that
    // means nothing upstream.
    throw badRequest(`digest= is only accepted when completing an upload (PUT), not on ${method}`);
  }
  return route;
}
