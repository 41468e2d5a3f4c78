/**
 * Attestation rules: which attestations a repository's images must carry, and what they may say.
 * Compiled once from config (`trust.attestations[]`; core reads no config module, so the shape is
 * restated here). The first rule whose pattern matches the repository applies; a repository no
 * rule matches has no attestation gate. Pure.
 */
import { compileGlob } from '../policy.js';
import { compileIdentityRules, type IdentityMatcher, type IdentityRule } from '../evidence/identity.js';
import { resolvePredicateType } from './predicates.js';
import type { Severity } from './severity.js';

export interface AttestationRuleInput {
  repos: readonly string[];
  /** Names of trusted keys (the keys directory) whose attestations count. */
  keys: readonly string[];
  /** Keyless identities (Fulcio certificates) whose attestation bundles count. */
  identities?: readonly IdentityRule[];
  /** Predicate types (URIs or cosign short names) that must be present. */
  require: readonly string[];
  vulnerabilities?: { maxSeverity: Severity; maxScanAgeHours?: number | undefined } | undefined;
  sbom?: { deniedPackages: readonly string[]; deniedLicenses: readonly string[] } | undefined;
  provenance?:
    | { builderId?: string | undefined; sourceRepo?: string | undefined; sourceRef?: string | undefined }
    | undefined;
  mode: 'enforce' | 'audit';
}

export interface EffectiveAttestationRule {
  /** The pattern that matched, for messages and audit. */
  pattern: string;
  keys: readonly string[];
  identities: readonly IdentityMatcher[];
  /** Required predicate type URIs (short names resolved). */
  require: readonly string[];
  vulnerabilities?: { maxSeverity: Severity; maxScanAgeHours?: number };
  sbom?: { deniedPackages: readonly string[]; deniedLicenses: readonly string[] };
  provenance?: { builderId?: string; sourceRepo?: string; sourceRef?: string };
  mode: 'enforce' | 'audit';
}

export function compileAttestationRules(
  rules: readonly AttestationRuleInput[],
): (repo: string) => EffectiveAttestationRule | undefined {
  const compiled = rules.flatMap((r) => {
    const v = r.vulnerabilities;
    const p = r.provenance;
    const base: Omit<EffectiveAttestationRule, 'pattern'> = {
      keys: [...r.keys],
      identities: Object.freeze(compileIdentityRules(r.identities ?? [])),
      require: [...new Set(r.require.map(resolvePredicateType))],
      ...(v
        ? {
            vulnerabilities: {
              maxSeverity: v.maxSeverity,
              ...(v.maxScanAgeHours !== undefined ? { maxScanAgeHours: v.maxScanAgeHours } : {}),
            },
          }
        : {}),
      ...(r.sbom
        ? { sbom: { deniedPackages: [...r.sbom.deniedPackages], deniedLicenses: [...r.sbom.deniedLicenses] } }
        : {}),
      ...(p
        ? {
            provenance: {
              ...(p.builderId !== undefined ? { builderId: p.builderId } : {}),
              ...(p.sourceRepo !== undefined ? { sourceRepo: p.sourceRepo } : {}),
              ...(p.sourceRef !== undefined ? { sourceRef: p.sourceRef } : {}),
            },
          }
        : {}),
      mode: r.mode,
    };
    return r.repos.map((pattern) => ({
      match: compileGlob(pattern),
      rule: Object.freeze({ pattern, ...base }),
    }));
  });
  return (repo) => compiled.find((c) => c.match(repo))?.rule;
}
