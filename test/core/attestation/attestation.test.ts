/**
 * Attestation gates in the pure core (core/attestation/): outside-made predicates from
 * ../shared/fixtures (Trivy cosign-vuln, cosign legacy DSSE envelopes, CycloneDX, SPDX, OpenVEX,
 * SLSA v1 provenance from sigstore-go / slsa-verifier) wrapped in statements signed here with test
 * keys in both layouts, then verified, reduced to facts and decided.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { bundleSignerFor, type BundleSigner } from '../../../src/core/evidence/bundle-writer.js';
import { parsePublicKeyDer } from '../../../src/core/signature/keys.js';
import type { TrustedKey } from '../../../src/core/trusted-key.js';
import { checkStatement, verifyLegacyEnvelope } from '../../../src/core/attestation/envelope.js';
import {
  buildAttestationBundle,
  buildAttestationStatement,
  buildDsseEnvelope,
} from '../../../src/core/attestation/writer.js';
import { attestationFacts, type StoredEnvelope } from '../../../src/core/attestation/verify.js';
import { compileAttestationRules, type AttestationRuleInput } from '../../../src/core/attestation/rule.js';
import { evaluateAttestations, type VulnException } from '../../../src/core/attestation/decide.js';
import type { VulnFact, SbomFact, ProvenanceFact, VexFact } from '../../../src/core/attestation/facts.js';
import { predicateSatisfies, PREDICATE_TYPES } from '../../../src/core/attestation/predicates.js';
import { severityFromScores } from '../../../src/core/attestation/severity.js';
import { readShared } from '../../helpers/fixtures.js';
import { loadTrustedRoot } from '../../../src/core/evidence/trusted-root.js';

const DIGEST = `sha256:${'ab'.repeat(32)}`;
const OTHER = `sha256:${'cd'.repeat(32)}`;
const SCAN_DONE = Date.parse('2022-07-24T08:14:04.864Z'); // Trivy sample's scanFinishedOn (+09:00)

interface Key {
  signer: BundleSigner;
  trusted: TrustedKey;
}
function makeKey(name: string, type: 'ed25519' | 'ec' = 'ec', over: Partial<TrustedKey> = {}): Key {
  const { privateKey, publicKey } =
    type === 'ed25519'
      ? generateKeyPairSync('ed25519')
      : generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const pub = parsePublicKeyDer(new Uint8Array(publicKey.export({ format: 'der', type: 'spki' })));
  return { signer: bundleSignerFor(privateKey), trusted: { name, key: pub, ...over } };
}
const scanner = makeKey('scanner-2026');
const edScanner = makeKey('scanner-ed', 'ed25519');
const stranger = makeKey('stranger');

const json = (rel: string): unknown => JSON.parse(readShared(rel).toString('utf8'));
const trivy = (): unknown => json('fixtures/trivy/cosign-vuln.predicate.json');

function envelope(
  predicateType: string,
  predicate: unknown,
  opts: { key?: Key; layout?: 'legacy' | 'bundle'; digest?: string } = {},
): StoredEnvelope {
  const statement = buildAttestationStatement(
    opts.digest ?? DIGEST,
    predicateType,
    predicate,
    'registry.test/prod/app',
  );
  const signer = (opts.key ?? scanner).signer;
  const layout = opts.layout ?? 'legacy';
  const bytes =
    layout === 'legacy' ? buildDsseEnvelope(statement, signer) : buildAttestationBundle(statement, signer);
  return { layout, digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`, bytes };
}

function rule(over: Partial<AttestationRuleInput> = {}) {
  const r = compileAttestationRules([
    { repos: ['prod/**'], keys: ['scanner-2026', 'scanner-ed'], require: [], mode: 'enforce', ...over },
  ])('prod/app');
  assert.ok(r);
  return r;
}

function decide(
  envs: StoredEnvelope[],
  ruleOver: Partial<AttestationRuleInput>,
  now = new Date(SCAN_DONE + 3600_000),
  exceptions: VulnException[] = [],
  keys: TrustedKey[] = [scanner.trusted, edScanner.trusted],
) {
  const r = rule(ruleOver);
  const facts = attestationFacts({
    digest: DIGEST,
    envelopes: envs,
    keys,
    rule: r,
    now,
    bundleOptions: { tlog: 'optional' },
    maxBytes: 4 * 1024 * 1024,
  });
  return {
    facts,
    verdict: evaluateAttestations({ repo: 'prod/app', digest: DIGEST, rule: r, facts, now, exceptions }),
  };
}

const HIGH = { vulnerabilities: { maxSeverity: 'HIGH' as const } };

test('Trivy cosign-vuln sample: its CRITICAL CVE-2021-36159 is refused with the message docker shows', () => {
  for (const layout of ['legacy', 'bundle'] as const) {
    const { facts, verdict } = decide([envelope(PREDICATE_TYPES.cosignVuln, trivy(), { layout })], HIGH);
    const scan = facts.facts[0] as VulnFact;
    assert.equal(scan.kind, 'vuln');
    assert.deepEqual(scan.scanner, { name: 'trivy', version: '0.30.1-8-gf9cb8a28' });
    assert.equal(scan.finishedOn, SCAN_DONE);
    assert.deepEqual(scan.findings, [
      { id: 'CVE-2021-36159', severity: 'CRITICAL', pkg: 'apk-tools', version: '2.10.6-r0' },
    ]);
    assert.equal(verdict.ok, false);
    assert.equal(verdict.reason, 'attestation-vulnerable');
    assert.equal(
      verdict.message,
      `prod/app@${DIGEST} scan by trivy 0.30.1-8-gf9cb8a28 (2022-07-24 08:14 UTC) lists CRITICAL CVE-2021-36159 (apk-tools 2.10.6-r0); policy prod/** allows up to HIGH; to ship anyway: trustgate exceptions add CVE-2021-36159 --repos 'prod/**' --expires 7d --reason …`,
    );
  }
  // Allowing CRITICAL lets it through.
  assert.equal(
    decide([envelope(PREDICATE_TYPES.cosignVuln, trivy())], { vulnerabilities: { maxSeverity: 'CRITICAL' } })
      .verdict.ok,
    true,
  );
});

test('an exception lets the CVE through until it expires, then the expired exception is reported', () => {
  const ex: VulnException = {
    id: 'e1',
    cve: 'cve-2021-36159',
    repos: ['prod/**'],
    expires: new Date(SCAN_DONE + 2 * 3600_000).toISOString(),
    reason: 'apk-tools not used at runtime',
    by: 'alice',
  };
  const envs = [envelope(PREDICATE_TYPES.cosignVuln, trivy())];
  const before = decide(envs, HIGH, new Date(SCAN_DONE + 3600_000), [ex]).verdict;
  assert.equal(before.ok, true);
  assert.match(
    before.conditions.find((c) => c.name === 'vulnerabilities')!.detail,
    /CVE-2021-36159 by exception e1/,
  );
  const after = decide(envs, HIGH, new Date(SCAN_DONE + 2 * 3600_000), [ex]).verdict;
  assert.equal(after.ok, false);
  assert.deepEqual(
    after.expiredExceptions.map((e) => e.id),
    ['e1'],
  );
  assert.match(after.message, /exception e1 for CVE-2021-36159 expired/);
  // An exception for another repository pattern does not apply.
  assert.equal(
    decide(envs, HIGH, new Date(SCAN_DONE + 3600_000), [{ ...ex, repos: ['dev/**'] }]).verdict.ok,
    false,
  );
});

test('scan age is judged at decision time: fresh, then stale; a zero scanFinishedOn has no age', () => {
  const envs = [envelope(PREDICATE_TYPES.cosignVuln, trivy())];
  const rules = { vulnerabilities: { maxSeverity: 'CRITICAL' as const, maxScanAgeHours: 24 } };
  assert.equal(decide(envs, rules, new Date(SCAN_DONE + 23 * 3600_000)).verdict.ok, true);
  const stale = decide(envs, rules, new Date(SCAN_DONE + 25 * 3600_000)).verdict;
  assert.equal(stale.reason, 'attestation-scan-stale');
  assert.match(stale.message, /is 25 h old; policy prod\/\*\* accepts scans at most 24 h old/);
  // cosign's legacy vuln envelope sample carries Go's zero time: no usable age.
  const payload = JSON.parse(readShared('fixtures/cosign/legacy-dsse/valid/vuln').toString('utf8')) as {
    payload: string;
  };
  const statement = JSON.parse(Buffer.from(payload.payload, 'base64').toString('utf8')) as {
    predicate: unknown;
  };
  const zero = decide([envelope(PREDICATE_TYPES.cosignVuln, statement.predicate)], rules).verdict;
  assert.equal(zero.reason, 'attestation-scan-stale');
  assert.match(zero.message, /no metadata\.scanFinishedOn/);
  // A scan claiming to finish in the future does not extend its own validity.
  const future = decide(envs, rules, new Date(SCAN_DONE - 3600_000)).verdict;
  assert.equal(future.reason, 'attestation-scan-stale');
});

test('only a trusted, usable key over this digest counts; otherwise "no scan" applies', () => {
  const cases: Array<[string, StoredEnvelope, TrustedKey[] | undefined, string]> = [
    [
      'untrusted key',
      envelope(PREDICATE_TYPES.cosignVuln, trivy(), { key: stranger }),
      undefined,
      'untrusted-signer',
    ],
    [
      'bundle, untrusted key',
      envelope(PREDICATE_TYPES.cosignVuln, trivy(), { key: stranger, layout: 'bundle' }),
      undefined,
      'untrusted-signer',
    ],
    [
      'other subject',
      envelope(PREDICATE_TYPES.cosignVuln, trivy(), { digest: OTHER }),
      undefined,
      'other-subject',
    ],
    [
      'revoked key',
      envelope(PREDICATE_TYPES.cosignVuln, trivy()),
      [{ ...scanner.trusted, revoked: true }],
      'revoked-or-expired-key',
    ],
  ];
  for (const [what, env, keys, reason] of cases) {
    const { facts, verdict } = decide([env], HIGH, undefined, [], keys);
    assert.equal(facts.facts.length, 0, what);
    assert.equal(facts.ignored[0]?.reason, reason, what);
    assert.equal(verdict.reason, 'attestation-missing', what);
    assert.match(
      verdict.message,
      /has no vulnerability scan .* signed by a key trusted for prod\/\*\*/,
      what,
    );
  }
  // A key's notAfter ends its attestations at decision time, cached facts or not.
  const expiring = { ...scanner.trusted, notAfter: new Date(SCAN_DONE + 2 * 3600_000) };
  const env = envelope(PREDICATE_TYPES.cosignVuln, trivy());
  const crit = { vulnerabilities: { maxSeverity: 'CRITICAL' as const } };
  assert.equal(decide([env], crit, new Date(SCAN_DONE + 3600_000), [], [expiring]).verdict.ok, true);
  assert.equal(decide([env], crit, new Date(SCAN_DONE + 3 * 3600_000), [], [expiring]).verdict.ok, false);
  // Ed25519 keys sign DSSE with Ed25519ph (as cosign 3); both layouts verify.
  for (const layout of ['legacy', 'bundle'] as const)
    assert.equal(
      decide([envelope(PREDICATE_TYPES.cosignVuln, trivy(), { key: edScanner, layout })], crit).verdict.ok,
      true,
    );
});

