/**
 * Real clients pull, through trustgate over a real registry:2, images whose ONLY signature is a
 * Sigstore bundle attached as an OCI 1.1 referrer (issue 13), written three ways:
 *  (a) by `trustgate sign` in its default format, through trustgate;
 *  (b) exactly as cosign 3.0.x leaves it on a bare registry:2 (go-containerregistry's fallback:
 *      the referrers tag `sha256-<hex>` holding an index whose entry has the config's media type
 *      as artifactType and no annotations), written straight to registry:2, bypassing trustgate;
 *  (c) by an independent writer, @sigstore/oci (what actions/attest uses), through trustgate.
 * skopeo, podman and docker (Debian's docker.io engine) are refused each image while it is
 * unsigned (docker shows `denied: …`) and pull it once signed. And cosign's fallback path is never
 * needed through trustgate: its referrers probe answers 200 with the OCI index content type (curl,
 * and @sigstore/oci's own probe, after which it writes no referrers tag).
 */
import assert from 'node:assert/strict';
import https from 'node:https';
import dns from 'node:dns';
import { Writable } from 'node:stream';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { attachArtifactToImage } from '@sigstore/oci';
import { copyCommand } from '../../src/cli/copy.js';
import { signCommand } from '../../src/cli/sign.js';
import { MEDIA_TYPES } from '../../src/core/manifest.js';
import {
  ANNOTATION_BUNDLE_CONTENT,
  ANNOTATION_BUNDLE_PREDICATE_TYPE,
  BUNDLE_REFERRER_ARTIFACT_TYPE,
  MEDIA_TYPE_OCI_EMPTY,
  buildBundleReferrerManifest,
  buildCosignSignBundle,
  bundleSignerFor,
} from '../../src/core/evidence/bundle-writer.js';
import { COSIGN_SIGN_PREDICATE_TYPE } from '../../src/core/evidence/statement.js';
import { encryptCosignKey } from '../../src/core/signature/keyfile.js';
import { generateKeyPair } from '../../src/core/signature/sign.js';
import { createLogger } from '../../src/server/log.js';
import { makeOciImage, type DiskImage } from '../helpers/images.js';
import { bearer, getToken } from '../helpers/http.js';
import { direct, pushBlob, pushManifest } from '../helpers/registry-direct.js';
import { runSkopeo } from '../helpers/skopeo.js';
import { makeTempDir, removeTempDir, startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';
import {
  engineUnavailable,
  run,
  startContainerd,
  startDockerd,
  startPodman,
  type ContainerdHandle,
  type DockerdHandle,
  type PodmanHandle,
  type RunResult,
} from '../helpers/engines.js';
import { memoryIo } from '../cli/support.js';

const PW = { consumer: 'consumer-password', publisher: 'publisher-password' } as const;
const noSkopeo = engineUnavailable('skopeo');
const noPodman = engineUnavailable('podman');
const noDocker =
  engineUnavailable('containerd') ??
  engineUnavailable('ctr') ??
  engineUnavailable('dockerd') ??
  engineUnavailable('docker');
const noCurl = engineUnavailable('curl');
/**
 * @sigstore/oci speaks plain http to `localhost` and `127.0.0.1` and https to any other name: it
 * reaches trustgate (loopback only) under this reserved name, which its agent resolves to
 * 127.0.0.1 and which the gate's certificate names.
 */
const OCI_WRITER_HOST = 'trustgate.test';

/** The three writers of a bundle-only signature, each with its own repository. */
const VARIANTS = {
  'trustgate-sign': 'prod/by-trustgate',
  'cosign-3.0-registry2': 'prod/by-cosign30',
  'sigstore-oci': 'prod/by-sigstore-oci',
} as const;
type Variant = keyof typeof VARIANTS;

class AuditSink extends Writable {
  readonly events: Array<Record<string, unknown>> = [];
  override _write(chunk: Buffer, _enc: string, done: () => void): void {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (!line.trim()) continue;
      const ev = JSON.parse(line) as Record<string, unknown>;
      if (ev['audit'] === 'decision') this.events.push(ev);
    }
    done();
  }
}

function sees(t: TestContext, r: RunResult, expected: string): void {
  t.diagnostic(`exit ${r.code}: ${r.output.trim().split('\n').slice(-1).join(' | ')}`);
  assert.notEqual(r.code, 0, r.output);
  assert.ok(r.output.includes(expected), `expected:\n  ${expected}\ngot (exit ${r.code}):\n${r.output}`);
}

function ok(r: RunResult, what: string): void {
  assert.equal(r.code, 0, `${what} failed:\n${r.output}`);
}

