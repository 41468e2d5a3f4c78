import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { parsePublicKeyPem } from '../../src/core/signature/keys.js';
import { buildSimpleSigningPayload } from '../../src/core/signature/payload.js';
import { generateKeyPair, signPayload } from '../../src/core/signature/sign.js';
import {
  evaluateTrust,
  signerIdentities,
  type SignatureCandidate,
  type TrustedKey,
} from '../../src/core/trust.js';
import {
  cosignPublicKeyPem,
  loadCosignFixture,
  unknownKeySignature,
  type DirSignature,
} from '../helpers/fixtures.js';

const NOW = new Date('2026-03-01T00:00:00Z');
const sha256 = (b: Uint8Array): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const cand = (s: DirSignature): SignatureCandidate => ({
  payload: s.payload,
  signature: s.annotations['dev.cosignproject.cosign/signature']!,
});
const cosignKey = (over: Partial<TrustedKey> = {}): TrustedKey => ({
  name: 'cosign-fixture',
  key: parsePublicKeyPem(cosignPublicKeyPem()),
  ...over,
});

const base = { threshold: 1, tagBinding: false, now: NOW };

test('real cosign signature: valid for its repository and manifest digest', () => {
  const fx = loadCosignFixture('valid');
  const digest = sha256(fx.manifest);
  const v = evaluateTrust({
    ...base,
    repo: 'cosign-signed-single-sample',
    digest,
    signatures: fx.signatures.map(cand),
    keys: [cosignKey()],
  });
  assert.deepEqual(v, {
    ok: true,
    reason: 'signed',
    signers: ['cosign-fixture'],
    message: `cosign-signed-single-sample@${digest} is signed by cosign-fixture`,
  });
});

test('real cosign signature transplanted to another repository: wrong-repository', () => {
  const fx = loadCosignFixture('valid');
  const v = evaluateTrust({
    ...base,
    repo: 'prod/app',
    digest: sha256(fx.manifest),
    signatures: fx.signatures.map(cand),
    keys: [cosignKey()],
  });
  assert.equal(v.ok, false);
  assert.equal(v.reason, 'wrong-repository');
  assert.match(v.message, /^prod\/app@sha256:[0-9a-f]{64} has no valid signature/);
  assert.match(v.message, /cosign-signed-single-sample, not prod\/app/);
  assert.match(v.message, /\(trusted: cosign-fixture\)$/);
});

test('valid-with-tag fixture: skopeo signature with a tag, tag binding', () => {
  const fx = loadCosignFixture('valid-with-tag');
  const digest = sha256(fx.manifest);
  const input = { ...base, digest, signatures: fx.signatures.map(cand), keys: [cosignKey()] };
  // The skopeo signature names skopeo-signed:tag; it is valid there and nowhere else.
  assert.equal(evaluateTrust({ ...input, repo: 'skopeo-signed' }).ok, true);
  assert.equal(evaluateTrust({ ...input, repo: 'cosign-signed-single-sample' }).reason, 'wrong-repository');
  // Tag binding: the skopeo signature names :tag.
  assert.equal(evaluateTrust({ ...input, repo: 'skopeo-signed', tag: 'tag', tagBinding: true }).ok, true);
  const other = evaluateTrust({ ...input, repo: 'skopeo-signed', tag: 'latest', tagBinding: true });
  assert.equal(other.reason, 'tag-not-bound');
  assert.match(other.message, /signed it as tag tag, not latest/);
  // The cosign signature (fixture "valid") carries no tag at all.
  const cosignFx = loadCosignFixture('valid');
  const noTag = evaluateTrust({
    ...input,
    signatures: cosignFx.signatures.map(cand),
    repo: 'cosign-signed-single-sample',
    tag: 'v1',
    tagBinding: true,
  });
  assert.equal(noTag.reason, 'tag-not-bound');
  assert.match(noTag.message, /without a tag, and tag v1 must be signed/);
  // Without binding, or when pulled by digest, the tag does not matter.
  assert.equal(evaluateTrust({ ...input, repo: 'skopeo-signed', tag: 'latest' }).ok, true);
  assert.equal(evaluateTrust({ ...input, repo: 'skopeo-signed', tagBinding: true }).ok, true);
});