test('cosign legacy DSSE samples: v0.1 statements parse; their unknown key never verifies; malformed types do not match', () => {
  for (const kind of ['vuln', 'custom']) {
    const env = new Uint8Array(readShared(`fixtures/cosign/legacy-dsse/valid/${kind}`));
    const statement = JSON.parse(
      Buffer.from(
        (JSON.parse(Buffer.from(env).toString()) as { payload: string }).payload,
        'base64',
      ).toString(),
    ) as {
      subject: Array<{ digest: { sha256: string } }>;
    };
    const digest = `sha256:${statement.subject[0]!.digest.sha256}`;
    const v = verifyLegacyEnvelope(env, digest, [scanner.trusted], new Date());
    assert.equal(v.ok, false);
    assert.equal(!v.ok && v.reason, 'untrusted-signer');
    const payload = Buffer.from(
      (JSON.parse(Buffer.from(env).toString()) as { payload: string }).payload,
      'base64',
    );
    const parsed = checkStatement(new Uint8Array(payload), digest, []);
    assert.ok(parsed.ok);
    assert.equal(
      parsed.predicateType,
      kind === 'vuln' ? PREDICATE_TYPES.cosignVuln : PREDICATE_TYPES.cosignCustom,
    );
  }
  const malformed = new Uint8Array(readShared('fixtures/cosign/legacy-dsse/malformed/vuln'));
  const p = Buffer.from(
    (JSON.parse(Buffer.from(malformed).toString()) as { payload: string }).payload,
    'base64',
  );
  const st = JSON.parse(p.toString()) as { subject: Array<{ digest: { sha256: string } }> };
  const parsed = checkStatement(new Uint8Array(p), `sha256:${st.subject[0]!.digest.sha256}`, []);
  assert.ok(parsed.ok);
  assert.equal(predicateSatisfies(PREDICATE_TYPES.cosignVuln, parsed.predicateType), false);
  assert.equal(predicateSatisfies(PREDICATE_TYPES.cyclonedx, 'https://cyclonedx.org/bom/v1.5'), true);
  assert.equal(predicateSatisfies(PREDICATE_TYPES.cyclonedx, 'https://cyclonedx.org/bomb'), false);
});

