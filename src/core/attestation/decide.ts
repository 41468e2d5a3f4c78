/**
 * The attestation decision: do the verified attestations of a digest meet the repository's rule,
 * now? Made at every pull from cached facts (facts.ts), the clock and the exceptions in force, so a
 * cached result never outlives a scan's age limit or an exception's expiry. Pure.
 */
import { compileGlob } from '../policy.js';
import type {
  AttestationFact,
  AttestationFacts,
  Finding,
  ProvenanceFact,
  SbomFact,
  VexFact,
  VulnFact,
} from './facts.js';
import { predicateSatisfies, PREDICATE_TYPES } from './predicates.js';
import type { EffectiveAttestationRule } from './rule.js';

/** A vulnerability exception an admin granted (admin API / `trustgate exceptions add`). */
export interface VulnException {
  id: string;
  /** The vulnerability id as scanners report it (CVE-…, GHSA-…). */
  cve: string;
  /** Repository globs it applies to. */
  repos: readonly string[];
  /** ISO 8601; the exception stops applying at this instant. */
  expires: string;
  reason: string;
  by: string;
  created?: string;
}

export type AttestationReason =
  | 'attested'
  | 'attestation-missing'
  | 'attestation-vulnerable'
  | 'attestation-scan-stale'
  | 'attestation-sbom-denied'
  | 'attestation-provenance-mismatch';

export interface AttestationCondition {
  /** What is checked, e.g. `require https://slsa.dev/provenance/v1`, `vulnerabilities`, `scan age`. */
  name: string;
  ok: boolean;
  detail: string;
  reason?: AttestationReason;
}

export interface AttestationVerdict {
  ok: boolean;
  mode: EffectiveAttestationRule['mode'];
  rule: string;
  reason: AttestationReason;
  /** For a refusal: `REPO@DIGEST <what failed>; <how to fix>`; else a one-line summary. */
  message: string;
  conditions: AttestationCondition[];
  /** Exceptions that would apply to a finding here but have expired (reported, never applied). */
  expiredExceptions: Array<{ id: string; cve: string; expires: string }>;
}

export interface AttestationDecisionInput {
  repo: string;
  digest: string;
  rule: EffectiveAttestationRule;
  facts: AttestationFacts;
  now: Date;
  exceptions: readonly VulnException[];
}

/** Policy: a scan may claim to have finished at most this far in the future (clock skew). */
export const MAX_SCAN_CLOCK_SKEW_MS = 5 * 60 * 1000;

