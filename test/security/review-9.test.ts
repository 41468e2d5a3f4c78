/**
 * Review 9: adversarial review of the attestation gates (issue 16: core/attestation/*, the
 * serve-decision hook). Each attack is a test named HELD (the defence stood), BROKEN (it fails on
 * main b2e578c; severity given) or fixed (…) (it failed on b2e578c and a fix is on this branch).
 * Pure core: statements are signed here with generated test keys, in cosign's legacy DSSE layout;
 * the index-child attack runs through a real trustgate over a real registry:2 with skopeo.
 */
import { after, before, describe, test } from 'node:test';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { generateKeyPair } from '../../src/core/signature/sign.js';
import { encryptCosignKey } from '../../src/core/signature/keyfile.js';
import { attestCommand } from '../../src/cli/attest.js';
import { startRegistry, makeTempDir, removeTempDir, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';
import { createSkopeoContext, type SkopeoContext } from '../helpers/skopeo.js';
import { makeOciIndex } from '../helpers/images.js';
import { signDirect } from '../helpers/sign.js';
import { memoryIo } from '../cli/support.js';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { bundleSignerFor, type BundleSigner } from '../../src/core/evidence/bundle-writer.js';
import { parsePublicKeyDer } from '../../src/core/signature/keys.js';
import type { TrustedKey } from '../../src/core/trusted-key.js';
import { buildAttestationStatement, buildDsseEnvelope } from '../../src/core/attestation/writer.js';
import { attestationFacts, type StoredEnvelope } from '../../src/core/attestation/verify.js';
import { compileAttestationRules, type AttestationRuleInput } from '../../src/core/attestation/rule.js';
import { evaluateAttestations, type VulnException } from '../../src/core/attestation/decide.js';
import { PREDICATE_TYPES } from '../../src/core/attestation/predicates.js';
import { IN_TOTO_STATEMENT_V1 } from '../../src/core/evidence/statement.js';

const DIGEST = `sha256:${'ab'.repeat(32)}`;
const OTHER = `sha256:${'cd'.repeat(32)}`;
const NOW = new Date('2026-12-01T12:00:00Z');
const iso = (msAgo: number): string => new Date(NOW.getTime() - msAgo).toISOString();
const H = 3600_000;

interface Key {
  signer: BundleSigner;
  trusted: TrustedKey;
}
function makeKey(name: string): Key {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const pub = parsePublicKeyDer(new Uint8Array(publicKey.export({ format: 'der', type: 'spki' })));
  return { signer: bundleSignerFor(privateKey), trusted: { name, key: pub } };
}
const ci = makeKey('ci');
const stranger = makeKey('stranger');

function legacy(statement: Uint8Array, key: Key = ci): StoredEnvelope {
  const bytes = buildDsseEnvelope(statement, key.signer);
  return { layout: 'legacy', digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`, bytes };
}
function att(predicateType: string, predicate: unknown, key: Key = ci): StoredEnvelope {
  return legacy(buildAttestationStatement(DIGEST, predicateType, predicate), key);
}
function rawStatement(subject: unknown, predicateType: string, predicate: unknown): Uint8Array {
  return new TextEncoder().encode(
    JSON.stringify({ _type: IN_TOTO_STATEMENT_V1, subject, predicateType, predicate }),
  );
}
function decide(
  envs: StoredEnvelope[],
  over: Partial<AttestationRuleInput>,
  now = NOW,
  exceptions: VulnException[] = [],
  repo = 'prod/app',
) {
  const r = compileAttestationRules([
    { repos: ['prod/**'], keys: ['ci'], require: [], mode: 'enforce', ...over },
  ])('prod/app')!;
  const facts = attestationFacts({
    digest: DIGEST,
    envelopes: envs,
    keys: [ci.trusted],
    rule: r,
    now,
    bundleOptions: { tlog: 'optional' },
    maxBytes: 4 * 1024 * 1024,
  });
  return {
    facts,
    verdict: evaluateAttestations({ repo, digest: DIGEST, rule: r, facts, now, exceptions }),
  };
}
type Vuln = { VulnerabilityID: string; Severity?: string; PkgName?: string };
function trivy(vulns: Vuln[], finished: string | undefined = iso(H)): unknown {
  return {
    scanner: {
      uri: 'pkg:github/aquasecurity/trivy@v0.58.1',
      version: '0.58.1',
      result: { Results: [{ Vulnerabilities: vulns }] },
    },
    metadata: finished === undefined ? {} : { scanFinishedOn: finished },
  };
}
const HIGH = { vulnerabilities: { maxSeverity: 'HIGH' as const } };
const CRIT: Vuln = { VulnerabilityID: 'CVE-2026-0001', Severity: 'CRITICAL', PkgName: 'libssl3' };

test('HELD: a statement naming the served digest among other subjects counts; under another algorithm key or upper-case hex it does not', () => {
  const scan = trivy([]);
  const multi = rawStatement(
    [{ digest: { sha256: OTHER.slice(7) } }, { digest: { sha256: DIGEST.slice(7) } }],
    PREDICATE_TYPES.cosignVuln,
    scan,
  );
  // Policy (in-toto): a statement may have several subjects; the signer vouched for each of them.
  assert.equal(decide([legacy(multi)], HIGH).verdict.ok, true);
  const otherAlg = rawStatement([{ digest: { sha512: DIGEST.slice(7) } }], PREDICATE_TYPES.cosignVuln, scan);
  const upper = rawStatement(
    [{ digest: { sha256: DIGEST.slice(7).toUpperCase() } }],
    PREDICATE_TYPES.cosignVuln,
    scan,
  );
  for (const s of [otherAlg, upper]) {
    const { verdict } = decide([legacy(s)], HIGH);
    assert.equal(verdict.ok, false);
    assert.equal(verdict.reason, 'attestation-missing');
  }
});

test('HELD: predicateType with a trailing slash, another case or a scheme-less spelling does not meet `require`', () => {
  for (const t of [
    'https://slsa.dev/provenance/v1/',
    'HTTPS://SLSA.DEV/provenance/v1',
    'slsa.dev/provenance/v1',
    'https://slsa.dev/provenance/v1x',
    'https://slsa.dev/provenance/v1/../v0.2',
  ]) {
    const { verdict } = decide([att(t, {})], { require: ['slsaprovenance1'] });
    assert.equal(verdict.ok, false, t);
  }
  // A provenance rule reads only the exact SLSA v1 type; a versioned spelling is no provenance.
  const { verdict } = decide(
    [att('https://slsa.dev/provenance/v1/v9', { runDetails: { builder: { id: 'x' } } })],
    {
      provenance: { builderId: 'x' },
    },
  );
  assert.equal(verdict.ok, false);
});

test('HELD: severities in lower case or padded are read; a newer dirty scan beats an older clean one across time zones', () => {
  assert.equal(
    decide([att(PREDICATE_TYPES.cosignVuln, trivy([{ ...CRIT, Severity: ' critical ' }]))], HIGH).verdict.ok,
    false,
  );
  // Clean at 10:30+09:00 (01:30Z), dirty at 02:00Z: the dirty one is newer although it sorts first as text.
  const clean = att(PREDICATE_TYPES.cosignVuln, trivy([], '2026-12-01T10:30:00+09:00'));
  const dirty = att(PREDICATE_TYPES.cosignVuln, trivy([CRIT], '2026-12-01T02:00:00Z'));
  assert.equal(decide([clean, dirty], HIGH).verdict.ok, false);
  assert.equal(decide([dirty, clean], HIGH).verdict.ok, false);
  // A scan time without a zone is unreadable: such a clean scan never outranks a dated dirty one.
  const undated = att(PREDICATE_TYPES.cosignVuln, trivy([], '2099-01-01T00:00:00'));
  assert.equal(decide([undated, dirty], HIGH).verdict.ok, false);
});

test('fixed (low): a clean scan dated in the future outranked every later dirty scan when no maxScanAgeHours is set', () => {
  const future = att(PREDICATE_TYPES.cosignVuln, trivy([], '2099-01-01T00:00:00Z'));
  const dirty = att(PREDICATE_TYPES.cosignVuln, trivy([CRIT], iso(H)));
  const { verdict } = decide([future, dirty], HIGH);
  assert.equal(verdict.ok, false, verdict.message);
});

test('fixed (medium): findings past the 100 000 read were never weighed: a CRITICAL after 100 000 unrated entries passed', () => {
  const filler: Vuln[] = Array.from({ length: 100_000 }, () => ({ VulnerabilityID: 'a' }));
  const { verdict } = decide([att(PREDICATE_TYPES.cosignVuln, trivy([...filler, CRIT]))], HIGH);
  assert.equal(verdict.ok, false, verdict.message);
  assert.equal(verdict.reason, 'attestation-vulnerable');
});

test('fixed (low): a scan whose result is unreadable (null, a string) counted as a clean scan', () => {
  for (const result of [null, 'trivy: fatal error', 42]) {
    const p = {
      scanner: { uri: 'pkg:github/aquasecurity/trivy@v0.58.1', result },
      metadata: { scanFinishedOn: iso(H) },
    };
    const { verdict } = decide([att(PREDICATE_TYPES.cosignVuln, p)], HIGH);
    assert.equal(verdict.ok, false, JSON.stringify(result));
  }
  // Trivy's clean scan (Results without Vulnerabilities, or no Results at all) still passes.
  const clean = {
    scanner: { uri: 'pkg:github/aquasecurity/trivy@v0.58.1', result: { Results: [{ Target: 'x' }] } },
    metadata: { scanFinishedOn: iso(H) },
  };
  assert.equal(decide([att(PREDICATE_TYPES.cosignVuln, clean)], HIGH).verdict.ok, true);
  const none = {
    scanner: { uri: 'pkg:github/aquasecurity/trivy@v0.58.1', result: { SchemaVersion: 2 } },
    metadata: { scanFinishedOn: iso(H) },
  };
  assert.equal(decide([att(PREDICATE_TYPES.cosignVuln, none)], HIGH).verdict.ok, true);
});

function vexDoc(statements: unknown[], timestamp = iso(2 * H)): unknown {
  return {
    '@context': 'https://openvex.dev/ns/v0.2.0',
    '@id': 'https://x/vex',
    author: 'sec',
    timestamp,
    version: 1,
    statements,
  };
}
const product = { '@id': `pkg:oci/app@${DIGEST.replace(':', '%3A')}` };
const notAffected = {
  vulnerability: { name: CRIT.VulnerabilityID },
  products: [product],
  status: 'not_affected',
  justification: 'vulnerable_code_not_in_execute_path',
};

test('HELD: VEX by an untrusted key, naming the product by tag or another digest, does not suppress', () => {
  const scan = att(PREDICATE_TYPES.cosignVuln, trivy([CRIT]));
  assert.equal(decide([scan, att(PREDICATE_TYPES.openvex, vexDoc([notAffected]))], HIGH).verdict.ok, true);
  assert.equal(
    decide([scan, att(PREDICATE_TYPES.openvex, vexDoc([notAffected]), stranger)], HIGH).verdict.ok,
    false,
  );
  for (const p of [
    { '@id': 'pkg:oci/app:latest' },
    { '@id': `pkg:oci/app@${OTHER}` },
    { '@id': `pkg:oci/app@${DIGEST.toUpperCase()}` },
  ]) {
    const { verdict } = decide(
      [scan, att(PREDICATE_TYPES.openvex, vexDoc([{ ...notAffected, products: [p] }]))],
      HIGH,
    );
    assert.equal(verdict.ok, false, JSON.stringify(p));
  }
});

test('fixed (low): an OpenVEX not_affected statement without justification or impact_statement suppressed a finding', () => {
  const scan = att(PREDICATE_TYPES.cosignVuln, trivy([CRIT]));
  const bare = { vulnerability: { name: CRIT.VulnerabilityID }, products: [product], status: 'not_affected' };
  assert.equal(decide([scan, att(PREDICATE_TYPES.openvex, vexDoc([bare]))], HIGH).verdict.ok, false);
  const withImpact = { ...bare, impact_statement: 'the vulnerable function is never called' };
  assert.equal(decide([scan, att(PREDICATE_TYPES.openvex, vexDoc([withImpact]))], HIGH).verdict.ok, true);
});

test("fixed (medium): a later VEX document saying `affected` did not take back an older document's not_affected", () => {
  const scan = att(PREDICATE_TYPES.cosignVuln, trivy([CRIT]));
  const old = att(PREDICATE_TYPES.openvex, vexDoc([notAffected], iso(48 * H)));
  const affected = {
    vulnerability: { name: CRIT.VulnerabilityID },
    products: [product],
    status: 'affected',
    action_statement: 'upgrade',
  };
  const newer = att(PREDICATE_TYPES.openvex, vexDoc([affected], iso(H)));
  const { verdict } = decide([scan, old, newer], HIGH);
  assert.equal(verdict.ok, false, verdict.message);
});

test('HELD: SBOM denied names match without case; SLSA builder.id prefix tricks are refused', () => {
  const bom = { bomFormat: 'CycloneDX', components: [{ name: 'Log4J-Core', version: '2.14.1' }] };
  assert.equal(
    decide([att(PREDICATE_TYPES.cyclonedx, bom)], {
      sbom: { deniedPackages: ['log4j-core'], deniedLicenses: [] },
    }).verdict.ok,
    false,
  );
  const prov = (id: string) => att(PREDICATE_TYPES.slsaProvenanceV1, { runDetails: { builder: { id } } });
  const want = { provenance: { builderId: 'https://github.com/actions/runner' } };
  for (const id of [
    'https://github.com/actions/runner-evil@v1',
    'https://github.com/actions/runnerx',
    'https://github.com/actions/runner/../evil',
    'https://github.com/actions/runner/github-hosted',
  ])
    assert.equal(decide([prov(id)], want).verdict.ok, false, id);
  // Policy (decide.ts): `id@anything` is a version pin of that builder, as slsa-verifier accepts.
  assert.equal(decide([prov('https://github.com/actions/runner@v2')], want).verdict.ok, true);
});

test('fixed (medium): SBOM components past the 100 000 read were never checked against the deny list', () => {
  const components = [...Array.from({ length: 100_000 }, () => ({ name: 'a' })), { name: 'log4j-core' }];
  const { verdict } = decide([att(PREDICATE_TYPES.cyclonedx, { bomFormat: 'CycloneDX', components })], {
    sbom: { deniedPackages: ['log4j-core'], deniedLicenses: [] },
  });
  assert.equal(verdict.ok, false, verdict.message);
});

test('HELD: a DSSE envelope with one bad and one trusted signature counts once; another payloadType never does', () => {
  const statement = buildAttestationStatement(DIGEST, PREDICATE_TYPES.cosignVuln, trivy([]));
  const good = JSON.parse(new TextDecoder().decode(buildDsseEnvelope(statement, ci.signer)));
  const bad = JSON.parse(new TextDecoder().decode(buildDsseEnvelope(statement, stranger.signer)));
  const both = { ...good, signatures: [...bad.signatures, ...good.signatures] };
  const env = (o: unknown): StoredEnvelope => ({
    layout: 'legacy',
    digest: OTHER,
    bytes: new TextEncoder().encode(JSON.stringify(o)),
  });
  assert.equal(decide([env(both)], HIGH).verdict.ok, true);
  assert.equal(
    decide([env({ ...good, payloadType: 'application/vnd.in-toto+json; charset=utf-8' })], HIGH).verdict.ok,
    false,
  );
  assert.equal(decide([env({ ...bad })], HIGH).verdict.ok, false);
});

describe('e2e: an index child pulled alone by digest', { timeout: 240_000 }, () => {
  const consumer = { username: 'consumer', password: 'consumer-password' };
  const publisher = { username: 'publisher', password: 'publisher-password' };
  let registry: RegistryHandle;
  let gate: TestGate;
  let sk: SkopeoContext;
  let work: string;
  const release = generateKeyPair('ecdsa-p256');
  const scanKey = generateKeyPair('ed25519');

  before(async () => {
    registry = await startRegistry();
    gate = await startTestGate({
      registryUrl: registry.url,
      users: { [consumer.username]: consumer.password, [publisher.username]: publisher.password },
      policy: {
        access: [{ repos: ['**'], pull: ['consumer', 'publisher'], push: ['publisher'], delete: [] }],
      },
      trustRules: [{ repos: ['**'], keys: ['release'] }],
      trustedKeys: { release: release.publicKeyPem, scanner: scanKey.publicKeyPem },
      attestations: [
        {
          repos: ['prod/**'],
          keys: ['scanner'],
          vulnerabilities: { maxSeverity: 'HIGH', maxScanAgeHours: 24 },
        },
      ],
    });
    sk = createSkopeoContext();
    work = makeTempDir('review9-e2e');
    writeFileSync(path.join(work, 'scanner.key'), encryptCosignKey(scanKey.pkcs8Der, 'pw'));
    writeFileSync(path.join(work, 'ca.crt'), gate.ca);
  });
  after(async () => {
    sk?.close();
    if (work) removeTempDir(work);
    await gate?.close();
    await registry?.stop();
  });

  test("fixed (medium): a child kept inheriting its index's attestation verdict after the index's scan went stale", async () => {
    const as = (c: typeof consumer) => ({ certDir: gate.certDir, creds: c });
    let n = 0;
    const pull = async (ref: string) => {
      const out = path.join(work, `pull-${n++}`);
      mkdirSync(out);
      return sk.copy(`docker://${gate.host}/${ref}`, `oci:${out}:x`, { src: as(consumer) });
    };
    const idx = await makeOciIndex(path.join(work, 'idx'), ['linux/amd64', 'linux/arm64'], {
      layerBytes: 10_000,
    });
    await sk.copyOk(idx.ref, `docker://${gate.host}/prod/multi:v1`, { dest: as(publisher) });
    await signDirect(registry.url, 'prod/multi', idx.manifestDigest, release.pkcs8Der, {
      dockerReference: `${gate.host}/prod/multi`,
    });
    // A clean scan of the index, fresh for 10 more seconds under maxScanAgeHours 24.
    const finished = new Date(Date.now() - 24 * 3600_000 + 10_000);
    const predicate = {
      scanner: { uri: 'pkg:github/aquasecurity/trivy@v0.58.1', version: '0.58.1', result: { Results: [] } },
      metadata: { scanStartedOn: finished.toISOString(), scanFinishedOn: finished.toISOString() },
    };
    const file = path.join(work, 'scan.json');
    writeFileSync(file, JSON.stringify(predicate));
    const m = memoryIo({ TRUSTGATE_KEY_PASSPHRASE: 'pw', TRUSTGATE_PASSWORD: publisher.password });
    const code = await attestCommand(
      [
        `${gate.host}/prod/multi:v1`,
        '--type',
        'vuln',
        '--predicate',
        file,
        '--key',
        path.join(work, 'scanner.key'),
      ].concat(['--ca-file', path.join(work, 'ca.crt'), '--username', publisher.username]),
      m.io,
    );
    assert.equal(code, 0, m.err());
    const first = await pull('prod/multi:v1');
    assert.equal(first.code, 0, first.stderr);
    const child = [...idx.childManifests.keys()][0]!;
    assert.equal((await pull(`prod/multi@${child}`)).code, 0, 'the child inherits while the index is fresh');
    await new Promise((res) =>
      setTimeout(res, Math.max(0, finished.getTime() + 24 * 3600_000 - Date.now() + 500)),
    );
    const index = await pull('prod/multi:v1');
    assert.notEqual(index.code, 0, 'the index is refused once its scan is stale');
    const alone = await pull(`prod/multi@${child}`);
    assert.notEqual(alone.code, 0, 'the child is refused as its index is');
    assert.match(alone.stderr, /accepts scans at most 24 h old/);
  });
});

