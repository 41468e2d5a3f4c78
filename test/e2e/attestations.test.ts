/**
 * Attestation gates end to end (issue 16): real skopeo pulls through trustgate from a real
 * registry:2; attestations written by `trustgate attest` (both layouts) through trustgate, with
 * Trivy's real cosign-vuln sample, the CycloneDX spec sample and an OpenVEX document as predicates;
 * exceptions through `trustgate exceptions` and the admin API.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { generateKeyPair } from '../../src/core/signature/sign.js';
import { encryptCosignKey } from '../../src/core/signature/keyfile.js';
import { attestCommand } from '../../src/cli/attest.js';
import { exceptionsCommand } from '../../src/cli/admin.js';
import { createLogger } from '../../src/server/log.js';
import { startRegistry, makeTempDir, removeTempDir, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';
import { createSkopeoContext, type SkopeoContext } from '../helpers/skopeo.js';
import { makeOciImage, makeOciIndex, type DiskImage } from '../helpers/images.js';
import { signDirect } from '../helpers/sign.js';
import { bearer, getToken, request } from '../helpers/http.js';
import { readShared } from '../helpers/fixtures.js';
import { memoryIo } from '../cli/support.js';

const consumer = { username: 'consumer', password: 'consumer-password' };
const publisher = { username: 'publisher', password: 'publisher-password' };
const admin = { username: 'admin', password: 'admin-password-1' };

/** Trivy's documented cosign-vuln output (alpine:3.10, one CRITICAL), finished at `at`. */
function trivyScan(at: Date, clean = false): unknown {
  const p = JSON.parse(readShared('fixtures/trivy/cosign-vuln.predicate.json').toString()) as {
    scanner: { result: { Results: Array<{ Vulnerabilities?: unknown[] }> } };
    metadata: Record<string, string>;
  };
  p.metadata = { scanStartedOn: at.toISOString(), scanFinishedOn: at.toISOString() };
  if (clean) for (const r of p.scanner.result.Results) r.Vulnerabilities = [];
  return p;
}

