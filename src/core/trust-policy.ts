import { compileGlob } from './policy.js';

export interface EffectiveTrustRule {
  /** The pattern that matched, for messages and audit (`(default)` when none did). */
  pattern: string;
  keys: readonly string[];
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
  threshold: 1,
  mode: 'enforce',
  tagBinding: false,
  signedPush: false,
  tlog: 'optional',
});

/** Compiles the trust rules once. The first rule whose pattern matches the repository applies. */
/** A trust rule as configured (the config schema's `trust.rules[]`; core reads no config module). */
export interface TrustRuleInput {
  repos: readonly string[];
  keys: readonly string[];
  threshold: number;
  mode: EffectiveTrustRule['mode'];
  tagBinding: boolean;
  signedPush: boolean;
  tlog: EffectiveTrustRule['tlog'];
}

export function compileTrustRules(rules: readonly TrustRuleInput[]): (repo: string) => EffectiveTrustRule {
  const compiled = rules.flatMap((r) =>
    r.repos.map((pattern) => ({
      match: compileGlob(pattern),
      rule: Object.freeze({
        pattern,
        keys: [...r.keys],
        threshold: r.threshold,
        mode: r.mode,
        tagBinding: r.tagBinding,
        signedPush: r.signedPush,
        tlog: r.tlog,
      }),
    })),
  );
  return (repo) => compiled.find((c) => c.match(repo))?.rule ?? DEFAULT_TRUST_RULE;
}
