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
import { generateKeyPair } from '../../src/core/signature/sign.js';
import { COSIGN_SIGNATURE_ANNOTATION, MEDIA_TYPES } from '../../src/core/manifest.js';
import { signatureTagFor } from '../../src/core/reference.js';
import { startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';
import { bearer, getToken, request, type Reply } from '../helpers/http.js';
import { direct, pushBlob, pushManifest, pushRandomImage, sha256 } from '../helpers/registry-direct.js';
import { signDirect } from '../helpers/sign.js';
import { ustarHeader } from '../helpers/images.js';

const OCI = MEDIA_TYPES.ociManifest;
const ALL = [OCI, MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerManifest, MEDIA_TYPES.dockerManifestList].join(
  ', ',
);

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

  const consumer = (repo: string): Promise<string> =>
    getToken(gate.url, gate.ca, 'consumer', users.consumer, [`repository:${repo}:pull`]);
  const manifest = async (repo: string, ref: string, method = 'GET'): Promise<Reply> =>
    request(gate.url, gate.ca, {
      method,
      path: `/v2/${repo}/manifests/${ref}`,
      headers: { ...bearer(await consumer(repo)), accept: ALL },
    });
  const blob = async (repo: string, digest: string): Promise<Reply> =>
    request(gate.url, gate.ca, {
      path: `/v2/${repo}/blobs/${digest}`,
      headers: bearer(await consumer(repo)),
    });

  it('a blob-linked document shaped like a signature artifact is verified by digest like any manifest: refused, and its config and layers stay unreadable', async () => {
    const repo = 'disguise/blob-linked';
    const d = await disguisedDocument(registry.url, repo);
    // registry:2 itself serves the blob as a manifest: the premise of the finding.
    const upstream = await direct(registry.url, 'GET', `/v2/${repo}/manifests/${d.docDigest}`, undefined, {
      accept: ALL,
    });
    assert.equal(upstream.status, 200, 'registry:2 no longer serves blobs as manifests: revisit this test');
    for (const method of ['GET', 'HEAD']) {
      const r = await manifest(repo, d.docDigest, method);
      assert.equal(r.status, 403, `${method}: ${r.body.toString()}`);
    }
    assert.match((await manifest(repo, d.docDigest)).body.toString(), /no valid signature|no signature/i);
    assert.equal((await blob(repo, d.config)).status, 403, 'the config became readable');
    assert.equal((await blob(repo, d.layer)).status, 403, 'the tar layer became readable');
  });

  it('a blob-linked ordinary image manifest is refused by digest too (no exemption of any kind)', async () => {
    const repo = 'disguise/blob-image';
    const img = await pushRandomImage(registry.url, 'disguise/source', 'v1');
    for (const b of img.blobs) {
      await pushBlob(
        registry.url,
        repo,
        (await direct(registry.url, 'GET', `/v2/disguise/source/blobs/${b}`)).body,
      );
    }
    await pushBlob(registry.url, repo, img.bytes);
    assert.equal((await manifest(repo, img.digest)).status, 403);
    assert.equal((await blob(repo, img.blobs[0]!)).status, 403);
  });

  it('a genuine signature artifact: served through its .sig tag with its payload readable, never its config; by digest it is refused', async () => {
    const repo = 'sig/genuine';
    const img = await pushRandomImage(registry.url, repo, 'v1');
    const { sigManifest } = await signDirect(registry.url, repo, img.digest, release.pkcs8Der);
    const parsed = JSON.parse(sigManifest.toString()) as {
      config: { digest: string };
      layers: Array<{ digest: string }>;
    };
    const byTag = await manifest(repo, signatureTagFor(img.digest));
    assert.equal(byTag.status, 200, byTag.body.toString());
    assert.deepEqual(byTag.body, sigManifest);
    assert.equal((await blob(repo, parsed.layers[0]!.digest)).status, 200, 'the payload is readable');
    assert.equal((await blob(repo, parsed.config.digest)).status, 403, 'the artifact config was admitted');
    // Clients read signatures through the tag; by digest the artifact is just an unsigned manifest.
    assert.equal((await manifest(repo, sha256(sigManifest))).status, 403);
    // The signed image itself still pulls.
    assert.equal((await manifest(repo, 'v1')).status, 200);
  });

  it('a .sig tag whose "payloads" are gzip tars (written while trust was off) is served, but admits none of its blobs', async () => {
    const repo = 'sig/tars';
    const img = await pushRandomImage(registry.url, repo, 'v1');
    const d = await disguisedDocument(registry.url, repo);
    const doc = JSON.parse(d.doc.toString()) as { layers: Array<Record<string, unknown>> };
    doc.layers[0]!['annotations'] = { [COSIGN_SIGNATURE_ANNOTATION]: Buffer.alloc(64).toString('base64') };
    const bytes = Buffer.from(JSON.stringify(doc));
    await pushManifest(registry.url, repo, signatureTagFor(img.digest), bytes, OCI);
    const r = await manifest(repo, signatureTagFor(img.digest));
    assert.equal(r.status, 200, r.body.toString());
    assert.equal((await blob(repo, d.layer)).status, 403, 'a tar admitted as a signature payload');
    assert.equal((await blob(repo, d.config)).status, 403, 'the config admitted');
    // The image it claims to sign is not signed by it.
    assert.equal((await manifest(repo, 'v1')).status, 403);
  });
});