describe('e2e: attestation gates', { timeout: 300_000 }, () => {
  let registry: RegistryHandle;
  let gate: TestGate;
  let sk: SkopeoContext;
  let work: string;
  const release = generateKeyPair('ecdsa-p256');
  const scanner = generateKeyPair('ed25519');
  const stranger = generateKeyPair('ecdsa-p256');
  const lines: string[] = [];
  let n = 0;

  before(async () => {
    registry = await startRegistry();
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
        cb();
      },
    });
    gate = await startTestGate({
      registryUrl: registry.url,
      users: {
        [consumer.username]: consumer.password,
        [publisher.username]: publisher.password,
        [admin.username]: admin.password,
      },
      policy: {
        admins: ['admin'],
        access: [{ repos: ['**'], pull: ['consumer', 'publisher'], push: ['publisher'], delete: [] }],
      },
      trustRules: [{ repos: ['**'], keys: ['release'] }],
      trustedKeys: { release: release.publicKeyPem, scanner: scanner.publicKeyPem },
      attestations: [
        {
          repos: ['prod/**'],
          keys: ['scanner'],
          vulnerabilities: { maxSeverity: 'HIGH', maxScanAgeHours: 24 },
        },
        { repos: ['sbom/**'], keys: ['scanner'], sbom: { deniedPackages: ['log4j-core'] } },
        { repos: ['audit/**'], keys: ['scanner'], vulnerabilities: { maxSeverity: 'HIGH' }, mode: 'audit' },
      ],
      logger: createLogger('info', sink),
    });
    sk = createSkopeoContext();
    work = makeTempDir('attest-e2e');
    writeFileSync(path.join(work, 'scanner.key'), encryptCosignKey(scanner.pkcs8Der, 'pw'));
    writeFileSync(path.join(work, 'stranger.key'), encryptCosignKey(stranger.pkcs8Der, 'pw'));
    writeFileSync(path.join(work, 'ca.crt'), gate.ca);
  });

  after(async () => {
    sk?.close();
    if (work) removeTempDir(work);
    await gate?.close();
    await registry?.stop();
  });

  const as = (c: typeof consumer) => ({ certDir: gate.certDir, creds: c });
  const conn = (user: typeof consumer) => [
    '--ca-file',
    path.join(work, 'ca.crt'),
    '--username',
    user.username,
  ];

  async function pull(ref: string): Promise<{ code: number; stderr: string }> {
    const out = path.join(work, `pull-${n++}`);
    mkdirSync(out);
    const r = await sk.copy(`docker://${gate.host}/${ref}`, `oci:${out}:x`, { src: as(consumer) });
    return { code: r.code, stderr: r.stderr };
  }

  /** Pushes a fresh image through trustgate and signs it with the trusted `release` key. */
  async function signedImage(repo: string): Promise<DiskImage> {
    const img = await makeOciImage(path.join(work, `img-${n++}`), { layers: 1, layerBytes: 20_000 });
    await sk.copyOk(img.ref, `docker://${gate.host}/${repo}:v1`, { dest: as(publisher) });
    await signDirect(registry.url, repo, img.manifestDigest, release.pkcs8Der, {
      dockerReference: `${gate.host}/${repo}`,
    });
    return img;
  }

  async function attest(
    ref: string,
    type: string,
    predicate: unknown,
    o: { key?: 'scanner' | 'stranger'; format?: 'legacy' | 'bundle' } = {},
  ): Promise<void> {
    const file = path.join(work, `predicate-${n++}.json`);
    writeFileSync(file, JSON.stringify(predicate));
    const m = memoryIo({ TRUSTGATE_KEY_PASSPHRASE: 'pw', TRUSTGATE_PASSWORD: publisher.password });
    const code = await attestCommand(
      [
        `${gate.host}/${ref}`,
        '--type',
        type,
        '--predicate',
        file,
        '--key',
        path.join(work, `${o.key ?? 'scanner'}.key`),
        '--format',
        o.format ?? 'legacy',
        ...conn(publisher),
      ],
      m.io,
    );
    assert.equal(code, 0, m.err());
  }

  async function exceptions(args: string[]): Promise<string> {
    const m = memoryIo({ TRUSTGATE_PASSWORD: admin.password });
    const code = await exceptionsCommand([...args, '--server', gate.host, ...conn(admin)], m.io);
    assert.equal(code, 0, m.err());
    return m.out();
  }

  it('an image with a signed clean scan pulls (legacy .att layout)', async () => {
    await signedImage('prod/clean');
    const unscanned = await pull('prod/clean:v1');
    assert.notEqual(unscanned.code, 0);
    assert.match(unscanned.stderr, /denied: prod\/clean@sha256:[0-9a-f]{64} has no vulnerability scan/);
    await attest('prod/clean:v1', 'vuln', trivyScan(new Date(), true));
    // A new attestation pushed after a refusal is seen at once: the .att push clears the verdict.
    const r = await pull('prod/clean:v1');
    assert.equal(r.code, 0, r.stderr);
  });

  it('a CRITICAL finding is refused with the message; an exception lets it through until it expires', async () => {
    const img = await signedImage('prod/vuln');
    await attest('prod/vuln:v1', 'vuln', trivyScan(new Date()), { format: 'bundle' });
    const refused = await pull('prod/vuln:v1');
    assert.notEqual(refused.code, 0);
    assert.match(
      refused.stderr,
      new RegExp(
        `denied: prod/vuln@${img.manifestDigest} scan by trivy 0\\.30\\.1-8-gf9cb8a28 \\(\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d UTC\\) lists CRITICAL CVE-2021-36159 \\(apk-tools 2\\.10\\.6-r0\\); policy prod/\\*\\* allows up to HIGH; to ship anyway: trustgate exceptions add CVE-2021-36159 --repos 'prod/\\*\\*' --expires 7d --reason`,
      ),
    );
    const expires = new Date(Date.now() + 6000);
    const added = await exceptions([
      'add',
      'CVE-2021-36159',
      '--repos',
      'prod/vuln',
      '--expires',
      expires.toISOString(),
      '--reason',
      'apk-tools is not used at runtime',
    ]);
    assert.match(added, /added [0-9a-f]{12}\s+active\s+CVE-2021-36159/);
    const r = await pull('prod/vuln:v1');
    assert.equal(r.code, 0, r.stderr);
    // The admin explain endpoint shows each condition and its result.
    const t = await getToken(gate.url, gate.ca, admin.username, admin.password, ['registry:admin:*']);
    const ex = await request(gate.url, gate.ca, {
      path: `/admin/v1/explain?ref=${encodeURIComponent('prod/vuln:v1')}`,
      headers: bearer(t),
    });
    const body = JSON.parse(ex.body.toString()) as {
      decision: string;
      attestation: { conditions: Array<{ name: string; ok: boolean; detail: string }> };
    };
    assert.equal(body.decision, 'allow');
    assert.deepEqual(
      body.attestation.conditions.map((c) => [c.name, c.ok]),
      [
        ['vulnerability scan', true],
        ['scan age', true],
        ['vulnerabilities', true],
      ],
    );
    assert.match(body.attestation.conditions[2]!.detail, /CVE-2021-36159 by exception/);
    await new Promise((res) => setTimeout(res, Math.max(0, expires.getTime() - Date.now() + 200)));
    const again = await pull('prod/vuln:v1');
    assert.notEqual(again.code, 0, 'refused again once the exception expired');
    assert.match(again.stderr, /exception [0-9a-f]{12} for CVE-2021-36159 expired/);
    assert.match(await exceptions(['list']), /expired\s+CVE-2021-36159[\s\S]*1 expired exception/);
  });

  it('a multi-platform index attested as a whole pulls: its children inherit, signed on their own or not', async () => {
    const idx = await makeOciIndex(path.join(work, `idx-${n++}`), ['linux/amd64', 'linux/arm64'], {
      layerBytes: 10_000,
    });
    await sk.copyOk(idx.ref, `docker://${gate.host}/prod/multi:v1`, { dest: as(publisher) });
    const sign = (digest: string) =>
      signDirect(registry.url, 'prod/multi', digest, release.pkcs8Der, {
        dockerReference: `${gate.host}/prod/multi`,
      });
    await sign(idx.manifestDigest);
    // One child is also signed by itself (`sign --recursive`): it has no scan of its own either.
    await sign([...idx.childManifests.keys()][0]!);
    assert.notEqual((await pull('prod/multi:v1')).code, 0, 'no scan of the index yet');
    await attest('prod/multi:v1', 'vuln', trivyScan(new Date(), true));
    const r = await pull('prod/multi:v1');
    assert.equal(r.code, 0, r.stderr);
  });

  it('a scan signed by an untrusted key does not count ("no scan" applies)', async () => {
    await signedImage('prod/stranger');
    await attest('prod/stranger:v1', 'vuln', trivyScan(new Date(), true), { key: 'stranger' });
    const r = await pull('prod/stranger:v1');
    assert.notEqual(r.code, 0);
    assert.match(
      r.stderr,
      /has no vulnerability scan .* signed by a key trusted for prod\/\*\* \(keys trusted for attestations: scanner\) \(1 attestation\(s\) found do not count: untrusted-signer\)/,
    );
  });

  it('a stale scan is refused', async () => {
    await signedImage('prod/stale');
    await attest('prod/stale:v1', 'vuln', trivyScan(new Date(Date.now() - 3 * 86_400_000), true));
    const r = await pull('prod/stale:v1');
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /scan by trivy .* is 72 h old; policy prod\/\*\* accepts scans at most 24 h old/);
  });

  it('a cached attestation check never extends a scan past its age limit', async () => {
    await signedImage('prod/ageing');
    // Finished 24 h minus 8 s ago: fresh for 8 more seconds under maxScanAgeHours 24.
    const finished = new Date(Date.now() - 24 * 3600_000 + 8000);
    await attest('prod/ageing:v1', 'vuln', trivyScan(finished, true));
    const first = await pull('prod/ageing:v1');
    assert.equal(first.code, 0, first.stderr);
    const fetches = gate.tg.trust.attestationFetches;
    await new Promise((res) =>
      setTimeout(res, Math.max(0, finished.getTime() + 24 * 3600_000 - Date.now() + 500)),
    );
    const later = await pull('prod/ageing:v1');
    assert.notEqual(later.code, 0);
    assert.match(later.stderr, /accepts scans at most 24 h old/);
    // The facts came from the cache (positive TTL 1 h); only the decision was made again.
    assert.equal(gate.tg.trust.attestationFetches, fetches);
  });

  it('a new clean scan pushed after a CRITICAL refusal is seen without a restart (newest scan decides)', async () => {
    await signedImage('prod/rescan');
    await attest('prod/rescan:v1', 'vuln', trivyScan(new Date(Date.now() - 3600_000)));
    assert.notEqual((await pull('prod/rescan:v1')).code, 0);
    await attest('prod/rescan:v1', 'vuln', trivyScan(new Date(), true));
    const r = await pull('prod/rescan:v1');
    assert.equal(r.code, 0, r.stderr);
  });

  it('a VEX statement signed by the trusted key suppresses its CVE for the product it names', async () => {
    const img = await signedImage('prod/vex');
    await attest('prod/vex:v1', 'vuln', trivyScan(new Date()));
    assert.notEqual((await pull('prod/vex:v1')).code, 0);
    const vex = {
      '@context': 'https://openvex.dev/ns/v0.2.0',
      '@id': 'https://example.test/vex/1',
      author: 'security@example.test',
      timestamp: new Date().toISOString(),
      version: 1,
      statements: [
        {
          vulnerability: { name: 'CVE-2021-36159' },
          products: [{ '@id': `pkg:oci/vex@${img.manifestDigest.replace(':', '%3A')}` }],
          status: 'not_affected',
          justification: 'vulnerable_code_not_in_execute_path',
        },
      ],
    };
    await attest('prod/vex:v1', 'openvex', vex, { format: 'bundle' });
    const r = await pull('prod/vex:v1');
    assert.equal(r.code, 0, r.stderr);
  });

  it('an SBOM-required repository refuses an image without one, and takes it once attested', async () => {
    await signedImage('sbom/app');
    const r = await pull('sbom/app:v1');
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /has no SBOM/);
    await attest(
      'sbom/app:v1',
      'cyclonedx',
      JSON.parse(readShared('fixtures/cyclonedx-specification/valid-bom-1.6.json').toString()),
    );
    const ok = await pull('sbom/app:v1');
    assert.equal(ok.code, 0, ok.stderr);
  });

  it('audit mode serves what enforce would refuse, and logs it', async () => {
    const img = await signedImage('audit/app');
    await attest('audit/app:v1', 'vuln', trivyScan(new Date()));
    const r = await pull('audit/app:v1');
    assert.equal(r.code, 0, r.stderr);
    const events = lines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter(
        (e) => e['audit'] === 'decision' && e['repo'] === 'audit/app' && e['digest'] === img.manifestDigest,
      );
    assert.ok(
      events.some((e) => e['verdict'] === 'audit-allow' && e['reason'] === 'attestation-vulnerable'),
      JSON.stringify(events),
    );
  });
});
