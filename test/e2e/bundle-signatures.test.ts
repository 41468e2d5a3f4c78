/**
 * Images whose signature is a Sigstore bundle attached as an OCI 1.1 referrer (cosign >= 3's
 * default), through trustgate over a real registry:2 (issue 13): written through trustgate's
 * referrers API, and laid out exactly as cosign 3.0.x leaves it on registry:2 (the referrers tag
 * with a mislabelled entry). Refused: a bundle over another digest, an attestation, an untrusted
 * key; thresholds count one key once across both formats.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { generateKeyPair } from '../../src/core/signature/sign.js';
import { MEDIA_TYPES } from '../../src/core/manifest.js';
import {
  buildBundleReferrerManifest,
  buildCosignSignBundle,
  bundleSignerFor,
} from '../../src/core/evidence/bundle-writer.js';
import { MEDIA_TYPE_OCI_EMPTY } from '../../src/core/referrers.js';
import { IN_TOTO_PAYLOAD_TYPE } from '../../src/core/evidence/statement.js';
import { startTrustStack, type TrustStack } from '../helpers/trust-stack.js';
import { direct, pushBlob, pushManifest, pushRandomImage } from '../helpers/registry-direct.js';
import { signDirect } from '../helpers/sign.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { encryptCosignKey } from '../../src/core/signature/keyfile.js';
import { signCommand } from '../../src/cli/sign.js';
import { verifyCommand } from '../../src/cli/verify.js';
import { USERS } from '../helpers/trust-stack.js';
import { memoryIo } from '../cli/support.js';

const OCI = MEDIA_TYPES.ociManifest;

describe('e2e: Sigstore bundle signatures as OCI 1.1 referrers', { timeout: 180_000 }, () => {
  let stack: TrustStack;
  const second = generateKeyPair('ed25519');
  const stranger = generateKeyPair('ecdsa-p256');
  before(async () => {
    stack = await startTrustStack([
      { repos: ['two/**'], keys: ['release', 'second'], threshold: 2 },
      { repos: ['**'], keys: ['release'] },
    ]);
    const { writeFileSync } = await import('node:fs');
    writeFileSync(`${stack.gate.keysDir}/second.pub`, second.publicKeyPem);
    stack.gate.tg.keyring.reload();
  });
  after(async () => {
    await stack?.stop();
  });

  /** Uploads the referrer's blobs and returns its manifest, for `bundle` about `img`. */
  async function referrerFor(repo: string, img: { digest: string; bytes: Buffer }, bundle: Uint8Array) {
    const r = buildBundleReferrerManifest({
      bundle,
      subject: { mediaType: OCI, digest: img.digest, size: img.bytes.length },
      created: new Date('2026-12-04T12:00:00Z'),
    });
    for (const b of r.blobs) await pushBlob(stack.registry.url, repo, Buffer.from(b.bytes));
    return r;
  }

  it('an image whose only signature is a bundle written through trustgate pulls; unsigned it did not', async () => {
    const repo = 'bundle/through';
    const img = await pushRandomImage(stack.registry.url, repo, 'v1');
    assert.equal((await stack.pull(repo, 'v1')).status, 403);
    await new Promise((r) => setTimeout(r, 1100)); // the cached refusal lives 1 s in tests
    const ref = await referrerFor(
      repo,
      img,
      buildCosignSignBundle(img.digest, bundleSignerFor(stack.release.pkcs8Der)),
    );
    const put = await stack.push(repo, ref.digest, Buffer.from(ref.manifest), OCI);
    assert.equal(put.status, 201, put.body.toString());
    const r = await stack.pull(repo, 'v1');
    assert.equal(r.status, 200, r.body.toString());
    assert.deepEqual(r.body, img.bytes);
  });

  it('trustgate sign --format bundle through trustgate: recorded through the referrers API, pulls, and trustgate verify agrees', async () => {
    const repo = 'bundle/cli';
    const img = await pushRandomImage(stack.registry.url, repo, 'v1');
    const dir = mkdtempSync(path.join(os.tmpdir(), 'trustgate-bundle-cli-'));
    try {
      const keyFile = path.join(dir, 'release.key');
      writeFileSync(keyFile, encryptCosignKey(stack.release.pkcs8Der, 'pw'));
      writeFileSync(path.join(dir, 'release.pub'), stack.release.publicKeyPem);
      writeFileSync(path.join(dir, 'ca.crt'), stack.gate.ca);
      const conn = ['--ca-file', path.join(dir, 'ca.crt'), '--username'];
      const signed = memoryIo({ TRUSTGATE_KEY_PASSPHRASE: 'pw', TRUSTGATE_PASSWORD: USERS.publisher });
      const code = await signCommand(
        [`${stack.gate.host}/${repo}:v1`, '--key', keyFile, '--format', 'bundle', ...conn, 'publisher'],
        signed.io,
      );
      assert.equal(code, 0, signed.err());
      assert.match(signed.out(), /Sigstore bundle in referrer sha256:/);
      const r = await stack.pull(repo, 'v1');
      assert.equal(r.status, 200, r.body.toString());
      assert.deepEqual(r.body, img.bytes);
      const checked = memoryIo({ TRUSTGATE_PASSWORD: USERS.consumer });
      const v = await verifyCommand(
        [`${stack.gate.host}/${repo}:v1`, '--key', path.join(dir, 'release.pub'), ...conn, 'consumer'],
        checked.io,
      );
      assert.equal(v, 0, checked.out() + checked.err());
      assert.match(checked.out(), /bundles: {4}1 Sigstore bundle referrer/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('trustgate sign with a key not (yet) trusted: the bundle is written and listed, the image stays refused', async () => {
    // Before the fix, sign probed the referrers API with a pull-only token after the push; the
    // subject did not verify, so the probe was refused (403) and sign failed after writing.
    const repo = 'bundle/untrusted-cli';
    const img = await pushRandomImage(stack.registry.url, repo, 'v1');
    const dir = mkdtempSync(path.join(os.tmpdir(), 'trustgate-bundle-cli-'));
    try {
      const keyFile = path.join(dir, 'stranger.key');
      writeFileSync(keyFile, encryptCosignKey(stranger.pkcs8Der, 'pw'));
      writeFileSync(path.join(dir, 'ca.crt'), stack.gate.ca);
      const conn = ['--ca-file', path.join(dir, 'ca.crt'), '--username', 'publisher'];
      const signed = memoryIo({ TRUSTGATE_KEY_PASSPHRASE: 'pw', TRUSTGATE_PASSWORD: USERS.publisher });
      const code = await signCommand(
        [`${stack.gate.host}/${repo}@${img.digest}`, '--key', keyFile, ...conn],
        signed.io,
      );
      assert.equal(code, 0, signed.err());
      // Recorded by trustgate (the referrers tag it keeps), and signing again finds it.
      const tag = await direct(
        stack.registry.url,
        'GET',
        `/v2/${repo}/manifests/sha256-${img.digest.slice(7)}`,
        undefined,
        {
          accept: MEDIA_TYPES.ociIndex,
        },
      );
      assert.equal(tag.status, 200, tag.body.toString());
      assert.equal((JSON.parse(tag.body.toString()) as { manifests: unknown[] }).manifests.length, 1);
      const again = memoryIo({ TRUSTGATE_KEY_PASSPHRASE: 'pw', TRUSTGATE_PASSWORD: USERS.publisher });
      assert.equal(
        await signCommand([`${stack.gate.host}/${repo}@${img.digest}`, '--key', keyFile, ...conn], again.io),
        0,
        again.err(),
      );
      assert.match(again.out(), /^already signed: .* has a Sigstore bundle by this key\n$/);
      const r = await stack.pull(repo, 'v1');
      assert.equal(r.status, 403, r.body.toString());
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('cosign 3.0.x layout on registry:2 (referrers tag, entry artifactType mislabelled, no annotations) verifies', async () => {
    const repo = 'bundle/cosign30';
    const img = await pushRandomImage(stack.registry.url, repo, 'v1');
    const ref = await referrerFor(
      repo,
      img,
      buildCosignSignBundle(img.digest, bundleSignerFor(stack.release.pkcs8Der)),
    );
    await pushManifest(stack.registry.url, repo, ref.digest, Buffer.from(ref.manifest), OCI);
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MEDIA_TYPES.ociIndex,
        manifests: [
          {
            mediaType: OCI,
            digest: ref.digest,
            size: ref.manifest.length,
            artifactType: MEDIA_TYPE_OCI_EMPTY,
          },
        ],
      }),
    );
    await pushManifest(
      stack.registry.url,
      repo,
      `sha256-${img.digest.slice(7)}`,
      index,
      MEDIA_TYPES.ociIndex,
    );
    const r = await stack.pull(repo, 'v1');
    assert.equal(r.status, 200, r.body.toString());
  });

  it('refused: a bundle over another digest, an untrusted key, an attestation in place of a signature', async () => {
    const repo = 'bundle/refused';
    const img = await pushRandomImage(stack.registry.url, repo, 'v1');
    const other = await pushRandomImage(stack.registry.url, repo, 'other');
    const signer = bundleSignerFor(stack.release.pkcs8Der);
    const wrongDigest = await referrerFor(repo, img, buildCosignSignBundle(other.digest, signer));
    const untrusted = await referrerFor(
      repo,
      img,
      buildCosignSignBundle(img.digest, bundleSignerFor(stranger.pkcs8Der)),
    );
    // An attestation: a valid DSSE over an in-toto statement of another predicate type.
    const statement = Buffer.from(
      JSON.stringify({
        _type: 'https://in-toto.io/Statement/v1',
        subject: [{ digest: { sha256: img.digest.slice(7) } }],
        predicateType: 'https://cosign.sigstore.dev/attestation/vuln/v1',
        predicate: {},
      }),
    );
    const { dsse } = await import('@sigstore/core');
    const pae = new Uint8Array(dsse.preAuthEncoding(IN_TOTO_PAYLOAD_TYPE, statement));
    const attestation = Buffer.from(
      JSON.stringify({
        mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
        verificationMaterial: { publicKey: { hint: '' } },
        dsseEnvelope: {
          payload: statement.toString('base64'),
          payloadType: IN_TOTO_PAYLOAD_TYPE,
          signatures: [{ sig: Buffer.from(signer.sign(pae)).toString('base64') }],
        },
      }),
    );
    const att = await referrerFor(repo, img, attestation);
    for (const ref of [wrongDigest, untrusted, att]) {
      assert.equal((await stack.push(repo, ref.digest, Buffer.from(ref.manifest), OCI)).status, 201);
    }
    const r = await stack.pull(repo, 'v1');
    assert.equal(r.status, 403, r.body.toString());
    assert.match(r.body.toString(), /Sigstore bundle/);
  });

  it('threshold 2: one key in both formats is one signer; a legacy signature and a bundle by two keys pass', async () => {
    const repo = 'two/app';
    const img = await pushRandomImage(stack.registry.url, repo, 'v1');
    await signDirect(stack.registry.url, repo, img.digest, stack.release.pkcs8Der);
    const same = await referrerFor(
      repo,
      img,
      buildCosignSignBundle(img.digest, bundleSignerFor(stack.release.pkcs8Der)),
    );
    assert.equal((await stack.push(repo, same.digest, Buffer.from(same.manifest), OCI)).status, 201);
    const once = await stack.pull(repo, 'v1');
    assert.equal(once.status, 403, once.body.toString());
    assert.match(once.body.toString(), /needs 2/);
    await new Promise((r) => setTimeout(r, 1100));
    const two = await referrerFor(
      repo,
      img,
      buildCosignSignBundle(img.digest, bundleSignerFor(second.pkcs8Der)),
    );
    assert.equal((await stack.push(repo, two.digest, Buffer.from(two.manifest), OCI)).status, 201);
    const r = await stack.pull(repo, 'v1');
    assert.equal(r.status, 200, r.body.toString());
  });
});
