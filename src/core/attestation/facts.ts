/**
 * What trustgate reads out of verified attestations, reduced to the facts a rule decides on. These
 * are cached (per trust epoch, which covers the rules and keys); the decision over them
 * (decide.ts) is made again at every pull, with the clock and the exceptions of that moment.
 * Pure; bounded: a fact holds at most MAX_LISTED entries of any list.
 */
import { isJsonObject } from '../json-strict.js';
import type { AttestationSigner } from './envelope.js';
import { predicateKind } from './predicates.js';
import { severityFromScores, severityFromWord, severityRank, type Severity } from './severity.js';

/** Policy: each list in a fact (findings, denied packages, VEX statements) keeps this many entries. */
export const MAX_LISTED = 200;
/** Policy: at most this many vulnerability results / SBOM components are read from one predicate. */
export const MAX_READ_ENTRIES = 100_000;

export interface Finding {
  id: string;
  severity: Severity;
  pkg?: string;
  version?: string;
}

interface FactBase {
  predicateType: string;
  signers: AttestationSigner[];
  /** Where it came from: `legacy` (.att layer) or `bundle` (referrer), and the blob digest. */
  source: { layout: 'legacy' | 'bundle'; digest: string };
}

export interface VulnFact extends FactBase {
  kind: 'vuln';
  scanner: { name: string; version?: string };
  /** metadata.scanFinishedOn (ms); undefined when absent or unreadable (the scan then has no age). */
  finishedOn?: number;
  /** Findings above the rule's maxSeverity (the refusable ones), most severe first, at most MAX_LISTED. */
  findings: Finding[];
  /** How many refusable findings there are in all (findings may list fewer). */
  refusable: number;
  /**
   * Entries not read (past MAX_READ_ENTRIES, or a result that is not a scanner's report at all).
   * Policy: what was not read cannot be shown clean, so a rule with maxSeverity refuses them.
   */
  unread?: number;
}

export interface SbomFact extends FactBase {
  kind: 'sbom';
  format: 'cyclonedx' | 'spdx';
  packages: number;
  /** Components the rule denies (by name or licence), at most MAX_LISTED. */
  denied: Array<{ name: string; version?: string; licence?: string; why: 'package' | 'licence' }>;
  deniedTotal: number;
  /** Components past MAX_READ_ENTRIES, never checked against the deny lists (refused when > 0). */
  unread?: number;
}

export interface VexStatement {
  vulnerability: string;
  aliases: string[];
  /**
   * `withdrawn`: the latest statement here is `affected` or `under_investigation` (or an unjustified
   * not_affected); it suppresses nothing, and takes back older statements of other VEX documents.
   */
  status: 'not_affected' | 'fixed' | 'withdrawn';
  /** Subcomponent package names it is limited to; empty: the whole product. */
  subcomponents: string[];
  timestamp?: number;
}

export interface VexFact extends FactBase {
  kind: 'vex';
  /** Statements whose products name the served digest (latest per CVE; withdrawn ones listed first). */
  statements: VexStatement[];
}

export interface ProvenanceFact extends FactBase {
  kind: 'provenance';
  builderId?: string;
  sourceRepo?: string;
  sourceRef?: string;
}

export interface OtherFact extends FactBase {
  kind: 'other';
}

export type AttestationFact = VulnFact | SbomFact | VexFact | ProvenanceFact | OtherFact;

/** Attestations that were found but do not count, and why (for explain and denials). */
export interface IgnoredAttestation {
  source: { layout: 'legacy' | 'bundle'; digest: string };
  reason: string;
  detail: string;
}

export interface AttestationFacts {
  facts: AttestationFact[];
  ignored: IgnoredAttestation[];
}

/** What the reduction needs from the rule (its thresholds and deny lists). */
export interface FactRule {
  maxSeverity?: Severity;
  deniedPackages: readonly string[];
  deniedLicenses: readonly string[];
}

const str = (v: unknown): string | undefined =>
  typeof v === 'string' && v.length > 0 ? v.slice(0, 512) : undefined;
const obj = (v: unknown): Record<string, unknown> => (isJsonObject(v) ? v : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v.slice(0, MAX_READ_ENTRIES) : []);

/** RFC 3339 time to ms; undefined when absent, unreadable or Go's zero time. */
export function parseTime(v: unknown): number | undefined {
  if (typeof v !== 'string' || !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/.test(v))
    return undefined;
  const t = Date.parse(v);
  // Go's zero time (0001-01-01T00:00:00Z, cosign's empty scan record) is no time.
  return Number.isNaN(t) || t <= Date.parse('1970-01-02T00:00:00Z') ? undefined : t;
}

