/**
 * Vulnerability severities: the scale, Trivy's words, and CVSS scores (in-toto vulns predicate).
 * Pure.
 */

export const SEVERITIES = ['NONE', 'UNKNOWN', 'LOW', 'MEDIUM', 'HIGH', 'CRITICAL'] as const;
export type Severity = (typeof SEVERITIES)[number];

/**
 * Policy: UNKNOWN (a finding no database rated, Trivy's default) ranks just above NONE: it is
 * refused only by `maxSeverity: NONE`. Ranking it CRITICAL would refuse nearly every image for
 * findings nobody has assessed; an admin who wants that sets NONE.
 */
export function severityRank(s: Severity): number {
  return SEVERITIES.indexOf(s);
}

/** A severity word (any case) as Trivy, Grype and the in-toto example write it; undefined otherwise. */
export function severityFromWord(w: unknown): Severity | undefined {
  if (typeof w !== 'string') return undefined;
  const u = w.trim().toUpperCase();
  if (u === 'NEGLIGIBLE') return 'LOW';
  return (SEVERITIES as readonly string[]).includes(u) ? (u as Severity) : undefined;
}

/** CVSS v3 qualitative rating of a base score (FIRST CVSS v3.1 specification, table 14). */
export function severityFromCvss(score: number): Severity | undefined {
  if (!Number.isFinite(score) || score < 0 || score > 10) return undefined;
  if (score === 0) return 'NONE';
  if (score < 4) return 'LOW';
  if (score < 7) return 'MEDIUM';
  if (score < 9) return 'HIGH';
  return 'CRITICAL';
}

/**
 * The severity of an in-toto vulns finding from its `severity: [{method, score}]` list: a score is
 * a number (CVSS) or a word. Policy: the highest of the methods counts (two databases disagreeing
 * is resolved towards refusal); none readable is UNKNOWN.
 */
export function severityFromScores(list: unknown): Severity {
  let best: Severity | undefined;
  if (!Array.isArray(list)) return 'UNKNOWN';
  for (const entry of list.slice(0, 16)) {
    if (typeof entry !== 'object' || entry === null) continue;
    const score = (entry as Record<string, unknown>)['score'];
    let s: Severity | undefined;
    if (typeof score === 'number') s = severityFromCvss(score);
    else if (typeof score === 'string' && /^\d{1,2}(\.\d+)?$/.test(score.trim()))
      s = severityFromCvss(Number(score.trim()));
    else s = severityFromWord(score);
    if (s !== undefined && (best === undefined || severityRank(s) > severityRank(best))) best = s;
  }
  return best ?? 'UNKNOWN';
}