test('Trivy DSSE CycloneDX attestation sample: the centos statement names another digest', () => {
  const line = readShared('fixtures/trivy/sbom/centos-7-cyclonedx.intoto.jsonl').toString().trim();
  const env = JSON.parse(line) as { payload: string };
  const payload = new Uint8Array(Buffer.from(env.payload, 'base64'));
  const centos = 'sha256:be65f488b7764ad3638f236b7b515b3678369a5124c47b8d32916d6487418ea4';
  const ok = checkStatement(payload, centos, []);
  assert.ok(ok.ok && ok.predicateType === PREDICATE_TYPES.cyclonedx);
  const other = checkStatement(payload, DIGEST, []);
  assert.equal(!other.ok && other.reason, 'other-subject');
});

test('required predicate types and SBOMs (CycloneDX 1.6 spec sample, Trivy SPDX and CycloneDX)', () => {
  const bom = json('fixtures/cyclonedx-specification/valid-bom-1.6.json');
  const spdx = json('fixtures/trivy/sbom/centos-7-spdx.json');
  const trivyBom = json('fixtures/trivy/sbom/centos-7-cyclonedx.json');
  // Missing: refused, naming the type.
  const missing = decide([envelope(PREDICATE_TYPES.cosignVuln, trivy())], { require: ['cyclonedx'] }).verdict;
  assert.equal(missing.reason, 'attestation-missing');
  assert.match(
    missing.message,
    /has no attestation of type https:\/\/cyclonedx\.org\/bom signed by a key trusted for prod\/\*\*/,
  );
  assert.equal(
    decide([envelope(PREDICATE_TYPES.cyclonedx, bom)], { require: ['cyclonedx'] }).verdict.ok,
    true,
  );
  // SBOM present, nothing denied.
  const sbomRule = { sbom: { deniedPackages: ['log4j-core'], deniedLicenses: ['AGPL-3.0-only'] } };
  const fine = decide([envelope(PREDICATE_TYPES.cyclonedx, bom)], sbomRule);
  assert.equal(fine.verdict.ok, true);
  assert.equal((fine.facts.facts[0] as SbomFact).packages, 3);
  // A denied package and a denied licence (as a word of an SPDX expression).
  const denied = decide([envelope(PREDICATE_TYPES.cyclonedx, bom)], {
    sbom: { deniedPackages: ['tomcat-catalina'], deniedLicenses: ['GPL-2.0-with-classpath-exception'] },
  });
  assert.equal(denied.verdict.reason, 'attestation-sbom-denied');
  assert.equal((denied.facts.facts[0] as SbomFact).deniedTotal, 2);
  assert.match(
    denied.verdict.message,
    /SBOM lists package tomcat-catalina 9\.0\.14 and 1 more, which policy prod\/\*\* denies/,
  );
  const gpl = decide([envelope(PREDICATE_TYPES.spdx, spdx)], {
    sbom: { deniedPackages: [], deniedLicenses: ['GPLv3+'] },
  }).verdict;
  assert.match(gpl.message, /SBOM lists bash 4\.2\.46 under licence GPLv3\+/);
  assert.equal(
    decide([envelope(`${PREDICATE_TYPES.cyclonedx}/v1.5`, trivyBom)], {
      sbom: { deniedPackages: ['openssl-libs'], deniedLicenses: [] },
    }).verdict.reason,
    'attestation-sbom-denied',
  );
  // No SBOM at all.
  assert.equal(decide([], sbomRule).verdict.reason, 'attestation-missing');
});

