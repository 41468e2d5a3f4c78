/**
 * What may be written to a log (or a terminal) from a value that might hold a credential. Pure:
 * strings and plain values in, redacted copies out. The logger applies it to every log call
 * (server/log.ts), so no module has to remember to; the CLI applies it to its error lines.
 *
 * - Policy: in a URL, every query value is redacted except those of a short allowlist of keys
 *   that carry names and digests only (LOGGED_QUERY_KEYS); the path is kept. An allowlist, not a
 *   denylist: a client that puts a secret under a key we never heard of (`access_token`, `_state`,
 *   `X-Amz-Signature`, `sig`…) leaks nothing. Bare components (no `=`) count as values.
 * - Policy: a value under a key that names a secret (SECRET_KEYS: password, token, secret,
 *   authorization, `_state`…) is replaced whole, at any depth.
 * - Policy: in any text, `Bearer …` / `Basic …` credentials, anything shaped like a JWT, the
 *   userinfo of a URL (`redis://:pass@host`) and PEM private keys are replaced.
 */

/** Query keys whose values are logged: registry names, digests, page sizes, token-request scope. */
export const LOGGED_QUERY_KEYS: ReadonlySet<string> = new Set([
  'n',
  'last',
  'mount',
  'from',
  'digest',
  'service',
  'scope',
  'account',
  'client_id',
  'offline_token',
  'grant_type',
  'access_type',
  'ref',
  'repo',
]);

/** Keys (any case, `-`/`_` ignored) whose values are never logged, whatever they hold. */
const SECRET_KEYS: ReadonlySet<string> = new Set(
  [
    'password',
    'passwd',
    'newPassword',
    'passphrase',
    'secret',
    'clientSecret',
    'hmacSecret',
    'token',
    'accessToken',
    'refreshToken',
    'idToken',
    'identityToken',
    'registryToken',
    'authorization',
    'proxyAuthorization',
    'cookie',
    'setCookie',
    'privateKey',
    'ciphertext',
  ].map(normaliseKey),
);
/** Secret keys matched exactly (lower case): `_state` is registry:2's signed upload state. */
const SECRET_KEYS_EXACT: ReadonlySet<string> = new Set(['_state']);

/** Keys whose string values are URLs or request targets. */
const URL_KEYS: ReadonlySet<string> = new Set(
  ['path', 'url', 'originalUrl', 'location', 'href', 'uri', 'target', 'realm', 'redisUrl'].map(normaliseKey),
);

export const REDACTED = '[redacted]';
const MAX_DEPTH = 8;
const MAX_KEY_SHOWN = 64;

function normaliseKey(k: string): string {
  return k.replace(/[-_]/g, '').toLowerCase();
}

/** Is `key` the name of a field whose value is never logged? */
export function isSecretKey(key: string): boolean {
  return SECRET_KEYS.has(normaliseKey(key)) || SECRET_KEYS_EXACT.has(key.toLowerCase());
}

