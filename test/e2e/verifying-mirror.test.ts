/**
 * A verifying mirror (issue 14, docs/operating.md "A verifying pull-through mirror"):
 *
 *   client → trustgate → registry:2 in proxy mode (proxy.remoteurl) → upstream registry:2
 *
 * The upstream holds signed and unsigned images (as a public registry would); the proxy caches
 * what is pulled through it; trustgate verifies every manifest it fetches from the proxy. Only
 * verified images come out, by tag or by digest, and the blobs of an unsigned image stay hidden,
 * though the proxy may hold them. Two real registry:2 processes, real skopeo.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateKeyPair } from '../../src/core/signature/sign.js';
import { assertSameImage, makeOciImage, readDiskImage, type DiskImage } from '../helpers/images.js';
import { runSkopeo } from '../helpers/skopeo.js';
import { makeTempDir, removeTempDir, startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';
import { signDirect } from '../helpers/sign.js';
import { assertBlobNotAdmitted, bearer, getToken, request } from '../helpers/http.js';
import { direct } from '../helpers/registry-direct.js';

const CONSUMER = { user: 'consumer', password: 'consumer-password' };

describe(
  'e2e: a verifying mirror (trustgate → registry:2 proxy → upstream registry:2)',
  { timeout: 300_000 },
  () => {
    let upstream: RegistryHandle;
    let mirror: RegistryHandle;
    let gate: TestGate;
    let work: string;
    const release = generateKeyPair('ecdsa-p256');
    let signed: DiskImage;
    let unsigned: DiskImage;
    let n = 0;

    before(async () => {
      upstream = await startRegistry();
      mirror = await startRegistry({ proxyRemoteUrl: upstream.url });
      gate = await startTestGate({
        registryUrl: mirror.url,
        users: { [CONSUMER.user]: CONSUMER.password },
        policy: { access: [{ repos: ['**'], pull: [CONSUMER.user], push: [], delete: [] }] },
        trustRules: [{ repos: ['**'], keys: ['release'] }],
        trustedKeys: { release: release.publicKeyPem },
      });
      work = makeTempDir('mirror');
      const small = { layers: 2, layerBytes: 32 * 1024 };
      signed = await makeOciImage(path.join(work, 'signed'), small);
      unsigned = await makeOciImage(path.join(work, 'unsigned'), small);
      // The publisher side: straight into the upstream, never through the mirror.
      const host = upstream.url.replace('http://', '');
      for (const [name, img] of [
        ['library/signed:v1', signed],
        ['library/unsigned:v1', unsigned],
      ] as const) {
        const r = await runSkopeo([
          'copy',
          '--quiet',
          '--dest-tls-verify=false',
          img.ref,
          `docker://${host}/${name}`,
        ]);
        assert.equal(r.code, 0, r.stderr);
      }
      await signDirect(upstream.url, 'library/signed', signed.manifestDigest, release.pkcs8Der);
    });

    after(async () => {
      await gate?.close();
      await mirror?.stop();
      await upstream?.stop();
      if (work) removeTempDir(work);
    });

    async function pull(ref: string): Promise<{ code: number; stderr: string; out: string }> {
      const out = path.join(work, `pull-${n++}`);
      mkdirSync(out);
      const r = await runSkopeo([
        'copy',
        '--quiet',
        `--src-cert-dir=${gate.certDir}`,
        `--src-creds=${CONSUMER.user}:${CONSUMER.password}`,
        `docker://${gate.host}/${ref}`,
        `oci:${out}:x`,
      ]);
      return { code: r.code, stderr: r.stderr, out: `oci:${out}:x` };
    }

    it('the mirror is a pull-through cache of the upstream (control: it serves both images itself)', async () => {
      for (const repo of ['library/signed', 'library/unsigned']) {
        const r = await direct(mirror.url, 'HEAD', `/v2/${repo}/manifests/v1`, undefined, {
          accept: 'application/vnd.oci.image.manifest.v1+json',
        });
        assert.equal(r.status, 200, `${repo} through the bare mirror`);
      }
    });

    it('a signed upstream image pulls through trustgate and the mirror, byte-identical, by tag and by digest', async () => {
      const byTag = await pull('library/signed:v1');
      assert.equal(byTag.code, 0, byTag.stderr);
      await assertSameImage(signed, readDiskImage(byTag.out));
      const byDigest = await pull(`library/signed@${signed.manifestDigest}`);
      assert.equal(byDigest.code, 0, byDigest.stderr);
    });

    it('an unsigned upstream image is refused, by tag and by digest, and its blobs stay hidden', async () => {
      for (const ref of ['library/unsigned:v1', `library/unsigned@${unsigned.manifestDigest}`]) {
        const r = await pull(ref);
        assert.notEqual(r.code, 0, ref);
        assert.match(r.stderr, /denied: library\/unsigned@sha256:[0-9a-f]{64} has no signature/, r.stderr);
      }
      const t = await getToken(gate.url, gate.ca, CONSUMER.user, CONSUMER.password, [
        'repository:library/unsigned:pull',
      ]);
      for (const digest of unsigned.blobs.keys()) {
        const r = await request(gate.url, gate.ca, {
          path: `/v2/library/unsigned/blobs/${digest}`,
          headers: bearer(t),
        });
        assertBlobNotAdmitted(r, `blob ${digest}`);
      }
    });

    it('an upstream tag moved to an unsigned image is refused at once through the mirror', async () => {
      // The proxy re-checks a tag upstream (HEAD) on each request; trustgate verifies what it gets.
      const host = upstream.url.replace('http://', '');
      const r = await runSkopeo([
        'copy',
        '--quiet',
        '--dest-tls-verify=false',
        unsigned.ref,
        `docker://${host}/library/signed:v1`,
      ]);
      assert.equal(r.code, 0, r.stderr);
      const after = await pull('library/signed:v1');
      assert.notEqual(after.code, 0, 'the moved tag was served');
      assert.match(after.stderr, /has no signature/, after.stderr);
    });
  },
);