test('OpenVEX v0.2.0 sample: not_affected and fixed suppress for the product digest and subcomponents named', () => {
  const alpine = 'sha256:124c7d2707904eea7431fffe91522a01e5a861a624ee31d03372cc1d138a3126';
  const vex = json('fixtures/openvex/v0.2.0.json');
  const scan = {
    scanner: { uri: 'pkg:github/aquasecurity/trivy@v0.58.1', version: '0.58.1' },
    metadata: { scanFinishedOn: '2022-07-24T08:00:00Z' },
  };
  const withFindings = (findings: Array<[string, string]>) => ({
    ...scan,
    scanner: {
      ...scan.scanner,
      result: {
        Results: [
          {
            Vulnerabilities: findings.map(([id, pkg]) => ({
              VulnerabilityID: id,
              PkgName: pkg,
              InstalledVersion: '3.0.8-r3',
              Severity: 'CRITICAL',
            })),
          },
        ],
      },
    },
  });
  const r = compileAttestationRules([
    { repos: ['prod/**'], keys: ['scanner-2026'], require: [], mode: 'enforce', ...HIGH },
  ])('prod/app')!;
  const run = (findings: Array<[string, string]>, vexKey = scanner) => {
    const envs = [
      envelope(PREDICATE_TYPES.cosignVuln, withFindings(findings), { digest: alpine }),
      envelope('https://openvex.dev/ns/v0.2.0', vex, { digest: alpine, key: vexKey }),
    ];
    const now = new Date('2022-07-24T09:00:00Z');
    const facts = attestationFacts({
      digest: alpine,
      envelopes: envs,
      keys: [scanner.trusted],
      rule: r,
      now,
      bundleOptions: { tlog: 'optional' },
      maxBytes: 1 << 22,
    });
    return {
      facts,
      verdict: evaluateAttestations({
        repo: 'prod/app',
        digest: alpine,
        rule: r,
        facts,
        now,
        exceptions: [],
      }),
    };
  };
  const ok = run([
    ['CVE-2023-3446', 'libssl3'],
    ['CVE-2023-1255', 'libcrypto3'],
  ]);
  assert.equal((ok.facts.facts[1] as VexFact).statements.length, 5);
  assert.equal(ok.verdict.ok, true, ok.verdict.message);
  // A CVE the VEX does not name, or a package outside its subcomponents, is still refused.
  assert.equal(run([['CVE-2024-0001', 'libssl3']]).verdict.ok, false);
  assert.equal(run([['CVE-2023-3446', 'busybox']]).verdict.ok, false);
  // A VEX document signed by an untrusted key suppresses nothing.
  assert.equal(run([['CVE-2023-3446', 'libssl3']], stranger).verdict.ok, false);
});

