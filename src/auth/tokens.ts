/**
 * The token service: issues and verifies the registry's bearer tokens (distribution's token spec),
 * the admin API's tokens and our refresh tokens. All are ES256 JWTs signed with the newest key of
 * the local key set; each kind has its own audience, so none passes for another:
 * - registry access token: `aud` = `auth.service` (what registry clients expect);
 * - admin access token: `aud` = `<service>#admin`, grant exactly `registry:admin:*`;
 * - refresh tokens: `<service>#refresh` (registry) and `<service>#admin-refresh` (admin API), with
 *   their own `typ` as well.
 */
import { randomUUID } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { SignJWT, jwtVerify, errors as joseErrors, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { GateError } from '../core/errors.js';
import { parseStrictJson } from '../core/json-strict.js';
import { REPO_ACTIONS } from '../core/policy.js';
import { isValidRepoName } from '../core/reference.js';
import { accessAllows, grantUse, isAdminGrant, type AccessClaim, type TokenUse } from '../core/scope.js';
import type { Identity } from '../core/types.js';
import type { TokenKeySet } from './token-keys.js';

export interface TokenClaims {
  subject: string;
  kind: Identity['kind'];
  access: AccessClaim[];
  jti: string;
  issuedAt: Date;
  expiresAt: Date;
}

export interface RefreshClaims {
  subject: string;
  kind: Identity['kind'];
  /** The API the refresh token mints access tokens for (the one its login was granted). */
  use: TokenUse;
  /** Fingerprint of the account's credential when the refresh token was issued. */
  accountVersion: string | undefined;
  jti: string;
}

export interface IssuedToken {
  token: string;
  access_token: string;
  expires_in: number;
  issued_at: string;
  refresh_token?: string;
}

export interface IssueOptions {
  /** Also issue a refresh token (never for anonymous callers). */
  refresh?: boolean;
  /** Bound into the refresh token: a changed password or secret revokes it. */
  accountVersion?: string;
}

export interface TokenServiceOptions extends TokenSettings {
  keys: TokenKeySet;
}

/** What a reload may change (auth.issuer, auth.service, auth.tokenTtlSeconds, auth.refreshTtlSeconds). */
export interface TokenSettings {
  issuer: string;
  /** The `service` name; it is the registry access token's audience (admin: `<service>#admin`). */
  service: string;
  ttlSeconds: number;
  refreshTtlSeconds: number;
}

/** Policy: ES256 only; the algorithm is pinned here, never taken from the token. */
const ALGORITHMS = ['ES256'];
/** Policy: 30 s of clock skew is forgiven on exp, nbf and iat; nothing more. */
export const CLOCK_TOLERANCE_S = 30;
/** Policy: the token types differ in both `typ` and audience, so neither passes for the other. */
const ACCESS_TYP = 'JWT';
const REFRESH_TYP = 'trustgate-refresh+jwt';
const MAX_TOKEN_LENGTH = 16 * 1024;
const MAX_ACCESS_ENTRIES = 64;
const KINDS: ReadonlySet<string> = new Set(['user', 'robot', 'mtls', 'anonymous']);

/** What a client presenting a token of the other API is told (a 401: asking again helps). */
const WRONG_API: Record<TokenUse, string> = {
  registry:
    'this token is not for the registry (it is an admin API token, or for another service): get one from the token endpoint for the repository scope',
  admin:
    'this token is not for the admin API: ask the token endpoint for scope registry:admin:* (admins only)',
};

const invalid = (logDetail: unknown, cause?: unknown): GateError =>
  new GateError('UNAUTHORIZED', 'invalid token: get a new one from the token endpoint', { logDetail, cause });

/** How long this process remembers an access token it issued or verified. */
const ISSUED_MEMORY_MS = 60_000;
/**
 * Policy: the memory is bounded in bytes as well as in entries: a grant of 64 long repository
 * names makes a token of ~16 KiB, and anyone granted anything can ask for tokens in a loop.
 * Each entry is charged twice its token's length (the token and the claims it carries).
 */
const ISSUED_MEMORY_BYTES = 16 * 1024 * 1024;

export class TokenService {
  private keys: TokenKeySet;
  private readonly keyResolver: JWTVerifyGetKey;
  private o: TokenSettings;
  /**
   * Access tokens this process signed or verified in the last minute, with their claims: the one
   * memory of known tokens, so a pull's requests (its first use usually follows the issue at once)
   * pay no ECDSA verification each. Policy: such a token is known without verifying its signature
   * again. The token string is the key, so only its holder can present it, and verification would
   * find exactly these claims. Only for the same API, inside the same time checks (nbf and iat with
   * the clock tolerance, exp, the lifetime), and under the settings and keys it was signed or
   * verified with: configure() and setKeys() forget them all. Anything else goes through the full
   * verification.
   */
  private readonly issued = new LRUCache<string, { use: TokenUse; claims: TokenClaims }>({
    max: 10_000,
    maxSize: ISSUED_MEMORY_BYTES,
    ttl: ISSUED_MEMORY_MS,
  });
  /** Bumped by configure() and setKeys(): a token signed or verified across one is not remembered. */
  private generation = 0;

  constructor(o: TokenServiceOptions) {
    this.o = checkSettings(o);
    this.keys = o.keys;
    // Policy: the verification key is looked up by kid in OUR key set only. The jwk, x5c and jku
    // headers are never consulted, so a token cannot bring its own key; a token without a kid,
    // or with a kid we do not hold, is refused.
    this.keyResolver = (header) => {
      const key = typeof header.kid === 'string' ? this.keys.verifying.get(header.kid) : undefined;
      if (!key) throw invalid({ reason: 'unknown kid', kid: header.kid });
      return key;
    };
  }

  /**
   * New settings (a SIGHUP): tokens issued from now on use them, and verification checks them, so
   * a new issuer or service ends the tokens of the old one and a lower lifetime shortens old tokens.
   */
  configure(settings: TokenSettings): void {
    this.o = checkSettings(settings);
    this.generation++;
    this.issued.clear();
  }

  get service(): string {
    return this.o.service;
  }

  /** Swaps in a reloaded key set (after `rotateTokenKey`); tokens of keys still present stay valid. */
  setKeys(keys: TokenKeySet): void {
    this.keys = keys;
    this.generation++;
    this.issued.clear();
  }

  get ttlSeconds(): number {
    return this.o.ttlSeconds;
  }

  /**
   * Issues an access token for `access`, the grant. Policy: the audience follows the grant: the
   * admin grant (alone: grantUse throws on a mixed list) gets the admin audience and an admin
   * refresh token, anything else the registry's.
   */
  async issue(
    identity: Identity,
    access: AccessClaim[],
    now: Date,
    opts: IssueOptions = {},
  ): Promise<IssuedToken> {
    const use = grantUse(access);
    const iat = Math.floor(now.getTime() / 1000);
    const { kid, privateKey } = this.keys.signing;
    const jti = randomUUID();
    const generation = this.generation;
    const token = await new SignJWT({ access, kind: identity.kind })
      .setProtectedHeader({ alg: 'ES256', kid, typ: ACCESS_TYP })
      .setIssuer(this.o.issuer)
      .setAudience(this.accessAudience(use))
      .setSubject(identity.subject)
      .setIssuedAt(iat)
      .setNotBefore(iat)
      .setExpirationTime(iat + this.o.ttlSeconds)
      .setJti(jti)
      .sign(privateKey);
    // Only what verify() would accept is remembered (the same bounds on length, subject, grant).
    // Policy: not a token signed under settings or keys a reload replaced during the signing (it
    // names the old service and lifetime, or a withdrawn key); verification judges it instead.
    const current = generation === this.generation;
    const verifiable =
      token.length <= MAX_TOKEN_LENGTH &&
      identity.subject.length > 0 &&
      identity.subject.length <= 1024 &&
      access.length <= MAX_ACCESS_ENTRIES &&
      access.every(isAccessClaim);
    if (current && verifiable) {
      this.remember(token, use, {
        subject: identity.subject,
        kind: identity.kind,
        access: JSON.parse(JSON.stringify(access)) as AccessClaim[],
        jti,
        issuedAt: new Date(iat * 1000),
        expiresAt: new Date((iat + this.o.ttlSeconds) * 1000),
      });
    }
    const out: IssuedToken = {
      token,
      access_token: token,
      expires_in: this.o.ttlSeconds,
      issued_at: new Date(iat * 1000).toISOString(),
    };
    // Policy: anonymous callers never get a refresh token; there is no account to re-check.
    if (opts.refresh && identity.kind !== 'anonymous') {
      const claims: JWTPayload = { kind: identity.kind };
      if (opts.accountVersion !== undefined) claims['ver'] = opts.accountVersion;
      out.refresh_token = await new SignJWT(claims)
        .setProtectedHeader({ alg: 'ES256', kid, typ: REFRESH_TYP })
        .setIssuer(this.o.issuer)
        .setAudience(this.refreshAudience(use))
        .setSubject(identity.subject)
        .setIssuedAt(iat)
        .setNotBefore(iat)
        .setExpirationTime(iat + this.o.refreshTtlSeconds)
        .setJti(randomUUID())
        .sign(privateKey);
    }
    return out;
  }

  /**
   * Verifies an access token for one API: `registry` (/v2, the default) or `admin` (/admin). A
   * token for the other API fails on its audience (401). Policy: an admin token must carry exactly
   * the admin grant, and a registry token never carries it.
   */
  async verifyAccessToken(token: string, now: Date, use: TokenUse = 'registry'): Promise<TokenClaims> {
    const known = this.issued.get(token);
    if (known && known.use === use && this.withinTimes(known.claims, now)) return known.claims;
    const generation = this.generation;
    const p = await this.verify(token, now, [this.accessAudience(use)], ACCESS_TYP, this.o.ttlSeconds, use);
    const access = p['access'];
    if (!Array.isArray(access) || access.length > MAX_ACCESS_ENTRIES || !access.every(isAccessClaim)) {
      throw invalid('access claim malformed');
    }
    if (
      use === 'admin'
        ? !isAdminGrant(access)
        : access.some((a) => a.type === 'registry' && a.name === 'admin')
    ) {
      throw invalid(`access claim is not a ${use} grant`);
    }
    const claims: TokenClaims = {
      subject: p.sub!,
      kind: kindOf(p),
      access,
      jti: p.jti!,
      issuedAt: new Date(p.iat! * 1000),
      expiresAt: new Date(p.exp! * 1000),
    };
    // Policy: a token verified under settings or keys a reload replaced meanwhile (the check is
    // off the event loop, so a SIGHUP can land during it) answers its own request only; it is not
    // remembered, so the next request is checked under the new issuer, service and lifetime.
    if (generation === this.generation) this.remember(token, use, claims);
    return claims;
  }

  private remember(token: string, use: TokenUse, claims: TokenClaims): void {
    this.issued.set(token, { use, claims }, { size: token.length * 2 });
  }

  /** Verifies a refresh token of either API; `use` says which one it mints tokens for. */
  async verifyRefreshToken(token: string, now: Date): Promise<RefreshClaims> {
    const audiences = [this.refreshAudience('registry'), this.refreshAudience('admin')];
    const p = await this.verify(token, now, audiences, REFRESH_TYP, this.o.refreshTtlSeconds, 'refresh');
    const ver = p['ver'];
    if (ver !== undefined && typeof ver !== 'string') throw invalid('ver claim malformed');
    const kind = kindOf(p);
    if (kind === 'anonymous') throw invalid('anonymous refresh token');
    const aud = Array.isArray(p.aud) ? p.aud[0] : p.aud;
    const use: TokenUse = aud === this.refreshAudience('admin') ? 'admin' : 'registry';
    return { subject: p.sub!, kind, use, accountVersion: ver, jti: p.jti! };
  }

  /** The time checks verify() makes (nbf = iat, exp, the lifetime), with the same tolerance. */
  private withinTimes(c: TokenClaims, now: Date): boolean {
    const t = now.getTime();
    const tolerance = CLOCK_TOLERANCE_S * 1000;
    const iat = c.issuedAt.getTime();
    return (
      t >= iat - tolerance &&
      t < c.expiresAt.getTime() &&
      t - iat <= this.o.ttlSeconds * 1000 &&
      c.expiresAt.getTime() - iat <= this.o.ttlSeconds * 1000
    );
  }

  private accessAudience(use: TokenUse): string {
    return use === 'admin' ? `${this.o.service}#admin` : this.o.service;
  }

  private refreshAudience(use: TokenUse): string {
    return use === 'admin' ? `${this.o.service}#admin-refresh` : `${this.o.service}#refresh`;
  }

  private async verify(
    token: string,
    now: Date,
    audience: string[],
    typ: string,
    maxAge: number,
    what: TokenUse | 'refresh',
  ): Promise<JWTPayload> {
    if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH) {
      throw invalid('token missing or too long');
    }
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.keyResolver, {
        algorithms: ALGORITHMS,
        issuer: this.o.issuer,
        audience,
        typ,
        requiredClaims: ['iss', 'sub', 'aud', 'exp', 'nbf', 'iat', 'jti'],
        clockTolerance: CLOCK_TOLERANCE_S,
        // Policy: a token older than its type's lifetime is refused even if its exp says otherwise.
        maxTokenAge: maxAge,
        currentDate: now,
      }));
    } catch (err) {
      if (err instanceof GateError) throw err;
      if (err instanceof joseErrors.JWTExpired) {
        throw new GateError('UNAUTHORIZED', 'token expired: get a new one from the token endpoint', {
          logDetail: err.message,
          cause: err,
        });
      }
      // jose checks claims only after the signature: this is one of our tokens, for another API.
      if (
        err instanceof joseErrors.JWTClaimValidationFailed &&
        err.claim === 'aud' &&
        err.reason === 'check_failed' &&
        what !== 'refresh'
      ) {
        throw new GateError('UNAUTHORIZED', WRONG_API[what], { logDetail: err.message, cause: err });
      }
      throw invalid((err as Error).message, err);
    }
    // Policy: header and claims must be strict JSON. jose reads them with JSON.parse, which keeps
    // the last of two `access` members (Go's encoding/json would also match `Access`); a token
    // whose grant depends on the reader is refused, never read one way.
    try {
      for (const part of token.split('.', 2)) parseStrictJson(Buffer.from(part, 'base64url'), 'token');
    } catch (err) {
      throw invalid('token JSON has duplicate or case-variant keys', err);
    }
    if (typeof payload.sub !== 'string' || payload.sub.length === 0 || payload.sub.length > 1024) {
      throw invalid('sub claim malformed');
    }
    if (typeof payload.jti !== 'string' || payload.jti.length === 0 || payload.jti.length > 128) {
      throw invalid('jti claim malformed');
    }
    // Policy: exactly one audience; a token minted for several services is not ours alone.
    if (Array.isArray(payload.aud) && payload.aud.length !== 1) throw invalid('several audiences');
    return payload;
  }
}

