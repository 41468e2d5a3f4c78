import { compileGlob } from './policy.js';
import { compileIdentityRules, type IdentityMatcher, type IdentityRule } from './evidence/identity.js';

export interface EffectiveTrustRule {
  /** The pattern that matched, for messages and audit (`(default)` when none did). */
  pattern: string;
  keys: readonly string[];
  /** Keyless identities (Fulcio certificates) trusted alongside the keys. */
  identities: readonly IdentityMatcher[];
  threshold: number;
  mode: 'enforce' | 'audit' | 'off';
  tagBinding: boolean;
  signedPush: boolean;
  /** Sigstore bundles: must a transparency-log entry verify? */
  tlog: 'required' | 'optional';
}

/**
 * Policy: a repository that no trust rule matches is enforced with no trusted key, so nothing in
 * it pulls for consumers until an admin says which keys it trusts. Forgetting a rule never opens
 * the gate.
 */
export const DEFAULT_TRUST_RULE: EffectiveTrustRule = Object.freeze({
  pattern: '(default)',
  keys: [],
  identities: [],
  threshold: 1,
  mode: 'enforce',
  tagBinding: false,
  signedPush: false,
  tlog: 'optional',
});

/** A trust rule as configured (the config schema's `trust.rules[]`; core reads no config module). */
export interface TrustRuleInput {
  repos: readonly string[];
  keys: readonly string[];
  identities?: readonly IdentityRule[];
  threshold: number;
  mode: EffectiveTrustRule['mode'];
  tagBinding: boolean;
  signedPush: boolean;
  tlog: EffectiveTrustRule['tlog'];
}

/** Compiles the trust rules once. The first rule whose pattern matches the repository applies. */
export function compileTrustRules(rules: readonly TrustRuleInput[]): (repo: string) => EffectiveTrustRule {
  const compiled = rules.flatMap((r) => {
    // Compiled once per rule (anchored regular expressions); validated again here, so a rule that
    // bypassed config validation fails loudly rather than matching nothing or everything.
    const identities = Object.freeze(compileIdentityRules(r.identities ?? []));
    return r.repos.map((pattern) => ({
      match: compileGlob(pattern),
      rule: Object.freeze({
        pattern,
        keys: [...r.keys],
        identities,
        threshold: r.threshold,
        mode: r.mode,
        tagBinding: r.tagBinding,
        signedPush: r.signedPush,
        tlog: r.tlog,
      }),
    }));
  });
  return (repo) => compiled.find((c) => c.match(repo))?.rule ?? DEFAULT_TRUST_RULE;
}
