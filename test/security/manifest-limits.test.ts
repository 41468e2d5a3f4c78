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
import { MAX_INDEX_ENTRIES, MAX_MANIFEST_LAYERS, MEDIA_TYPES } from '../../src/core/manifest.js';
import { startTrustStack, type TrustStack } from '../helpers/trust-stack.js';
import type { Reply } from '../helpers/http.js';
import { pushBlob, pushManifest, pushRandomImage } from '../helpers/registry-direct.js';
import { signDirect } from '../helpers/sign.js';

const OCI = MEDIA_TYPES.ociManifest;
const OCI_INDEX = MEDIA_TYPES.ociIndex;

describe(
  'security: manifest size and nesting limits (issue 12, findings 1 and 10)',
  { timeout: 180_000 },
  () => {
    let stack: TrustStack;
    before(async () => {
      stack = await startTrustStack();
    });
    after(async () => {
      await stack?.stop();
    });
    const registryUrl = (): string => stack.registry.url;
    const pull = (repo: string, ref: string): Promise<Reply> => stack.pull(repo, ref);
    const push = (repo: string, ref: string, body: Buffer, contentType: string): Promise<Reply> =>
      stack.push(repo, ref, body, contentType);

    const index = (entries: Array<{ mediaType: string; digest: string; size: number }>): Buffer =>
      Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: entries }));

    it('a signed 25,000-layer document (blob-linked, read by digest) is refused quickly and admits nothing', async () => {
      const repo = 'limits/layers';
      const cfg = await pushBlob(registryUrl(), repo, Buffer.from('{}'));
      const layer = { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: cfg, size: 2 };
      const doc = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI,
          config: { mediaType: MEDIA_TYPES.ociConfig, digest: cfg, size: 2 },
          layers: Array.from({ length: 25_000 }, () => layer),
        }),
      );
      const d = await pushBlob(registryUrl(), repo, doc);
      await signDirect(registryUrl(), repo, d, stack.release.pkcs8Der);
      const sizeBefore = stack.gate.tg.cache.stats().size;
      const r = await pull(repo, d);
      assert.equal(r.status, 400, r.body.toString());
      assert.match(r.body.toString(), new RegExp(`MANIFEST_INVALID.*at most ${MAX_MANIFEST_LAYERS}`));
      const written = stack.gate.tg.cache.stats().size - sizeBefore;
      assert.ok(written < 10, `${written} cache entries written for a refused document`);
      const put = await push(repo, 'many', doc, OCI);
      assert.equal(put.status, 400, put.body.toString());
      assert.match(put.body.toString(), /at most 256/);
    });

    it('a signed index of 10,000 entries is refused, pulled or pushed', async () => {
      const repo = 'limits/entries';
      const child = await pushRandomImage(registryUrl(), repo, 'child');
      const entry = { mediaType: OCI, digest: child.digest, size: child.bytes.length };
      const big = index(Array.from({ length: 10_000 }, () => entry));
      const d = await pushBlob(registryUrl(), repo, big);
      await signDirect(registryUrl(), repo, d, stack.release.pkcs8Der);
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
      const child = await pushRandomImage(registryUrl(), repo, 'child');
      let inner = index([{ mediaType: OCI, digest: child.digest, size: child.bytes.length }]);
      let innerDigest = await pushManifest(registryUrl(), repo, 'level-0', inner, OCI_INDEX);
      for (let level = 1; level <= 3; level++) {
        inner = index([{ mediaType: OCI_INDEX, digest: innerDigest, size: inner.length }]);
        innerDigest = await pushManifest(registryUrl(), repo, `level-${level}`, inner, OCI_INDEX);
        await signDirect(registryUrl(), repo, innerDigest, stack.release.pkcs8Der);
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
        registryUrl(),
        repo,
        await pushManifest(
          registryUrl(),
          repo,
          'flat',
          index([{ mediaType: OCI, digest: child.digest, size: child.bytes.length }]),
          OCI_INDEX,
        ),
        stack.release.pkcs8Der,
      );
      assert.equal((await pull(repo, 'flat')).status, 200);
    });
  },
);
