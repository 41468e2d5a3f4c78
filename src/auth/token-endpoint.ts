import express, { type Request, type Response, type Router } from 'express';
import { GateError, toGateError } from '../core/errors.js';
import type { Policy } from '../core/policy.js';
import { grantScopes, parseScopes } from '../core/scope.js';
import type { Identity } from '../core/types.js';
import type { CredentialStore } from './credentials.js';
import { parseBasicAuth } from './basic.js';
import type { TokenService } from './tokens.js';

export interface TokenRouterDeps {
  tokens: TokenService;
  credentials: CredentialStore;
  policy: () => Policy;
  service: string;
  now?: () => Date;
  logger: { info(o: object, m: string): void; warn(o: object, m: string): void };
  /** Writes an OCI error response (the server's one error writer). */
  sendError: (res: Response, err: unknown) => void;
}

const ANONYMOUS: Identity = { subject: 'anonymous', kind: 'anonymous', groups: [] };

function single(v: unknown): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string')
    throw new GateError('UNSUPPORTED', 'a token parameter was given more than once', { status: 400 });
  return v;
}

function list(v: unknown): string[] {
  if (v === undefined) return [];
  if (typeof v === 'string') return [v];
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
  throw new GateError('UNSUPPORTED', 'malformed scope parameter', { status: 400 });
}

/**
 * The Docker token endpoint (distribution's token spec and its OAuth2 form). The grant is the
 * intersection of the requested scopes and what policy allows now.
 */
export function createTokenRouter(d: TokenRouterDeps): Router {
  const router = express.Router();
  const now = d.now ?? (() => new Date());
  // Policy: the client address for login throttling is the socket's, never X-Forwarded-For.
  const client = (req: Request): string | undefined => req.socket.remoteAddress;

  const checkService = (service: string | undefined): void => {
    if (service !== undefined && service !== d.service) {
      throw new GateError('UNSUPPORTED', `this token service is ${JSON.stringify(d.service)}`, {
        status: 400,
      });
    }
  };

  router.get('/token', async (req, res) => {
    try {
      checkService(single(req.query['service']));
      const creds = parseBasicAuth(req.headers.authorization);
      const identity = creds
        ? withGroups(await d.credentials.verify(creds.user, creds.password, client(req)), d.policy())
        : ANONYMOUS;
      const account = single(req.query['account']);
      if (account !== undefined && creds && account !== creds.user) {
        throw new GateError('UNAUTHORIZED', 'account does not match the credentials');
      }
      const granted = grantScopes(parseScopes(list(req.query['scope'])), identity, d.policy());
      const offline = single(req.query['offline_token']) === 'true';
      const issued = await d.tokens.issue(identity, granted, now(), offline && creds !== undefined);
      d.logger.info({ subject: identity.subject, granted }, 'token issued');
      res.set('cache-control', 'no-store').json(issued);
    } catch (err) {
      const e = toGateError(err);
      if (e.status === 401 && !e.headers['WWW-Authenticate'])
        e.headers['WWW-Authenticate'] = `Basic realm="${d.service}"`;
      d.sendError(res, e);
    }
  });

  router.post(
    '/token',
    express.urlencoded({ extended: false, limit: '16kb', parameterLimit: 32 }),
    async (req, res) => {
      const body = (req.body ?? {}) as Record<string, unknown>;
      try {
        checkService(single(body['service']));
        const grantType = single(body['grant_type']);
        let identity: Identity;
        let refresh = single(body['access_type']) === 'offline';
        if (grantType === 'password') {
          const user = single(body['username']) ?? '';
          const password = single(body['password']) ?? '';
          identity = withGroups(await d.credentials.verify(user, password, client(req)), d.policy());
        } else if (grantType === 'refresh_token') {
          const rt = await d.tokens.verifyRefreshToken(single(body['refresh_token']) ?? '', now());
          // Policy: a refresh token is worth only as much as the account behind it today.
          if (!d.credentials.exists(rt.subject, rt.kind))
            throw new GateError('UNAUTHORIZED', 'account no longer exists');
          identity = d.policy().identityFor(rt.subject, rt.kind);
          refresh = false;
        } else {
          res.status(400).json({ error: 'unsupported_grant_type' });
          return;
        }
        const granted = grantScopes(
          parseScopes((single(body['scope']) ?? '').split(' ')),
          identity,
          d.policy(),
        );
        const issued = await d.tokens.issue(identity, granted, now(), refresh);
        res.set('cache-control', 'no-store').json({
          ...issued,
          scope: granted.map((g) => `${g.type}:${g.name}:${g.actions.join(',')}`).join(' '),
        });
      } catch (err) {
        const e = toGateError(err);
        if (e.status === 429) {
          d.sendError(res, e);
          return;
        }
        d.logger.warn({ code: e.code, detail: e.logDetail }, 'token request refused');
        const status = e.status >= 500 ? e.status : e.status === 400 ? 400 : 401;
        res.status(status).json({
          error: status === 400 ? 'invalid_request' : 'invalid_grant',
          error_description: e.message,
        });
      }
    },
  );

  return router;
}

function withGroups(id: Identity, policy: Policy): Identity {
  return policy.identityFor(id.subject, id.kind);
}
