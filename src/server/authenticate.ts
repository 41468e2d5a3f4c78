import type http from 'node:http';
import type { TLSSocket } from 'node:tls';
import { GateError } from '../core/errors.js';
import type { Policy } from '../core/policy.js';
import type { Identity } from '../core/types.js';
import { identityFromPeerCertificate } from '../auth/mtls.js';
import { tokenAllows, type TokenClaims, type TokenService } from '../auth/tokens.js';
import { LRUCache } from 'lru-cache';

export type RepoAction = 'pull' | 'push' | 'delete';

/** The authenticated caller of one /v2 request and what it may do. */
export interface Principal {
  identity: Identity;
  /** A token or a client certificate was presented and checked. */
  credentialed: boolean;
  /** Allowed for this request (the token's grant, or policy for mTLS). */
  can(action: RepoAction, repo: string): boolean;
  /** Allowed by current policy: a narrower token would get more by asking again. */
  policyAllows(action: RepoAction, repo: string): boolean;
  canCatalog(): boolean;
}

export interface AuthenticatorOptions {
  tokens: TokenService;
  policy: () => Policy;
  mtlsIdentity: 'CN' | 'subject';
  now?: () => Date;
}

const ANONYMOUS: Identity = Object.freeze({ subject: 'anonymous', kind: 'anonymous', groups: [] });

/**
 * Authentication of /v2 requests. Policy: /v2 takes a bearer token from our token endpoint or a
 * verified client certificate; Basic credentials are only accepted at /token, so a password never
 * travels with every blob request. Without either, the caller is anonymous and is challenged.
 */
export class Authenticator {
  private readonly now: () => Date;
  private readonly verified = new LRUCache<string, TokenClaims>({ max: 10_000 });

  constructor(private readonly o: AuthenticatorOptions) {
    this.now = o.now ?? (() => new Date());
  }

  /**
   * A verified token is remembered until it expires (at most a minute), so a warm pull does not
   * pay an ECDSA verification per request. Policy: keyed by the whole token string; only tokens
   * that verified are kept, and expiry is still enforced.
   */
  private async verifyCached(token: string): Promise<TokenClaims> {
    const now = this.now();
    const hit = this.verified.get(token);
    if (hit && hit.expiresAt.getTime() > now.getTime()) return hit;
    const claims = await this.o.tokens.verifyAccessToken(token, now);
    const ttl = Math.min(claims.expiresAt.getTime() - now.getTime(), 60_000);
    if (ttl > 0) this.verified.set(token, claims, { ttl });
    return claims;
  }

  async authenticate(req: http.IncomingMessage): Promise<Principal> {
    const auth = req.headers.authorization;
    // Policy: Node keeps only the first of repeated Authorization headers; two are refused (as at
    // /token) rather than one of them silently chosen, so no hop in front reads another credential.
    if (auth !== undefined && countHeader(req.rawHeaders, 'authorization') > 1) {
      throw new GateError('UNAUTHORIZED', 'authentication required: send one Authorization header', {
        logDetail: 'more than one Authorization header on /v2',
      });
    }
    if (auth !== undefined) {
      const m = /^Bearer ([A-Za-z0-9_.-]{1,8192})$/.exec(auth);
      if (!m) {
        throw new GateError(
          'UNAUTHORIZED',
          'authentication required: use a bearer token from the token endpoint',
          {
            logDetail: 'malformed or non-bearer Authorization header on /v2',
          },
        );
      }
      const claims = await this.verifyCached(m[1]!);
      const policy = this.o.policy();
      const identity = policy.identityFor(claims.subject, claims.kind);
      const policyAllows = (action: RepoAction, repo: string): boolean =>
        this.o.policy().allowedActions(identity, repo).has(action);
      return {
        identity,
        credentialed: true,
        // Policy: a grant counts only while the current policy still allows it, so removing
        // someone's access (SIGHUP) takes effect at once, not when their tokens expire.
        can: (action, repo) => tokenAllows(claims, repo, action) && policyAllows(action, repo),
        policyAllows,
        canCatalog: () => tokenAllows(claims, 'catalog', '*', 'registry'),
      };
    }
    const socket = req.socket as TLSSocket;
    if (typeof socket.getPeerCertificate === 'function' && socket.authorized) {
      const identity = identityFromPeerCertificate(
        socket.getPeerCertificate(),
        socket.authorized,
        this.o.mtlsIdentity,
      );
      if (identity) {
        const allows = (action: RepoAction, repo: string): boolean =>
          this.o.policy().allowedActions(identity, repo).has(action);
        return { identity, credentialed: true, can: allows, policyAllows: allows, canCatalog: () => true };
      }
    }
    return {
      identity: ANONYMOUS,
      credentialed: false,
      can: () => false,
      policyAllows: (action, repo) => this.o.policy().allowedActions(ANONYMOUS, repo).has(action),
      canCatalog: () => false,
    };
  }
}

function countHeader(raw: readonly string[], name: string): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === name) n++;
  return n;
}
