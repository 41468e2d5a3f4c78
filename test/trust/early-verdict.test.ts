/**
 * Issues 13 and 18: a cold verification reads both evidence layouts at once and allows as soon as
 * one layout's evidence alone meets the rule, without waiting for the other layout's reads
 * (TrustService.evidenceVerdict). Against a real registry:2 through the whole pipeline. The other
 * layout's reads are held back or failed by a wrapper around the gate's own evidence reader: that
 * wrapper is fault injection (a slow or failing registry), the reads themselves are real.
 *
 * Fail closed: a refusal is never made early (a threshold met only with the other layout's evidence
 * waits for it), a failed read of the layout that decides still fails the pull (I3), and under tag
 * binding bundles (which bind no tag) never decide early.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { GateError } from '../../src/core/errors.js';
import { generateKeyPair } from '../../src/core/signature/sign.js';
import { MEDIA_TYPES } from '../../src/core/manifest.js';
import { signatureTagFor } from '../../src/core/reference.js';
import {
  BUNDLE_REFERRER_ARTIFACT_TYPE,
  buildBundleReferrerManifest,
  buildCosignSignBundle,
  bundleSignerFor,
} from '../../src/core/evidence/bundle-writer.js';
import type { EvidenceReader } from '../../src/trust/evidence.js';
import { pushBlob, pushManifest, pushRandomImage } from '../helpers/registry-direct.js';
import { signDirect } from '../helpers/sign.js';
import { startTrustStack, type TrustStack } from '../helpers/trust-stack.js';

const OCI = MEDIA_TYPES.ociManifest;

/** A promise and its resolver. */
function latch(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}

/** True for a simple-signing payload (a legacy signature's blob), false for a bundle. */
const isPayload = (b: Uint8Array | undefined): boolean =>
  b !== undefined && Buffer.from(b).toString('utf8').includes('"critical"');

