/**
 * The Docker token endpoint: distribution's token spec (`GET /token` with Basic credentials) and
 * its OAuth2 form (`POST /token`, grant_type=password|refresh_token). The grant is always the
 * intersection of the requested scopes and what the current policy allows. A request for
 * `registry:admin:*` (alone) gets an admin API token when granted (core/scope.ts).
 */
import type { TLSSocket } from 'node:tls';
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import { badRequest, GateError, toGateError } from '../core/errors.js';
import type { Policy } from '../core/policy.js';
import {
  checkRefreshUse,
  formatScope,
  grantScopes,
  parseScopes,
  tokenRequestUse,
  type AccessClaim,
  type TokenUse,
} from '../core/scope.js';
import type { Identity } from '../core/types.js';
import { basicCredentialsOf } from './basic.js';
import type { CredentialStore } from './credentials.js';
import { connectionIdentity, type ClientCaAnchors } from './mtls.js';
import type { IssuedToken, TokenService } from './tokens.js';
// The one bounded body reader (an HTTP helper with no dependency on the rest of the server).
import { formBody } from '../server/body.js';
import { sendOAuthError as writeOAuthError, writeError } from '../server/respond.js';

/** What the endpoint needs from the credential store (a facade over a reloadable store will do). */
export type TokenCredentials = Pick<CredentialStore, 'verify' | 'accountVersion'>;

export interface TokenRouterDeps {
  tokens: TokenService;
  /** Password checks and account versions; `accountVersion` undefined means the account is gone. */
  credentials: TokenCredentials;
  /** The current policy (re-read on every request, so a reload applies at once). */
  policy: () => Policy;
  now?: () => Date;
  logger: { info(o: object, m: string): void; warn(o: object, m: string): void };
  /** Logs and writes an OCI error response; default: server/respond.ts's writer, unlogged. */
  sendError?: (res: Response, err: unknown) => void;
  /** When set, a GET without Basic credentials over a verified client certificate gets that identity. */
  mtlsIdentity?: 'CN' | 'subject';
  /** The client CA set in force (a SIGHUP may replace it); without it no certificate names anyone. */
  clientCa?: ClientCaAnchors;
}

const ANONYMOUS: Identity = Object.freeze({ subject: 'anonymous', kind: 'anonymous', groups: [] });
const MAX_PARAM = 4096;
/** The POST form: its limits (bytes, parameters). */
const MAX_FORM_BYTES = 16 * 1024;
const MAX_FORM_PARAMS = 32;

/** A parameter that may appear at most once. Policy: a repeated one is refused, not picked from. */
function single(v: unknown, name: string): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw badRequest(`parameter ${name} must be given at most once`);
  if (v.length > MAX_PARAM) throw badRequest(`parameter ${name} is too long`);
  return v;
}

function list(v: unknown): string[] {
  if (v === undefined) return [];
  const all = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(all) || !all.every((x) => typeof x === 'string' && x.length <= MAX_PARAM)) {
    throw badRequest('malformed scope parameter');
  }
  return all as string[];
}

/** The OCI error answer through the one writer (server/respond.ts); the route logged it already. */
function defaultSendError(res: Response, err: unknown): void {
  writeError(res, err);
}

/** OAuth2 error response (RFC 6749 section 5.2). */
class OAuthError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    description: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(description);
  }
}