function checkSettings(o: TokenSettings): TokenSettings {
  if (!Number.isInteger(o.ttlSeconds) || o.ttlSeconds < 60) {
    throw new TypeError('TokenService: ttlSeconds must be an integer >= 60 (the token spec minimum)');
  }
  if (!Number.isInteger(o.refreshTtlSeconds) || o.refreshTtlSeconds < 60) {
    throw new TypeError('TokenService: refreshTtlSeconds must be an integer >= 60');
  }
  if (!o.issuer || !o.service) throw new TypeError('TokenService: issuer and service are required');
  const { issuer, service, ttlSeconds, refreshTtlSeconds } = o;
  return { issuer, service, ttlSeconds, refreshTtlSeconds };
}

function kindOf(p: JWTPayload): Identity['kind'] {
  const k = p['kind'];
  if (typeof k !== 'string' || !KINDS.has(k)) throw invalid('kind claim malformed');
  return k as Identity['kind'];
}

function isAccessClaim(v: unknown): v is AccessClaim {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const a = v as Record<string, unknown>;
  const actions = a['actions'];
  if (!Array.isArray(actions) || actions.length > 8 || !actions.every((x) => typeof x === 'string'))
    return false;
  if (a['type'] === 'registry')
    return (a['name'] === 'catalog' || a['name'] === 'admin') && actions.every((x) => x === '*');
  return (
    a['type'] === 'repository' &&
    typeof a['name'] === 'string' &&
    isValidRepoName(a['name']) &&
    actions.every((x) => (REPO_ACTIONS as readonly string[]).includes(x as string))
  );
}

/**
 * Does a verified token grant `action` on `name`? Exact resource match: a token for repository A
 * never allows anything on repository B, whatever the names look like.
 */
export function tokenAllows(
  claims: Pick<TokenClaims, 'access'>,
  name: string,
  action: string,
  type: AccessClaim['type'] = 'repository',
): boolean {
  return accessAllows(claims.access, name, action, type);
}