/** Scanner name and version from `scanner.uri` (`pkg:github/aquasecurity/trivy@v0.58.1`) and `scanner.version`. */
function scannerOf(scanner: Record<string, unknown>): { name: string; version?: string } {
  const uri = str(scanner['uri']) ?? '';
  const m = /^pkg:[^/]+\/(?:[^/]+\/)*([^@/]+)(?:@(.+))?$/.exec(uri);
  const name = m?.[1] ?? (uri !== '' ? uri : 'an unnamed scanner');
  const version = (str(scanner['version']) ?? m?.[2])?.replace(/^v(?=\d)/, '');
  return version ? { name, version } : { name };
}

function reduceFindings(
  all: Finding[],
  max: Severity | undefined,
): { findings: Finding[]; refusable: number } {
  if (max === undefined) return { findings: [], refusable: 0 };
  const limit = severityRank(max);
  const over = all.filter((f) => severityRank(f.severity) > limit);
  over.sort((a, b) => severityRank(b.severity) - severityRank(a.severity) || a.id.localeCompare(b.id));
  return { findings: over.slice(0, MAX_LISTED), refusable: over.length };
}

/** Entries of a list, counted without reading them (what a cap left unread is counted here). */
const lengthOf = (v: unknown): number => (Array.isArray(v) ? v.length : 0);

/**
 * Trivy's cosign-vuln predicate: `scanner.result.Results[].Vulnerabilities[]`. Policy: a result that
 * is not a JSON object, or `Results` / `Vulnerabilities` present but not lists, is no scanner report
 * (a failed scan wrapped by `cosign attest`) and counts as one unread entry; entries past
 * MAX_READ_ENTRIES are counted unread too, never dropped.
 */
function cosignVulnFindings(result: unknown): { all: Finding[]; unread: number } {
  if (!isJsonObject(result)) return { all: [], unread: 1 };
  const results = result['Results'];
  if (results === undefined || results === null) return { all: [], unread: 0 };
  if (!Array.isArray(results)) return { all: [], unread: 1 };
  const out: Finding[] = [];
  let seen = 0;
  let unread = 0;
  for (const r of results as unknown[]) {
    const vulns = obj(r)['Vulnerabilities'];
    if (vulns === undefined || vulns === null) continue;
    if (!Array.isArray(vulns)) {
      unread++;
      continue;
    }
    if (seen >= MAX_READ_ENTRIES) {
      unread += vulns.length;
      continue;
    }
    for (const v of vulns as unknown[]) {
      if (seen >= MAX_READ_ENTRIES) {
        unread++;
        continue;
      }
      seen++;
      const o = obj(v);
      const id = str(o['VulnerabilityID']);
      if (id === undefined) continue;
      const pkg = str(o['PkgName']);
      const version = str(o['InstalledVersion']);
      out.push({
        id,
        severity: severityFromWord(o['Severity']) ?? 'UNKNOWN',
        ...(pkg ? { pkg } : {}),
        ...(version ? { version } : {}),
      });
    }
  }
  return { all: out, unread };
}

/**
 * in-toto vulns v0.1/v0.2: `scanner.result[] = {id, severity: [{method, score}], annotations}`.
 * Policy: as for cosign-vuln, a result that is not a list and entries past the cap count unread.
 */
function intotoVulnFindings(result: unknown): { all: Finding[]; unread: number } {
  if (result === undefined || result === null) return { all: [], unread: 0 };
  if (!Array.isArray(result)) return { all: [], unread: 1 };
  const out: Finding[] = [];
  for (const r of arr(result)) {
    const o = obj(r);
    const id = str(o['id']);
    if (id === undefined) continue;
    out.push({ id, severity: severityFromScores(o['severity']) });
  }
  return { all: out, unread: Math.max(0, result.length - MAX_READ_ENTRIES) };
}

function licencesOfCyclonedx(c: Record<string, unknown>): string[] {
  const out: string[] = [];
  for (const l of arr(c['licenses']).slice(0, 16)) {
    const lo = obj(l);
    const id = str(obj(lo['license'])['id']) ?? str(obj(lo['license'])['name']) ?? str(lo['expression']);
    if (id) out.push(id);
  }
  return out;
}

/**
 * Components of a CycloneDX BOM (nested components included) or packages of an SPDX document, and
 * how many were left unread past MAX_READ_ENTRIES. Policy: those are counted, never dropped: a
 * denied package hidden behind 100 000 others must not pass unchecked.
 */