test('manifest-digest-error fixture: the payload names another digest', () => {
  const fx = loadCosignFixture('manifest-digest-error');
  const v = evaluateTrust({
    ...base,
    repo: 'cosign-signed-single-sample',
    digest: sha256(fx.manifest),
    signatures: fx.signatures.map(cand),
    keys: [cosignKey()],
  });
  assert.equal(v.ok, false);
  assert.equal(v.reason, 'digest-mismatch');
});

test('modified-manifest fixture: the served bytes hash to a digest nobody signed', () => {
  const fx = loadCosignFixture('modified-manifest');
  const v = evaluateTrust({
    ...base,
    repo: 'cosign-signed-single-sample',
    digest: sha256(fx.manifest),
    signatures: fx.signatures.map(cand),
    keys: [cosignKey()],
  });
  assert.equal(v.ok, false);
  assert.equal(v.reason, 'digest-mismatch');
});

test('unknown-key fixture: untrusted-key', () => {
  const fx = loadCosignFixture('valid');
  const v = evaluateTrust({
    ...base,
    repo: 'cosign-signed-single-sample',
    digest: sha256(fx.manifest),
    signatures: [cand(unknownKeySignature())],
    keys: [cosignKey()],
  });
  assert.equal(v.ok, false);
  assert.equal(v.reason, 'untrusted-key');
  assert.match(v.message, /no key trusted for this repository/);
});

test('no candidates: no-signature, naming the trusted keys', () => {
  const v = evaluateTrust({
    ...base,
    repo: 'prod/app',
    digest: `sha256:${'1'.repeat(64)}`,
    signatures: [],
    keys: [cosignKey({ name: 'release-2026' }), cosignKey({ name: 'ci' })],
  });
  assert.equal(v.reason, 'no-signature');
  assert.equal(
    v.message,
    `prod/app@sha256:${'1'.repeat(64)} has no signature; sign it with a key trusted for this repository (trusted: ci, release-2026)`,
  );
});

test('revoked and expired keys do not count, and say so', () => {
  const fx = loadCosignFixture('valid');
  const input = {
    ...base,
    repo: 'cosign-signed-single-sample',
    digest: sha256(fx.manifest),
    signatures: fx.signatures.map(cand),
  };
  const revoked = evaluateTrust({ ...input, keys: [cosignKey({ revoked: true })] });
  assert.equal(revoked.reason, 'revoked-key');
  assert.match(revoked.message, /key cosign-fixture, which is revoked/);
  const expired = evaluateTrust({
    ...input,
    keys: [cosignKey({ notAfter: new Date('2026-02-28T23:59:59Z') })],
  });
  assert.equal(expired.reason, 'expired-key');
  const notYet = evaluateTrust({
    ...input,
    keys: [cosignKey({ notBefore: new Date('2026-03-01T00:00:01Z') })],
  });
  assert.equal(notYet.reason, 'expired-key');
  const inWindow = evaluateTrust({
    ...input,
    keys: [cosignKey({ notBefore: new Date('2026-01-01T00:00:00Z'), notAfter: NOW })],
  });
  assert.equal(inWindow.ok, true);
  // The same public key under a usable name still counts.
  const both = evaluateTrust({
    ...input,
    keys: [cosignKey({ name: 'old', revoked: true }), cosignKey({ name: 'new' })],
  });
  assert.deepEqual([both.ok, both.signers], [true, ['new']]);
});

function signFor(
  pkcs8: Uint8Array,
  ref: string,
  digest: string,
  tamper?: (p: Uint8Array) => Uint8Array,
): SignatureCandidate {
  const payload = buildSimpleSigningPayload({
    dockerReference: ref,
    manifestDigest: digest,
    creator: 'test',
    timestamp: 1,
  });
  return {
    payload: tamper ? tamper(payload) : payload,
    signature: Buffer.from(signPayload(pkcs8, payload)).toString('base64'),
  };
}