test('HELD: an exception applies only to its CVE and its repositories, only before it expires; a wildcard CVE grants nothing', () => {
  const scan = att(PREDICATE_TYPES.cosignVuln, trivy([CRIT]));
  const ex = (over: Partial<VulnException>): VulnException => ({
    id: 'e1',
    cve: CRIT.VulnerabilityID,
    repos: ['prod/app'],
    expires: new Date(NOW.getTime() + H).toISOString(),
    reason: 'r',
    by: 'admin',
    ...over,
  });
  assert.equal(decide([scan], HIGH, NOW, [ex({ cve: CRIT.VulnerabilityID.toLowerCase() })]).verdict.ok, true);
  for (const e of [
    ex({ cve: '*' }),
    ex({ cve: 'CVE-2026-000' }),
    ex({ expires: NOW.toISOString() }),
    ex({ repos: ['prod/app2', 'prod/app/*', 'prod/ap?'] }),
    ex({ repos: ['[invalid'] }),
  ])
    assert.equal(decide([scan], HIGH, NOW, [e]).verdict.ok, false, JSON.stringify(e));
  // prod/app-evil is another repository: an exception for prod/app does not reach it.
  assert.equal(decide([scan], HIGH, NOW, [ex({})], 'prod/app-evil').verdict.ok, false);
});

test('fixed (low): an exception whose expiry is no date (a hand-edited file) made every decision on that CVE throw', () => {
  const scan = att(PREDICATE_TYPES.cosignVuln, trivy([CRIT]));
  const e: VulnException = {
    id: 'e1',
    cve: CRIT.VulnerabilityID,
    repos: ['prod/**'],
    expires: 'never',
    reason: 'r',
    by: 'admin',
  };
  const { verdict } = decide([scan], HIGH, NOW, [e]);
  assert.equal(verdict.ok, false);
  assert.equal(verdict.reason, 'attestation-vulnerable');
});