describe(
  'e2e: skopeo, podman and docker pull images signed only by a bundle referrer',
  { timeout: 900_000 },
  () => {
    let registry: RegistryHandle;
    let gate: TestGate;
    let work: string;
    let pm: PodmanHandle | undefined;
    let containerd: ContainerdHandle | undefined;
    let dockerd: DockerdHandle | undefined;
    const audit = new AuditSink();
    const release = generateKeyPair('ecdsa-p256');
    const images = {} as Record<Variant, DiskImage>;
    const refOf = (v: Variant): string => `${gate.host}/${VARIANTS[v]}:v1`;
    const denial = (v: Variant): string =>
      `denied: ${VARIANTS[v]}@${images[v].manifestDigest} has no signature; sign it with a key trusted for this repository (trusted: release)`;

    before(async () => {
      registry = await startRegistry();
      gate = await startTestGate({
        registryUrl: registry.url,
        users: { ...PW },
        policy: {
          access: [{ repos: ['prod/**'], pull: ['consumer', 'publisher'], push: ['publisher'], delete: [] }],
        },
        trustRules: [{ repos: ['**'], keys: ['release'] }],
        trustedKeys: { release: release.publicKeyPem },
        certHosts: [OCI_WRITER_HOST],
        logger: createLogger('info', audit),
      });
      work = makeTempDir('bundle-clients');
      for (const v of Object.keys(VARIANTS) as Variant[]) {
        images[v] = await makeOciImage(path.join(work, v), { layers: 1, layerBytes: 16 * 1024 });
        // Pushed unsigned straight into registry:2, as a publisher would have.
        const r = await runSkopeo([
          'copy',
          '--quiet',
          '--preserve-digests',
          '--dest-tls-verify=false',
          images[v].ref,
          `docker://${registry.url.replace('http://', '')}/${VARIANTS[v]}:v1`,
        ]);
        assert.equal(r.code, 0, r.stderr);
      }
      if (!noPodman) pm = startPodman();
      if (!noDocker) {
        containerd = await startContainerd();
        dockerd = await startDockerd(containerd);
        ok(
          await dockerd.docker(['login', '-u', 'consumer', '--password-stdin', gate.host], {
            stdin: PW.consumer,
          }),
          'docker login',
        );
      }
    });

    after(async () => {
      await dockerd?.stop();
      await containerd?.stop();
      await pm?.stop();
      await gate?.close();
      await registry?.stop();
      if (work) removeTempDir(work);
    });

    const skopeoPull = (v: Variant) =>
      runSkopeo([
        'copy',
        '--quiet',
        '--src-cert-dir',
        gate.certDir,
        '--src-creds',
        `consumer:${PW.consumer}`,
        `docker://${refOf(v)}`,
        `dir:${path.join(work, `pulled-${v}-${Date.now()}`)}`,
      ]).then((r) => ({ ...r, output: r.stdout + r.stderr }));
    const podmanPull = (v: Variant) =>
      pm!.podman(['pull', '-q', '--cert-dir', gate.certDir, '--creds', `consumer:${PW.consumer}`, refOf(v)]);
    const dockerPull = (v: Variant) => dockerd!.docker(['pull', refOf(v)]);

    /** The registry:2 tags of a repository (straight from registry:2, not through trustgate). */
    async function registryTags(repo: string): Promise<string[]> {
      const r = await direct(registry.url, 'GET', `/v2/${repo}/tags/list`);
      return (JSON.parse(r.body.toString()) as { tags: string[] | null }).tags ?? [];
    }

    it('unsigned, each image is refused by skopeo with the reason', { skip: noSkopeo }, async (t) => {
      for (const v of Object.keys(VARIANTS) as Variant[]) sees(t, await skopeoPull(v), denial(v));
    });

    it('unsigned, each image is refused by podman with the reason', { skip: noPodman }, async (t) => {
      for (const v of Object.keys(VARIANTS) as Variant[]) sees(t, await podmanPull(v), denial(v));
    });

    it('unsigned, each image is refused by docker: denied: …', { skip: noDocker }, async (t) => {
      for (const v of Object.keys(VARIANTS) as Variant[]) sees(t, await dockerPull(v), denial(v));
    });

    it('each image gets one bundle referrer, written three ways, and no legacy .sig', async () => {
      // (a) trustgate sign, default format, through trustgate as the publisher.
      const keyFile = path.join(work, 'release.key');
      writeFileSync(keyFile, encryptCosignKey(release.pkcs8Der, 'pw'));
      const caFile = path.join(gate.certDir, 'ca.crt');
      const mem = memoryIo({ TRUSTGATE_KEY_PASSPHRASE: 'pw', TRUSTGATE_PASSWORD: PW.publisher });
      const code = await signCommand(
        [refOf('trustgate-sign'), '--key', keyFile, '--ca-file', caFile, '--username', 'publisher'],
        mem.io,
      );
      assert.equal(code, 0, mem.err());
      assert.match(mem.out(), /\(Sigstore bundle in referrer sha256:[0-9a-f]{64}\)\n$/);

      // (b) cosign 3.0.x against a bare registry:2: the referrer pushed by digest, the referrers API
      // probed (404 there), then the referrers tag written as go-containerregistry <= 0.21.5 writes
      // it: Go struct field order, the entry's artifactType the config's media type, no annotations.
      {
        const img = images['cosign-3.0-registry2'];
        const repo = VARIANTS['cosign-3.0-registry2'];
        const ref = buildBundleReferrerManifest({
          bundle: buildCosignSignBundle(img.manifestDigest, bundleSignerFor(release.pkcs8Der)),
          subject: { mediaType: img.mediaType, digest: img.manifestDigest, size: img.manifestBytes.length },
          created: new Date(),
        });
        for (const b of ref.blobs) await pushBlob(registry.url, repo, Buffer.from(b.bytes));
        await pushManifest(registry.url, repo, ref.digest, Buffer.from(ref.manifest), ref.mediaType);
        assert.equal(
          (await direct(registry.url, 'GET', `/v2/${repo}/referrers/${img.manifestDigest}`)).status,
          404,
        );
        const index = Buffer.from(
          `{"schemaVersion":2,"mediaType":"${MEDIA_TYPES.ociIndex}","manifests":[` +
            `{"mediaType":"${ref.mediaType}","size":${ref.manifest.length},"digest":"${ref.digest}",` +
            `"artifactType":"${MEDIA_TYPE_OCI_EMPTY}"}]}`,
        );
        await pushManifest(
          registry.url,
          repo,
          `sha256-${img.manifestDigest.slice(7)}`,
          index,
          MEDIA_TYPES.ociIndex,
        );
      }

      // (c) @sigstore/oci, through trustgate as the publisher.
      {
        const img = images['sigstore-oci'];
        const agent = new https.Agent({
          ca: gate.ca,
          lookup: (host, opts, cb) =>
            host === OCI_WRITER_HOST
              ? opts.all
                ? cb(null, [{ address: '127.0.0.1', family: 4 }])
                : cb(null, '127.0.0.1', 4)
              : dns.lookup(host, opts, cb),
        });
        try {
          const port = gate.host.split(':')[1];
          const written = await attachArtifactToImage({
            imageName: `${OCI_WRITER_HOST}:${port}/${VARIANTS['sigstore-oci']}`,
            imageDigest: img.manifestDigest,
            artifact: Buffer.from(
              buildCosignSignBundle(img.manifestDigest, bundleSignerFor(release.pkcs8Der)),
            ),
            mediaType: BUNDLE_REFERRER_ARTIFACT_TYPE,
            annotations: {
              [ANNOTATION_BUNDLE_CONTENT]: 'dsse-envelope',
              [ANNOTATION_BUNDLE_PREDICATE_TYPE]: COSIGN_SIGN_PREDICATE_TYPE,
            },
            credentials: { username: 'publisher', password: PW.publisher },
            // make-fetch-happen's `agent` option (passed through by @sigstore/oci): the CA and the name.
            fetchOpts: { agent, retry: false } as never,
          });
          // trustgate recorded the referrer and said so (OCI-Subject).
          assert.equal((written as { subjectDigest?: string }).subjectDigest, img.manifestDigest);
        } finally {
          agent.destroy();
        }
      }

      for (const v of Object.keys(VARIANTS) as Variant[]) {
        const digest = images[v].manifestDigest;
        const tags = await registryTags(VARIANTS[v]);
        assert.deepEqual(tags.sort(), [`sha256-${digest.slice(7)}`, 'v1'], `${v}: only the referrers tag`);
        const index = JSON.parse(
          (
            await direct(
              registry.url,
              'GET',
              `/v2/${VARIANTS[v]}/manifests/sha256-${digest.slice(7)}`,
              undefined,
              {
                accept: MEDIA_TYPES.ociIndex,
              },
            )
          ).body.toString(),
        ) as { manifests: unknown[] };
        assert.equal(index.manifests.length, 1, `${v}: one referrer`);
      }
      // The refusals above are cached for negativeTtlSeconds (1 s here); (b) bypassed trustgate.
      await new Promise((r) => setTimeout(r, 1100));
    });

    it('skopeo pulls each image', { skip: noSkopeo }, async () => {
      for (const v of Object.keys(VARIANTS) as Variant[]) ok(await skopeoPull(v), `skopeo pull of ${v}`);
    });

    it(
      'trustgate copy through trustgate carries the bundle referrer: skopeo pulls the copy',
      { skip: noSkopeo },
      async (t) => {
        const mem = memoryIo({ TRUSTGATE_PASSWORD: PW.publisher });
        const code = await copyCommand(
          [
            refOf('sigstore-oci'),
            `${gate.host}/prod/copied`,
            '--ca-file',
            path.join(gate.certDir, 'ca.crt'),
            '--username',
            'publisher',
          ],
          mem.io,
        );
        assert.equal(code, 0, mem.err());
        t.diagnostic(mem.out().trim());
        assert.match(mem.out(), /; 1 Sigstore bundle referrer\(s\)\)\n$/);
        const r = await runSkopeo([
          'copy',
          '--quiet',
          '--src-cert-dir',
          gate.certDir,
          '--src-creds',
          `consumer:${PW.consumer}`,
          `docker://${gate.host}/prod/copied:v1`,
          `dir:${path.join(work, 'pulled-copy')}`,
        ]);
        assert.equal(r.code, 0, r.stderr);
        // Recorded by trustgate's referrers API (the client wrote no referrers tag), and no .sig.
        assert.deepEqual((await registryTags('prod/copied')).sort(), [
          `sha256-${images['sigstore-oci'].manifestDigest.slice(7)}`,
          'v1',
        ]);
      },
    );

    it('podman pulls each image', { skip: noPodman }, async () => {
      for (const v of Object.keys(VARIANTS) as Variant[]) ok(await podmanPull(v), `podman pull of ${v}`);
    });

    it('docker pulls each image', { skip: noDocker }, async () => {
      for (const v of Object.keys(VARIANTS) as Variant[]) {
        ok(await dockerPull(v), `docker pull of ${v}`);
        const id = await dockerd!.docker(['image', 'inspect', '-f', '{{index .RepoDigests 0}}', refOf(v)]);
        assert.equal(id.stdout.trim(), `${gate.host}/${VARIANTS[v]}@${images[v].manifestDigest}`);
      }
    });

    it(
      "cosign's fallback is never needed: the referrers probe answers 200 with the OCI index type",
      { skip: noCurl },
      async (t) => {
        // go-containerregistry's probe after pushing a referrer: GET /v2/<repo>/referrers/<subject>
        // with Accept: the OCI index. Here with curl, as the pull-only consumer.
        const repo = VARIANTS['cosign-3.0-registry2'];
        const digest = images['cosign-3.0-registry2'].manifestDigest;
        const token = await getToken(gate.url, gate.ca, 'consumer', PW.consumer, [`repository:${repo}:pull`]);
        const caFile = path.join(work, 'ca.crt');
        mkdirSync(work, { recursive: true });
        writeFileSync(caFile, gate.ca);
        const r = await run('curl', [
          '-sS',
          '--max-time',
          '20',
          '--cacert',
          caFile,
          '-H',
          `Authorization: ${String(bearer(token)['authorization'])}`,
          '-H',
          `Accept: ${MEDIA_TYPES.ociIndex}`,
          '-w',
          '\n%{http_code} %{content_type}',
          `https://${gate.host}/v2/${repo}/referrers/${digest}`,
        ]);
        t.diagnostic(r.stdout.split('\n').at(-1) ?? '');
        assert.equal(r.code, 0, r.output);
        const [body, status] = [r.stdout.slice(0, r.stdout.lastIndexOf('\n')), r.stdout.split('\n').at(-1)];
        assert.equal(status, `200 ${MEDIA_TYPES.ociIndex}`);
        // cosign 3.0.x's mislabelled entry is listed as what the referrer really is.
        const index = JSON.parse(body) as { mediaType: string; manifests: Array<{ artifactType?: string }> };
        assert.equal(index.mediaType, MEDIA_TYPES.ociIndex);
        assert.deepEqual(
          index.manifests.map((m) => m.artifactType),
          [BUNDLE_REFERRER_ARTIFACT_TYPE],
        );
        // @sigstore/oci probed too (GET …/referrers/sha256:000…) and, answered 200 with OCI-Subject
        // on its push, wrote no referrers tag of its own: no client ever wrote one through trustgate.
        const probes = audit.events.filter(
          (e) =>
            e['route'] === 'referrers' && e['repo'] === VARIANTS['sigstore-oci'] && e['verdict'] === 'allow',
        );
        assert.ok(
          probes.length >= 1,
          JSON.stringify(audit.events.map((e) => [e['route'], e['repo'], e['reason']])),
        );
        assert.deepEqual(
          audit.events.filter((e) => e['reason'] === 'referrers-tag-push'),
          [],
        );
      },
    );
  },
);