/** A few turns of the event loop: whatever was ready to run has run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}

describe(
  'a cold verification allows from one evidence layout without waiting for the other',
  { timeout: 120_000 },
  () => {
    let stack: TrustStack;
    let real: EvidenceReader;
    let options: { evidence: EvidenceReader };
    const second = generateKeyPair('ed25519');
    before(async () => {
      stack = await startTrustStack([
        { repos: ['two/**'], keys: ['release', 'second'], threshold: 2 },
        { repos: ['bound/**'], keys: ['release'], tagBinding: true },
        { repos: ['**'], keys: ['release'] },
      ]);
      writeFileSync(`${stack.gate.keysDir}/second.pub`, second.publicKeyPem);
      stack.gate.tg.keyring.reload();
      // The gate's own reader (registry:2 through the pipeline's upstream), wrapped per test below.
      options = (stack.gate.tg.trust as unknown as { o: { evidence: EvidenceReader } }).o;
      real = options.evidence;
    });
    after(async () => {
      if (options) options.evidence = real;
      await stack?.stop();
    });
    const early = (): number => stack.gate.tg.trust.earlyVerdicts;

    /** A bundle referrer of `img` by `key`, laid out as cosign 3 leaves it on registry:2. */
    async function attachBundle(
      repo: string,
      img: { digest: string; bytes: Buffer },
      key: Uint8Array,
    ): Promise<void> {
      const ref = buildBundleReferrerManifest({
        bundle: buildCosignSignBundle(img.digest, bundleSignerFor(key)),
        subject: { mediaType: OCI, digest: img.digest, size: img.bytes.length },
        created: new Date('2026-12-04T12:00:00Z'),
      });
      for (const b of ref.blobs) await pushBlob(stack.registry.url, repo, Buffer.from(b.bytes));
      await pushManifest(stack.registry.url, repo, ref.digest, Buffer.from(ref.manifest), OCI);
      const index = {
        schemaVersion: 2,
        mediaType: MEDIA_TYPES.ociIndex,
        manifests: [
          {
            mediaType: OCI,
            digest: ref.digest,
            size: ref.manifest.length,
            artifactType: BUNDLE_REFERRER_ARTIFACT_TYPE,
          },
        ],
      };
      const tag = `sha256-${img.digest.slice('sha256:'.length)}`;
      await pushManifest(
        stack.registry.url,
        repo,
        tag,
        Buffer.from(JSON.stringify(index)),
        MEDIA_TYPES.ociIndex,
      );
    }

    it('a legacy signature that meets the rule allows while the referrers read is still held back', async () => {
      const repo = 'early/legacy';
      const img = await pushRandomImage(stack.registry.url, repo, 'v1');
      await signDirect(stack.registry.url, repo, img.digest, stack.release.pkcs8Der);
      const held = latch();
      let referrersAsked = false;
      options.evidence = {
        ...real,
        referrers: async (r, s) => {
          referrersAsked = true;
          await held.promise;
          return real.referrers(r, s);
        },
      };
      try {
        const before = early();
        const r = await stack.pull(repo, img.digest);
        assert.equal(r.status, 200, r.body.toString());
        assert.ok(referrersAsked, 'the referrers were asked for (both layouts are read at once)');
        assert.equal(early() - before, 1, 'decided from the legacy layout alone');
      } finally {
        held.open();
        options.evidence = real;
      }
    });

    it('a failed referrers read cannot refuse an image its legacy signature already admits; a failed .sig read still fails the pull', async () => {
      const repo = 'early/failing';
      const img = await pushRandomImage(stack.registry.url, repo, 'v1');
      await signDirect(stack.registry.url, repo, img.digest, stack.release.pkcs8Der);
      const legacyIn = latch();
      options.evidence = {
        ...real,
        blob: async (r, d, max) => {
          const got = await real.blob(r, d, max);
          if (isPayload(got)) void settle().then(legacyIn.open);
          return got;
        },
        referrers: async () => {
          // Fault injection: the registry fails this read once the legacy evidence is in.
          await legacyIn.promise;
          throw new Error('injected: referrers read failed');
        },
      };
      try {
        assert.equal((await stack.pull(repo, img.digest)).status, 200);
      } finally {
        options.evidence = real;
      }
      // The other way round: the layout read first fails, the bundle layout holds nothing. I3: 503.
      const other = await pushRandomImage(stack.registry.url, 'early/failing2', 'v1');
      await attachBundle('early/failing2', other, stack.release.pkcs8Der);
      options.evidence = {
        ...real,
        manifest: async () => {
          // Fault injection: what the registry reader throws when registry:2 answers 500.
          throw new GateError('UNAVAILABLE', 'could not read signature evidence from the registry');
        },
      };
      try {
        const r = await stack.pull('early/failing2', other.digest);
        assert.equal(r.status, 503, r.body.toString());
      } finally {
        options.evidence = real;
      }
    });

    it('a bundle that meets the rule allows while the .sig read is held back', async () => {
      const repo = 'early/bundle';
      const img = await pushRandomImage(stack.registry.url, repo, 'v1');
      await attachBundle(repo, img, stack.release.pkcs8Der);
      const held = latch();
      options.evidence = {
        ...real,
        manifest: async (r, ref) => {
          if (ref === signatureTagFor(img.digest)) await held.promise;
          return real.manifest(r, ref);
        },
      };
      try {
        const before = early();
        const r = await stack.pull(repo, img.digest);
        assert.equal(r.status, 200, r.body.toString());
        assert.equal(early() - before, 1);
      } finally {
        held.open();
        options.evidence = real;
      }
    });

    it('threshold 2: one layout short of it waits for the other (no early refusal), and two keys across layouts pass', async () => {
      const repo = 'two/early';
      const img = await pushRandomImage(stack.registry.url, repo, 'v1');
      await signDirect(stack.registry.url, repo, img.digest, stack.release.pkcs8Der);
      await attachBundle(repo, img, second.pkcs8Der);
      // The bundle chain is held until the legacy evidence has been read and judged alone.
      const held = latch();
      let legacyDone = false;
      options.evidence = {
        ...real,
        blob: async (r, d, max) => {
          const got = await real.blob(r, d, max);
          if (isPayload(got)) void settle().then(() => ((legacyDone = true), held.open()));
          return got;
        },
        referrers: async (r, s) => {
          await held.promise;
          return real.referrers(r, s);
        },
      };
      try {
        const before = early();
        const r = await stack.pull(repo, img.digest);
        assert.ok(legacyDone);
        assert.equal(r.status, 200, r.body.toString());
        assert.equal(early() - before, 0, 'neither layout alone met the threshold');
      } finally {
        held.open();
        options.evidence = real;
      }
      // The same key in both layouts is one signer: refused, after both were read.
      const same = await pushRandomImage(stack.registry.url, 'two/same', 'v1');
      await signDirect(stack.registry.url, 'two/same', same.digest, stack.release.pkcs8Der);
      await attachBundle('two/same', same, stack.release.pkcs8Der);
      const refused = await stack.pull('two/same', same.digest);
      assert.equal(refused.status, 403, refused.body.toString());
      assert.match(refused.body.toString(), /needs 2/);
    });

    it('tag binding: a bundle read first never decides alone; the tag bound by the legacy signature is honoured', async () => {
      const repo = 'bound/early';
      const img = await pushRandomImage(stack.registry.url, repo, 'v1');
      await signDirect(stack.registry.url, repo, img.digest, stack.release.pkcs8Der, {
        dockerReference: `localhost/${repo}:v1`,
      });
      await attachBundle(repo, img, stack.release.pkcs8Der);
      // The .sig read waits until the whole bundle chain (referrers, then the bundle blob) is done.
      const bundleDone = latch();
      options.evidence = {
        ...real,
        blob: async (r, d, max) => {
          const got = await real.blob(r, d, max);
          if (got && !isPayload(got)) void settle().then(bundleDone.open);
          return got;
        },
        manifest: async (r, ref) => {
          if (ref === signatureTagFor(img.digest)) await bundleDone.promise;
          return real.manifest(r, ref);
        },
      };
      try {
        const before = early();
        const r = await stack.pull(repo, 'v1');
        assert.equal(r.status, 200, r.body.toString());
        // The bundle, in first, did not decide alone (it would have bound no tag: 403); the verdict
        // waited for the legacy signature, which binds v1.
        assert.equal(early() - before, 0);
      } finally {
        bundleDone.open();
        options.evidence = real;
      }
    });
  },
);
