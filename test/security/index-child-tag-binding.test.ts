/**
 * Issue 12, finding 3: "Tag binding and signed pushes bypassed through an index child". In a
 * tag-binding repository, an index was signed only as `:v1`; a publisher with no key tagged one of
 * its platform children `:prod`; once any pull of `:v1` had admitted the children, a pull-only
 * client got `:prod` (audit `index-child`). With `signedPush`, the same child was accepted under a
 * new tag.
 *
 * The class: admission as an index child standing in for a signature where the rule asks for more
 * than "some verified manifest lists it" (a bound tag, a signed push). Siblings: GET and HEAD by
 * tag, by digest (still admitted: it names no tag), and the control where the child carries its
 * own signature naming the tag.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MEDIA_TYPES } from '../../src/core/manifest.js';
import { startTrustStack, type TrustStack } from '../helpers/trust-stack.js';
import type { Reply } from '../helpers/http.js';
import { pushManifest, pushRandomImage } from '../helpers/registry-direct.js';
import { signDirect } from '../helpers/sign.js';

const OCI = MEDIA_TYPES.ociManifest;
const OCI_INDEX = MEDIA_TYPES.ociIndex;

describe(
  'security: index children under bound tags and signed pushes (issue 12, finding 3)',
  { timeout: 180_000 },
  () => {
    let stack: TrustStack;
    before(async () => {
      stack = await startTrustStack([
        { repos: ['bound/**'], keys: ['release'], tagBinding: true },
        { repos: ['signedpush/**'], keys: ['release'], signedPush: true },
      ]);
    });
    after(async () => {
      await stack?.stop();
    });
    const registryUrl = (): string => stack.registry.url;
    const pull = (repo: string, ref: string, method = 'GET'): Promise<Reply> => stack.pull(repo, ref, method);

    /** A child image and an index listing it, tagged `v1` and signed as `repo:v1` only. */
    async function signedIndex(repo: string): Promise<{ child: { digest: string; bytes: Buffer } }> {
      const child = await pushRandomImage(registryUrl(), repo, 'seed');
      const index = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_INDEX,
          manifests: [
            {
              mediaType: OCI,
              digest: child.digest,
              size: child.bytes.length,
              platform: { architecture: 'amd64', os: 'linux' },
            },
          ],
        }),
      );
      const indexDigest = await pushManifest(registryUrl(), repo, 'v1', index, OCI_INDEX);
      await signDirect(registryUrl(), repo, indexDigest, stack.release.pkcs8Der, {
        dockerReference: `localhost/${repo}:v1`,
      });
      const v1 = await pull(repo, 'v1');
      assert.equal(v1.status, 200, `the signed index: ${v1.body.toString()}`);
      return { child };
    }

    it('tag binding: a child tagged :prod by a publisher is not served by that tag, though the index admitted it', async () => {
      const repo = 'bound/app';
      const { child } = await signedIndex(repo);
      assert.equal((await pull(repo, child.digest)).status, 200, 'the child by digest (no tag to bind)');
      // The publisher, who holds no key, tags the child.
      const put = await stack.push(repo, 'prod', child.bytes, OCI);
      assert.equal(put.status, 201, put.body.toString());
      for (const method of ['GET', 'HEAD']) {
        const r = await pull(repo, 'prod', method);
        assert.equal(r.status, 403, `${method} :prod served through the index: ${r.body.toString()}`);
      }
      assert.match(
        (await pull(repo, 'prod')).body.toString(),
        /listed in verified index .* needs its own signature naming the tag prod/,
      );
      // The tag the parent was signed for does not carry over to a child moved under it either.
      await pushManifest(registryUrl(), repo, 'v1', child.bytes, OCI);
      assert.equal((await pull(repo, 'v1')).status, 403, 'a child moved under the parent tag');
    });

    it('tag binding, control: a child with its own signature naming :prod is served by that tag', async () => {
      const repo = 'bound/own';
      const { child } = await signedIndex(repo);
      await pushManifest(registryUrl(), repo, 'prod', child.bytes, OCI);
      assert.equal((await pull(repo, 'prod')).status, 403);
      await signDirect(registryUrl(), repo, child.digest, stack.release.pkcs8Der, {
        dockerReference: `localhost/${repo}:prod`,
      });
      // The refusal above is cached for negativeTtlSeconds (1 s in tests); the signature went straight
      // to the registry, so trustgate learns of it when that entry is looked at again.
      await new Promise((r) => setTimeout(r, 1100));
      const r = await pull(repo, 'prod');
      assert.equal(r.status, 200, r.body.toString());
    });

    it('signed pushes: a child of a signed index is not accepted under a new tag without its own signature', async () => {
      const repo = 'signedpush/app';
      const { child } = await signedIndex(repo);
      assert.equal((await pull(repo, child.digest)).status, 200, 'admitted by the index');
      const put = await stack.push(repo, 'other', child.bytes, OCI);
      assert.equal(put.status, 403, put.body.toString());
      assert.match(put.body.toString(), /requires signed pushes/);
      // With its own signature it goes in.
      await signDirect(registryUrl(), repo, child.digest, stack.release.pkcs8Der);
      const signed = await stack.push(repo, 'other', child.bytes, OCI);
      assert.equal(signed.status, 201, signed.body.toString());
    });
  },
);
