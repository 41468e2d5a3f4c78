import type { Config } from '../config/schema.js';
import type { Identity } from './types.js';

export type RepoAction = 'pull' | 'push' | 'delete';
const REPO_ACTIONS: readonly RepoAction[] = ['pull', 'push', 'delete'];

const GLOB_CHARS = /^[a-z0-9._\-/*]+$/;

/**
 * Compiles a repository glob. `*` matches one or more characters inside one path segment; `**`
 * matches one or more whole segments. Policy: nothing else is special (no braces, classes or
 * extglobs), so a pattern means what it says; `prod/**` does not match `prod` itself.
 */
export function compileGlob(pattern: string): (repo: string) => boolean {
  if (!GLOB_CHARS.test(pattern)) {
    throw new Error(`repository pattern ${JSON.stringify(pattern)}: only a-z 0-9 . _ - / and * are allowed`);
  }
  const segments = pattern.split('/');
  if (segments.some((s) => s === ''))
    throw new Error(`repository pattern ${JSON.stringify(pattern)}: empty segment`);
  const parts = segments.map((seg) => {
    if (seg === '**') return '[^/]+(?:/[^/]+)*';
    if (seg.includes('**'))
      throw new Error(`repository pattern ${JSON.stringify(pattern)}: ** must be a whole segment`);
    return seg
      .split('*')
      .map((lit) => lit.replace(/[.]/g, '\\.'))
      .join('[^/]+');
  });
  const re = new RegExp(`^${parts.join('/')}$`);
  return (repo) => re.test(repo);
}

export interface Policy {
  /** The actions `identity` may take on `repo` under the access rules (union of matching rules). */
  allowedActions(identity: Identity, repo: string): Set<RepoAction>;
  isAdmin(identity: Identity): boolean;
  /** Builds the identity for a subject, with its groups from policy. */
  identityFor(subject: string, kind: Identity['kind']): Identity;
}

interface CompiledRule {
  match: (repo: string) => boolean;
  actions: Record<RepoAction, readonly string[]>;
}

export function compilePolicy(p: Config['policy']): Policy {
  const groupsOf = new Map<string, string[]>();
  for (const [group, members] of Object.entries(p.groups)) {
    for (const m of members) groupsOf.set(m, [...(groupsOf.get(m) ?? []), group]);
  }
  const rules: CompiledRule[] = p.access.flatMap((r) =>
    r.repos.map((pattern) => ({
      match: compileGlob(pattern),
      actions: { pull: r.pull, push: r.push, delete: r.delete },
    })),
  );

  const matches = (principal: string, id: Identity): boolean => {
    if (principal === 'anonymous') return id.kind === 'anonymous';
    // Policy: `*` means any authenticated caller, never an anonymous one.
    if (principal === '*') return id.kind !== 'anonymous';
    if (id.kind === 'anonymous') return false;
    if (principal.startsWith('group:')) return id.groups.includes(principal.slice(6));
    return principal === id.subject;
  };

  return {
    allowedActions(identity, repo) {
      const out = new Set<RepoAction>();
      for (const rule of rules) {
        if (!rule.match(repo)) continue;
        for (const a of REPO_ACTIONS) if (rule.actions[a].some((pr) => matches(pr, identity))) out.add(a);
      }
      return out;
    },
    isAdmin(identity) {
      return p.admins.some((pr) => pr !== '*' && pr !== 'anonymous' && matches(pr, identity));
    },
    identityFor(subject, kind) {
      return { subject, kind, groups: kind === 'anonymous' ? [] : (groupsOf.get(subject) ?? []) };
    },
  };
}
