/**
 * Issue 12, finding 1: "A blob served as a signature artifact". registry:2 (2.8) answers
 * `GET /v2/<repo>/manifests/<digest>` for any blob linked in the repository, not only for pushed
 * manifests. A publisher with no trusted key uploaded, as plain blobs, a document shaped like a
 * cosign signature artifact (OCI manifest, OCI config, every layer typed simplesigning) whose
 * config has an Entrypoint and whose layers are gzip tars; a pull-only client got it by digest
 * (audit `allow … signed`, no keys), and its config and layers became readable blobs.
 *
 * The class: any path on which the signature-artifact exemption applies to a document the client
 * names, or admits blobs that are not signature payloads. Siblings tested here: by digest (GET and
 * HEAD), a genuine artifact by digest, the config of a genuine artifact, an artifact under its .sig
 * tag whose layers are tars (written while trust was off), and a blob-linked image manifest.
 */
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { COSIGN_SIGNATURE_ANNOTATION, MEDIA_TYPES } from '../../src/core/manifest.js';
import { signatureTagFor } from '../../src/core/reference.js';
import { assertBlobNotAdmitted, type Reply } from '../helpers/http.js';
import { ACCEPT_ALL as ALL, startTrustStack, type TrustStack } from '../helpers/trust-stack.js';
import { direct, pushBlob, pushManifest, pushRandomImage, sha256 } from '../helpers/registry-direct.js';
import { signDirect } from '../helpers/sign.js';
import { ustarHeader } from '../helpers/images.js';

const OCI = MEDIA_TYPES.ociManifest;

/** A gzip tar holding one executable script: what a runnable image layer looks like. */
function evilLayer(): Buffer {
  const script = Buffer.from('#!/bin/sh\necho owned\n');
  const pad = Buffer.alloc((512 - (script.length % 512)) % 512);
  return gzipSync(
    Buffer.concat([ustarHeader('evil.sh', script.length, 'file'), script, pad, Buffer.alloc(1024)]),
  );
}

/** Config, layers and the document that names them, uploaded as plain blobs (never PUT as a manifest). */
async function disguisedDocument(
  registryUrl: string,
  repo: string,
): Promise<{ doc: Buffer; docDigest: string; config: string; layer: string }> {
  const cfg = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Entrypoint: ['/evil.sh'] },
      rootfs: { type: 'layers', diff_ids: [] },
    }),
  );
  const tar = evilLayer();
  const config = await pushBlob(registryUrl, repo, cfg);
  const layer = await pushBlob(registryUrl, repo, tar);
  const doc = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI,
      config: { mediaType: MEDIA_TYPES.ociConfig, digest: config, size: cfg.length },
      layers: [{ mediaType: MEDIA_TYPES.cosignSimpleSigning, digest: layer, size: tar.length }],
    }),
  );
  const docDigest = await pushBlob(registryUrl, repo, doc);
  return { doc, docDigest, config, layer };
}

describe('security: the signature-artifact exemption (issue 12, finding 1)', { timeout: 180_000 }, () => {
  let stack: TrustStack;
  before(async () => {
    stack = await startTrustStack();
  });
  after(async () => {
    await stack?.stop();
  });
  const registryUrl = (): string => stack.registry.url;
  const manifest = (repo: string, ref: string, method = 'GET'): Promise<Reply> =>
    stack.pull(repo, ref, method);
  const blob = (repo: string, digest: string): Promise<Reply> => stack.blob(repo, digest);

  it('a blob-linked document shaped like a signature artifact is verified by digest like any manifest: refused, and its config and layers stay unreadable', async () => {
    const repo = 'disguise/blob-linked';
    const d = await disguisedDocument(registryUrl(), repo);
    // registry:2 itself serves the blob as a manifest: the premise of the finding.
    const upstream = await direct(registryUrl(), 'GET', `/v2/${repo}/manifests/${d.docDigest}`, undefined, {
      accept: ALL,
    });
    assert.equal(upstream.status, 200, 'registry:2 no longer serves blobs as manifests: revisit this test');
    for (const method of ['GET', 'HEAD']) {
      const r = await manifest(repo, d.docDigest, method);
      assert.equal(r.status, 403, `${method}: ${r.body.toString()}`);
    }
    assert.match((await manifest(repo, d.docDigest)).body.toString(), /no valid signature|no signature/i);
    assertBlobNotAdmitted(await blob(repo, d.config), 'the config became readable');
    assertBlobNotAdmitted(await blob(repo, d.layer), 'the tar layer became readable');
  });

  it('a blob-linked ordinary image manifest is refused by digest too (no exemption of any kind)', async () => {
    const repo = 'disguise/blob-image';
    const img = await pushRandomImage(registryUrl(), 'disguise/source', 'v1');
    for (const b of img.blobs) {
      await pushBlob(
        registryUrl(),
        repo,
        (await direct(registryUrl(), 'GET', `/v2/disguise/source/blobs/${b}`)).body,
      );
    }
    await pushBlob(registryUrl(), repo, img.bytes);
    assert.equal((await manifest(repo, img.digest)).status, 403);
    assertBlobNotAdmitted(await blob(repo, img.blobs[0]!));
  });

  it('a genuine signature artifact: served through its .sig tag with its payload readable, never its config; by digest it is refused', async () => {
    const repo = 'sig/genuine';
    const img = await pushRandomImage(registryUrl(), repo, 'v1');
    const { sigManifest } = await signDirect(registryUrl(), repo, img.digest, stack.release.pkcs8Der);
    const parsed = JSON.parse(sigManifest.toString()) as {
      config: { digest: string };
      layers: Array<{ digest: string }>;
    };
    const byTag = await manifest(repo, signatureTagFor(img.digest));
    assert.equal(byTag.status, 200, byTag.body.toString());
    assert.deepEqual(byTag.body, sigManifest);
    assert.equal((await blob(repo, parsed.layers[0]!.digest)).status, 200, 'the payload is readable');
    assertBlobNotAdmitted(await blob(repo, parsed.config.digest), 'the artifact config was admitted');
    // Clients read signatures through the tag; by digest the artifact is just an unsigned manifest.
    assert.equal((await manifest(repo, sha256(sigManifest))).status, 403);
    // The signed image itself still pulls.
    assert.equal((await manifest(repo, 'v1')).status, 200);
  });

  it('a .sig tag whose "payloads" are gzip tars (written while trust was off) is served, but admits none of its blobs', async () => {
    const repo = 'sig/tars';
    const img = await pushRandomImage(registryUrl(), repo, 'v1');
    const d = await disguisedDocument(registryUrl(), repo);
    const doc = JSON.parse(d.doc.toString()) as { layers: Array<Record<string, unknown>> };
    doc.layers[0]!['annotations'] = { [COSIGN_SIGNATURE_ANNOTATION]: Buffer.alloc(64).toString('base64') };
    const bytes = Buffer.from(JSON.stringify(doc));
    await pushManifest(registryUrl(), repo, signatureTagFor(img.digest), bytes, OCI);
    const r = await manifest(repo, signatureTagFor(img.digest));
    assert.equal(r.status, 200, r.body.toString());
    assertBlobNotAdmitted(await blob(repo, d.layer), 'a tar admitted as a signature payload');
    assertBlobNotAdmitted(await blob(repo, d.config), 'the config admitted');
    // The image it claims to sign is not signed by it.
    assert.equal((await manifest(repo, 'v1')).status, 403);
  });
});
