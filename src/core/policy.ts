/**
 * Access policy: repository patterns map principals to the actions pull, push and delete; admins
 * are named separately. Pure: the policy section of the config in, decisions out.
 */
import { isValidRepoName, NAME_MAX_LENGTH } from './reference.js';
import type { Identity } from './types.js';

export type RepoAction = 'pull' | 'push' | 'delete';
export const REPO_ACTIONS: readonly RepoAction[] = ['pull', 'push', 'delete'];

/** A policy that cannot be compiled; the message names the offending entry. */
export class PolicyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PolicyError';
  }
}

// ---------------------------------------------------------------------------------------------
// Repository globs
// ---------------------------------------------------------------------------------------------

const GLOB_CHARS = /^[a-z0-9._\-/*]+$/;

/** One pattern segment: `**`, or literal pieces separated by single `*`s. */
type Segment = { any: true } | { any: false; pieces: readonly string[] };

/** Does `s` match literal pieces joined by `*`, each `*` standing for one or more characters? */
function matchSegment(pieces: readonly string[], s: string): boolean {
  const first = pieces[0]!;
  if (pieces.length === 1) return s === first;
  const last = pieces[pieces.length - 1]!;
  if (!s.startsWith(first)) return false;
  let pos = first.length;
  // Leftmost placement of each middle piece is optimal: it leaves the most room for the rest.
  for (let i = 1; i < pieces.length - 1; i++) {
    const at = s.indexOf(pieces[i]!, pos + 1); // +1: the `*` before it takes at least one char
    if (at < 0) return false;
    pos = at + pieces[i]!.length;
  }
  const tail = s.length - last.length;
  return tail >= pos + 1 && s.endsWith(last);
}

/**
 * Compiles a repository glob into a matcher. Policy: the grammar is deliberately tiny so that a
 * pattern means what it says:
 * - `*` matches one or more characters inside one path segment (never `/`, never nothing);
 * - `**` is a whole segment and matches one or more whole segments, so `prod/**` matches
 *   `prod/app` and `prod/a/b` but NOT `prod` itself (write `prod` as its own pattern for that);
 * - nothing else is special: no braces, character classes, `?`, negation or extglobs.
 * Matching is a hand-written segment walk (no regex), linear per segment and bounded by
 * segments(pattern) x segments(name), so hostile names cannot make it backtrack.
 */
export function compileGlob(pattern: string): (repo: string) => boolean {
  const fail = (why: string): never => {
    throw new PolicyError(`repository pattern ${JSON.stringify(pattern)}: ${why}`);
  };
  if (pattern.length === 0 || pattern.length > NAME_MAX_LENGTH) fail('must be 1 to 255 characters');
  if (!GLOB_CHARS.test(pattern)) fail('only a-z 0-9 . _ - / and * are allowed');
  const raw = pattern.split('/');
  if (raw.some((s) => s === '')) fail('empty path segment (leading, trailing or double /)');
  if (!pattern.includes('*') && !isValidRepoName(pattern)) {
    fail('not a valid repository name, so it could never match');
  }
  const segments: Segment[] = raw.map((seg) => {
    if (seg === '**') return { any: true };
    if (seg.includes('**')) fail('`**` must be a whole path segment');
    return { any: false, pieces: seg.split('*') };
  });
  const m = segments.length;

  return (repo: string): boolean => {
    if (repo.length === 0 || repo.length > NAME_MAX_LENGTH) return false;
    const names = repo.split('/');
    const n = names.length;
    // ok[i][j]: pattern segments i.. match name segments j.. ; computed from the end.
    let next: boolean[] = new Array<boolean>(n + 1).fill(false);
    next[n] = true; // empty pattern matches the empty rest
    for (let i = m - 1; i >= 0; i--) {
      const seg = segments[i]!;
      const cur: boolean[] = new Array<boolean>(n + 1).fill(false);
      if (seg.any) {
        // `**` takes k >= 1 segments: cur[j] = OR_{k>=1} next[j+k]; a running OR from the end.
        let anyAfter = false;
        for (let j = n - 1; j >= 0; j--) {
          anyAfter = anyAfter || next[j + 1]!;
          cur[j] = anyAfter;
        }
      } else {
        for (let j = 0; j < n; j++) cur[j] = next[j + 1]! && matchSegment(seg.pieces, names[j]!);
      }
      next = cur;
    }
    return next[0]!;
  };
}

// ---------------------------------------------------------------------------------------------
// Principals
// ---------------------------------------------------------------------------------------------

/** A compiled principal list: who it names, checked in O(1) per identity attribute. */
interface PrincipalSet {
  anyAuthenticated: boolean;
  anonymous: boolean;
  subjects: ReadonlySet<string>;
  groups: ReadonlySet<string>;
}

export interface Policy {
  /** The actions `identity` may take on `repo` under the access rules (union of matching rules). */
  allowedActions(identity: Identity, repo: string): Set<RepoAction>;
  /** Admin role (admin API, full catalog). Never anonymous. */
  isAdmin(identity: Identity): boolean;
  /** Policy: the unfiltered catalog is an admin action. */
  canCatalog(identity: Identity): boolean;
  /** Builds the identity for a subject, with its groups from policy (none for anonymous). */
  identityFor(subject: string, kind: Identity['kind']): Identity;
}

interface CompiledRule {
  pattern: string;
  match: (repo: string) => boolean;
  actions: Record<RepoAction, PrincipalSet>;
}

/** The access policy as configured (the config schema's `policy`; core reads no config module). */
export interface PolicyInput {
  admins: readonly string[];
  groups: Readonly<Record<string, readonly string[]>>;
  access: ReadonlyArray<{
    repos: readonly string[];
    pull: readonly string[];
    push: readonly string[];
    delete: readonly string[];
  }>;
}

export function compilePolicy(p: PolicyInput): Policy {
  const groupNames = new Set(Object.keys(p.groups));
  const groupsOf = new Map<string, string[]>();
  for (const [group, members] of Object.entries(p.groups)) {
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(group)) {
      throw new PolicyError(
        `policy.groups: group name ${JSON.stringify(group)} must be 1-64 of A-Z a-z 0-9 . _ -`,
      );
    }
    for (const m of members) {
      // Policy: members are plain subjects; no nested groups and no wildcards inside a group.
      if (m === '' || m === '*' || m === 'anonymous' || m.startsWith('group:')) {
        throw new PolicyError(`policy.groups.${group}: ${JSON.stringify(m)} cannot be a group member`);
      }
      const list = groupsOf.get(m) ?? [];
      if (!list.includes(group)) list.push(group);
      groupsOf.set(m, list);
    }
  }

  const compilePrincipals = (
    list: readonly string[],
    where: string,
    allowAnonymous: boolean,
  ): PrincipalSet => {
    const set = {
      anyAuthenticated: false,
      anonymous: false,
      subjects: new Set<string>(),
      groups: new Set<string>(),
    };
    for (const pr of list) {
      if (pr === '*') set.anyAuthenticated = true;
      else if (pr === 'anonymous') {
        // Policy: anonymous callers may only ever pull; a config that says otherwise is refused.
        if (!allowAnonymous) throw new PolicyError(`${where}: \`anonymous\` is only allowed for pull`);
        set.anonymous = true;
      } else if (pr.startsWith('group:')) {
        const g = pr.slice('group:'.length);
        // Policy: an unknown group is a typo until proven otherwise; refuse rather than match nobody.
        if (!groupNames.has(g)) throw new PolicyError(`${where}: unknown group ${JSON.stringify(g)}`);
        set.groups.add(g);
      } else if (pr.length === 0) {
        throw new PolicyError(`${where}: empty principal`);
      } else set.subjects.add(pr);
    }
    return set;
  };

  const rules: CompiledRule[] = p.access.flatMap((r, i) => {
    const actions = {
      pull: compilePrincipals(r.pull, `policy.access[${i}].pull`, true),
      push: compilePrincipals(r.push, `policy.access[${i}].push`, false),
      delete: compilePrincipals(r.delete, `policy.access[${i}].delete`, false),
    };
    return r.repos.map((pattern) => ({ pattern, match: compileGlob(pattern), actions }));
  });

  for (const a of p.admins) {
    // Policy: the admin role is granted to named subjects or groups only, never to everyone.
    if (a === '*' || a === 'anonymous')
      throw new PolicyError(`policy.admins: ${JSON.stringify(a)} cannot be an admin`);
  }
  const admins = compilePrincipals(p.admins, 'policy.admins', false);

  // Policy: group membership is always the current policy's (identities carry no groups of their
  // own: identityFor copies these), so a token minted before a group change gets the new groups.
  const groupsFor = (id: Identity): readonly string[] => groupsOf.get(id.subject) ?? [];
  const matches = (set: PrincipalSet, id: Identity, groups: readonly string[]): boolean => {
    // Policy: `anonymous` names only the anonymous identity; `*` names any authenticated caller
    // and never the anonymous one; subjects and groups never match an anonymous caller.
    if (id.kind === 'anonymous') return set.anonymous;
    if (set.anyAuthenticated || set.subjects.has(id.subject)) return true;
    return groups.some((g) => set.groups.has(g));
  };

  const isAdmin = (id: Identity): boolean => id.kind !== 'anonymous' && matches(admins, id, groupsFor(id));

  return {
    allowedActions(identity, repo) {
      const out = new Set<RepoAction>();
      const groups = identity.kind === 'anonymous' ? [] : groupsFor(identity);
      for (const rule of rules) {
        if (out.size === REPO_ACTIONS.length) break;
        if (!rule.match(repo)) continue;
        // Policy: rules are additive; the result is the union of every matching rule.
        for (const a of REPO_ACTIONS)
          if (!out.has(a) && matches(rule.actions[a], identity, groups)) out.add(a);
      }
      return out;
    },
    isAdmin,
    canCatalog: isAdmin,
    identityFor(subject, kind) {
      return { subject, kind, groups: kind === 'anonymous' ? [] : [...(groupsOf.get(subject) ?? [])] };
    },
  };
}