test('SLSA v1 provenance (sigstore-go and slsa-verifier samples): builder and source matching', () => {
  const statementOf = (rel: string, jsonl = false): { predicateType: string; predicate: unknown } => {
    const text = readShared(rel).toString().trim();
    const b = JSON.parse(jsonl ? text.split('\n')[0]! : text) as { dsseEnvelope: { payload: string } };
    return JSON.parse(Buffer.from(b.dsseEnvelope.payload, 'base64').toString()) as {
      predicateType: string;
      predicate: unknown;
    };
  };
  const npm = statementOf('fixtures/sigstore-go/bundles/sigstore.js@2.0.0-provenance.sigstore.json');
  const bcr = statementOf('fixtures/slsa-verifier/bcr/MODULE.bazel.intoto.jsonl', true);
  assert.equal(npm.predicateType, PREDICATE_TYPES.slsaProvenanceV1);
  const env = envelope(npm.predicateType, npm.predicate);
  const good = decide([env], {
    provenance: {
      builderId: 'https://github.com/actions/runner/github-hosted',
      sourceRepo: 'github.com/sigstore/sigstore-js',
      sourceRef: 'refs/heads/main',
    },
  });
  assert.equal(good.verdict.ok, true, good.verdict.message);
  const p = good.facts.facts[0] as ProvenanceFact;
  assert.equal(p.sourceRepo, 'https://github.com/sigstore/sigstore-js');
  const wrongRef = decide([env], { provenance: { sourceRef: 'refs/heads/release' } }).verdict;
  assert.equal(wrongRef.reason, 'attestation-provenance-mismatch');
  assert.match(wrongRef.message, /ref refs\/heads\/main is not refs\/heads\/release/);
  // A builder id pinned with @version matches the bare id; another builder does not.
  const bcrEnv = envelope(bcr.predicateType, bcr.predicate);
  assert.equal(
    decide([bcrEnv], {
      provenance: {
        builderId: 'https://github.com/bazel-contrib/publish-to-bcr/.github/workflows/publish.yaml',
      },
    }).verdict.ok,
    true,
  );
  assert.equal(
    decide([bcrEnv], {
      provenance: {
        builderId:
          'https://github.com/slsa-framework/slsa-github-generator/.github/workflows/not-trusted.yml',
      },
    }).verdict.ok,
    false,
  );
  assert.equal(decide([], { provenance: { builderId: 'x' } }).verdict.reason, 'attestation-missing');
});

