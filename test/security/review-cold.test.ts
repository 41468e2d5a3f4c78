/**
 * Adversarial review of the `cold` change (issues 13 and 18): the early allow from one evidence
 * layout (TrustService.evidenceVerdict), the issued-token memory (auth/tokens.ts) and the
 * verification started by signature writes (TrustService.evidenceChanged). Against a real
 * registry:2 through the whole pipeline; the token service is exercised directly (it does no I/O).
 * Where a read is held back, a wrapper around the gate's own evidence reader does it: that wrapper
 * is fault injection (a slow registry), the reads themselves are real.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadOrCreateTokenKeys } from '../../src/auth/token-keys.js';
import { TokenService } from '../../src/auth/tokens.js';
import { GateError } from '../../src/core/errors.js';
import { MEDIA_TYPES } from '../../src/core/manifest.js';
import { signatureTagFor } from '../../src/core/reference.js';
import { generateKeyPair } from '../../src/core/signature/sign.js';
import {
  buildBundleReferrerManifest,
  buildCosignSignBundle,
  bundleSignerFor,
} from '../../src/core/evidence/bundle-writer.js';
import type { AccessClaim } from '../../src/core/scope.js';
import type { Identity } from '../../src/core/types.js';
import type { EvidenceReader } from '../../src/trust/evidence.js';
import { pushBlob, pushRandomImage, sha256 } from '../helpers/registry-direct.js';
import { signatureManifest, signDirect } from '../helpers/sign.js';
import { pushReleaseSignature, startTrustStack, type TrustStack } from '../helpers/trust-stack.js';

const OCI = MEDIA_TYPES.ociManifest;

function refused(p: Promise<unknown>): Promise<void> {
  return assert.rejects(p, (e: unknown) => e instanceof GateError && e.status === 401);
}

describe('review-cold: issued-token memory', () => {
  const log = { info: () => undefined, warn: () => undefined };
  const alice: Identity = { subject: 'alice', kind: 'user', groups: [] };
  const access: AccessClaim[] = [{ type: 'repository', name: 'team-a/app', actions: ['pull'] }];
  const NOW = new Date('2026-05-01T12:00:00Z');
  const opts = { issuer: 'trustgate', service: 'registry.test', ttlSeconds: 300, refreshTtlSeconds: 3600 };
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'tg-review-cold-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('fixed (a reload during the signing left the token remembered under the new settings): a token signed across configure() or setKeys() is verified, not known', async () => {
    const s = new TokenService({ keys: await loadOrCreateTokenKeys(path.join(dir, 'a'), log), ...opts });
    // The signing is asynchronous: the reload lands while it runs (a SIGHUP during a token request).
    const pending = s.issue(alice, access, NOW);
    s.configure({ ...opts, service: 'other.test' });
    const t = (await pending).token;
    // Signed for registry.test; the service is other.test now: full verification refuses it.
    await refused(s.verifyAccessToken(t, NOW));
    // Keys: a token signed with a key withdrawn by a reload during the signing.
    s.configure(opts);
    const pending2 = s.issue(alice, access, NOW);
    s.setKeys(await loadOrCreateTokenKeys(path.join(dir, 'b'), log));
    const u = (await pending2).token;
    await refused(s.verifyAccessToken(u, NOW));
  });

  it('fixed (the issued-token memory was bounded in entries only, and kept tokens verification refuses): a token flood holds at most 16 MiB', async () => {
    const s = new TokenService({ keys: await loadOrCreateTokenKeys(path.join(dir, 'd'), log), ...opts });
    const grant = (n: number, i: number): AccessClaim[] =>
      Array.from({ length: n }, (_, j) => ({
        type: 'repository' as const,
        name: `flood/${String(i).padStart(6, '0')}-${String(j).padStart(3, '0')}-${'x'.repeat(230)}`,
        actions: ['pull'],
      }));
    // 64 long names: a token longer than verification reads (16 KiB) is not known either.
    const huge = (await s.issue(alice, grant(64, 0), NOW)).token;
    assert.ok(huge.length > 16 * 1024, String(huge.length));
    await refused(s.verifyAccessToken(huge, NOW));
    // 1,200 tokens of ~12 KiB (a flood within the minute): what is held stays bounded in bytes.
    for (let i = 1; i <= 1200; i++) await s.issue(alice, grant(30, i), NOW);
    const held = (s as unknown as { issued: Map<string, unknown> }).issued;
    let bytes = 0;
    for (const token of held.keys()) bytes += token.length;
    assert.ok(bytes <= 8 * 1024 * 1024, `${bytes} bytes of tokens held`);
  });

  it('HELD: a remembered token altered in any way (padding, trailing data, case, header, payload) is verified and refused', async () => {
    const s = new TokenService({ keys: await loadOrCreateTokenKeys(path.join(dir, 'c'), log), ...opts });
    const t = (await s.issue(alice, access, NOW)).token;
    const [h, p, sig] = t.split('.') as [string, string, string];
    const upper = (x: string): string => x.replace(/[a-z]/, (c) => c.toUpperCase());
    for (const altered of [
      `${t}=`,
      `${t}.`,
      `${upper(h)}.${p}.${sig}`,
      `${h}.${upper(p)}.${sig}`,
      `${h}.${p}.${upper(sig)}`,
      `${h}.${p}.`,
    ]) {
      await refused(s.verifyAccessToken(altered, NOW));
    }
    // The original is still known; another replica (same keys, no memory) verifies it fully.
    assert.equal((await s.verifyAccessToken(t, NOW)).subject, 'alice');
    const replica = new TokenService({
      keys: await loadOrCreateTokenKeys(path.join(dir, 'c'), log),
      ...opts,
    });
    assert.equal((await replica.verifyAccessToken(t, NOW)).subject, 'alice');
    await refused(
      new TokenService({
        ...opts,
        keys: await loadOrCreateTokenKeys(path.join(dir, 'c'), log),
        service: 'x.test',
      }).verifyAccessToken(t, NOW),
    );
  });
});

describe('review-cold: early allow and verification on signature writes', { timeout: 180_000 }, () => {
  let stack: TrustStack;
  let options: { evidence: EvidenceReader };
  let real: EvidenceReader;
  const next = generateKeyPair('ecdsa-p256');
  const qa = generateKeyPair('ecdsa-p256');
  const temp = generateKeyPair('ecdsa-p256');
  const gone = generateKeyPair('ecdsa-p256');
  before(async () => {
    stack = await startTrustStack([
      { repos: ['thr/**'], keys: ['release', 'qa'], threshold: 2 },
      { repos: ['bound/**'], keys: ['release'], tagBinding: true },
      { repos: ['race/**'], keys: ['temp'] },
      { repos: ['rev/**'], keys: ['gone', 'release'] },
      { repos: ['**'], keys: ['release'] },
    ]);
    const dir = stack.gate.keysDir;
    // `next` is release's rotation successor; `copy` is release.pub copied under a second name and
    // trusted for thr/** by its own meta; `qa` is the second signer thr/** needs.
    writeFileSync(`${dir}/next.pub`, next.publicKeyPem);
    writeFileSync(`${dir}/next.meta.json`, JSON.stringify({ trustedAs: ['release'] }));
    writeFileSync(`${dir}/copy.pub`, stack.release.publicKeyPem);
    writeFileSync(`${dir}/copy.meta.json`, JSON.stringify({ repos: ['thr/**'] }));
    writeFileSync(`${dir}/qa.pub`, qa.publicKeyPem);
    writeFileSync(`${dir}/temp.pub`, temp.publicKeyPem);
    writeFileSync(`${dir}/gone.pub`, gone.publicKeyPem);
    stack.gate.tg.keyring.reload();
    options = (stack.gate.tg.trust as unknown as { o: { evidence: EvidenceReader } }).o;
    real = options.evidence;
  });
  after(async () => {
    if (options) options.evidence = real;
    await stack?.stop();
  });

  /** Waits (bounded: 1000 polls, 5 ms apart) until no write-started verification is running. */
  async function backgroundDone(): Promise<void> {
    const trust = stack.gate.tg.trust as unknown as { reverifying: Map<string, boolean> };
    for (let i = 0; i < 1000 && trust.reverifying.size > 0; i++) await new Promise((r) => setTimeout(r, 5));
    assert.equal(trust.reverifying.size, 0);
  }

  it("fixed (threshold counted a copied key and its old key's rotation successor as two signers): one publisher holding release and next does not meet threshold 2", async () => {
    const repo = 'thr/app';
    const img = await pushRandomImage(stack.registry.url, repo, 'v1');
    // Layers in this order: next (counted under release's rotation group), then release's bytes,
    // which `copy` also verifies: before the fix `copy` was counted as a second signer.
    await signDirect(stack.registry.url, repo, img.digest, next.pkcs8Der);
    await signDirect(stack.registry.url, repo, img.digest, stack.release.pkcs8Der);
    const r = await stack.pull(repo, img.digest);
    assert.equal(r.status, 403, r.body.toString());
    assert.match(r.body.toString(), /needs 2/);
    // The second, independent signer makes it pass.
    await signDirect(stack.registry.url, repo, img.digest, qa.pkcs8Der);
    await stack.gate.tg.trust.invalidate(repo, img.digest);
    const ok = await stack.pull(repo, img.digest);
    assert.equal(ok.status, 200, ok.body.toString());
  });

  it('HELD: under tag binding, a legacy signature naming another tag plus a bundle does not admit the pulled tag', async () => {
    const repo = 'bound/other';
    const img = await pushRandomImage(stack.registry.url, repo, 'v1');
    await signDirect(stack.registry.url, repo, img.digest, stack.release.pkcs8Der, {
      dockerReference: `localhost/${repo}:other`,
    });
    const ref = buildBundleReferrerManifest({
      bundle: buildCosignSignBundle(img.digest, bundleSignerFor(stack.release.pkcs8Der)),
      subject: { mediaType: OCI, digest: img.digest, size: img.bytes.length },
      created: new Date('2026-12-04T12:00:00Z'),
    });
    for (const b of ref.blobs) await pushBlob(stack.registry.url, repo, Buffer.from(b.bytes));
    assert.equal((await stack.push(repo, ref.digest, Buffer.from(ref.manifest), OCI)).status, 201);
    const r = await stack.pull(repo, 'v1');
    assert.equal(r.status, 403, r.body.toString());
    assert.match(r.body.toString(), /tag/);
    // By digest (no tag to bind), the same evidence admits it.
    assert.equal((await stack.pull(repo, img.digest)).status, 200);
  });

  it('fixed (a pull that began before a signature write stored its refusal over the verdict made after it): the first pull after the write is admitted', async () => {
    const repo = 'late/app';
    const img = await pushRandomImage(stack.registry.url, repo, 'v1');
    // Fault injection: the first referrers read (the early pull's, before the signature exists)
    // is held until the signature was written and verified again.
    let open!: () => void;
    const held = new Promise<void>((r) => (open = r));
    let referrerReads = 0;
    options.evidence = {
      ...real,
      referrers: async (r, subject) => {
        if (subject === img.digest && ++referrerReads === 1) await held;
        return real.referrers(r, subject);
      },
    };
    try {
      const early = stack.pull(repo, img.digest);
      for (let i = 0; i < 1000 && referrerReads === 0; i++) await new Promise((r) => setTimeout(r, 5));
      assert.equal(referrerReads, 1, 'the early pull is reading the evidence');
      const put = await pushReleaseSignature(stack, repo, img.digest);
      assert.equal(put.status, 201, put.body.toString());
      await backgroundDone();
      open();
      // The early pull began before the signature (its .sig read found none): its refusal
      // answers it alone.
      assert.equal((await early).status, 403);
    } finally {
      open();
      options.evidence = real;
    }
    const trust = stack.gate.tg.trust;
    const cache = (trust as unknown as { o: { cache: { get(k: string): Promise<unknown> } } }).o.cache;
    const stored = (await cache.get(`v:${trust.epoch()}:${repo}:${img.digest}`)) as
      { ok: boolean } | undefined;
    assert.equal(stored?.ok, true, 'the verdict made after the write stays stored');
    const r = await stack.pull(repo, img.digest);
    assert.equal(r.status, 200, r.body.toString());
  });

  it('fixed (every referrer write started a background verification, with no cap over subjects): at most 8 run at once', async () => {
    const repo = 'flood/refs';
    const trust = stack.gate.tg.trust as unknown as { reverifying: Map<string, boolean> };
    // Fault injection: every evidence read waits, so the verifications the writes start pile up.
    let open!: () => void;
    const held = new Promise<void>((r) => (open = r));
    options.evidence = {
      ...real,
      manifest: async (r, ref) => (await held, real.manifest(r, ref)),
      referrers: async (r, subject) => (await held, real.referrers(r, subject)),
    };
    let most = 0;
    try {
      for (let i = 0; i < 12; i++) {
        const img = await pushRandomImage(stack.registry.url, repo, `v${i}`);
        // A referrer needs no signing key: an attestation-like artifact naming the image.
        const config = Buffer.from('{}');
        const configDigest = await pushBlob(stack.registry.url, repo, config);
        const referrer = Buffer.from(
          JSON.stringify({
            schemaVersion: 2,
            mediaType: OCI,
            artifactType: 'application/vnd.example.note',
            config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: configDigest, size: 2 },
            layers: [],
            subject: { mediaType: OCI, digest: img.digest, size: img.bytes.length },
          }),
        );
        const put = await stack.push(repo, sha256(referrer), referrer, OCI);
        assert.equal(put.status, 201, put.body.toString());
        most = Math.max(most, trust.reverifying.size);
      }
    } finally {
      open();
      options.evidence = real;
    }
    assert.equal(most, 8);
    await backgroundDone();
  });

  it("HELD: an early allow names only the first layout's signer; withdrawing that key retires the verdict and the other layout's signer is read and counted", async () => {
    const repo = 'rev/app';
    const img = await pushRandomImage(stack.registry.url, repo, 'v1');
    const trust = stack.gate.tg.trust;
    // A bundle by release (through trustgate), then a legacy signature by `gone` (straight to
    // registry:2), and the verdict dropped: the next pull verifies from scratch.
    const ref = buildBundleReferrerManifest({
      bundle: buildCosignSignBundle(img.digest, bundleSignerFor(stack.release.pkcs8Der)),
      subject: { mediaType: OCI, digest: img.digest, size: img.bytes.length },
      created: new Date('2026-12-04T12:00:00Z'),
    });
    for (const b of ref.blobs) await pushBlob(stack.registry.url, repo, Buffer.from(b.bytes));
    assert.equal((await stack.push(repo, ref.digest, Buffer.from(ref.manifest), OCI)).status, 201);
    await backgroundDone();
    await signDirect(stack.registry.url, repo, img.digest, gone.pkcs8Der);
    await trust.invalidate(repo, img.digest);
    // Fault injection: the referrers read waits until the pull was answered from the legacy layout.
    let open!: () => void;
    const held = new Promise<void>((r) => (open = r));
    options.evidence = { ...real, referrers: async (r, subject) => (await held, real.referrers(r, subject)) };
    const early = trust.earlyVerdicts;
    try {
      const r = await stack.pull(repo, img.digest);
      assert.equal(r.status, 200, r.body.toString());
      assert.equal(trust.earlyVerdicts - early, 1, 'allowed from the legacy signature of gone alone');
    } finally {
      open();
      options.evidence = real;
    }
    // gone is withdrawn: the early verdict (signers: gone) is never used again; release's bundle,
    // never read for it, now admits the image on its own.
    rmSync(`${stack.gate.keysDir}/gone.pub`);
    stack.gate.tg.keyring.reload();
    // Fault injection: the referrers read waits until the legacy payload was read, so the legacy
    // layout finishes first and an early allow could only come from gone's signature (release's
    // bundle, finishing last, decides with everything in, never early).
    let legacyIn!: () => void;
    const legacyDone = new Promise<void>((r) => (legacyIn = r));
    options.evidence = {
      ...real,
      blob: async (r, d, max) => {
        try {
          return await real.blob(r, d, max);
        } finally {
          legacyIn();
        }
      },
      referrers: async (r, subject) => (await legacyDone, real.referrers(r, subject)),
    };
    const after = trust.earlyVerdicts;
    try {
      const r = await stack.pull(repo, img.digest);
      assert.equal(r.status, 200, r.body.toString());
      assert.equal(trust.earlyVerdicts - after, 0, 'the legacy layout alone no longer meets the rule');
    } finally {
      legacyIn();
      options.evidence = real;
    }
  });

  it('HELD: a key withdrawn while a write-started verification is reading the evidence: the verdict it makes never admits a later pull', async () => {
    const repo = 'race/app';
    const img = await pushRandomImage(stack.registry.url, repo, 'v1');
    const sig = await signatureManifest(stack.registry.url, repo, img.digest, temp.pkcs8Der);
    // Fault injection: the background verification's .sig read waits until the key is withdrawn
    // (the push's own check of the stored .sig, the first read, is not held).
    let open!: () => void;
    const held = new Promise<void>((r) => (open = r));
    let sigReads = 0;
    let heldReads = 0;
    options.evidence = {
      ...real,
      manifest: async (r, ref) => {
        if (ref === signatureTagFor(img.digest) && ++sigReads > 1) {
          heldReads++;
          await held;
        }
        return real.manifest(r, ref);
      },
    };
    try {
      const put = await stack.push(repo, signatureTagFor(img.digest), sig, OCI);
      assert.equal(put.status, 201, put.body.toString());
      for (let i = 0; i < 1000 && heldReads === 0; i++) await new Promise((r) => setTimeout(r, 5));
      assert.equal(heldReads, 1, 'the write started a verification');
      rmSync(`${stack.gate.keysDir}/temp.pub`);
      stack.gate.tg.keyring.reload();
    } finally {
      open();
      options.evidence = real;
    }
    // Let the background verification finish, then pull: refused under today's keys.
    await backgroundDone();
    const r = await stack.pull(repo, img.digest);
    assert.equal(r.status, 403, r.body.toString());
  });
});