function sbomPackages(
  format: 'cyclonedx' | 'spdx',
  p: Record<string, unknown>,
): { pkgs: Array<{ name: string; version?: string; licences: string[] }>; unread: number } {
  const out: Array<{ name: string; version?: string; licences: string[] }> = [];
  if (format === 'spdx') {
    for (const pkg of arr(p['packages'])) {
      const o = obj(pkg);
      const name = str(o['name']);
      if (!name) continue;
      const licences = [str(o['licenseConcluded']), str(o['licenseDeclared'])].filter(
        (l): l is string => l !== undefined && l !== 'NOASSERTION' && l !== 'NONE',
      );
      const version = str(o['versionInfo']);
      out.push({ name, ...(version ? { version } : {}), licences });
    }
    return { pkgs: out, unread: Math.max(0, lengthOf(p['packages']) - MAX_READ_ENTRIES) };
  }
  let unread = Math.max(0, lengthOf(p['components']) - MAX_READ_ENTRIES);
  const queue: unknown[] = [...arr(p['components'])];
  // An index, not queue.shift(): shifting a list of 100 000 entries is quadratic.
  let next = 0;
  while (next < queue.length && out.length < MAX_READ_ENTRIES) {
    const o = obj(queue[next++]);
    const name = str(o['name']);
    if (name) {
      const version = str(o['version']);
      out.push({ name, ...(version ? { version } : {}), licences: licencesOfCyclonedx(o) });
    }
    const children = o['components'];
    const room = Math.max(0, MAX_READ_ENTRIES - (queue.length - next) - out.length);
    const taken = arr(children).slice(0, room);
    unread += lengthOf(children) - taken.length;
    for (const c of taken) queue.push(c);
  }
  unread += queue.length - next;
  return { pkgs: out, unread };
}

/**
 * Policy: a licence is denied when the denied identifier appears as a whole word in the component's
 * licence (an SPDX expression `GPL-3.0-only OR MIT` is denied for `GPL-3.0-only`), compared without
 * case. An expression offering an allowed alternative is still refused: which branch applies is
 * not the gate's to guess.
 */
function licenceDenied(licence: string, denied: readonly string[]): string | undefined {
  const words = licence.split(/[\s()]+/).map((w) => w.toLowerCase());
  return denied.find((d) => words.includes(d.toLowerCase()));
}

function readSbom(
  format: 'cyclonedx' | 'spdx',
  predicate: unknown,
  rule: FactRule,
): Omit<SbomFact, keyof FactBase | 'kind'> {
  const { pkgs, unread } = sbomPackages(format, obj(predicate));
  const deniedNames = new Set(rule.deniedPackages.map((n) => n.toLowerCase()));
  const denied: SbomFact['denied'] = [];
  let deniedTotal = 0;
  for (const p of pkgs) {
    let hit: SbomFact['denied'][number] | undefined;
    if (deniedNames.has(p.name.toLowerCase()))
      hit = { name: p.name, ...(p.version ? { version: p.version } : {}), why: 'package' };
    else {
      for (const l of p.licences) {
        if (licenceDenied(l, rule.deniedLicenses) !== undefined) {
          hit = { name: p.name, ...(p.version ? { version: p.version } : {}), licence: l, why: 'licence' };
          break;
        }
      }
    }
    if (hit) {
      deniedTotal++;
      if (denied.length < MAX_LISTED) denied.push(hit);
    }
  }
  const checking = rule.deniedPackages.length > 0 || rule.deniedLicenses.length > 0;
  return {
    format,
    packages: pkgs.length,
    denied,
    deniedTotal,
    ...(unread > 0 && checking ? { unread } : {}),
  };
}

