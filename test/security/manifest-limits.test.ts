/**
 * Issue 12, findings 1 (last point) and 10: unbounded admission work and unbounded index nesting.
 * A signed 25,000-layer document wrote 25,000 admission entries, flushed the local verdict tier
 * and stalled the event loop for about 0.9 s; a signed index of an index of an index of an index
 * was served, and so was a signed index of 10,000 entries.
 *
 * Siblings tested here: by tag and by digest, signed and unsigned, pulled and pushed, the
 * blob-linked spelling registry:2 also serves as a manifest, and the limits themselves (256 layers,
 * 256 index entries, an index of image manifests only).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { generateKeyPair } from '../../src/core/signature/sign.js';
import { MAX_INDEX_ENTRIES, MAX_MANIFEST_LAYERS, MEDIA_TYPES } from '../../src/core/manifest.js';
import { startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';
import { bearer, getToken, request, type Reply } from '../helpers/http.js';
import { pushBlob, pushManifest, pushRandomImage } from '../helpers/registry-direct.js';
import { signDirect } from '../helpers/sign.js';

const OCI = MEDIA_TYPES.ociManifest;
const OCI_INDEX = MEDIA_TYPES.ociIndex;
const ALL = [OCI, OCI_INDEX, MEDIA_TYPES.dockerManifest, MEDIA_TYPES.dockerManifestList].join(', ');

describe(
  'security: manifest size and nesting limits (issue 12, findings 1 and 10)',
  { timeout: 180_000 },
  () => {
    let registry: RegistryHandle;
    let gate: TestGate;
    const release = generateKeyPair('ecdsa-p256');
    const users = { consumer: 'consumer-password', publisher: 'publisher-password' };

    before(async () => {
      registry = await startRegistry();
      gate = await startTestGate({
        registryUrl: registry.url,
        users,
        policy: {
          access: [{ repos: ['**'], pull: ['consumer', 'publisher'], push: ['publisher'], delete: [] }],
        },
        trustRules: [{ repos: ['**'], keys: ['release'] }],
        trustedKeys: { release: release.publicKeyPem },
      });
    });
    after(async () => {
      await gate?.close();
      await registry?.stop();
    });

    const token = (repo: string, user: keyof typeof users): Promise<string> =>
      getToken(gate.url, gate.ca, user, users[user], [
        `repository:${repo}:pull${user === 'publisher' ? ',push' : ''}`,
      ]);
    const pull = async (repo: string, ref: string): Promise<Reply> =>
      request(gate.url, gate.ca, {
        path: `/v2/${repo}/manifests/${ref}`,
        headers: { ...bearer(await token(repo, 'consumer')), accept: ALL },
      });
    const push = async (repo: string, ref: string, body: Buffer, contentType: string): Promise<Reply> =>
      request(gate.url, gate.ca, {
        method: 'PUT',
        path: `/v2/${repo}/manifests/${ref}`,
        headers: { ...bearer(await token(repo, 'publisher')), 'content-type': contentType },
        body,
      });
    const index = (entries: Array<{ mediaType: string; digest: string; size: number }>): Buffer =>
      Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: entries }));

    it('a signed 25,000-layer document (blob-linked, read by digest) is refused quickly and admits nothing', async () => {
      const repo = 'limits/layers';
      const cfg = await pushBlob(registry.url, repo, Buffer.from('{}'));
      const layer = { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: cfg, size: 2 };
      const doc = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI,
          config: { mediaType: MEDIA_TYPES.ociConfig, digest: cfg, size: 2 },
          layers: Array.from({ length: 25_000 }, () => layer),
        }),
      );
      const d = await pushBlob(registry.url, repo, doc);
      await signDirect(registry.url, repo, d, release.pkcs8Der);
      const sizeBefore = gate.tg.cache.stats().size;
      const r = await pull(repo, d);
      assert.equal(r.status, 400, r.body.toString());
      assert.match(r.body.toString(), new RegExp(`MANIFEST_INVALID.*at most ${MAX_MANIFEST_LAYERS}`));
      const written = gate.tg.cache.stats().size - sizeBefore;
      assert.ok(written < 10, `${written} cache entries written for a refused document`);
      const put = await push(repo, 'many', doc, OCI);
      assert.equal(put.status, 400, put.body.toString());
      assert.match(put.body.toString(), /at most 256/);
    });

    it('a signed index of 10,000 entries is refused, pulled or pushed', async () => {
      const repo = 'limits/entries';
      const child = await pushRandomImage(registry.url, repo, 'child');
      const entry = { mediaType: OCI, digest: child.digest, size: child.bytes.length };
      const big = index(Array.from({ length: 10_000 }, () => entry));
      const d = await pushBlob(registry.url, repo, big);
      await signDirect(registry.url, repo, d, release.pkcs8Der);
      const r = await pull(repo, d);
      assert.equal(r.status, 400, r.body.toString());
      assert.match(r.body.toString(), new RegExp(`at most ${MAX_INDEX_ENTRIES}`));
      const over = index(Array.from({ length: MAX_INDEX_ENTRIES + 1 }, () => entry));
      const put = await push(repo, 'over', over, OCI_INDEX);
      assert.equal(put.status, 400, put.body.toString());
      // At the limit it is an ordinary index.
      const at = index(Array.from({ length: MAX_INDEX_ENTRIES }, () => entry));
      const ok = await push(repo, 'at', at, OCI_INDEX);
      assert.equal(ok.status, 201, ok.body.toString());
    });

    it('nested indexes: a signed index of an index of an index is refused by tag and by digest, and cannot be pushed', async () => {
      const repo = 'limits/nest';
      const child = await pushRandomImage(registry.url, repo, 'child');
      let inner = index([{ mediaType: OCI, digest: child.digest, size: child.bytes.length }]);
      let innerDigest = await pushManifest(registry.url, repo, 'level-0', inner, OCI_INDEX);
      for (let level = 1; level <= 3; level++) {
        inner = index([{ mediaType: OCI_INDEX, digest: innerDigest, size: inner.length }]);
        innerDigest = await pushManifest(registry.url, repo, `level-${level}`, inner, OCI_INDEX);
        await signDirect(registry.url, repo, innerDigest, release.pkcs8Der);
      }
      for (const ref of ['level-3', innerDigest, 'level-1']) {
        const r = await pull(repo, ref);
        assert.equal(r.status, 400, `${ref}: ${r.body.toString()}`);
        assert.match(r.body.toString(), /index of image manifests only/);
      }
      const put = await push(repo, 'nested', inner, OCI_INDEX);
      assert.equal(put.status, 400, put.body.toString());
      // The one-level index of image manifests is fine.
      await signDirect(
        registry.url,
        repo,
        await pushManifest(
          registry.url,
          repo,
          'flat',
          index([{ mediaType: OCI, digest: child.digest, size: child.bytes.length }]),
          OCI_INDEX,
        ),
        release.pkcs8Der,
      );
      assert.equal((await pull(repo, 'flat')).status, 200);
    });
  },
);