test('threshold counts distinct key names, and reports threshold-not-met', () => {
  const digest = `sha256:${'2'.repeat(64)}`;
  const a = generateKeyPair('ed25519');
  const b = generateKeyPair('ecdsa-p256');
  const c = generateKeyPair('ed25519');
  const keys: TrustedKey[] = [
    { name: 'alice', key: parsePublicKeyPem(a.publicKeyPem) },
    { name: 'bob', key: parsePublicKeyPem(b.publicKeyPem) },
    { name: 'carol', key: parsePublicKeyPem(c.publicKeyPem) },
  ];
  const sa = signFor(a.pkcs8Der, 'reg.example/prod/app:1', digest);
  const sb = signFor(b.pkcs8Der, 'other.example:5000/prod/app', digest);
  const input = { ...base, repo: 'prod/app', digest, keys, threshold: 2 };
  // The same signer twice is one signer.
  const dup = evaluateTrust({ ...input, signatures: [sa, sa, signFor(a.pkcs8Der, 'prod/app', digest)] });
  assert.equal(dup.reason, 'threshold-not-met');
  assert.deepEqual(dup.signers, ['alice']);
  assert.match(dup.message, /from 1 trusted key\(s\) \(alice\) but needs 2 \(trusted: alice, bob, carol\)/);
  const two = evaluateTrust({ ...input, signatures: [sa, sb] });
  assert.deepEqual([two.ok, two.signers], [true, ['alice', 'bob']]);
  assert.equal(evaluateTrust({ ...input, threshold: 3, signatures: [sa, sb] }).reason, 'threshold-not-met');
  // Host names are ignored; the repository path is not.
  assert.equal(
    evaluateTrust({ ...input, threshold: 1, signatures: [signFor(c.pkcs8Der, 'prod/app2', digest)] }).reason,
    'wrong-repository',
  );
  assert.throws(() => evaluateTrust({ ...input, threshold: 0, signatures: [] }), TypeError);
});

test('a rotated key and the key it replaces are one signer for the threshold', () => {
  const digest = `sha256:${'4'.repeat(64)}`;
  const old = generateKeyPair('ed25519');
  const next = generateKeyPair('ecdsa-p256');
  const other = generateKeyPair('ed25519');
  // release-2026 replaced release (meta trustedAs: ["release"]); security is another signer.
  const ids = signerIdentities(
    new Map([
      ['release', []],
      ['release-2026', ['release']],
      ['security', []],
    ]),
  );
  assert.equal(ids.get('release-2026'), ids.get('release'));
  assert.notEqual(ids.get('security'), ids.get('release'));
  const keys: TrustedKey[] = [
    { name: 'release', key: parsePublicKeyPem(old.publicKeyPem), identity: ids.get('release') },
    { name: 'release-2026', key: parsePublicKeyPem(next.publicKeyPem), identity: ids.get('release-2026') },
    { name: 'security', key: parsePublicKeyPem(other.publicKeyPem), identity: ids.get('security') },
  ];
  const input = { ...base, repo: 'prod/app', digest, keys, threshold: 2 };
  const byOld = signFor(old.pkcs8Der, 'prod/app', digest);
  const byNext = signFor(next.pkcs8Der, 'prod/app', digest);
  const bySecurity = signFor(other.pkcs8Der, 'prod/app', digest);
  // One publisher signing with its old and its new key during the grace period: one signer.
  const same = evaluateTrust({ ...input, signatures: [byOld, byNext] });
  assert.equal(same.reason, 'threshold-not-met');
  assert.equal(same.signers.length, 1);
  const two = evaluateTrust({ ...input, signatures: [byNext, bySecurity] });
  assert.deepEqual([two.ok, two.signers], [true, ['release-2026', 'security']]);
  // Without identities (names only), the same two signatures would have counted twice.
  const unlinked = keys.map(({ identity: _unused, ...k }) => k);
  assert.equal(evaluateTrust({ ...input, keys: unlinked, signatures: [byOld, byNext] }).ok, true);
});