/** The digest a product names: `@id` or `identifiers.purl` as `pkg:oci/NAME@sha256%3A<hex>`, or a bare digest. */
function productDigest(p: unknown): string | undefined {
  const o = obj(p);
  for (const id of [str(o['@id']), str(obj(o['identifiers'])['purl'])]) {
    if (!id) continue;
    const bare = /^sha256:[0-9a-f]{64}$/.exec(id);
    if (bare) return bare[0];
    const purl = /^pkg:oci\/[^@?#]+@(sha256(?::|%3A|%3a)[0-9a-f]{64})(?:[?#].*)?$/.exec(id);
    if (purl) return purl[1]!.replace(/%3a/i, ':');
  }
  return undefined;
}

/** A package name from a subcomponent `@id` purl (`pkg:apk/alpine/libssl3@3.0.8-r3` → libssl3). */
function subcomponentName(s: unknown): string | undefined {
  const o = obj(s);
  const id = str(o['@id']) ?? str(obj(o['identifiers'])['purl']);
  if (!id) return undefined;
  const m = /^pkg:[^/]+\/(?:[^/@]+\/)*([^/@?#]+)/.exec(id);
  return m ? decodeURIComponent(m[1]!) : id;
}

/**
 * OpenVEX statements about the served digest. Policy: only `not_affected` and `fixed` suppress;
 * for one vulnerability the latest statement (statement timestamp, else the document's) wins, so a
 * later `affected` or `under_investigation` takes a suppression back.
 */
function readVex(predicate: unknown, digest: string): VexStatement[] {
  const doc = obj(predicate);
  const docTime = parseTime(doc['timestamp']);
  const latest = new Map<string, { t: number; s: VexStatement }>();
  for (const st of arr(doc['statements'])) {
    const o = obj(st);
    const vuln = obj(o['vulnerability']);
    const name = str(vuln['name']) ?? str(o['vulnerability']);
    if (!name) continue;
    if (!arr(o['products']).some((p) => productDigest(p) === digest)) continue;
    const t = parseTime(o['timestamp']) ?? docTime ?? 0;
    const status = o['status'];
    const aliases = arr(vuln['aliases'])
      .map(str)
      .filter((a): a is string => a !== undefined)
      .slice(0, 16);
    const subcomponents = arr(o['products'])
      .filter((p) => productDigest(p) === digest)
      .flatMap((p) => arr(obj(p)['subcomponents']).map(subcomponentName))
      .filter((n): n is string => n !== undefined)
      .slice(0, 64);
    // Policy (OpenVEX spec): a not_affected statement MUST carry a justification or an impact
    // statement; one without says nothing checkable and suppresses nothing.
    const justified =
      status !== 'not_affected' ||
      str(o['justification']) !== undefined ||
      str(o['impact_statement']) !== undefined;
    const s: VexStatement = {
      vulnerability: name,
      aliases,
      status: (status === 'not_affected' || status === 'fixed') && justified ? status : 'withdrawn',
      subcomponents,
      ...(t > 0 ? { timestamp: t } : {}),
    };
    const prev = latest.get(name);
    if (!prev || t >= prev.t) latest.set(name, { t, s });
  }
  // Withdrawals first: if the list is cut, a suppression is lost rather than a withdrawal.
  const all = [...latest.values()].map((e) => e.s);
  return [
    ...all.filter((x) => x.status === 'withdrawn'),
    ...all.filter((x) => x.status !== 'withdrawn'),
  ].slice(0, MAX_LISTED);
}

/** SLSA v1: runDetails.builder.id; source from externalParameters.workflow or resolvedDependencies[0]. */
function readProvenance(predicate: unknown): Omit<ProvenanceFact, keyof FactBase | 'kind'> {
  const p = obj(predicate);
  const builderId = str(obj(obj(p['runDetails'])['builder'])['id']);
  const def = obj(p['buildDefinition']);
  const workflow = obj(obj(def['externalParameters'])['workflow']);
  let sourceRepo = str(workflow['repository']);
  let sourceRef = str(workflow['ref']);
  const dep = str(obj(arr(def['resolvedDependencies'])[0])['uri']);
  if (dep && (!sourceRepo || !sourceRef)) {
    const m = /^(?:git\+)?(.+?)(?:@(refs\/.+))?$/.exec(dep);
    sourceRepo ??= m?.[1];
    sourceRef ??= m?.[2];
  }
  return {
    ...(builderId ? { builderId } : {}),
    ...(sourceRepo ? { sourceRepo } : {}),
    ...(sourceRef ? { sourceRef } : {}),
  };
}

/** The fact one verified statement gives, reduced by the rule. */
export function readFact(
  base: FactBase,
  predicate: unknown,
  digest: string,
  rule: FactRule,
): AttestationFact {
  const kind = predicateKind(base.predicateType);
  switch (kind) {
    case 'vuln-cosign':
    case 'vuln-intoto': {
      const p = obj(predicate);
      const scanner = obj(p['scanner']);
      const { all, unread } =
        kind === 'vuln-cosign'
          ? cosignVulnFindings(scanner['result'])
          : intotoVulnFindings(scanner['result']);
      const finishedOn = parseTime(obj(p['metadata'])['scanFinishedOn']);
      return {
        ...base,
        kind: 'vuln',
        scanner: scannerOf(scanner),
        ...(finishedOn !== undefined ? { finishedOn } : {}),
        ...reduceFindings(all, rule.maxSeverity),
        ...(unread > 0 && rule.maxSeverity !== undefined ? { unread } : {}),
      };
    }
    case 'sbom':
      return {
        ...base,
        kind: 'sbom',
        ...readSbom(
          base.predicateType.startsWith('https://spdx.dev/') ? 'spdx' : 'cyclonedx',
          predicate,
          rule,
        ),
      };
    case 'vex':
      return { ...base, kind: 'vex', statements: readVex(predicate, digest) };
    case 'provenance-slsa1':
      return { ...base, kind: 'provenance', ...readProvenance(predicate) };
    default:
      return { ...base, kind: 'other' };
  }
}
