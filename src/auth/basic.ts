import { GateError } from '../core/errors.js';

/** Policy: bcrypt reads only 72 bytes; longer passwords are refused rather than silently cut. */
export const MAX_PASSWORD_BYTES = 72;
export const MAX_USER_LENGTH = 256;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

const bad = (why: string): GateError =>
  new GateError('UNAUTHORIZED', 'malformed Basic credentials', { logDetail: why });

/** Checks a user name and password for what no account can contain. */
export function checkCredentialShape(user: string, password: string): void {
  if (user.length === 0 || user.length > MAX_USER_LENGTH) throw bad('user length');
  if (CONTROL.test(user) || user.includes(':')) throw bad('user characters');
  if (Buffer.byteLength(password, 'utf8') > MAX_PASSWORD_BYTES) {
    throw new GateError('UNAUTHORIZED', `passwords longer than ${MAX_PASSWORD_BYTES} bytes are not accepted`);
  }
  if (CONTROL.test(password)) throw bad('password characters');
}

/** Strict parser of one `Authorization: Basic …` header value. */
export function parseBasicAuth(
  header: string | string[] | undefined,
): { user: string; password: string } | undefined {
  if (header === undefined) return undefined;
  if (Array.isArray(header)) throw bad('several Authorization headers');
  const m = /^Basic ([A-Za-z0-9+/]+={0,2})$/.exec(header);
  if (!m) throw bad('not a Basic header');
  const b64 = m[1]!;
  if (b64.length % 4 !== 0 || b64.length > 4 * 1024) throw bad('base64 length');
  const raw = Buffer.from(b64, 'base64');
  if (raw.toString('base64') !== b64) throw bad('non-canonical base64');
  const text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });
  let decoded: string;
  try {
    decoded = text.decode(raw);
  } catch {
    throw bad('not UTF-8');
  }
  const colon = decoded.indexOf(':');
  if (colon < 0) throw bad('no colon');
  const user = decoded.slice(0, colon);
  const password = decoded.slice(colon + 1);
  checkCredentialShape(user, password);
  return { user, password };
}
