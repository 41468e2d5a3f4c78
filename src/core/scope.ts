/**
 * Docker token scopes (distribution `docs/spec/auth/scope.md`):
 * `repository:NAME:pull,push`, `registry:catalog:*`. Pure: strings in, claims out.
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
/** Bounds on what one token request may ask for. */
export const MAX_SCOPES = 64;
export const MAX_SCOPE_LENGTH = 512;

const malformed = (why: string, scope: string): GateError =>
  new GateError('UNSUPPORTED', `malformed scope: ${why}`, {
    status: 400,
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
    // Policy: the only registry-level resource is the catalog, and its only action is `*`.
    if (name !== 'catalog' || !actions.includes('*')) return null;
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
    throw new GateError('UNSUPPORTED', `too many scopes: at most ${MAX_SCOPES} per token request`, {
      status: 400,
    });
  }
  const out: AccessClaim[] = [];
  for (const s of all) {
    const c = parseScope(s);
    if (c) out.push(c);
  }
  return out;
}

/**
 * The grant: the intersection of what was asked and what policy allows now, merged per resource.
 * Policy: `registry:catalog:*` is granted to any authenticated caller and never to anonymous ones;
 * the catalog answer itself is filtered to what the caller may pull unless `policy.canCatalog`
 * (admins) says the caller sees everything.
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
      actions = r.name === 'catalog' && identity.kind !== 'anonymous' && r.actions.includes('*') ? ['*'] : [];
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