test('signerIdentities: links are transitive and symmetric, whatever their order', () => {
  const ids = signerIdentities(
    new Map([
      ['c', ['b']],
      ['b', ['a']],
      ['x', []],
      ['y', ['z']],
    ]),
  );
  assert.deepEqual(
    ['a', 'b', 'c', 'x', 'y', 'z'].map((n) => ids.get(n)),
    ['a', 'a', 'a', 'x', 'y', 'y'],
  );
});

test('the signature is verified before the payload is parsed; malformed inputs are classified', () => {
  const digest = `sha256:${'3'.repeat(64)}`;
  const k = generateKeyPair('ed25519');
  const keys: TrustedKey[] = [{ name: 'k', key: parsePublicKeyPem(k.publicKeyPem) }];
  const input = { ...base, repo: 'prod/app', digest, keys };
  // A signed payload that is not strict JSON (duplicate key): verified, then refused on parse.
  const dupPayload = new TextEncoder().encode(
    `{"critical":{"identity":{"docker-reference":"prod/app"},"image":{"docker-manifest-digest":"${digest}"},"type":"cosign container image signature"},"optional":null,"optional":null}`,
  );
  const signedDup = {
    payload: dupPayload,
    signature: Buffer.from(signPayload(k.pkcs8Der, dupPayload)).toString('base64'),
  };
  const v = evaluateTrust({ ...input, signatures: [signedDup] });
  assert.equal(v.reason, 'malformed-signature');
  assert.match(v.message, /duplicate key/);
  // An unsigned garbage payload is never parsed: it is just not signed by a trusted key.
  const garbage = {
    payload: new TextEncoder().encode('{{{'),
    signature: Buffer.from(new Uint8Array(64)).toString('base64'),
  };
  assert.equal(evaluateTrust({ ...input, signatures: [garbage] }).reason, 'untrusted-key');
  // Non-canonical or invalid base64 in the annotation.
  const good = signFor(k.pkcs8Der, 'prod/app', digest);
  for (const sig of ['', 'not base64', good.signature.replace(/=+$/, ''), ` ${good.signature}`]) {
    assert.equal(
      evaluateTrust({ ...input, signatures: [{ ...good, signature: sig }] }).reason,
      'malformed-signature',
      sig,
    );
  }
  // A verifying signature with the wrong repository outranks an undecodable one.
  const wrong = signFor(k.pkcs8Der, 'other/app', digest);
  assert.equal(
    evaluateTrust({ ...input, signatures: [{ ...good, signature: '!' }, wrong] }).reason,
    'wrong-repository',
  );
  assert.equal(evaluateTrust({ ...input, signatures: [good] }).ok, true);
});

test('property: a flipped bit in the manifest, the payload or the signature is refused', () => {
  const fx = loadCosignFixture('valid');
  const keys = [cosignKey()];
  const repo = 'cosign-signed-single-sample';
  const s = fx.signatures[0]!;
  const sigBytes = Buffer.from(s.annotations['dev.cosignproject.cosign/signature']!, 'base64');
  const flip = (b: Uint8Array, bit: number): Uint8Array => {
    const c = Uint8Array.from(b);
    c[bit >> 3] = (c[bit >> 3] as number) ^ (1 << (bit & 7));
    return c;
  };
  assert.equal(
    evaluateTrust({ ...base, repo, digest: sha256(fx.manifest), signatures: [cand(s)], keys }).ok,
    true,
  );
  fc.assert(
    fc.property(fc.constantFrom('manifest', 'payload', 'signature'), fc.nat(), (where, n) => {
      let manifest = fx.manifest;
      let payload = s.payload;
      let sig: Uint8Array = sigBytes;
      if (where === 'manifest') manifest = flip(manifest, n % (manifest.length * 8));
      if (where === 'payload') payload = flip(payload, n % (payload.length * 8));
      if (where === 'signature') sig = flip(sig, n % (sig.length * 8));
      const v = evaluateTrust({
        ...base,
        repo,
        digest: sha256(manifest),
        signatures: [{ payload, signature: Buffer.from(sig).toString('base64') }],
        keys,
      });
      assert.equal(v.ok, false);
    }),
    { numRuns: 300 },
  );
});