/** `2026-11-30 14:02 UTC` */
export function shortTime(ms: number): string {
  // An exceptions file edited by hand may hold an expiry that is no date: it never applies
  // (t < NaN is false), and reporting it must not throw.
  if (!Number.isFinite(ms)) return 'an unreadable time';
  return `${new Date(ms).toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

function describeFinding(f: Finding): string {
  const where = [f.pkg, f.version].filter((s) => s !== undefined).join(' ');
  return `${f.severity} ${f.id}${where ? ` (${where})` : ''}`;
}

function scanLabel(v: VulnFact): string {
  const who = `${v.scanner.name}${v.scanner.version ? ` ${v.scanner.version}` : ''}`;
  return `scan by ${who}${v.finishedOn !== undefined ? ` (${shortTime(v.finishedOn)})` : ''}`;
}

/** Policy: an attestation counts while at least one of its signers' keys is inside its validity. */
function stillValid(f: AttestationFact, now: number): boolean {
  return f.signers.some((s) => s.notAfter === undefined || now <= s.notAfter);
}

function exceptionApplies(e: VulnException, cve: string, repo: string): boolean {
  if (e.cve.toUpperCase() !== cve.toUpperCase()) return false;
  return e.repos.some((g) => {
    try {
      return compileGlob(g)(repo);
    } catch {
      return false;
    }
  });
}

/**
 * Policy (OpenVEX): statements about one vulnerability merge across documents by time: the latest
 * statement that applies to the finding (its id or an alias; the whole product or the finding's
 * package) decides, so a later `affected` takes back an older `not_affected` from another
 * document. On equal times a withdrawal wins; a statement without a time is the oldest.
 */
function vexSuppresses(vex: readonly VexFact[], f: Finding): boolean {
  const id = f.id.toUpperCase();
  let latest: { t: number; suppresses: boolean } | undefined;
  for (const v of vex) {
    for (const s of v.statements) {
      const applies =
        (s.vulnerability.toUpperCase() === id || s.aliases.some((a) => a.toUpperCase() === id)) &&
        (s.subcomponents.length === 0 || (f.pkg !== undefined && s.subcomponents.includes(f.pkg)));
      if (!applies) continue;
      const t = s.timestamp ?? 0;
      const suppresses = s.status === 'not_affected' || s.status === 'fixed';
      if (!latest || t > latest.t || (t === latest.t && !suppresses)) latest = { t, suppresses };
    }
  }
  return latest?.suppresses === true;
}

/** `https://github.com/o/r`, `git+https://github.com/o/r.git` and `github.com/o/r` are one repository. */
function normaliseRepo(s: string): string {
  return s
    .replace(/^git\+/, '')
    .replace(/^[a-z]+:\/\//, '')
    .replace(/\.git$/, '')
    .replace(/\/+$/, '')
    .toLowerCase();
}

/**
 * Policy: builder.id matches when equal to the configured id, or to it followed by `@<version>`
 * (SLSA builders pin their version that way, as slsa-verifier accepts); the source repository
 * matches scheme-, `git+`- and `.git`-insensitively; the ref exactly (`refs/heads/main`).
 */
function provenanceMismatch(
  p: ProvenanceFact,
  want: NonNullable<EffectiveAttestationRule['provenance']>,
): string | undefined {
  if (want.builderId !== undefined) {
    const id = p.builderId;
    if (id === undefined || !(id === want.builderId || id.startsWith(`${want.builderId}@`)))
      return `builder ${id ?? '(none)'} is not ${want.builderId}`;
  }
  if (
    want.sourceRepo !== undefined &&
    (p.sourceRepo === undefined || normaliseRepo(p.sourceRepo) !== normaliseRepo(want.sourceRepo))
  )
    return `source ${p.sourceRepo ?? '(none)'} is not ${want.sourceRepo}`;
  if (want.sourceRef !== undefined && p.sourceRef !== want.sourceRef)
    return `ref ${p.sourceRef ?? '(none)'} is not ${want.sourceRef}`;
  return undefined;
}

export function evaluateAttestations(input: AttestationDecisionInput): AttestationVerdict {
  const { repo, digest, rule, now, exceptions } = input;
  const t = now.getTime();
  if (Number.isNaN(t)) throw new TypeError('invalid clock value');
  const subject = `${repo}@${digest}`;
  const facts = input.facts.facts.filter((f) => stillValid(f, t));
  const conditions: AttestationCondition[] = [];
  const messages: string[] = [];
  const fail = (c: Omit<AttestationCondition, 'ok'>, message: string): void => {
    conditions.push({ ...c, ok: false });
    messages.push(message);
  };
  const keys = `keys trusted for attestations: ${rule.keys.join(', ') || 'none'}`;
  const ignoredNote =
    input.facts.ignored.length > 0
      ? ` (${input.facts.ignored.length} attestation(s) found do not count: ${[...new Set(input.facts.ignored.map((i) => i.reason))].join(', ')})`
      : '';

  // 1. Required predicate types.
  for (const required of rule.require) {
    const found = facts.find((f) => predicateSatisfies(required, f.predicateType));
    if (found)
      conditions.push({
        name: `require ${required}`,
        ok: true,
        detail: `signed by ${found.signers.map((s) => s.name).join(', ')}`,
      });
    else
      fail(
        {
          name: `require ${required}`,
          detail: `no attestation of type ${required} signed by a trusted key${ignoredNote}`,
          reason: 'attestation-missing',
        },
        `has no attestation of type ${required} signed by a key trusted for ${rule.pattern} (${keys})${ignoredNote}`,
      );
  }

  // 2. Vulnerabilities: the newest trusted scan decides.
  const expiredExceptions: AttestationVerdict['expiredExceptions'] = [];
  if (rule.vulnerabilities) {
    const want = rule.vulnerabilities;
    const scans = facts
      .filter((f): f is VulnFact => f.kind === 'vuln')
      .sort((a, b) => (b.finishedOn ?? 0) - (a.finishedOn ?? 0));
    const scan = scans[0];
    if (!scan) {
      fail(
        {
          name: 'vulnerability scan',
          detail: `no vulnerability scan signed by a trusted key${ignoredNote}`,
          reason: 'attestation-missing',
        },
        `has no vulnerability scan (${PREDICATE_TYPES.cosignVuln} or in-toto vulns) signed by a key trusted for ${rule.pattern} (${keys})${ignoredNote}; attest one, e.g. trivy image --format cosign-vuln, then trustgate attest ${subject} --type vuln --predicate FILE --key KEY`,
      );
    } else {
      conditions.push({
        name: 'vulnerability scan',
        ok: true,
        detail: `${scanLabel(scan)}, signed by ${scan.signers.map((s) => s.name).join(', ')}`,
      });
      // Policy: a scan dated past the clock skew is refused whether or not an age limit is set:
      // as "the newest scan" it would otherwise outrank every later (dirty) scan for ever.
      if (scan.finishedOn !== undefined && scan.finishedOn > t + MAX_SCAN_CLOCK_SKEW_MS) {
        fail(
          {
            name: 'scan age',
            detail: `the scan claims to finish in the future (${shortTime(scan.finishedOn)})`,
            reason: 'attestation-scan-stale',
          },
          `${scanLabel(scan)} claims to have finished in the future; fix the scanner's clock and attest again`,
        );
      } else if (want.maxScanAgeHours !== undefined) {
        const maxMs = want.maxScanAgeHours * 3600 * 1000;
        if (scan.finishedOn === undefined) {
          fail(
            {
              name: 'scan age',
              detail: 'the scan has no metadata.scanFinishedOn',
              reason: 'attestation-scan-stale',
            },
            `${scanLabel(scan)} has no metadata.scanFinishedOn, and ${rule.pattern} accepts scans at most ${want.maxScanAgeHours} h old; rescan and attest again`,
          );
        } else if (t - scan.finishedOn > maxMs) {
          const age = Math.floor((t - scan.finishedOn) / 3600_000);
          fail(
            {
              name: 'scan age',
              detail: `${age} h old, over ${want.maxScanAgeHours} h (stale since ${shortTime(scan.finishedOn + maxMs)})`,
              reason: 'attestation-scan-stale',
            },
            `${scanLabel(scan)} is ${age} h old; policy ${rule.pattern} accepts scans at most ${want.maxScanAgeHours} h old; rescan and attest again`,
          );
        } else {
          conditions.push({
            name: 'scan age',
            ok: true,
            detail: `fresh until ${shortTime(scan.finishedOn + maxMs)}`,
          });
        }
      }
      const vex = facts.filter((f): f is VexFact => f.kind === 'vex');
      const suppressed: string[] = [];
      const remaining: Finding[] = [];
      for (const f of scan.findings) {
        const ex = exceptions.find((e) => exceptionApplies(e, f.id, repo) && t < Date.parse(e.expires));
        if (ex) {
          suppressed.push(`${f.id} by exception ${ex.id} until ${shortTime(Date.parse(ex.expires))}`);
          continue;
        }
        for (const e of exceptions) {
          if (
            exceptionApplies(e, f.id, repo) &&
            !(t < Date.parse(e.expires)) &&
            !expiredExceptions.some((x) => x.id === e.id)
          )
            expiredExceptions.push({ id: e.id, cve: e.cve, expires: e.expires });
        }
        if (vexSuppresses(vex, f)) {
          suppressed.push(`${f.id} by a VEX statement`);
          continue;
        }
        remaining.push(f);
      }
      // Findings past the listed ones cannot be matched to exceptions: they stay refusable.
      // Entries the reader could not read (over its cap, or no scanner report) are refusable too.
      const unlisted = scan.refusable - scan.findings.length + (scan.unread ?? 0);
      const total = remaining.length + unlisted;
      const suppressedNote =
        suppressed.length > 0
          ? `; suppressed: ${suppressed.slice(0, 5).join(', ')}${suppressed.length > 5 ? ` and ${suppressed.length - 5} more` : ''}`
          : '';
      if (total > 0) {
        const first = remaining[0];
        const lead = first
          ? describeFinding(first)
          : scan.unread
            ? `${unlisted} finding(s) above ${want.maxSeverity} or unread (malformed, or past the read limit)`
            : `${unlisted} finding(s) above ${want.maxSeverity}`;
        const more = total - (first ? 1 : unlisted);
        const cve = first?.id ?? 'CVE-…';
        const expired = expiredExceptions.find((e) => e.cve.toUpperCase() === cve.toUpperCase());
        fail(
          {
            name: 'vulnerabilities',
            detail: `${total} finding(s) above ${want.maxSeverity}: ${remaining.slice(0, 10).map(describeFinding).join(', ')}${suppressedNote}`,
            reason: 'attestation-vulnerable',
          },
          `${scanLabel(scan)} lists ${lead}${more > 0 ? ` and ${more} more` : ''}; policy ${rule.pattern} allows up to ${want.maxSeverity}${expired ? ` (exception ${expired.id} for ${cve} expired ${shortTime(Date.parse(expired.expires))})` : ''}; to ship anyway: trustgate exceptions add ${cve} --repos '${rule.pattern}' --expires 7d --reason …`,
        );
      } else {
        conditions.push({
          name: 'vulnerabilities',
          ok: true,
          detail: `nothing above ${want.maxSeverity}${suppressedNote}`,
        });
      }
    }
  }

  // 3. SBOM: present, and no denied component.
  if (rule.sbom) {
    const sboms = facts.filter((f): f is SbomFact => f.kind === 'sbom');
    if (sboms.length === 0) {
      fail(
        {
          name: 'sbom',
          detail: `no SBOM (CycloneDX or SPDX) signed by a trusted key${ignoredNote}`,
          reason: 'attestation-missing',
        },
        `has no SBOM (${PREDICATE_TYPES.cyclonedx} or ${PREDICATE_TYPES.spdx}) signed by a key trusted for ${rule.pattern} (${keys})${ignoredNote}`,
      );
    } else {
      const hits = sboms.flatMap((s) => s.denied);
      const total = sboms.reduce((n, s) => n + s.deniedTotal, 0);
      const unread = sboms.reduce((n, s) => n + (s.unread ?? 0), 0);
      if (total === 0 && unread > 0) {
        fail(
          {
            name: 'sbom',
            detail: `${unread} component(s) past the read limit, unchecked`,
            reason: 'attestation-sbom-denied',
          },
          `SBOM lists ${unread} component(s) past the read limit that were never checked against policy ${rule.pattern}; split or trim the SBOM`,
        );
      } else if (total > 0) {
        const h = hits[0]!;
        const what =
          h.why === 'licence'
            ? `${h.name}${h.version ? ` ${h.version}` : ''} under licence ${h.licence}`
            : `package ${h.name}${h.version ? ` ${h.version}` : ''}`;
        fail(
          {
            name: 'sbom',
            detail: `denied: ${hits
              .slice(0, 10)
              .map((x) => `${x.name}${x.licence ? ` (${x.licence})` : ''}`)
              .join(', ')}`,
            reason: 'attestation-sbom-denied',
          },
          `SBOM lists ${what}${total > 1 ? ` and ${total - 1} more` : ''}, which policy ${rule.pattern} denies`,
        );
      } else {
        conditions.push({
          name: 'sbom',
          ok: true,
          detail: `${sboms[0]!.format}, ${sboms[0]!.packages} packages, none denied`,
        });
      }
    }
  }

  // 4. Provenance: one trusted SLSA v1 provenance must match.
  if (rule.provenance) {
    const provs = facts.filter((f): f is ProvenanceFact => f.kind === 'provenance');
    const matching = provs.find((p) => provenanceMismatch(p, rule.provenance!) === undefined);
    if (matching) {
      conditions.push({
        name: 'provenance',
        ok: true,
        detail: `built by ${matching.builderId ?? '?'} from ${matching.sourceRepo ?? '?'}@${matching.sourceRef ?? '?'}`,
      });
    } else if (provs.length === 0) {
      fail(
        {
          name: 'provenance',
          detail: `no SLSA v1 provenance signed by a trusted key${ignoredNote}`,
          reason: 'attestation-missing',
        },
        `has no SLSA provenance (${PREDICATE_TYPES.slsaProvenanceV1}) signed by a key trusted for ${rule.pattern} (${keys})${ignoredNote}`,
      );
    } else {
      const why = provenanceMismatch(provs[0]!, rule.provenance)!;
      fail(
        { name: 'provenance', detail: why, reason: 'attestation-provenance-mismatch' },
        `SLSA provenance does not match policy ${rule.pattern}: ${why}`,
      );
    }
  }

  const failed = conditions.find((c) => !c.ok);
  if (!failed) {
    return {
      ok: true,
      mode: rule.mode,
      rule: rule.pattern,
      reason: 'attested',
      message: `${subject} meets the attestation policy ${rule.pattern} (${conditions.map((c) => c.name).join(', ') || 'nothing required'})`,
      conditions,
      expiredExceptions,
    };
  }
  const others = conditions.filter((c) => !c.ok).length - 1;
  return {
    ok: false,
    mode: rule.mode,
    rule: rule.pattern,
    reason: failed.reason ?? 'attestation-missing',
    message: `${subject} ${messages[0]}${others > 0 ? ` (and ${others} more condition(s) fail: see trustgate explain)` : ''}`,
    conditions,
    expiredExceptions,
  };
}
