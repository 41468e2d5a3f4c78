import type http from 'node:http';
import type { TLSSocket } from 'node:tls';
import { GateError } from '../core/errors.js';
import type { Policy } from '../core/policy.js';
import type { AdminCredential } from '../core/scope.js';
import type { Identity } from '../core/types.js';
import { connectionIdentity, type ClientCaAnchors } from '../auth/mtls.js';
import { tokenAllows, type TokenClaims, type TokenService } from '../auth/tokens.js';

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
  /** The client CA set in force (a SIGHUP may replace it while connections stay open). */
  clientCa: ClientCaAnchors;
  now?: () => Date;
}

/** The caller of one admin API request, and what it presented (core/scope.ts adminAccess decides). */
export interface AdminCaller {
  identity: Identity;
  credential: AdminCredential;
}

const ANONYMOUS: Identity = Object.freeze({ subject: 'anonymous', kind: 'anonymous', groups: [] });

/**
 * Authentication of /v2 requests. Policy: /v2 takes a bearer token from our token endpoint or a
 * verified client certificate; Basic credentials are only accepted at /token, so a password never
 * travels with every blob request. Without either, the caller is anonymous and is challenged.
 */
export class Authenticator {
  private readonly now: () => Date;

  constructor(private readonly o: AuthenticatorOptions) {
    this.now = o.now ?? (() => new Date());
  }

  async authenticate(req: http.IncomingMessage): Promise<Principal> {
    const token = bearerToken(req, '/v2');
    if (token !== undefined) {
      const claims = await this.o.tokens.verifyAccessToken(token, this.now());
      const policy = this.o.policy();
      const identity = policy.identityFor(claims.subject, claims.kind);
      const policyAllows = policyWalkOnce(this.o.policy, identity);
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
    const identity = this.certificateIdentity(req);
    if (identity) {
      const allows = policyWalkOnce(this.o.policy, identity);
      return { identity, credentialed: true, can: allows, policyAllows: allows, canCatalog: () => true };
    }
    return {
      identity: ANONYMOUS,
      credentialed: false,
      can: () => false,
      policyAllows: policyWalkOnce(this.o.policy, ANONYMOUS),
      canCatalog: () => false,
    };
  }

  /**
   * Authentication of admin API requests: who is calling and with what credential; the decision
   * is core/scope.ts `adminAccess`. Policy: a bearer token is judged as the token it is, even over
   * an admin client certificate: an admin token (verified for the admin audience), else one of our
   * registry tokens (verified for the registry; it is no admin credential, and the caller is told
   * which scope to ask for), else refused (401). Without a bearer token, a verified client
   * certificate names the caller; without either, the caller is anonymous.
   */
  async identifyAdminCaller(req: http.IncomingMessage): Promise<AdminCaller> {
    const token = bearerToken(req, '/admin');
    if (token !== undefined) {
      let claims: TokenClaims;
      let credential: AdminCredential = 'admin-token';
      try {
        claims = await this.o.tokens.verifyAccessToken(token, this.now(), 'admin');
      } catch (adminErr) {
        try {
          claims = await this.o.tokens.verifyAccessToken(token, this.now());
        } catch {
          throw adminErr;
        }
        credential = 'registry-token';
      }
      return { identity: this.o.policy().identityFor(claims.subject, claims.kind), credential };
    }
    const identity = this.certificateIdentity(req);
    if (identity) return { identity, credential: 'mtls' };
    return { identity: ANONYMOUS, credential: 'none' };
  }

  private certificateIdentity(req: http.IncomingMessage): Identity | null {
    return connectionIdentity(req.socket as TLSSocket, this.o.mtlsIdentity, this.o.clientCa);
  }
}

/**
 * What policy allows an identity, walked once per repository for the Principal of one request: the
 * access decision asks it several times a request (pull, then push, and again after each fact).
 */
function policyWalkOnce(
  policy: () => Policy,
  identity: Identity,
): (action: RepoAction, repo: string) => boolean {
  const walked = new Map<string, ReadonlySet<RepoAction>>();
  return (action, repo) => {
    let actions = walked.get(repo);
    if (!actions) {
      actions = policy().allowedActions(identity, repo);
      walked.set(repo, actions);
    }
    return actions.has(action);
  };
}

/**
 * The bearer token of a request, undefined without an Authorization header.
 * - Policy: Node keeps only the first of repeated Authorization headers; two are refused (as at
 *   /token) rather than one of them silently chosen, so no hop in front reads another credential.
 * - Policy: only `Bearer`; Basic credentials are accepted at /token only.
 */
function bearerToken(req: http.IncomingMessage, where: string): string | undefined {
  const auth = req.headers.authorization;
  if (auth === undefined) return undefined;
  if (countHeader(req.rawHeaders, 'authorization') > 1) {
    throw new GateError('UNAUTHORIZED', 'authentication required: send one Authorization header', {
      logDetail: `more than one Authorization header on ${where}`,
    });
  }
  const m = /^Bearer ([A-Za-z0-9_.-]{1,8192})$/.exec(auth);
  if (!m) {
    throw new GateError(
      'UNAUTHORIZED',
      'authentication required: use a bearer token from the token endpoint',
      {
        logDetail: `malformed or non-bearer Authorization header on ${where}`,
      },
    );
  }
  return m[1]!;
}

function countHeader(raw: readonly string[], name: string): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === name) n++;
  return n;
}
