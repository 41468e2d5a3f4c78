/**
 * The admin API, `/admin/v1/...` on the TLS listener: trusted keys, effective policy, decision
 * explanations, cache and health figures, users and robots. JSON in, JSON out; errors through the
 * one error writer (OCI error JSON). Described by docs/admin-api.openapi.yaml (served as JSON at
 * `GET /admin/v1/openapi.json`).
 *
 * A request flows: authenticate (an admin token, `registry:admin:*` from /token, or a verified
 * client certificate) → admin role (policy.admins) → parse and validate the body → change → audit
 * event → answer. Registry tokens are refused (401 with a challenge naming the admin scope).
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import type { VerdictCache } from '../cache/verdict-cache.js';
import type { Config } from '../config/schema.js';
import { badRequest, GateError, InternalFailure, toGateError } from '../core/errors.js';
import { MANIFEST_ACCEPT_HEADER, MAX_MANIFEST_BYTES, digestOf, parseManifest } from '../core/manifest.js';
import type { Policy } from '../core/policy.js';
import { isValidRepoName, parseDockerReference } from '../core/reference.js';
import { ADMIN_SCOPE, adminAccess } from '../core/scope.js';
import type { Identity } from '../core/types.js';
import { KeyStore, keyInfo } from '../keys/store.js';
import type { Keyring } from '../keys/keyring.js';
import type { ExceptionStore } from '../keys/exceptions.js';
import type { Upstream } from '../registry/upstream.js';
import { headerValue } from '../registry/headers.js';
import { upstreamFailure } from '../registry/upstream.js';
import type { TrustService } from '../trust/service.js';
import { AccountFiles } from './accounts.js';
import type { Audit } from './audit.js';
import type { Authenticator } from './authenticate.js';
import type { Logger } from './log.js';
import { jsonBody } from './body.js';
import { sendError, sendJson } from './respond.js';

export interface AdminDeps {
  auth: Authenticator;
  /** The current access policy (re-read per request, so a reload applies at once). */
  policy: () => Policy;
  /** The current config (policy, trust rules and credential file paths are read from it). */
  config: () => Config;
  trust: TrustService;
  keyring: Keyring;
  /** Vulnerability exceptions of the attestation gates (absent: the endpoints answer 404). */
  exceptions?: ExceptionStore;
  cache: VerdictCache;
  upstream: Upstream;
  audit: Audit;
  log: Logger;
  /** The token service named in challenges (read per request: follows a reload). */
  service: () => string;
  /** Token endpoint URL for the challenge; derived from the Host header when not configured. */
  realm: () => string | undefined;
  /** Re-reads the credential files after a change (swaps the server's CredentialStore). */
  reloadCredentials: () => void;
  now?: () => Date;
  /** bcrypt cost for new users and robots (default 12; tests lower it). */
  bcryptCost?: number;
}

/** Request bodies are small JSON documents; anything larger is refused before it is parsed. */
export const MAX_ADMIN_BODY = 64 * 1024;

const glob = z.string().min(1).max(255);
const dateTime = z.string().min(1).max(64);
const pem = z
  .string()
  .min(1)
  .max(16 * 1024);

const addKeyBody = z.strictObject({
  name: z.string().min(1).max(128),
  pem,
  repos: z.array(glob).max(256).optional(),
  notBefore: dateTime.optional(),
  notAfter: dateTime.optional(),
  comment: z.string().max(1024).optional(),
});
const revokeBody = z.strictObject({ reason: z.string().max(1024).optional() });
const rotateBody = z.strictObject({
  pem,
  newName: z.string().min(1).max(128).optional(),
  graceSeconds: z.number().int().min(0).optional(),
  notAfter: dateTime.optional(),
});
const addUserBody = z.strictObject({ name: z.string().min(1).max(128), password: z.string().max(1024) });
const addRobotBody = z.strictObject({ name: z.string().min(1).max(128) });
const addExceptionBody = z.strictObject({
  cve: z.string().min(1).max(64),
  repos: z.array(glob).min(1).max(64),
  expires: dateTime,
  reason: z.string().min(1).max(1024),
});