export function createTokenRouter(d: TokenRouterDeps): Router {
  const router = express.Router();
  const now = d.now ?? (() => new Date());
  const sendError = d.sendError ?? defaultSendError;
  // Policy: the client address for login throttling is the socket's, never X-Forwarded-For or
  // any other header (and express's `trust proxy` stays off, so req.ip would agree).
  const clientOf = (req: Request): string | undefined => req.socket.remoteAddress;

  const checkService = (service: string | undefined): void => {
    // Policy: a token request names the service it is for, and it must be ours.
    if (service === undefined)
      throw badRequest(`parameter service is required (this service is ${JSON.stringify(d.tokens.service)})`);
    if (service !== d.tokens.service)
      throw badRequest(`unknown service: this token service is ${JSON.stringify(d.tokens.service)}`);
  };

  const withGroups = (id: Identity, policy: Policy): Identity =>
    id.kind === 'anonymous' ? ANONYMOUS : policy.identityFor(id.subject, id.kind);

  const respond = (res: Response, body: IssuedToken & { scope?: string }): void => {
    res.set({ 'cache-control': 'no-store', pragma: 'no-cache' }).json(body);
  };

  const logIssued = (identity: Identity, granted: AccessClaim[], how: string): void => {
    d.logger.info(
      { subject: identity.subject, kind: identity.kind, granted: granted.map(formatScope), how },
      'token issued',
    );
  };

  router.get('/token', async (req: Request, res: Response) => {
    try {
      const q = req.query as Record<string, unknown>;
      checkService(single(q['service'], 'service'));
      const requested = parseScopes(list(q['scope']));
      tokenRequestUse(requested);
      const account = single(q['account'], 'account');
      const offline = single(q['offline_token'], 'offline_token') === 'true';
      single(q['client_id'], 'client_id');
      const creds = basicCredentialsOf(req);
      const policy = d.policy();
      let identity: Identity = ANONYMOUS;
      if (creds) {
        // Policy: `account`, when given, must name the user the credentials are for.
        if (account !== undefined && account !== creds.user) {
          throw new GateError('UNAUTHORIZED', 'the account parameter does not match the credentials');
        }
        identity = withGroups(await d.credentials.verify(creds.user, creds.password, clientOf(req)), policy);
      } else if (d.mtlsIdentity && d.clientCa) {
        const fromCert = connectionIdentity(req.socket as TLSSocket, d.mtlsIdentity, d.clientCa);
        if (fromCert) identity = withGroups(fromCert, policy);
      }
      // No credentials: the anonymous identity, granted only what anonymous callers may pull.
      const granted = grantScopes(requested, identity, policy);
      const refresh = offline && creds !== undefined;
      const issued = await d.tokens.issue(identity, granted, now(), {
        refresh,
        accountVersion: refresh ? d.credentials.accountVersion(identity.subject, identity.kind) : undefined,
      });
      logIssued(identity, granted, 'get');
      respond(res, issued);
    } catch (err) {
      const e = toGateError(err);
      d.logger.warn({ code: e.code, detail: e.logDetail }, 'token request refused');
      if (e.status === 401 && !e.headers['WWW-Authenticate']) {
        e.headers['WWW-Authenticate'] = `Basic realm=${JSON.stringify(d.tokens.service)}, charset="UTF-8"`;
      }
      sendError(res, e);
    }
  });

  // The OAuth2 form: small (a username, a password or refresh token, a scope), so a tight limit.
  const form = formBody(
    MAX_FORM_BYTES,
    MAX_FORM_PARAMS,
    () => new GateError('BODY_TOO_LARGE', 'request body too large'),
  );

  router.post('/token', form, async (req: Request, res: Response) => {
    try {
      if (!req.is('application/x-www-form-urlencoded') || typeof req.body !== 'object' || req.body === null) {
        throw new OAuthError(400, 'invalid_request', 'expected an application/x-www-form-urlencoded body');
      }
      const body = req.body as Record<string, unknown>;
      const param = (name: string): string | undefined => {
        try {
          return single(body[name], name);
        } catch (e) {
          throw new OAuthError(400, 'invalid_request', (e as Error).message);
        }
      };
      try {
        checkService(param('service'));
      } catch (e) {
        if (e instanceof OAuthError) throw e;
        throw new OAuthError(400, 'invalid_request', (e as Error).message);
      }
      // Policy: client_id is REQUIRED by distribution's oauth.md; RFC 6749 A.1 syntax (VSCHAR).
      const clientId = param('client_id');
      if (!clientId || !/^[\x20-\x7e]{1,256}$/.test(clientId)) {
        throw new OAuthError(
          400,
          'invalid_request',
          'parameter client_id is required (printable ASCII, at most 256)',
        );
      }
      let requested: AccessClaim[];
      let use: TokenUse;
      try {
        requested = parseScopes([param('scope') ?? '']);
        use = tokenRequestUse(requested);
      } catch (e) {
        if (e instanceof OAuthError) throw e;
        throw new OAuthError(400, 'invalid_scope', (e as Error).message);
      }
      const grantType = param('grant_type');
      const offline = param('access_type') === 'offline';
      const policy = d.policy();
      let identity: Identity;
      let issued: IssuedToken;
      if (grantType === 'password') {
        const user = param('username');
        const password = param('password');
        if (user === undefined || password === undefined) {
          throw new OAuthError(400, 'invalid_request', 'the password grant needs username and password');
        }
        identity = withGroups(await d.credentials.verify(user, password, clientOf(req)), policy);
        const granted = grantScopes(requested, identity, policy);
        issued = await d.tokens.issue(identity, granted, now(), {
          refresh: offline,
          accountVersion: offline ? d.credentials.accountVersion(identity.subject, identity.kind) : undefined,
        });
        logIssued(identity, granted, 'password');
        respond(res, { ...issued, scope: granted.map(formatScope).join(' ') });
      } else if (grantType === 'refresh_token') {
        const presented = param('refresh_token');
        if (!presented)
          throw new OAuthError(400, 'invalid_request', 'the refresh_token grant needs refresh_token');
        const rt = await d.tokens.verifyRefreshToken(presented, now());
        try {
          checkRefreshUse(rt.use, use);
        } catch (e) {
          throw new OAuthError(400, 'invalid_scope', (e as Error).message);
        }
        // Policy: a refresh token is worth only as much as the account behind it today: the
        // account must still exist with the same credential, and the grant uses today's policy.
        const version = d.credentials.accountVersion(rt.subject, rt.kind);
        if (version === undefined || version !== rt.accountVersion) {
          throw new GateError('UNAUTHORIZED', 'refresh token revoked: log in again', {
            logDetail: { subject: rt.subject, gone: version === undefined },
          });
        }
        identity = policy.identityFor(rt.subject, rt.kind);
        const granted = grantScopes(requested, identity, policy);
        issued = await d.tokens.issue(identity, granted, now());
        // oauth.md: with access_type=offline the refresh grant returns the same refresh token.
        if (offline) issued.refresh_token = presented;
        logIssued(identity, granted, 'refresh_token');
        respond(res, { ...issued, scope: granted.map(formatScope).join(' ') });
      } else {
        throw new OAuthError(
          400,
          grantType === undefined ? 'invalid_request' : 'unsupported_grant_type',
          'grant_type must be password or refresh_token',
        );
      }
    } catch (err) {
      sendOAuthError(res, err);
    }
  });

  const sendOAuthError = (res: Response, err: unknown): void => {
    let o: OAuthError;
    if (err instanceof OAuthError) o = err;
    else {
      const e = toGateError(err);
      d.logger.warn({ code: e.code, detail: e.logDetail }, 'token request refused');
      if (e.status === 429) o = new OAuthError(429, 'invalid_grant', e.message, e.headers);
      // Policy: bad credentials or tokens answer 401 invalid_grant (like the GET path's 401;
      // docker and containerd treat 400 and 401 alike here), internal errors say nothing more.
      else if (e.status === 401) o = new OAuthError(401, 'invalid_grant', e.message);
      else if (e.status < 500) o = new OAuthError(400, 'invalid_request', e.message);
      else o = new OAuthError(500, 'server_error', 'internal error');
    }
    // The one error writer (server/respond.ts): the reason phrase carries the description too.
    writeOAuthError(res, o.status, o.error, o.message, o.headers);
  };

  // Form body failures (too large, encoded, too many parameters) answer in the OAuth2 form.
  router.use('/token', (err: unknown, req: Request, res: Response, next: NextFunction) => {
    if (req.method !== 'POST') {
      next(err);
      return;
    }
    const e = toGateError(err);
    sendOAuthError(
      res,
      e.status === 413
        ? new OAuthError(413, 'invalid_request', 'request body too large')
        : e.status < 500
          ? new OAuthError(400, 'invalid_request', e.message)
          : e,
    );
  });

  return router;
}
