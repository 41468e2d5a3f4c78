/**
 * Docker token scopes (distribution `docs/spec/auth/scope.md`):
 * `repository:NAME:pull,push`, `registry:catalog:*`, and trustgate's own `registry:admin:*` (the
 * admin API). Pure: strings in, claims and decisions out.
 */
import { GateError } from './errors.js';
import { REPO_ACTIONS, type Policy, type RepoAction } from './policy.js';
import { isValidRepoName } from './reference.js';
import type { Identity } from './types.js';

/** One access claim of a Docker registry token (distribution's token spec). */
export interface AccessClaim {
  type: 'repository' | 'registry';
  name: string;
  actions: string[];
}

export const CATALOG_SCOPE = 'registry:catalog:*';
/** The admin API's scope: asked for alone, granted to admins only, under its own audience. */
export const ADMIN_SCOPE = 'registry:admin:*';
/**
 * The API a token is for. Policy: a token is for exactly one: a registry token (audience =
 * `auth.service`) never opens the admin API, an admin token (audience `<service>#admin`) never
 * opens /v2, whatever either grants.
 */
export type TokenUse = 'registry' | 'admin';
/** Bounds on what one token request may ask for. */
export const MAX_SCOPES = 64;
export const MAX_SCOPE_LENGTH = 512;

const malformed = (why: string, scope: string): GateError =>
  new GateError('BAD_REQUEST', `malformed scope: ${why}`, {
    logDetail: { scope: scope.slice(0, 80) },
  });

/**
 * Parses one scope string strictly. Returns null for scopes that name a resource we do not serve
 * (they grant nothing); throws a 400 GateError for scopes that are malformed.
 * - Policy: only the plain `repository` and `registry` types; `repository(plugin)` and any other
 *   resource class are dropped, since registry:2 behind us has no such resources.
 * - Policy: the name must be a valid repository name (distribution grammar, no host part). A name
 *   that is not one (`a/*`, `a:pull`, `../x`, uppercase) is refused, never matched loosely.
 * - Policy: unknown actions are dropped; `*` on a repository means pull,push,delete (then cut down
 *   by policy like any other request, so it can never widen anything).
 */
export function parseScope(scope: string): AccessClaim | null {
  if (scope.length > MAX_SCOPE_LENGTH) throw malformed(`longer than ${MAX_SCOPE_LENGTH} characters`, scope);
  if (!/^[\x21-\x7e]+$/.test(scope)) throw malformed('only printable ASCII without spaces is allowed', scope);
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first <= 0 || last === first) throw malformed('expected TYPE:NAME:ACTIONS', scope);
  const type = scope.slice(0, first);
  const name = scope.slice(first + 1, last);
  const actions = scope.slice(last + 1).split(',');
  if (!/^[a-z0-9]+(?:\([a-z0-9]+\))?$/.test(type)) throw malformed('bad resource type', scope);
  if (!actions.every((a) => /^(?:[a-z]*|\*)$/.test(a))) throw malformed('bad action list', scope);

  if (type === 'registry') {
    // Policy: the registry-level resources are the catalog and the admin API, and their only
    // action is `*`; anything else (`registry:admin:pull`) grants nothing.
    if ((name !== 'catalog' && name !== 'admin') || !actions.includes('*')) return null;
    return { type, name, actions: ['*'] };
  }
  if (type !== 'repository') return null;
  if (!isValidRepoName(name)) {
    throw new GateError(
      'NAME_INVALID',
      `scope names an invalid repository: ${JSON.stringify(name.slice(0, 80))}`,
      {
        logDetail: { scope: scope.slice(0, 80) },
      },
    );
  }
  const wanted = new Set<RepoAction>();
  for (const a of actions) {
    if (a === '*') REPO_ACTIONS.forEach((x) => wanted.add(x));
    else if ((REPO_ACTIONS as readonly string[]).includes(a)) wanted.add(a as RepoAction);
  }
  if (wanted.size === 0) return null;
  return { type, name, actions: [...wanted].sort() };
}

/**
 * Parses the requested scopes: each entry may itself be a space-separated scope list (the OAuth2
 * form sends one `scope` parameter; some clients do the same on GET). Empty entries are skipped.
 */
export function parseScopes(raw: readonly string[]): AccessClaim[] {
  const all = raw.flatMap((s) => s.split(' ')).filter((s) => s !== '');
  // Policy: too many scopes is refused outright, never silently truncated.
  if (all.length > MAX_SCOPES) {
    throw new GateError('BAD_REQUEST', `too many scopes: at most ${MAX_SCOPES} per token request`);
  }
  const out: AccessClaim[] = [];
  for (const s of all) {
    const c = parseScope(s);
    if (c) out.push(c);
  }
  return out;
}

/** Is this claim the admin API's (`registry:admin:*`)? */
export function isAdminClaim(c: AccessClaim): boolean {
  return c.type === 'registry' && c.name === 'admin';
}

/** Is this access list exactly the admin grant, the only grant an admin token may carry? */
export function isAdminGrant(access: readonly AccessClaim[]): boolean {
  return (
    access.length === 1 &&
    isAdminClaim(access[0]!) &&
    access[0]!.actions.length === 1 &&
    access[0]!.actions[0] === '*'
  );
}

/**
 * The API a token request is for, from its parsed scopes (no scope: the registry, as for `docker
 * login`). Policy: the admin scope is asked for alone. Mixed with repository or catalog scopes the
 * request is refused (400) rather than cut down to one part: a client that mixes them is not a
 * registry client (docker, containerd, skopeo never ask for it) and would otherwise get a token
 * that silently lacks half of what it asked for.
 */
