/**
 * The cost of an attestation check (issue 16): ATT_IMAGES freshly signed images whose `.att`
 * artifact holds a Trivy cosign-vuln scan (the shared sample, its vulnerability list grown to
 * SCAN_FINDINGS findings) and a CycloneDX SBOM (Trivy's centos sample), signed by an Ed25519
 * scanner key. Per image, sequential, keep-alive, through trustgate (child process) to registry:2:
 * - `signature only, cold`: the first GET of an equal image in a repository with no attestation rule;
 * - `signature + attestations, cold`: the first GET under the attestation rule (fetch the .att
 *   artifact, the referrers and both envelopes, verify, read, decide);
 * - `signature + attestations, warm`: the second GET (cached facts, decision made again).
 * Prints medians, min and max in ms, and the cold-attestation/cold-signature ratio.
 */
import https from 'node:https';
import path from 'node:path';
import { generateKeyPair } from '../src/core/signature/sign.js';
import { bundleSignerFor } from '../src/core/evidence/bundle-writer.js';
import { buildAttestationStatement, buildDsseEnvelope } from '../src/core/attestation/writer.js';
import { PREDICATE_TYPES } from '../src/core/attestation/predicates.js';
import { attestationTagFor } from '../src/trust/evidence.js';
import { startRegistry } from '../test/helpers/stack.js';
import { pushBlob, pushManifest, pushRandomImage } from '../test/helpers/registry-direct.js';
import { signDirect } from '../test/helpers/sign.js';
import { readShared } from '../test/helpers/fixtures.js';
import { benchEnv, runMain, withCleanup } from './lib/setup.js';
import { envInt, fmt, median, ratio, table } from './lib/stats.js';
import { startTrustgateChild, writeTrustgateConfig } from './lib/trustgate.js';
import { ACCEPT, fetchToken, get } from './lib/manifest-load.js';

/** Trivy's sample with `n` findings (LOW, so the rule passes and every finding is read). */
function scan(n: number): unknown {
  const p = JSON.parse(readShared('fixtures/trivy/cosign-vuln.predicate.json').toString()) as {
    scanner: { result: { Results: Array<{ Vulnerabilities: Array<Record<string, unknown>> }> } };
    metadata: Record<string, string>;
  };
  const proto = p.scanner.result.Results[0]!.Vulnerabilities[0]!;
  p.scanner.result.Results[0]!.Vulnerabilities = Array.from({ length: n }, (_, i) => ({
    ...proto,
    VulnerabilityID: `CVE-2026-${10000 + i}`,
    Severity: 'LOW',
  }));
  const now = new Date().toISOString();
  p.metadata = { scanStartedOn: now, scanFinishedOn: now };
  return p;
}

async function main(): Promise<void> {
  const images = envInt('ATT_IMAGES', 30, 1, 500);
  const findings = envInt('SCAN_FINDINGS', 500, 0, 20_000);
  await withCleanup(async (defer) => {
    const env = await benchEnv('attestations');
    defer(env.cleanup);
    const registry = await startRegistry();
    defer(() => registry.stop());
    const release = generateKeyPair('ed25519');
    const scanner = generateKeyPair('ed25519');
    const signer = bundleSignerFor(scanner.pkcs8Der);
    const files = await writeTrustgateConfig(path.join(env.dir, 'trustgate'), {
      registryUrl: registry.url,
      cert: env.certs.serverCert,
      key: env.certs.serverKey,
      trust: {
        rules: [{ repos: ['bench/**'], keys: ['release'] }],
        keys: { release: release.publicKeyPem, scanner: scanner.publicKeyPem },
        attestations: [
          {
            repos: ['bench/att/**'],
            keys: ['scanner'],
            vulnerabilities: { maxSeverity: 'HIGH', maxScanAgeHours: 24 },
            sbom: { deniedPackages: ['log4j-core'] },
          },
        ],
      },
    });
    const tg = await startTrustgateChild(files);
    defer(() => tg.close());
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    defer(() => agent.destroy());
    const sbom = JSON.parse(readShared('fixtures/trivy/sbom/centos-7-cyclonedx.json').toString()) as unknown;
    const scanPredicate = scan(findings);

    const sigCold: number[] = [];
    const attCold: number[] = [];
    const attWarm: number[] = [];
    let envelopeBytes = 0;
    for (let i = 0; i < images; i++) {
      for (const kind of ['sig', 'att'] as const) {
        const repo = `bench/${kind}/i${i}`;
        const im = await pushRandomImage(registry.url, repo, 'v1', 1, 1024);
        await signDirect(registry.url, repo, im.digest, release.pkcs8Der, {
          dockerReference: `localhost/${repo}`,
        });
        if (kind === 'att') {
          const layers = [];
          for (const [type, predicate] of [
            [PREDICATE_TYPES.cosignVuln, scanPredicate],
            [PREDICATE_TYPES.cyclonedx, sbom],
          ] as const) {
            const envelope = Buffer.from(
              buildDsseEnvelope(buildAttestationStatement(im.digest, type, predicate), signer),
            );
            envelopeBytes = Math.max(envelopeBytes, envelope.length);
            const digest = await pushBlob(registry.url, repo, envelope);
            layers.push({
              mediaType: 'application/vnd.dsse.envelope.v1+json',
              size: envelope.length,
              digest,
              annotations: { predicateType: type },
            });
          }
          const config = Buffer.from('{}');
          const configDigest = await pushBlob(registry.url, repo, config);
          const manifest = Buffer.from(
            JSON.stringify({
              schemaVersion: 2,
              mediaType: ACCEPT,
              config: {
                mediaType: 'application/vnd.oci.image.config.v1+json',
                size: 2,
                digest: configDigest,
              },
              layers,
            }),
          );
          await pushManifest(registry.url, repo, attestationTagFor(im.digest), manifest, ACCEPT);
        }
        const h = {
          accept: ACCEPT,
          authorization: `Bearer ${await fetchToken(tg.url, env.ca, files.creds, repo)}`,
        };
        const url = `${tg.url}/v2/${repo}/manifests/${im.digest}`;
        const cold = await get(url, env.ca, h, agent);
        const warm = await get(url, env.ca, h, agent);
        if (kind === 'sig') sigCold.push(cold);
        else {
          attCold.push(cold);
          attWarm.push(warm);
        }
      }
    }
    const row = (name: string, v: number[]): string[] => [
      name,
      fmt(median(v), 2),
      fmt(Math.min(...v), 2),
      fmt(Math.max(...v), 2),
    ];
    console.log(
      `\nattestation check through trustgate, ${images} images; .att with a ${findings}-finding Trivy scan and a CycloneDX SBOM (largest envelope ${Math.round(envelopeBytes / 1024)} KiB), ms`,
    );
    console.log(
      table([
        ['', 'median', 'min', 'max'],
        row('signature only, cold', sigCold),
        row('signature + attestations, cold', attCold),
        row('signature + attestations, warm', attWarm),
      ]),
    );
    console.log(
      table([
        ['ratio', ''],
        ['cold attestations / cold signature only', ratio(median(attCold), median(sigCold))],
      ]),
    );
  });
}

runMain(main);
