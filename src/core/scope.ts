import { isValidRepoName } from './reference.js';
import type { Policy, RepoAction } from './policy.js';
import type { Identity } from './types.js';

/** One access claim of a Docker registry token (distribution's token spec). */
export interface AccessClaim {
  type: 'repository' | 'registry';
  name: string;
  actions: string[];
}

const MAX_SCOPES = 32;

/**
 * Parses the requested scopes (`repository:NAME:pull,push`, `registry:catalog:*`). Anything else
 * is dropped, not widened. Policy: a malformed scope grants nothing (the client gets a token
 * with less); `*` on a repository is read as pull,push,delete and then cut down by policy.
 */
export function parseScopes(raw: readonly string[]): AccessClaim[] {
  const out: AccessClaim[] = [];
  for (const scope of raw.flatMap((s) => s.split(' ')).slice(0, MAX_SCOPES)) {
    const first = scope.indexOf(':');
    const last = scope.lastIndexOf(':');
    if (first <= 0 || last === first) continue;
    const type = scope.slice(0, first);
    const name = scope.slice(first + 1, last);
    const actions = scope.slice(last + 1).split(',');
    if (type === 'repository' && isValidRepoName(name)) {
      const wanted = new Set<string>();
      for (const a of actions) {
        if (a === '*') ['pull', 'push', 'delete'].forEach((x) => wanted.add(x));
        else if (a === 'pull' || a === 'push' || a === 'delete') wanted.add(a);
      }
      if (wanted.size > 0) out.push({ type, name, actions: [...wanted].sort() });
    } else if (type === 'registry' && name === 'catalog' && actions.includes('*')) {
      out.push({ type, name, actions: ['*'] });
    }
  }
  return out;
}

/**
 * The grant: the intersection of what was asked and what policy allows now. Policy: catalog is
 * granted to any authenticated caller because the catalog answer itself is filtered down to the
 * repositories the caller may pull (admins see all).
 */
export function grantScopes(
  requested: readonly AccessClaim[],
  identity: Identity,
  policy: Policy,
): AccessClaim[] {
  const merged = new Map<string, AccessClaim>();
  for (const r of requested) {
    let actions: string[];
    if (r.type === 'registry') actions = identity.kind === 'anonymous' ? [] : ['*'];
    else {
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

/** Does a token's access list allow `action` on `name`? */
export function accessAllows(
  access: readonly AccessClaim[],
  name: string,
  action: string,
  type: AccessClaim['type'] = 'repository',
): boolean {
  return access.some((a) => a.type === type && a.name === name && a.actions.includes(action));
}