test('in-toto vulns v0.2 example: severities from CVSS scores and words, the highest method wins', () => {
  assert.equal(
    severityFromScores([
      { method: 'nvd', score: 'medium' },
      { method: 'cvss_score', score: '5.2' },
    ]),
    'MEDIUM',
  );
  assert.equal(
    severityFromScores([
      { method: 'nvd', score: '9.8' },
      { method: 'ghsa', score: 'low' },
    ]),
    'CRITICAL',
  );
  assert.equal(severityFromScores([{ method: 'x', score: 'n/a' }]), 'UNKNOWN');
  const predicate = {
    scanner: {
      uri: 'pkg:github/anchore/grype@v0.80.0',
      result: [
        {
          id: 'CVE-123',
          severity: [
            { method: 'nvd', score: 'medium' },
            { method: 'cvss_score', score: '5.2' },
          ],
        },
        { id: 'CVE-456', severity: [{ method: 'cvss_score', score: '7.5' }] },
      ],
    },
    metadata: { scanFinishedOn: '2022-07-24T08:00:00Z' },
  };
  const v = decide([envelope(PREDICATE_TYPES.intotoVulnsV02, predicate)], {
    vulnerabilities: { maxSeverity: 'MEDIUM' },
  }).verdict;
  assert.match(
    v.message,
    /scan by grype 0\.80\.0 \(2022-07-24 08:00 UTC\) lists HIGH CVE-456; policy prod\/\*\* allows up to MEDIUM/,
  );
});

