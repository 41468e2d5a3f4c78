import { randomUUID } from 'node:crypto';
import { SignJWT, jwtVerify, errors as joseErrors, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { GateError } from '../core/errors.js';
import { accessAllows, type AccessClaim } from '../core/scope.js';
import type { Identity } from '../core/types.js';
import type { TokenKeySet } from './token-keys.js';

export interface TokenClaims {
  subject: string;
  kind: Identity['kind'];
  access: AccessClaim[];
  jti: string;
}

export interface IssuedToken {
  token: string;
  access_token: string;
  expires_in: number;
  issued_at: string;
  refresh_token?: string;
}

export interface TokenServiceOptions {
  keys: TokenKeySet;
  issuer: string;
  service: string;
  ttlSeconds: number;
  refreshTtlSeconds: number;
}

/** Policy: tokens are ES256 only; the algorithm is pinned, never taken from the token. */
const ALGORITHMS = ['ES256'];
const CLOCK_TOLERANCE_S = 30;
const ACCESS_TYP = 'JWT';
const REFRESH_TYP = 'trustgate-refresh+jwt';
const KINDS: ReadonlySet<string> = new Set(['user', 'robot', 'mtls', 'anonymous']);

export class TokenService {
  private readonly keyResolver: JWTVerifyGetKey;

  constructor(private readonly o: TokenServiceOptions) {
    // Policy: the verification key is looked up by kid in our own key set only; jwk, x5c and
    // jku headers are never consulted, so a token cannot bring its own key.
    this.keyResolver = (header) => {
      const key = header.kid ? o.keys.verifying.get(header.kid) : undefined;
      if (!key)
        throw new GateError('UNAUTHORIZED', 'token signed by an unknown key', {
          logDetail: { kid: header.kid },
        });
      return key;
    };
  }

  async issue(
    identity: Identity,
    access: AccessClaim[],
    now: Date,
    withRefresh = false,
  ): Promise<IssuedToken> {
    const iat = Math.floor(now.getTime() / 1000);
    const token = await new SignJWT({ access, kind: identity.kind })
      .setProtectedHeader({ alg: 'ES256', kid: this.o.keys.signing.kid, typ: ACCESS_TYP })
      .setIssuer(this.o.issuer)
      .setAudience(this.o.service)
      .setSubject(identity.subject)
      .setIssuedAt(iat)
      .setNotBefore(iat)
      .setExpirationTime(iat + this.o.ttlSeconds)
      .setJti(randomUUID())
      .sign(this.o.keys.signing.privateKey);
    const out: IssuedToken = {
      token,
      access_token: token,
      expires_in: this.o.ttlSeconds,
      issued_at: now.toISOString(),
    };
    if (withRefresh && identity.kind !== 'anonymous') {
      out.refresh_token = await new SignJWT({ kind: identity.kind })
        .setProtectedHeader({ alg: 'ES256', kid: this.o.keys.signing.kid, typ: REFRESH_TYP })
        .setIssuer(this.o.issuer)
        .setAudience(`${this.o.service}#refresh`)
        .setSubject(identity.subject)
        .setIssuedAt(iat)
        .setNotBefore(iat)
        .setExpirationTime(iat + this.o.refreshTtlSeconds)
        .setJti(randomUUID())
        .sign(this.o.keys.signing.privateKey);
    }
    return out;
  }

  async verifyAccessToken(token: string, now: Date): Promise<TokenClaims> {
    const payload = await this.verify(token, now, this.o.service, ACCESS_TYP, this.o.ttlSeconds);
    if (!Array.isArray(payload['access']) || !payload['access'].every(isAccessClaim)) {
      throw new GateError('UNAUTHORIZED', 'invalid token', { logDetail: 'access claim malformed' });
    }
    return { subject: payload.sub!, kind: kindOf(payload), access: payload['access'], jti: payload.jti! };
  }

  async verifyRefreshToken(token: string, now: Date): Promise<{ subject: string; kind: Identity['kind'] }> {
    const payload = await this.verify(
      token,
      now,
      `${this.o.service}#refresh`,
      REFRESH_TYP,
      this.o.refreshTtlSeconds,
    );
    return { subject: payload.sub!, kind: kindOf(payload) };
  }

  private async verify(
    token: string,
    now: Date,
    audience: string,
    typ: string,
    maxAge: number,
  ): Promise<JWTPayload> {
    try {
      const { payload } = await jwtVerify(token, this.keyResolver, {
        algorithms: ALGORITHMS,
        issuer: this.o.issuer,
        audience,
        typ,
        requiredClaims: ['sub', 'exp', 'nbf', 'iat', 'jti'],
        clockTolerance: CLOCK_TOLERANCE_S,
        maxTokenAge: maxAge + CLOCK_TOLERANCE_S,
        currentDate: now,
      });
      return payload;
    } catch (err) {
      if (err instanceof GateError) throw err;
      const reason = err instanceof joseErrors.JWTExpired ? 'token expired' : 'invalid token';
      throw new GateError('UNAUTHORIZED', `${reason}: get a new one from the token endpoint`, {
        logDetail: (err as Error).message,
        cause: err,
      });
    }
  }
}

function kindOf(p: JWTPayload): Identity['kind'] {
  const k = p['kind'];
  if (typeof k !== 'string' || !KINDS.has(k))
    throw new GateError('UNAUTHORIZED', 'invalid token', { logDetail: 'kind' });
  return k as Identity['kind'];
}

function isAccessClaim(v: unknown): v is AccessClaim {
  if (typeof v !== 'object' || v === null) return false;
  const a = v as Record<string, unknown>;
  return (
    (a['type'] === 'repository' || a['type'] === 'registry') &&
    typeof a['name'] === 'string' &&
    Array.isArray(a['actions']) &&
    a['actions'].every((x) => typeof x === 'string')
  );
}

/** Does the token grant `action` on `name`? */
export function tokenAllows(
  claims: Pick<TokenClaims, 'access'>,
  name: string,
  action: string,
  type: AccessClaim['type'] = 'repository',
): boolean {
  return accessAllows(claims.access, name, action, type);
}
