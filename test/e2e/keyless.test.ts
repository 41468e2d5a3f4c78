/**
 * Keyless (Fulcio certificate) signatures through trustgate over a real registry:2, read with the
 * real skopeo, podman and docker (dockerd on a private containerd). The signatures come from a TEST Sigstore instance made by the test (test/helpers/
 * keyless-ca.ts: a generated Fulcio-like CA, CT log and Rekor log, and their trusted_root.json,
 * configured as trust.trustedRoot); no public fixture signs a manifest we can serve. Both layouts:
 * a v3 bundle referrer (cosign 3) and a cosign 2.x keyless legacy `.sig` (certificate, chain and
 * Rekor bundle annotations). An image pulls when its signer's identity matches the rule and is
 * refused, naming the identity found and the ones expected, when it does not.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { COSIGN_SIGNATURE_ANNOTATION, MEDIA_TYPES } from '../../src/core/manifest.js';
import { signatureTagFor } from '../../src/core/reference.js';
import { buildSimpleSigningPayload } from '../../src/core/signature/payload.js';
import { buildBundleReferrerManifest } from '../../src/core/evidence/bundle-writer.js';
import { buildCosignSignStatement } from '../../src/core/evidence/statement.js';
import {
  COSIGN_BUNDLE_ANNOTATION,
  COSIGN_CERTIFICATE_ANNOTATION,
  COSIGN_CHAIN_ANNOTATION,
} from '../../src/core/evidence/legacy-keyless.js';
import { startTrustStack, type TrustStack } from '../helpers/trust-stack.js';
import { pushBlob, pushRandomImage } from '../helpers/registry-direct.js';
import { signDirect } from '../helpers/sign.js';
import { createSkopeoContext, runSkopeo, type SkopeoContext } from '../helpers/skopeo.js';
import { engineUnavailable, startContainerd, startDockerd, startPodman } from '../helpers/engines.js';
import { makeOciImage, type DiskImage } from '../helpers/images.js';
import { makeTempDir, removeTempDir } from '../helpers/stack.js';
import { TestSigstore, toPem, type KeylessSignOptions, type TestIdentity } from '../helpers/keyless-ca.js';
import { USERS } from '../helpers/trust-stack.js';

const OCI = MEDIA_TYPES.ociManifest;
const GH = 'https://token.actions.githubusercontent.com';
const RELEASE: TestIdentity = {
  issuer: GH,
  subject: 'https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.0.0',
  claims: { '5': 'acme/app', '6': 'refs/tags/v1.0.0' },
};
const FORK: TestIdentity = {
  issuer: GH,
  subject: 'https://github.com/mallory/app/.github/workflows/release.yml@refs/tags/v1.0.0',
  claims: { '5': 'mallory/app', '6': 'refs/tags/v1.0.0' },
};

describe(
  'e2e: keyless identities (test Sigstore instance), bundle referrers and legacy .sig',
  { timeout: 240_000 },
  () => {
    const sigstore = new TestSigstore();
    let stack: TrustStack;
    let sk: SkopeoContext;
    let work: string;
    before(async () => {
      stack = await startTrustStack(
        [
          {
            repos: ['prod/**'],
            identities: [
              {
                issuer: GH,
                subjectRegExp:
                  'https://github\\.com/acme/app/\\.github/workflows/release\\.yml@refs/tags/v.*',
                github: { repository: 'acme/app' },
              },
            ],
          },
          { repos: ['**'], keys: ['release'] },
        ],
        { trustedRoot: sigstore.trustedRoot() },
      );
      sk = createSkopeoContext();
      work = makeTempDir('keyless-e2e');
    });
    after(async () => {
      sk?.close();
      if (work) removeTempDir(work);
      await stack?.stop();
    });

    let n = 0;
    async function skopeoPull(ref: string): Promise<{ code: number; stderr: string }> {
      const out = path.join(work, `pull-${n++}`);
      mkdirSync(out);
      const r = await sk.copy(`docker://${stack.gate.host}/${ref}`, `oci:${out}:x`, {
        src: { certDir: stack.gate.certDir, creds: { username: 'consumer', password: USERS.consumer } },
      });
      return { code: r.code, stderr: r.stderr };
    }

    async function attachBundle(
      repo: string,
      img: { digest: string; bytes: Buffer },
      id: TestIdentity,
      o: KeylessSignOptions = {},
    ) {
      const r = buildBundleReferrerManifest({
        bundle: sigstore.dsseBundle(buildCosignSignStatement(img.digest), id, o),
        subject: { mediaType: OCI, digest: img.digest, size: img.bytes.length },
        created: new Date('2026-12-04T12:00:00Z'),
      });
      for (const b of r.blobs) await pushBlob(stack.registry.url, repo, Buffer.from(b.bytes));
      const put = await stack.push(repo, r.digest, Buffer.from(r.manifest), OCI);
      assert.equal(put.status, 201, put.body.toString());
    }

    const signLegacy = (repo: string, digest: string, id: TestIdentity) =>
      signDirect(stack.registry.url, repo, digest, new Uint8Array(), {
        dockerReference: `${stack.gate.host}/${repo}`,
        signWith: (payload) => {
          const s = sigstore.sign(payload, id);
          return {
            signature: s.signature.toString('base64'),
            annotations: {
              [COSIGN_CERTIFICATE_ANNOTATION]: toPem(s.certificate),
              [COSIGN_CHAIN_ANNOTATION]: toPem(sigstore.caCertificate),
              [COSIGN_BUNDLE_ANNOTATION]: s.cosignBundle,
            },
          };
        },
      });

    it('a v3 keyless bundle referrer from the trusted workflow: skopeo pulls it, byte-identical manifest', async () => {
      const repo = 'prod/app';
      const img = await pushRandomImage(stack.registry.url, repo, 'v1');
      assert.equal((await stack.pull(repo, 'v1')).status, 403);
      await new Promise((r) => setTimeout(r, 1100)); // the cached refusal lives 1 s in tests
      await attachBundle(repo, img, RELEASE);
      const r = await stack.pull(repo, 'v1');
      assert.equal(r.status, 200, r.body.toString());
      assert.deepEqual(r.body, img.bytes);
      const s = await skopeoPull(`${repo}:v1`);
      assert.equal(s.code, 0, s.stderr);
    });

    it('a bundle from another workflow (a fork) is refused with the identity found and the identities expected', async () => {
      const repo = 'prod/forked';
      const img = await pushRandomImage(stack.registry.url, repo, 'v1');
      await attachBundle(repo, img, FORK);
      const r = await stack.pull(repo, 'v1');
      assert.equal(r.status, 403);
      const body = r.body.toString();
      assert.match(body, /"code":"DENIED"/);
      assert.match(
        body,
        /signed by https:\/\/github\.com\/mallory\/app\/\.github\/workflows\/release\.yml@refs\/tags\/v1\.0\.0 \(issuer https:\/\/token\.actions\.githubusercontent\.com\)/,
      );
      assert.match(body, /expected: issuer=https:\/\/token\.actions\.githubusercontent\.com subject~=/);
      const s = await skopeoPull(`${repo}:v1`);
      assert.notEqual(s.code, 0);
      assert.match(s.stderr, /denied: .*mallory\/app/);
    });

    it('an expired certificate with no timestamp inside its validity (logged 20 minutes after issue) is refused', async () => {
      const repo = 'prod/expired';
      const img = await pushRandomImage(stack.registry.url, repo, 'v1');
      const at = new Date(Date.now() - 3600_000);
      await attachBundle(repo, img, RELEASE, { at, integratedAt: new Date(at.getTime() + 20 * 60_000) });
      const r = await stack.pull(repo, 'v1');
      assert.equal(r.status, 403);
      assert.match(r.body.toString(), /its certificate does not verify: .*(expired|not valid)/);
    });

    it('cosign 2.x keyless legacy .sig (certificate, chain, Rekor bundle annotations): pulls for the trusted identity, refused for another issuer', async () => {
      const repo = 'prod/legacy';
      const img = await pushRandomImage(stack.registry.url, repo, 'v1');
      await signLegacy(repo, img.digest, RELEASE);
      const s = await skopeoPull(`${repo}:v1`);
      assert.equal(s.code, 0, s.stderr);

      const other = 'prod/legacy-google';
      const img2 = await pushRandomImage(stack.registry.url, other, 'v1');
      await signLegacy(other, img2.digest, { ...RELEASE, issuer: 'https://accounts.google.com' });
      const r = await stack.pull(other, 'v1');
      assert.equal(r.status, 403);
      assert.match(r.body.toString(), /issuer https:\/\/accounts\.google\.com\).*not an identity trusted/);
    });

    it('cosign 2.x pushing a keyless .sig through trustgate: accepted for the trusted identity, refused for another', async () => {
      const push = async (repo: string, id: TestIdentity) => {
        const img = await pushRandomImage(stack.registry.url, repo, 'v1');
        const payload = Buffer.from(
          buildSimpleSigningPayload({
            dockerReference: `${stack.gate.host}/${repo}`,
            manifestDigest: img.digest,
          }),
        );
        const s = sigstore.sign(payload, id);
        const config = Buffer.from('{}');
        const layer = {
          mediaType: MEDIA_TYPES.cosignSimpleSigning,
          digest: await pushBlob(stack.registry.url, repo, payload),
          size: payload.length,
          annotations: {
            [COSIGN_SIGNATURE_ANNOTATION]: s.signature.toString('base64'),
            [COSIGN_CERTIFICATE_ANNOTATION]: toPem(s.certificate),
            [COSIGN_CHAIN_ANNOTATION]: toPem(sigstore.caCertificate),
            [COSIGN_BUNDLE_ANNOTATION]: s.cosignBundle,
          },
        };
        const manifest = Buffer.from(
          JSON.stringify({
            schemaVersion: 2,
            mediaType: OCI,
            config: {
              mediaType: 'application/vnd.oci.image.config.v1+json',
              digest: await pushBlob(stack.registry.url, repo, config),
              size: config.length,
            },
            layers: [layer],
          }),
        );
        return { img, put: await stack.push(repo, signatureTagFor(img.digest), manifest, OCI) };
      };
      const good = await push('prod/pushed', RELEASE);
      assert.equal(good.put.status, 201, good.put.body.toString());
      assert.equal((await stack.pull('prod/pushed', 'v1')).status, 200);
      const bad = await push('prod/pushed-fork', FORK);
      assert.equal(bad.put.status, 403);
      assert.match(bad.put.body.toString(), /mallory\/app.*not an identity trusted/);
    });

    it('a keyless signature does not satisfy a key-only rule (repositories outside prod/)', async () => {
      const repo = 'team/app';
      const img = await pushRandomImage(stack.registry.url, repo, 'v1');
      await attachBundle(repo, img, RELEASE);
      const r = await stack.pull(repo, 'v1');
      assert.equal(r.status, 403);
      assert.match(r.body.toString(), /expected: none/);
    });

    describe('real engines: podman and docker pull a keyless-signed image; a fork-signed one is denied', () => {
      const images: Record<string, DiskImage> = {};
      /** A real image (tar layers) put straight into registry:2, then a keyless bundle referrer for it. */
      async function seedSigned(name: string, id: TestIdentity): Promise<DiskImage> {
        const img = await makeOciImage(path.join(work, `engine-${n++}`), {
          layers: 1,
          layerBytes: 16 * 1024,
        });
        const r = await runSkopeo([
          'copy',
          '--quiet',
          '--preserve-digests',
          '--dest-tls-verify=false',
          img.ref,
          `docker://${stack.registry.url.replace('http://', '')}/${name}`,
        ]);
        assert.equal(r.code, 0, r.stderr);
        const repo = name.split(':')[0]!;
        await attachBundle(repo, { digest: img.manifestDigest, bytes: img.manifestBytes }, id);
        return img;
      }
      before(async () => {
        images['good'] = await seedSigned('prod/engine:v1', RELEASE);
        images['fork'] = await seedSigned('prod/engine-fork:v1', FORK);
      });

      it('podman', { skip: engineUnavailable('podman') }, async () => {
        const pm = startPodman();
        try {
          const args = ['--cert-dir', stack.gate.certDir, '--creds', `consumer:${USERS.consumer}`];
          const good = await pm.podman(['pull', '-q', ...args, `${stack.gate.host}/prod/engine:v1`]);
          assert.equal(good.code, 0, good.output);
          const fork = await pm.podman(['pull', ...args, `${stack.gate.host}/prod/engine-fork:v1`]);
          assert.notEqual(fork.code, 0);
          assert.match(
            fork.output,
            /denied: prod\/engine-fork@sha256:[0-9a-f]{64} has no valid signature from a key or identity trusted for this repository: a Sigstore bundle: it is signed by https:\/\/github\.com\/mallory\/app\//,
          );
        } finally {
          await pm.stop();
        }
      });

      it(
        'docker',
        {
          skip:
            engineUnavailable('containerd', ['--version']) ??
            engineUnavailable('dockerd', ['--version']) ??
            engineUnavailable('docker'),
        },
        async () => {
          const containerd = await startContainerd();
          try {
            const dockerd = await startDockerd(containerd);
            try {
              const login = await dockerd.docker(
                ['login', '-u', 'consumer', '--password-stdin', stack.gate.host],
                {
                  stdin: USERS.consumer,
                },
              );
              assert.equal(login.code, 0, login.output);
              const good = await dockerd.docker(['pull', '-q', `${stack.gate.host}/prod/engine:v1`]);
              assert.equal(good.code, 0, good.output);
              const fork = await dockerd.docker(['pull', `${stack.gate.host}/prod/engine-fork:v1`]);
              assert.notEqual(fork.code, 0);
              assert.match(
                fork.output,
                /denied: prod\/engine-fork@sha256:[0-9a-f]{64} has no valid signature .*mallory\/app/,
              );
            } finally {
              await dockerd.stop();
            }
          } finally {
            await containerd.stop();
          }
        },
      );
    });
  },
);