test("keyless: cosign's OCI attestation bundle counts for a rule naming its identity, never for keys alone; a signature bundle is no attestation", () => {
  const keyless = new Uint8Array(readShared('fixtures/cosign/oci-attestation.sigstore.json'));
  const digest = 'sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4';
  const pgi = loadTrustedRoot(readShared('fixtures/cosign/trusted_root_pgi.json'));
  const now = new Date('2026-03-01T00:00:00Z');
  const run = (identities: AttestationRuleInput['identities'], keys: TrustedKey[] = []) => {
    const r = compileAttestationRules([
      { repos: ['**'], keys: keys.map((k) => k.name), identities, require: ['custom'], mode: 'enforce' },
    ])('repo')!;
    const facts = attestationFacts({
      digest,
      envelopes: [{ layout: 'bundle', digest: 'sha256:x', bytes: keyless }],
      keys,
      rule: r,
      now,
      bundleOptions: { tlog: 'optional', trustedRoots: [pgi] },
      maxBytes: 1 << 22,
    });
    return {
      facts,
      verdict: evaluateAttestations({ repo: 'repo', digest, rule: r, facts, now, exceptions: [] }),
    };
  };
  const ok = run([{ issuer: 'https://github.com/login/oauth', subject: 'cody@soyland.com' }]);
  assert.equal(ok.verdict.ok, true, ok.verdict.message);
  assert.equal(ok.facts.facts[0]!.signers[0]!.kind, 'identity');
  const other = run([{ issuer: 'https://github.com/login/oauth', subject: 'someone@else.example' }]);
  assert.equal(other.verdict.reason, 'attestation-missing');
  assert.equal(other.facts.ignored[0]!.reason, 'untrusted-signer');
  assert.equal(run([], [scanner.trusted]).facts.ignored[0]!.reason, 'untrusted-signer');
  // A signature bundle among the referrers is neither counted nor reported.
  const sign = envelope('https://sigstore.dev/cosign/sign/v1', {}, { layout: 'bundle' });
  assert.deepEqual(decide([sign], {}).facts, { facts: [], ignored: [] });
});

test('strict base64: the round-trip check accepts exactly the canonical padded standard alphabet', async () => {
  const fc = (await import('fast-check')).default;
  const { decodeStrictBase64 } = await import('../../../src/core/signature/keys.js');
  // The reference: the grammar of canonical padded base64, then zero trailing bits.
  const STRICT_B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
  const decodeCanonicalBase64 = (s: string): Uint8Array | null =>
    STRICT_B64.test(s) && Buffer.from(s, 'base64').toString('base64') === s ? Buffer.from(s, 'base64') : null;
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \n';
  const text = fc.oneof(
    fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b).toString('base64')),
    fc.array(fc.constantFrom(...alphabet), { maxLength: 24 }).map((a) => a.join('')),
    fc
      .uint8Array({ minLength: 1, maxLength: 32 })
      .map((b) => Buffer.from(b).toString('base64').replace(/=+$/, '')),
  );
  fc.assert(
    fc.property(text, (s) => {
      const a = decodeCanonicalBase64(s);
      const b = decodeStrictBase64(s);
      assert.deepEqual(a === null ? null : Buffer.from(a), b === null ? null : Buffer.from(b));
    }),
    { numRuns: 2000 },
  );
});