// A cheap test first: most log strings (names, digests, reasons) contain none of these.
const MAYBE_SECRET = /[?&#@]|eyJ|bearer|basic|private key/i;
/** `Bearer X` / `Basic X` where X looks like a credential (8+ token68 characters, one of them
 * a digit or `+/=.`), so that prose such as "a bearer token" or "Basic credentials" stays. */
const CREDENTIAL_SCHEME = /\b(bearer|basic)(\s+)(?=[A-Za-z0-9._~+/-]*[0-9+/=.])[A-Za-z0-9._~+/-]{8,}=*/gi;
/** A JWT or any piece of one: base64url JSON (`eyJ…`), with up to two more dot-separated parts. */
const JWT = /\beyJ[A-Za-z0-9_-]{6,}(?:\.[A-Za-z0-9_-]*){0,2}/g;
const USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#@"'<>]*@/gi;
const PEM_PRIVATE = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)/g;
/** `?k=v`, `&k=v`, `#k=v` inside free text (a URL quoted in an error message). */
const QUERY_PAIR = /([?&#])([^=&#\s"'<>]*)=([^&#\s"'<>]*)/g;

/** Redacts credentials in free text, including query values of URLs quoted in it. */
export function redactText(s: string): string {
  if (!MAYBE_SECRET.test(s)) return s;
  return s
    .replace(PEM_PRIVATE, '[redacted private key]')
    .replace(USERINFO, `$1${REDACTED}@`)
    .replace(JWT, REDACTED)
    .replace(CREDENTIAL_SCHEME, `$1$2${REDACTED}`)
    .replace(QUERY_PAIR, (m, sep: string, key: string, value: string) =>
      LOGGED_QUERY_KEYS.has(key) || value === REDACTED ? m : `${sep}${shownKey(key)}=${REDACTED}`,
    );
}

function shownKey(key: string): string {
  return key.length <= MAX_KEY_SHOWN ? key : REDACTED;
}

/**
 * Redacts a URL or request target (`/v2/a/blobs/uploads/u?_state=…&digest=…`): the path stays,
 * every query (and fragment) component not in the allowlist loses its value.
 */
export function redactUrl(s: string): string {
  const q = s.search(/[?#]/);
  if (q === -1) return redactText(s);
  const rest = s.slice(q).replace(/([?&;#])([^&;#]*)/g, (_m, sep: string, comp: string) => {
    if (comp === '') return sep;
    const eq = comp.indexOf('=');
    const key = eq === -1 ? comp : comp.slice(0, eq);
    if (eq === -1) return `${sep}${LOGGED_QUERY_KEYS.has(key) ? key : REDACTED}`;
    if (LOGGED_QUERY_KEYS.has(key)) return `${sep}${comp}`;
    return `${sep}${shownKey(key)}=${REDACTED}`;
  });
  // Allowlisted values and the path still go through the text rules (a JWT pasted anywhere).
  return redactText(s.slice(0, q) + rest);
}

/** How redactValue treats a field name: classified once per name (a record's schema has few). */
type FieldKind = 'secret' | 'url' | 'plain';
const fieldKinds = new Map<string, FieldKind>();

function fieldKind(k: string): FieldKind {
  let kind = fieldKinds.get(k);
  if (kind === undefined) {
    kind = isSecretKey(k) ? 'secret' : URL_KEYS.has(normaliseKey(k)) ? 'url' : 'plain';
    if (fieldKinds.size < 256) fieldKinds.set(k, kind);
  }
  return kind;
}

/**
 * redactValue of a record (an audit record), cheaper on its top-level fields: their names are
 * classified once, and a string or number field costs no walk. Nested values go through
 * redactValue itself, so the result is redactValue's for any plain object.
 */
export function redactFlat<T extends object>(record: T): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(record)) {
    const kind = fieldKind(k);
    if (kind === 'secret' && v !== undefined && v !== null && v !== '') out[k] = REDACTED;
    else if (typeof v === 'string') out[k] = kind === 'url' ? redactUrl(v) : redactText(v);
    else if (typeof v === 'object' && v !== null) out[k] = redactValue(v, 1, k);
    else out[k] = v;
  }
  return out as T;
}

/**
 * A copy of a log value with secrets redacted: secret keys replaced, URL keys through redactUrl,
 * every other string through redactText, Errors reduced to name, message and stack (redacted).
 * Plain objects and arrays are copied (the caller's object is never changed); deeper than
 * MAX_DEPTH, a value is replaced.
 */
export function redactValue(v: unknown, depth = 0, key?: string): unknown {
  if (key !== undefined && isSecretKey(key) && v !== undefined && v !== null && v !== '') return REDACTED;
  if (typeof v === 'string') {
    return key !== undefined && URL_KEYS.has(normaliseKey(key)) ? redactUrl(v) : redactText(v);
  }
  if (typeof v !== 'object' || v === null) return v;
  if (depth >= MAX_DEPTH) return '[too deep]';
  if (v instanceof Error) {
    const out: Record<string, unknown> = { type: v.name, message: redactText(v.message) };
    if (v.stack !== undefined) out['stack'] = redactText(v.stack);
    const code = (v as { code?: unknown }).code;
    if (typeof code === 'string' || typeof code === 'number') out['code'] = code;
    return out;
  }
  if (Array.isArray(v)) return v.map((x) => redactValue(x, depth + 1));
  const proto = Object.getPrototypeOf(v) as unknown;
  // Class instances (Buffers, Dates, URL…) are logged as their string forms.
  if (proto !== Object.prototype && proto !== null) {
    if (v instanceof Date) return v;
    if (v instanceof URL) return redactUrl(v.href);
    if (Buffer.isBuffer(v) || ArrayBuffer.isView(v)) return `[${v.byteLength} bytes]`;
  }
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) out[k] = redactValue(x, depth + 1, k);
  return out;
}
