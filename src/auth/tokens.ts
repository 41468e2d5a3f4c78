/**
 * The token service: issues and verifies the registry's bearer tokens (distribution's token spec)
 * and our refresh tokens. Both are ES256 JWTs signed with the newest key of the local key set.
 */
import { randomUUID } from 'node:crypto';
import { SignJWT, jwtVerify, errors as joseErrors, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { GateError } from '../core/errors.js';
import { parseStrictJson } from '../core/json-strict.js';
import { REPO_ACTIONS } from '../core/policy.js';
import { isValidRepoName } from '../core/reference.js';
import { accessAllows, type AccessClaim } from '../core/scope.js';
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

export interface TokenServiceOptions {
  keys: TokenKeySet;
  issuer: string;
  /** The `service` name; it is the access token's audience. */
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

const invalid = (logDetail: unknown, cause?: unknown): GateError =>
  new GateError('UNAUTHORIZED', 'invalid token: get a new one from the token endpoint', { logDetail, cause });

export class TokenService {
  private keys: TokenKeySet;
  private readonly keyResolver: JWTVerifyGetKey;

  constructor(private readonly o: TokenServiceOptions) {
    if (!Number.isInteger(o.ttlSeconds) || o.ttlSeconds < 60) {
      throw new TypeError('TokenService: ttlSeconds must be an integer >= 60 (the token spec minimum)');
    }
    if (!Number.isInteger(o.refreshTtlSeconds) || o.refreshTtlSeconds < 60) {
      throw new TypeError('TokenService: refreshTtlSeconds must be an integer >= 60');
    }
    if (!o.issuer || !o.service) throw new TypeError('TokenService: issuer and service are required');
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

  /** Swaps in a reloaded key set (after `rotateTokenKey`); tokens of keys still present stay valid. */
  setKeys(keys: TokenKeySet): void {
    this.keys = keys;
  }

  get ttlSeconds(): number {
    return this.o.ttlSeconds;
  }

  async issue(
    identity: Identity,
    access: AccessClaim[],
    now: Date,
    opts: IssueOptions = {},
  ): Promise<IssuedToken> {
    const iat = Math.floor(now.getTime() / 1000);
    const { kid, privateKey } = this.keys.signing;
    const token = await new SignJWT({ access, kind: identity.kind })
      .setProtectedHeader({ alg: 'ES256', kid, typ: ACCESS_TYP })
      .setIssuer(this.o.issuer)
      .setAudience(this.o.service)
      .setSubject(identity.subject)
      .setIssuedAt(iat)
      .setNotBefore(iat)
      .setExpirationTime(iat + this.o.ttlSeconds)
      .setJti(randomUUID())
      .sign(privateKey);
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
        .setAudience(this.refreshAudience)
        .setSubject(identity.subject)
        .setIssuedAt(iat)
        .setNotBefore(iat)
        .setExpirationTime(iat + this.o.refreshTtlSeconds)
        .setJti(randomUUID())
        .sign(privateKey);
    }
    return out;
  }

  async verifyAccessToken(token: string, now: Date): Promise<TokenClaims> {
    const p = await this.verify(token, now, this.o.service, ACCESS_TYP, this.o.ttlSeconds);
    const access = p['access'];
    if (!Array.isArray(access) || access.length > MAX_ACCESS_ENTRIES || !access.every(isAccessClaim)) {
      throw invalid('access claim malformed');
    }
    return {
      subject: p.sub!,
      kind: kindOf(p),
      access,
      jti: p.jti!,
      issuedAt: new Date(p.iat! * 1000),
      expiresAt: new Date(p.exp! * 1000),
    };
  }

  async verifyRefreshToken(token: string, now: Date): Promise<RefreshClaims> {
    const p = await this.verify(token, now, this.refreshAudience, REFRESH_TYP, this.o.refreshTtlSeconds);
    const ver = p['ver'];
    if (ver !== undefined && typeof ver !== 'string') throw invalid('ver claim malformed');
    const kind = kindOf(p);
    if (kind === 'anonymous') throw invalid('anonymous refresh token');
    return { subject: p.sub!, kind, accountVersion: ver, jti: p.jti! };
  }

  private get refreshAudience(): string {
    return `${this.o.service}#refresh`;
  }

  private async verify(
    token: string,
    now: Date,
    audience: string,
    typ: string,
    maxAge: number,
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
  if (a['type'] === 'registry') return a['name'] === 'catalog' && actions.every((x) => x === '*');
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
