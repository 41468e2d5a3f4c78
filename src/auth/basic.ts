/**
 * Strict `Authorization: Basic …` parsing (RFC 7617) and the shape rules every user name and
 * password must meet before any hashing happens.
 */
import type { IncomingMessage } from 'node:http';
import { GateError } from '../core/errors.js';

/** Policy: bcrypt reads only 72 bytes; longer passwords are refused rather than silently cut. */
export const MAX_PASSWORD_BYTES = 72;
/** Policy: user names are at most 256 characters. */
export const MAX_USER_LENGTH = 256;
/** Upper bound on the base64 part of a Basic header (user + password + colon, base64-expanded). */
const MAX_BASIC_B64 = 4 * Math.ceil((MAX_USER_LENGTH * 4 + 1 + MAX_PASSWORD_BYTES) / 3);
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

export interface BasicCredentials {
  user: string;
  password: string;
}

/** A refusal of malformed credentials: 401 UNAUTHORIZED with the reason (safe to show). */
export const malformedCredentials = (why: string): GateError =>
  new GateError('UNAUTHORIZED', `malformed credentials: ${why}`, { logDetail: { malformed: why } });

/**
 * Checks a user name and password for what no account can contain. Policy: NUL and other
 * control characters are refused in both (they are how names get misread downstream); the user
 * may not contain `:` (Basic could not carry it) and is 1..256 characters; the password is at
 * most 72 UTF-8 bytes.
 */
export function checkCredentialShape(user: string, password: string): void {
  if (user.length === 0) throw malformedCredentials('empty user name');
  if (user.length > MAX_USER_LENGTH)
    throw malformedCredentials(`user names are at most ${MAX_USER_LENGTH} characters`);
  if (CONTROL.test(user)) throw malformedCredentials('control characters in the user name');
  if (user.includes(':')) throw malformedCredentials('`:` in the user name');
  if (Buffer.byteLength(password, 'utf8') > MAX_PASSWORD_BYTES) {
    throw malformedCredentials(`passwords longer than ${MAX_PASSWORD_BYTES} bytes are not accepted`);
  }
  if (CONTROL.test(password)) throw malformedCredentials('control characters in the password');
}

/**
 * Strict parser of one `Authorization` header value carrying Basic credentials. `undefined` when
 * there is no header; a GateError (401) for anything that is not exactly one well-formed Basic
 * credential: another scheme, non-canonical or oversized base64, invalid UTF-8, no colon.
 * The split is at the first colon (a password may contain colons, a user name may not).
 */
export function parseBasicAuth(header: string | string[] | undefined): BasicCredentials | undefined {
  if (header === undefined) return undefined;
  if (Array.isArray(header)) throw malformedCredentials('more than one Authorization header');
  if (header.length > MAX_BASIC_B64 + 16) throw malformedCredentials('Authorization header too long');
  // Policy: the scheme name is case-insensitive (RFC 7235), followed by exactly one space.
  const m = /^[Bb][Aa][Ss][Ii][Cc] ([A-Za-z0-9+/]*={0,2})$/.exec(header);
  if (!m) throw malformedCredentials('expected `Authorization: Basic <base64(user:password)>`');
  const b64 = m[1]!;
  if (b64.length === 0 || b64.length % 4 !== 0) throw malformedCredentials('invalid base64');
  if (b64.length > MAX_BASIC_B64) throw malformedCredentials('credentials too long');
  const raw = Buffer.from(b64, 'base64');
  // Policy: only the canonical encoding (no stray bits in the padding), so one header = one value.
  if (raw.toString('base64') !== b64) throw malformedCredentials('invalid base64');
  let decoded: string;
  try {
    // Policy: fatal on invalid UTF-8; ignoreBOM keeps a BOM in the text, so it is never dropped
    // silently and `\uFEFFalice` stays a different name from `alice`.
    decoded = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(raw);
  } catch {
    throw malformedCredentials('credentials are not valid UTF-8');
  }
  const colon = decoded.indexOf(':');
  if (colon < 0) throw malformedCredentials('no `:` between user name and password');
  const user = decoded.slice(0, colon);
  const password = decoded.slice(colon + 1);
  checkCredentialShape(user, password);
  return { user, password };
}

/**
 * Basic credentials of a request. Policy: Node keeps only the first of repeated Authorization
 * headers in `req.headers`; the raw header list is checked so that two headers are refused rather
 * than one of them silently chosen.
 */
export function basicCredentialsOf(
  req: Pick<IncomingMessage, 'headers' | 'rawHeaders'>,
): BasicCredentials | undefined {
  let count = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    if (req.rawHeaders[i]!.toLowerCase() === 'authorization') count++;
  }
  if (count > 1) throw malformedCredentials('more than one Authorization header');
  return parseBasicAuth(req.headers.authorization);
}