function parseBody<T>(schema: z.ZodType<T>, body: unknown, allowEmpty = false): T {
  const value = body === undefined && allowEmpty ? {} : body;
  const r = schema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0];
    const where = issue && issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
    throw new GateError(
      'BAD_REQUEST',
      value === undefined
        ? 'a JSON body (Content-Type: application/json) is required'
        : `invalid request body: ${where}${issue?.message ?? 'invalid'}`,
    );
  }
  return r.data;
}

let openApiCache: unknown;
/** The OpenAPI document, read once from docs/ next to the package. */
function openApiDocument(): unknown {
  if (openApiCache !== undefined) return openApiCache;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const p = path.join(dir, 'docs', 'admin-api.openapi.yaml');
    if (existsSync(p)) return (openApiCache = parseYaml(readFileSync(p, 'utf8')) as unknown);
    dir = path.dirname(dir);
  }
  throw new GateError('UNKNOWN', 'the OpenAPI document is missing from this installation', {
    logDetail: 'docs/admin-api.openapi.yaml not found',
  });
}

interface AdminLocals {
  identity: Identity;
  requestId: string;
}

function locals(res: Response): AdminLocals {
  return res.locals as AdminLocals;
}

export function createAdminRouter(d: AdminDeps): Router {
  const router = express.Router();
  const now = d.now ?? (() => new Date());
  const keys = new KeyStore(d.keyring, now);
  const accounts = new AccountFiles({
    htpasswd: () => d.config().auth.htpasswd,
    robotsFile: () => d.config().auth.robotsFile,
    ...(d.bcryptCost !== undefined ? { cost: d.bcryptCost } : {}),
  });

  // Every 401 names the admin scope, so a token client asks /token for the right grant.
  const challenge = (req: http.IncomingMessage, insufficientScope: boolean): string => {
    const host = headerValue(req.headers.host) ?? 'localhost';
    const realm = d.realm() ?? `https://${host}/token`;
    return `Bearer realm="${realm}",service="${d.service()}",scope="${ADMIN_SCOPE}"${
      insufficientScope ? ',error="insufficient_scope"' : ''
    }`;
  };

  const audit = (res: Response, change: string, target: string, detail?: unknown): void => {
    const { identity, requestId } = locals(res);
    d.audit.adminChange({
      requestId,
      identity: identity.subject,
      change,
      target,
      ...(detail !== undefined ? { detail } : {}),
    });
  };

  // Authenticate and authorise before anything else, the body included: an unauthenticated caller
  // never gets a JSON parser run on its bytes.
  router.use(async (req: Request, res: Response, next: NextFunction) => {
    res.setHeader('cache-control', 'no-store');
    const requestId = randomUUID();
    res.setHeader('x-request-id', requestId);
    const { identity, credential } = await d.auth.identifyAdminCaller(req);
    // Policy (core/scope.ts adminAccess): an admin token or client certificate of an identity
    // policy.admins names today; a registry token is no admin credential, whoever it is for.
    switch (adminAccess(credential, d.policy().isAdmin(identity))) {
      case 'unauthenticated':
        throw new GateError(
          'UNAUTHORIZED',
          `authentication required: a bearer token for scope ${ADMIN_SCOPE} from the token endpoint (admin credentials) or an admin client certificate`,
        );
      case 'not-admin':
        throw new GateError('DENIED', `${identity.subject} is not an admin (policy.admins)`);
      case 'insufficient-scope':
        throw new GateError(
          'UNAUTHORIZED',
          `this is a registry token: the admin API takes a token for scope ${ADMIN_SCOPE} from the token endpoint`,
          { headers: { 'WWW-Authenticate': challenge(req, true) }, logDetail: { subject: identity.subject } },
        );
      case 'allow':
        break;
    }
    res.locals = { ...res.locals, identity, requestId };
    next();
  });
  router.use(
    jsonBody(
      MAX_ADMIN_BODY,
      () => new GateError('BODY_TOO_LARGE', `request body exceeds ${MAX_ADMIN_BODY} bytes`),
    ),
  );

  router.get('/openapi.json', (_req, res) => {
    sendJson(res, 200, openApiDocument());
  });

  // ------------------------------------------------------------------------------------------
  // Keys
  // ------------------------------------------------------------------------------------------
  router.get('/keys', (_req, res) => {
    const { keys: list, errors } = keys.list();
    sendJson(res, 200, { keys: list, errors });
  });

  router.get('/keys/:name', (req, res) => {
    sendJson(res, 200, keys.get(String(req.params['name'])));
  });

  router.post('/keys', async (req, res) => {
    const body = parseBody(addKeyBody, req.body);
    const actor = locals(res).identity.subject;
    const k = await keys.add(body, actor);
    audit(res, 'key.add', k.name, {
      fingerprint: k.fingerprint,
      alg: k.alg,
      repos: k.repos,
      notBefore: k.notBefore,
      notAfter: k.notAfter,
    });
    sendJson(res, 201, k);
  });

  router.post('/keys/:name/revoke', async (req, res) => {
    const body = parseBody(revokeBody, req.body, true);
    const name = String(req.params['name']);
    const r = await keys.revoke(name, locals(res).identity.subject, body.reason);
    if (r.changed) audit(res, 'key.revoke', name, { fingerprint: r.key.fingerprint, reason: body.reason });
    sendJson(res, 200, { key: r.key, changed: r.changed });
  });

  router.post('/keys/:name/rotate', async (req, res) => {
    const body = parseBody(rotateBody, req.body);
    const name = String(req.params['name']);
    const r = await keys.rotate(name, body, locals(res).identity.subject);
    audit(res, 'key.rotate', name, {
      newKey: r.new.name,
      newFingerprint: r.new.fingerprint,
      oldNotAfter: r.old.notAfter,
    });
    sendJson(res, 200, { old: r.old, new: r.new });
  });

  // ------------------------------------------------------------------------------------------
  // Policy and decisions
  // ------------------------------------------------------------------------------------------
  router.get('/policy', (req, res) => {
    const c = d.config();
    const repo = single(req.query['repo'], 'repo');
    const t = now();
    const loaded = [...d.keyring.snapshot.keys.values()].map((k) => keyInfo(k, t));
    const out: Record<string, unknown> = {
      admins: c.policy.admins,
      groups: c.policy.groups,
      access: c.policy.access,
      trust: {
        keysDir: d.keyring.dir,
        defaultRule: 'a repository no rule matches trusts no key (enforce, threshold 1)',
        attestations: c.trust.attestations,
        rules: c.trust.rules.map((r) => ({
          ...r,
          // Keys that apply through this rule: named, or sharing a named key's entries by rotation.
          effectiveKeys: loaded
            .filter((k) => r.keys.includes(k.name) || k.trustedAs.some((n) => r.keys.includes(n)))
            .map((k) => ({ name: k.name, status: k.status })),
          missingKeys: r.keys.filter((n) => !loaded.some((k) => k.name === n)),
        })),
      },
      keys: loaded.map((k) => ({ name: k.name, status: k.status, repos: k.repos, trustedAs: k.trustedAs })),
      epoch: d.trust.epoch(),
    };
    if (repo !== undefined) {
      if (!isValidRepoName(repo)) throw new GateError('NAME_INVALID', 'invalid repository name');
      const rule = d.trust.ruleFor(repo);
      out['repo'] = {
        name: repo,
        rule: rule.pattern,
        mode: rule.mode,
        threshold: rule.threshold,
        tagBinding: rule.tagBinding,
        signedPush: rule.signedPush,
        attestationRule: d.trust.attestationRuleFor(repo)?.pattern ?? null,
        trustedKeys: d.trust
          .trustedKeys(rule, repo)
          .map((k) => ({ name: k.name, status: loaded.find((l) => l.name === k.name)?.status })),
      };
    }
    sendJson(res, 200, out);
  });

  router.get('/explain', async (req, res) => {
    const refText = single(req.query['ref'], 'ref');
    if (refText === undefined) throw badRequest('ref is required: ?ref=REPO:TAG or ?ref=REPO@DIGEST');
    let ref;
    try {
      ref = parseDockerReference(refText);
    } catch (err) {
      throw badRequest(`invalid reference: ${toGateError(err).message}`);
    }
    const { repo } = ref;
    if (ref.tag !== undefined && ref.digest !== undefined)
      throw badRequest('give a tag or a digest, not both');
    const reference = ref.digest ?? ref.tag;
    if (reference === undefined) throw badRequest('the reference needs :TAG or @DIGEST');
    // One fetch, verified from the bytes it returned, as a pull-only client's GET would be. Nothing
    // is admitted (no blob becomes pullable because an admin asked).
    const up = await d.upstream.request({
      method: 'GET',
      path: `/v2/${repo}/manifests/${reference}`,
      headers: { accept: MANIFEST_ACCEPT_HEADER },
      maxBytes: MAX_MANIFEST_BYTES,
    });
    if (up.status === 404) {
      throw new GateError('MANIFEST_UNKNOWN', `${repo}:${reference} is not in the registry`);
    }
    if (up.status !== 200) throw upstreamFailure(new Error(`manifest GET answered ${up.status}`));
    const digest = digestOf(up.body, ref.digest);
    if (ref.digest !== undefined && digest !== ref.digest) {
      throw new InternalFailure(
        'upstream-digest-mismatch',
        `the registry returned bytes that do not match ${ref.digest}`,
        { logDetail: { got: digest } },
      );
    }
    const manifest = parseManifest(up.body, headerValue(up.headers['content-type']));
    const v = await d.trust.verify(repo, digest, manifest, ref.tag);
    sendJson(res, 200, {
      ref: refText,
      repo,
      ...(ref.tag !== undefined ? { tag: ref.tag } : {}),
      digest,
      mediaType: manifest.mediaType,
      kind: manifest.kind,
      decision: v.allow ? (v.ok ? 'allow' : 'audit-allow') : 'deny',
      allow: v.allow,
      ok: v.ok,
      mode: v.mode,
      reason: v.reason,
      message: v.message,
      signers: v.signers,
      rule: v.rule,
      trustedKeys: d.trust.trustedKeyNames(repo),
      // Every condition of the attestation rule and its result (none when no rule applies).
      ...(v.attestation
        ? {
            attestation: {
              rule: v.attestation.rule,
              mode: v.attestation.mode,
              ok: v.attestation.ok,
              reason: v.attestation.reason,
              message: v.attestation.message,
              conditions: v.attestation.conditions,
              expiredExceptions: v.attestation.expiredExceptions,
            },
          }
        : {}),
      cached: v.cached,
      note: 'what a pull-only client gets; identities with push rights on the repository read unsigned manifests',
    });
  });

  // ------------------------------------------------------------------------------------------
  // Vulnerability exceptions (attestation gates)
  // ------------------------------------------------------------------------------------------
  const exceptionStore = (): ExceptionStore => {
    if (!d.exceptions)
      throw new GateError('NOT_CONFIGURED', 'vulnerability exceptions are not configured here');
    return d.exceptions;
  };

  router.get('/exceptions', (_req, res) => {
    const list = exceptionStore().list();
    sendJson(res, 200, {
      exceptions: list,
      active: list.filter((e) => e.status === 'active').length,
      // Reported so an admin removes or renews them; an expired exception never applies.
      expired: list
        .filter((e) => e.status === 'expired')
        .map((e) => ({ id: e.id, cve: e.cve, expires: e.expires })),
    });
  });

  router.post('/exceptions', async (req, res) => {
    const body = parseBody(addExceptionBody, req.body);
    const e = await exceptionStore().add(body, locals(res).identity.subject);
    audit(res, 'exception.add', e.id, { cve: e.cve, repos: e.repos, expires: e.expires, reason: e.reason });
    sendJson(res, 201, e);
  });

  router.delete('/exceptions/:id', async (req, res) => {
    const id = String(req.params['id']);
    const e = await exceptionStore().remove(id);
    audit(res, 'exception.remove', id, { cve: e.cve, repos: e.repos, expires: e.expires });
    sendJson(res, 200, { id, removed: true, exception: e });
  });

  // ------------------------------------------------------------------------------------------
  // Figures
  // ------------------------------------------------------------------------------------------
  router.get('/cache', (_req, res) => {
    sendJson(res, 200, {
      stats: d.cache.stats(),
      epoch: d.trust.epoch(),
      signatureFetches: d.trust.signatureFetches,
      attestationFetches: d.trust.attestationFetches,
    });
  });

  router.get('/health', async (_req, res) => {
    const upstream = await d.upstream.probe();
    const snap = d.keyring.snapshot;
    const stats = d.cache.stats();
    sendJson(res, 200, {
      status: upstream === 'ok' && snap.errors.length === 0 && stats.degraded !== true ? 'ok' : 'degraded',
      upstream,
      keys: { loaded: snap.keys.size, errors: snap.errors, dir: d.keyring.dir },
      cache: stats,
      time: now().toISOString(),
    });
  });

  // ------------------------------------------------------------------------------------------
  // Users and robots
  // ------------------------------------------------------------------------------------------
  router.get('/users', (_req, res) => {
    sendJson(res, 200, accounts.list());
  });

  router.post('/users', async (req, res) => {
    const body = parseBody(addUserBody, req.body);
    await accounts.addUser(body.name, body.password);
    d.reloadCredentials();
    audit(res, 'user.add', body.name);
    sendJson(res, 201, { name: body.name });
  });

  router.delete('/users/:name', async (req, res) => {
    const name = String(req.params['name']);
    await accounts.remove('user', name);
    d.reloadCredentials();
    audit(res, 'user.remove', name);
    sendJson(res, 200, { name, removed: true });
  });

  router.post('/robots', async (req, res) => {
    const body = parseBody(addRobotBody, req.body);
    const r = await accounts.addRobot(body.name);
    d.reloadCredentials();
    audit(res, 'robot.add', body.name);
    // Policy: the secret is in this answer only; it is never logged or stored in clear.
    sendJson(res, 201, { name: body.name, login: r.login, subject: `robot:${body.name}`, secret: r.secret });
  });

  router.delete('/robots/:name', async (req, res) => {
    const name = String(req.params['name']);
    await accounts.remove('robot', name);
    d.reloadCredentials();
    audit(res, 'robot.remove', name);
    sendJson(res, 200, { name, removed: true });
  });

  router.use((req: Request) => {
    throw new GateError(
      'NO_SUCH_ENDPOINT',
      `no such admin endpoint: ${req.method} ${req.baseUrl}${req.path}`,
    );
  });

  // The one error writer (body errors are GateErrors already: server/body.ts).
  router.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const e = toGateError(err);
    if (e.status === 401 && !e.headers['WWW-Authenticate'])
      e.headers['WWW-Authenticate'] = challenge(req, false);
    sendError(res, e, d.log, { path: req.originalUrl, reqId: res.locals['requestId'] });
  });

  return router;
}

/** A query parameter given at most once (Policy: a repeated one is refused, not picked from). */
function single(v: unknown, name: string): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v.length > 1024) throw badRequest(`parameter ${name} must be given once`);
  return v;
}