export function tokenRequestUse(requested: readonly AccessClaim[]): TokenUse {
  const admin = requested.some(isAdminClaim);
  if (admin && requested.some((c) => !isAdminClaim(c))) {
    throw new GateError(
      'BAD_REQUEST',
      `the scope ${ADMIN_SCOPE} must be asked for alone: an admin API token grants nothing on the registry and a registry token nothing on the admin API (make two token requests)`,
    );
  }
  return admin ? 'admin' : 'registry';
}

/**
 * The API a granted access list is for: the admin API when it holds the admin grant. Throws a
 * TypeError for a list mixing both (tokenRequestUse refuses such requests first).
 */
export function grantUse(granted: readonly AccessClaim[]): TokenUse {
  if (!granted.some(isAdminClaim)) return 'registry';
  if (!isAdminGrant(granted)) throw new TypeError('grantUse: the admin grant cannot be mixed with others');
  return 'admin';
}

/**
 * A refresh token mints access tokens for the API it was issued for only. Policy: no escalation
 * either way. A registry refresh token (say the identity token `docker login` stored on a CI
 * machine for an admin account) never mints an admin token, even for an admin who asks the admin
 * scope: that needs a password login or a client certificate asking `registry:admin:*` itself.
 * An admin refresh token (issued only to a login that was granted the admin scope) mints only
 * admin tokens, and only while the account is an admin (the grant uses today's policy). RFC 6749
 * section 6: a refresh request must not ask for scope beyond what was originally granted.
 */
export function checkRefreshUse(refreshUse: TokenUse, requested: TokenUse): void {
  if (refreshUse === requested) return;
  throw new GateError(
    'BAD_REQUEST',
    refreshUse === 'registry'
      ? `this refresh token was issued for the registry and cannot mint an admin API token: log in again asking for ${ADMIN_SCOPE}`
      : `this refresh token was issued for the admin API: ask for ${ADMIN_SCOPE}, or log in again for registry scopes`,
  );
}

/** How a caller of the admin API presented itself. */
export type AdminCredential = 'admin-token' | 'registry-token' | 'mtls' | 'none';
/** The admin API's answer to a caller: go on, 401 (with or without insufficient_scope), or 403. */
export type AdminAccess = 'allow' | 'unauthenticated' | 'insufficient-scope' | 'not-admin';

/**
 * Who may use the admin API. Policy: an admin token (the admin grant, admin audience) or a
 * verified client certificate, of an identity that `policy.admins` names today (re-read per
 * request, so removing an admin takes effect at once, even for live admin tokens).
 * - A registry token of an admin is not an admin credential (a CI job's pull token must not be
 *   one): 401 with `error="insufficient_scope"`, so the client asks for `registry:admin:*`.
 * - A non-admin is refused with 403 whatever it presents: no token it can get would help, so it is
 *   told so rather than sent round a challenge loop (as /v2 answers a caller that policy refuses).
 */
export function adminAccess(credential: AdminCredential, isAdmin: boolean): AdminAccess {
  if (credential === 'none') return 'unauthenticated';
  if (!isAdmin) return 'not-admin';
  if (credential === 'registry-token') return 'insufficient-scope';
  return 'allow';
}

/**
 * The grant: the intersection of what was asked and what policy allows now, merged per resource.
 * - Policy: `registry:catalog:*` is granted to any authenticated caller and never to anonymous
 *   ones; the catalog answer itself is filtered to what the caller may pull unless
 *   `policy.canCatalog` (admins) says the caller sees everything.
 * - Policy: `registry:admin:*` is granted to identities `policy.admins` names, to no one else
 *   (never anonymous); asked by anyone else it grants nothing, like any other scope.
 */
export function grantScopes(
  requested: readonly AccessClaim[],
  identity: Identity,
  policy: Policy,
): AccessClaim[] {
  const merged = new Map<string, AccessClaim>();
  for (const r of requested) {
    let actions: string[];
    if (r.type === 'registry') {
      const allowed =
        identity.kind !== 'anonymous' &&
        r.actions.includes('*') &&
        (r.name === 'catalog' || (r.name === 'admin' && policy.isAdmin(identity)));
      actions = allowed ? ['*'] : [];
    } else {
      const allowed = policy.allowedActions(identity, r.name);
      actions = r.actions.filter((a) => allowed.has(a as RepoAction));
    }
    if (actions.length === 0) continue;
    const key = `${r.type}:${r.name}`;
    const prev = merged.get(key);
    merged.set(key, {
      type: r.type,
      name: r.name,
      actions: [...new Set([...(prev?.actions ?? []), ...actions])].sort(),
    });
  }
  return [...merged.values()];
}

/** Does an access list allow `action` on `name`? Exact name match only: no patterns in tokens. */
export function accessAllows(
  access: readonly AccessClaim[],
  name: string,
  action: string,
  type: AccessClaim['type'] = 'repository',
): boolean {
  return access.some((a) => a.type === type && a.name === name && a.actions.includes(action));
}

/** `type:name:a,b` for a claim (the OAuth2 response's `scope` field is these, space-separated). */
export function formatScope(c: AccessClaim): string {
  return `${c.type}:${c.name}:${c.actions.join(',')}`;
}

/** The scope of a `WWW-Authenticate: Bearer …,scope="…"` challenge, actions in canonical order. */
export function formatChallengeScope(repo: string, actions: Iterable<RepoAction>): string {
  if (!isValidRepoName(repo))
    throw new TypeError(`formatChallengeScope: invalid repository name ${JSON.stringify(repo)}`);
  const set = new Set(actions);
  const list = REPO_ACTIONS.filter((a) => set.has(a));
  if (list.length === 0) throw new TypeError('formatChallengeScope: no actions');
  return `repository:${repo}:${list.join(',')}`;
}
