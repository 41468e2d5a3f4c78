/**
 * Predicate types trustgate reads, the short names cosign's `attest --type` takes for them, and how
 * a required type is matched. Pure.
 */

/** Predicate type URIs (cosign pkg/cosign/attestation, in-toto attestation spec/predicates, SLSA, OpenVEX). */
export const PREDICATE_TYPES = Object.freeze({
  /** cosign's Vulnerability Scan Record (`cosign attest --type vuln`; trivy `--format cosign-vuln`). */
  cosignVuln: 'https://cosign.sigstore.dev/attestation/vuln/v1',
  /** in-toto vulnerabilities predicate, v0.1 and v0.2 (severities as scored lists). */
  intotoVulnsV01: 'https://in-toto.io/attestation/vulns/v0.1',
  intotoVulnsV02: 'https://in-toto.io/attestation/vulns/v0.2',
  cyclonedx: 'https://cyclonedx.org/bom',
  spdx: 'https://spdx.dev/Document',
  slsaProvenanceV1: 'https://slsa.dev/provenance/v1',
  openvex: 'https://openvex.dev/ns',
  cosignCustom: 'https://cosign.sigstore.dev/attestation/v1',
});

/** cosign `attest --type` short names (pkg/cosign/attestation/attestation.go), for config and CLI. */
export const PREDICATE_ALIASES: Readonly<Record<string, string>> = Object.freeze({
  vuln: PREDICATE_TYPES.cosignVuln,
  vulns: PREDICATE_TYPES.intotoVulnsV02,
  cyclonedx: PREDICATE_TYPES.cyclonedx,
  spdx: PREDICATE_TYPES.spdx,
  spdxjson: PREDICATE_TYPES.spdx,
  slsaprovenance1: PREDICATE_TYPES.slsaProvenanceV1,
  openvex: PREDICATE_TYPES.openvex,
  custom: PREDICATE_TYPES.cosignCustom,
});

/** A predicate type as written in config or on the command line: a short name or an absolute URI. */
export function resolvePredicateType(t: string): string {
  return PREDICATE_ALIASES[t] ?? t;
}

/** True when `t` is an acceptable predicate type spelling (a known short name, or an https URI). */
export function isPredicateTypeSpelling(t: string): boolean {
  return PREDICATE_ALIASES[t] !== undefined || /^https:\/\/[^\s]+$/.test(t);
}

/**
 * Policy: a required type is met by exactly that type, or by a versioned form of it
 * (`https://cyclonedx.org/bom` by `https://cyclonedx.org/bom/v1.5`, `https://openvex.dev/ns` by
 * `https://openvex.dev/ns/v0.2.0`), never by a prefix of another name or a scheme-less spelling
 * (cosign's malformed `cosign.sigstore.dev/attestation/vuln/v1` does not match).
 */
export function predicateSatisfies(required: string, actual: string): boolean {
  return (
    actual === required ||
    (actual.startsWith(`${required}/v`) && !actual.slice(required.length + 2).includes('/'))
  );
}

export type PredicateKind = 'vuln-cosign' | 'vuln-intoto' | 'sbom' | 'provenance-slsa1' | 'vex' | 'other';

/** What trustgate reads out of an attestation of this predicate type. */
export function predicateKind(t: string): PredicateKind {
  if (t === PREDICATE_TYPES.cosignVuln) return 'vuln-cosign';
  if (t === PREDICATE_TYPES.intotoVulnsV01 || t === PREDICATE_TYPES.intotoVulnsV02) return 'vuln-intoto';
  if (predicateSatisfies(PREDICATE_TYPES.cyclonedx, t) || predicateSatisfies(PREDICATE_TYPES.spdx, t))
    return 'sbom';
  if (t === PREDICATE_TYPES.slsaProvenanceV1) return 'provenance-slsa1';
  if (predicateSatisfies(PREDICATE_TYPES.openvex, t)) return 'vex';
  return 'other';
}
