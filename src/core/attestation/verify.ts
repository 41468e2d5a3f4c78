/**
 * From stored attestation envelopes to facts: each envelope is verified under the keys the rule
 * trusts for attestations (envelope.ts), its statement must name the digest, and its predicate is
 * read and reduced by the rule (facts.ts). Pure and synchronous.
 */
import type { BundleVerifyOptions } from '../evidence/bundle.js';
import type { TrustedKey } from '../trusted-key.js';
import { verifyAttestationBundle, verifyLegacyEnvelope } from './envelope.js';
import { readFact, type AttestationFacts, type FactRule, type IgnoredAttestation } from './facts.js';
import type { EffectiveAttestationRule } from './rule.js';

export interface StoredEnvelope {
  layout: 'legacy' | 'bundle';
  digest: string;
  bytes: Uint8Array;
}

export interface AttestationFactsInput {
  digest: string;
  envelopes: readonly StoredEnvelope[];
  /** Keys the rule trusts for attestations (already selected). */
  keys: readonly TrustedKey[];
  rule: EffectiveAttestationRule;
  now: Date;
  /** Transparency-log policy and trusted roots for bundles (the signature rule's). */
  bundleOptions: Pick<BundleVerifyOptions, 'tlog' | 'trustedRoot' | 'trustedRoots'>;
  /** Largest envelope read (the evidence seam's bound). */
  maxBytes: number;
}

export function factRuleOf(rule: EffectiveAttestationRule): FactRule {
  return {
    ...(rule.vulnerabilities ? { maxSeverity: rule.vulnerabilities.maxSeverity } : {}),
    deniedPackages: rule.sbom?.deniedPackages ?? [],
    deniedLicenses: rule.sbom?.deniedLicenses ?? [],
  };
}

export function attestationFacts(input: AttestationFactsInput): AttestationFacts {
  const { digest, keys, now } = input;
  const factRule = factRuleOf(input.rule);
  const out: AttestationFacts = { facts: [], ignored: [] };
  for (const env of input.envelopes) {
    const source = { layout: env.layout, digest: env.digest };
    const v =
      env.layout === 'legacy'
        ? verifyLegacyEnvelope(env.bytes, digest, keys, now)
        : verifyAttestationBundle(
            env.bytes,
            digest,
            keys,
            { ...input.bundleOptions, now, maxBytes: input.maxBytes },
            input.rule.identities,
          );
    if (!v.ok) {
      // A signature bundle among the referrers is not an attestation, and not worth reporting.
      if (v.reason !== 'signature-statement') {
        const ignored: IgnoredAttestation = { source, reason: v.reason, detail: v.detail.slice(0, 300) };
        out.ignored.push(ignored);
      }
      continue;
    }
    out.facts.push(
      readFact({ predicateType: v.predicateType, signers: v.signers, source }, v.predicate, digest, factRule),
    );
  }
  return out;
}
