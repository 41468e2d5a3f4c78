/**
 * Sigstore bundle evidence (core/evidence/bundle.ts): real vectors from ../shared/fixtures
 * (sigstore-conformance bundle-verify, sigstore-go, cosign) and bundles made here with trustgate
 * test keys by the writer (core/evidence/bundle-writer.ts) or by hand.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, sign as nodeSign, type KeyObject } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { bundleFromJSON } from '@sigstore/bundle';
import { dsse } from '@sigstore/core';
import { toSignedEntity, toTrustMaterial, Verifier } from '@sigstore/verify';
import { TrustedRoot } from '@sigstore/protobuf-specs';
import {
  BUNDLE_FAILURE_RANK,
  MAX_BUNDLE_BYTES,
  verifyBundle,
  verifySigstoreBundle,
  type BundleInput,
  type BundleVerdict,
  type BundleVerifyOptions,
} from '../../../src/core/evidence/bundle.js';
import {
  buildBundleReferrerManifest,
  buildCosignSignBundle,
  bundleSignerFor,
  publicKeyHint,
  type BundleSigner,
} from '../../../src/core/evidence/bundle-writer.js';
import { COSIGN_SIGN_PREDICATE_TYPE, IN_TOTO_PAYLOAD_TYPE } from '../../../src/core/evidence/statement.js';
import { certificateIdentity, compileIdentityRules } from '../../../src/core/evidence/identity.js';
import { X509Certificate } from '@sigstore/core';
import { loadTrustedRoot, TrustedRootError } from '../../../src/core/evidence/trusted-root.js';
import { parsePublicKeyDer, parsePublicKeyPem, type PublicKey } from '../../../src/core/signature/keys.js';
import { verifyEd25519ph, verifyEd25519Pure } from '../../../src/core/signature/verify.js';
import type { TrustedKey } from '../../../src/core/trust.js';
import { readShared, sharedDir } from '../../helpers/fixtures.js';

const NOW = new Date('2026-03-01T00:00:00Z');
const sha256 = (b: Uint8Array): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const enc = (o: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(o));
const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');
const noRoot: BundleVerifyOptions = { tlog: 'optional', now: NOW };

// ---- keys ---------------------------------------------------------------------------------------

interface TestKey {
  priv: KeyObject;
  pub: PublicKey;
  signer: BundleSigner;
  trusted(over?: Partial<TrustedKey>): TrustedKey;
}

function makeKey(type: 'ed25519' | 'ecdsa-p256', name: string): TestKey {
  const { privateKey, publicKey } =
    type === 'ed25519'
      ? generateKeyPairSync('ed25519')
      : generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const pub = parsePublicKeyDer(new Uint8Array(publicKey.export({ format: 'der', type: 'spki' })));
  return {
    priv: privateKey,
    pub,
    signer: bundleSignerFor(privateKey),
    trusted: (over = {}) => ({ name, key: pub, ...over }),
  };
}

const ec = makeKey('ecdsa-p256', 'release-ec');
const ed = makeKey('ed25519', 'release-ed');
const stranger = makeKey('ecdsa-p256', 'stranger');

const MANIFEST = enc({
  schemaVersion: 2,
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  layers: [],
});
const DIGEST = sha256(MANIFEST);
const OTHER_DIGEST = sha256(enc({ other: true }));

function verify(
  bundle: Uint8Array,
  keys: TrustedKey[],
  opts: Partial<BundleVerifyOptions> = {},
  extra: Partial<BundleInput> = {},
): BundleVerdict {
  return verifyBundle({ bundle, digest: DIGEST, keys, ...extra }, { ...noRoot, ...opts });
}

function expectFail(v: BundleVerdict, reason: string): void {
  assert.equal(v.ok, false, `expected a failure (${reason}), got: ${v.message}`);
  assert.equal(v.reason, reason, v.message);
}

/** A DSSE bundle over any statement, signed by `signer` (a hand-made writer, independent of the module's). */
function dsseBundle(
  statement: unknown,
  signer: BundleSigner,
  over: { mediaType?: string; payloadType?: string; hint?: string; raw?: Uint8Array } = {},
): Record<string, unknown> {
  const payload = over.raw ?? (statement instanceof Uint8Array ? statement : enc(statement));
  const payloadType = over.payloadType ?? IN_TOTO_PAYLOAD_TYPE;
  const sig = signer.sign(new Uint8Array(dsse.preAuthEncoding(payloadType, Buffer.from(payload))));
  return {
    mediaType: over.mediaType ?? 'application/vnd.dev.sigstore.bundle.v0.3+json',
    verificationMaterial: {
      publicKey: { hint: over.hint ?? publicKeyHint(signer.publicKey) },
      tlogEntries: [],
    },
    dsseEnvelope: { payload: b64(payload), payloadType, signatures: [{ sig: b64(sig), keyid: '' }] },
  };
}

const signStatement = (hex: string, shape: 'plain' | 'annotations' | 'predicate' = 'predicate'): unknown => ({
  _type: 'https://in-toto.io/Statement/v1',
  subject: [shape === 'plain' ? { digest: { sha256: hex } } : { digest: { sha256: hex }, annotations: {} }],
  predicateType: COSIGN_SIGN_PREDICATE_TYPE,
  ...(shape === 'predicate' ? { predicate: {} } : {}),
});
const HEX = DIGEST.slice(7);

// ---- sigstore-conformance bundle-verify ---------------------------------------------------------

const CONF = path.join(sharedDir(), 'fixtures/sigstore-conformance/bundle-verify');
const PUBLIC_GOOD_ROOT = loadTrustedRoot(readShared('fixtures/sigstore-public-good/trusted_root.json'));

function caseFile(c: string, f: string): Buffer | undefined {
  const p = path.join(CONF, c, f);
  return existsSync(p) ? readShared(path.relative(sharedDir(), p)) : undefined;
}

function keylessCase(bundle: Buffer): boolean {
  try {
    const vm = (JSON.parse(bundle.toString('utf8')) as { verificationMaterial?: Record<string, unknown> })
      .verificationMaterial;
    return vm !== undefined && vm['publicKey'] === undefined;
  } catch {
    return false;
  }
}

const CONF_IDENTITY =
  'https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main';
const CONF_ISSUER = 'https://token.actions.githubusercontent.com';
const conformance = { passedAsExpected: 0, failedAsExpected: 0 };

/** True when the in-toto statement names the artifact's sha256 among its subjects. */
function statementNames(payload: Uint8Array, artifact: Uint8Array): boolean {
  const st = JSON.parse(Buffer.from(payload).toString('utf8')) as {
    subject?: Array<{ digest?: Record<string, string> }>;
  };
  const hex = sha256(artifact).slice(7);
  return (st.subject ?? []).some((s) => s.digest?.['sha256'] === hex);
}

/**
 * Each _fail case must fail for its own reason (its README): the reason verifySigstoreBundle gives.
 * Cases refused before verification (trusted root refused) are not listed.
 */
const CONFORMANCE_REASONS: Record<string, string> = {
  'bundle-empty-certificate-chain_fail': 'malformed-bundle',
  'bundle-invalid-base64-signature_fail': 'malformed-bundle',
  'bundle-malformed-json_fail': 'malformed-bundle',
  'bundle-unknown-version_fail': 'malformed-bundle',
  'bundle-with-root-cert_fail': 'certificate-invalid',
  'checkpoint-bad-keyhint_fail': 'tlog-invalid',
  'checkpoint-wrong-roothash_fail': 'tlog-invalid',
  'dsse-mismatch-envelope_fail': 'tlog-invalid',
  'dsse-mismatch-sig_fail': 'tlog-invalid',
  'inclusion-proof-corrupted-hash_fail': 'tlog-invalid',
  'integrated-time-in-future_fail': 'certificate-invalid',
  'intoto-expired-certificate_fail': 'certificate-invalid',
  'intoto-missing-inclusion-proof_fail': 'malformed-bundle',
  'intoto-set-outside-signing-cert-validity_fail': 'certificate-invalid',
  'invalid-checkpoint-signature_fail': 'tlog-invalid',
  // The old proof carries no checkpoint, which a v0.2 bundle requires.
  'invalid-inclusion-proof_fail': 'malformed-bundle',
  'managed-key-no-key_fail': 'untrusted-key',
  'managed-key-wrong-key_fail': 'untrusted-key',
  'rekor2-checkpoint-missing-log-signature_fail': 'tlog-invalid',
  'rekor2-checkpoint-missing-root-hash_fail': 'tlog-invalid',
  'rekor2-checkpoint-missing-size_fail': 'tlog-invalid',
  'rekor2-checkpoint-no-matching-signature_fail': 'tlog-invalid',
  'rekor2-dsse-mismatch-envelope_fail': 'tlog-invalid',
  'rekor2-dsse-mismatch-sig_fail': 'tlog-invalid',
  'rekor2-no-inclusion-proof_fail': 'malformed-bundle',
  'rekor2-no-timestamp_fail': 'timestamp-invalid',
  'rekor2-timestamp-outside-tsa-cert-validity_fail': 'timestamp-invalid',
  'rekor2-timestamp-payload-mismatch_fail': 'timestamp-invalid',
  'rekor2-timestamp-untrusted-tsa-without-embedded-cert_fail': 'timestamp-invalid',
  'rekor2-timestamp-with-incorrect-time_fail': 'certificate-invalid',
  // The log entry (checked before the signature, as @sigstore/verify orders it) holds the true signature.
  'signature-mismatch_fail': 'tlog-invalid',
  'wrong-hashedrekord-artifact_fail': 'tlog-invalid',
  'wrong-hashedrekord-entry_fail': 'tlog-invalid',
  'wrong-material_fail': 'digest-mismatch',
};

const cases = readdirSync(CONF, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name)
  .sort();

test('conformance: the shared part holds the 47 cases', () => {
  assert.equal(cases.length, 47);
});

for (const c of cases) {
  const bundle = caseFile(c, 'bundle.sigstore.json')!;
  const artifact = caseFile(c, 'artifact') ?? readShared('fixtures/sigstore-conformance/bundle-verify/a.txt');
  const mustFail = c.endsWith('_fail');
  const keyPem = caseFile(c, 'key.pub');
  const rootBytes = caseFile(c, 'trusted_root.json');
  const keyless = keylessCase(bundle);

  test(`conformance ${c}: ${mustFail ? 'fails' : 'verifies'}${keyless ? ' (keyless)' : ''}`, () => {
    let root;
    try {
      root = rootBytes === undefined ? PUBLIC_GOOD_ROOT : loadTrustedRoot(rootBytes);
    } catch (err) {
      assert.ok(mustFail, `trusted root refused: ${(err as Error).message}`);
      assert.ok(err instanceof TrustedRootError);
      conformance.failedAsExpected++;
      return;
    }
    let keys: TrustedKey[] = [];
    if (keyPem !== undefined) {
      try {
        keys = [{ name: 'case-key', key: parsePublicKeyPem(keyPem.toString('utf8')) }];
      } catch {
        // managed-key-wrong-key_fail ships a corrupted key.pub; the rule then trusts an unrelated key.
        assert.ok(mustFail, 'key.pub does not parse');
        keys = [stranger.trusted()];
      }
    }
    // The case's expected identity (its `identity` / `issuer` files, else the conformance defaults), exact.
    const identities = compileIdentityRules([
      {
        issuer: caseFile(c, 'issuer')?.toString('utf8').trim() ?? CONF_ISSUER,
        subject: caseFile(c, 'identity')?.toString('utf8').trim() ?? CONF_IDENTITY,
      },
    ]);
    const v = verifySigstoreBundle(
      { bundle, digest: sha256(artifact), artifact, keys, identities },
      { tlog: 'required', trustedRoot: root, now: NOW },
    );
    // A DSSE bundle's artifact is its in-toto statement's subject.
    const ok = v.ok && (v.content !== 'dsse' || statementNames(v.payload!, artifact));
    const expected = CONFORMANCE_REASONS[c];
    if (mustFail) {
      assert.equal(ok, false, `${c} must fail`);
      if (expected !== undefined) {
        assert.equal(v.ok, false, `${c}: expected ${expected}`);
        if (!v.ok) assert.equal(v.reason, expected, v.message);
      }
      conformance.failedAsExpected++;
    } else {
      assert.equal(ok, true, v.ok ? 'statement subject mismatch' : v.message);
      if (v.ok && keyless) {
        assert.equal(v.signers[0]!.kind, 'identity');
        assert.equal(
          v.signers[0]!.certificate!.identity.subject,
          caseFile(c, 'identity')?.toString('utf8').trim() ?? CONF_IDENTITY,
        );
      }
      conformance.passedAsExpected++;
    }
  });
}

test('conformance: counts', () => {
  // Runs after the cases above (node:test runs top-level tests in order).
  console.log(
    `sigstore-conformance bundle-verify (shared part): ${conformance.passedAsExpected} passed as expected, ${conformance.failedAsExpected} failed as expected, 0 wrong (a wrong one fails its test)`,
  );
  assert.equal(conformance.passedAsExpected + conformance.failedAsExpected, cases.length);
});

test('conformance managed-key-and-trusted-root: key, hashedrekord 0.0.1 with SET and inclusion proof verified against its root', () => {
  const c = 'managed-key-and-trusted-root';
  const artifact = readShared('fixtures/sigstore-conformance/bundle-verify/a.txt');
  const input = {
    bundle: caseFile(c, 'bundle.sigstore.json')!,
    digest: sha256(artifact),
    artifact,
    keys: [
      {
        name: 'managed',
        key: parsePublicKeyPem(caseFile(c, 'key.pub')!.toString('utf8')),
        identity: 'team-a',
      },
    ],
  };
  const root = loadTrustedRoot(caseFile(c, 'trusted_root.json')!);
  const v = verifyBundle(input, { tlog: 'required', trustedRoot: root, now: NOW });
  assert.equal(v.ok, true, v.message);
  if (v.ok) {
    assert.equal(v.tlog, 'verified');
    assert.equal(v.content, 'message-signature');
    assert.deepEqual(
      v.signers.map((s) => [s.name, s.identity]),
      [['managed', 'team-a']],
    );
  }
  // The same bundle against a root that does not trust its log: the entry is refused, never skipped.
  expectFail(
    verifyBundle(input, { tlog: 'optional', trustedRoot: PUBLIC_GOOD_ROOT, now: NOW }),
    'tlog-invalid',
  );
  // No root configured and tlog optional: the entry is ignored (not trusted as it comes).
  const ignored = verifyBundle(input, noRoot);
  assert.equal(ignored.ok, true, ignored.message);
  if (ignored.ok) assert.equal(ignored.tlog, 'ignored');
  // A tampered SET and proof: refused.
  const doc = JSON.parse(input.bundle.toString('utf8'));
  const entry = doc.verificationMaterial.tlogEntries[0];
  entry.inclusionPromise.signedEntryTimestamp = b64(new Uint8Array(70).fill(1));
  expectFail(
    verifyBundle({ ...input, bundle: enc(doc) }, { tlog: 'required', trustedRoot: root, now: NOW }),
    'tlog-invalid',
  );
  // An entry for another artifact (body mismatch): refused.
  const doc2 = JSON.parse(input.bundle.toString('utf8'));
  doc2.verificationMaterial.tlogEntries[0].logIndex = '1';
  const body = JSON.parse(
    Buffer.from(doc2.verificationMaterial.tlogEntries[0].canonicalizedBody, 'base64').toString(),
  );
  body.spec.data.hash.value = '0'.repeat(64);
  doc2.verificationMaterial.tlogEntries[0].canonicalizedBody = b64(enc(body));
  expectFail(
    verifyBundle({ ...input, bundle: enc(doc2) }, { tlog: 'required', trustedRoot: root, now: NOW }),
    'tlog-invalid',
  );
  // Without the manifest bytes a message signature cannot be checked.
  expectFail(verifyBundle({ ...input, artifact: undefined }, noRoot), 'unsupported-bundle');
});

test('conformance managed-key-no-key_fail: no key trusted', () => {
  const artifact = readShared('fixtures/sigstore-conformance/bundle-verify/a.txt');
  const bundle = caseFile('managed-key-no-key_fail', 'bundle.sigstore.json')!;
  expectFail(verifyBundle({ bundle, digest: sha256(artifact), artifact, keys: [] }, noRoot), 'untrusted-key');
});

test('conformance managed-key-wrong-key_fail: its key.pub is refused, and another key does not verify', () => {
  assert.throws(() => parsePublicKeyPem(caseFile('managed-key-wrong-key_fail', 'key.pub')!.toString('utf8')));
  const artifact = readShared('fixtures/sigstore-conformance/bundle-verify/a.txt');
  const bundle = caseFile('managed-key-wrong-key_fail', 'bundle.sigstore.json')!;
  expectFail(
    verifyBundle(
      { bundle, digest: sha256(artifact), artifact, keys: [stranger.trusted(), ed.trusted()] },
      noRoot,
    ),
    'untrusted-key',
  );
});

test('conformance trust-root-tlog-missing-validity-start_fail: the trusted root is refused', () => {
  assert.throws(
    () => loadTrustedRoot(caseFile('trust-root-tlog-missing-validity-start_fail', 'trusted_root.json')!),
    /validFor\.start/,
  );
});

test('conformance bundle-unknown-version_fail: media type version 99.9 is refused by the allow list', () => {
  const v = verifyBundle(
    {
      bundle: caseFile('bundle-unknown-version_fail', 'bundle.sigstore.json')!,
      digest: DIGEST,
      keys: [ec.trusted()],
    },
    noRoot,
  );
  expectFail(v, 'malformed-bundle');
  assert.match(v.message, /media type/);
});

// ---- sigstore-go ---------------------------------------------------------------------------------

test('sigstore-go public-key-validity: a key-signed message signature (v0.3, RFC 3161 timestamp, no tlog)', () => {
  const bundle = readShared('fixtures/sigstore-go/bundles/public-key-validity.sigstore.json');
  const key = parsePublicKeyPem(
    readShared('fixtures/sigstore-go/public-keys/public-key-validity.pem').toString('utf8'),
  );
  const artifact = new TextEncoder().encode('test content');
  const input = { bundle, digest: sha256(artifact), artifact, keys: [{ name: 'pkv', key }] };
  // The hint is sha256(SPKI) in base64, as cosign computes it.
  assert.equal(publicKeyHint(key), 'IpekKjxVkmTfB4YqY8q5sGEAeVtF9x3m7jHdhAxpgjQ=');
  const v = verifyBundle(input, noRoot);
  assert.equal(v.ok, true, v.message);
  // Upstream: trusted only for 1970-01-01T00:00:00–00:00:01 → fail (upstream against the signed time, here at now).
  expectFail(
    verifyBundle(
      { ...input, keys: [{ name: 'pkv', key, notBefore: new Date(0), notAfter: new Date(1000) }] },
      noRoot,
    ),
    'expired-key',
  );
  expectFail(verifyBundle({ ...input, keys: [{ name: 'pkv', key, revoked: true }] }, noRoot), 'revoked-key');
  // tlog required: the bundle has no Rekor entry.
  expectFail(
    verifyBundle(input, { tlog: 'required', trustedRoot: PUBLIC_GOOD_ROOT, now: NOW }),
    'tlog-missing',
  );
  // Another artifact: the message digest is not this digest.
  expectFail(verifyBundle({ ...input, digest: DIGEST, artifact: MANIFEST }, noRoot), 'digest-mismatch');
});

test('sigstore-go dsse-2sigs: a DSSE envelope with two signatures is refused', () => {
  const v = verifyBundle(
    {
      bundle: readShared('fixtures/sigstore-go/bundles/dsse-2sigs.sigstore.json'),
      digest: DIGEST,
      keys: [ec.trusted()],
    },
    noRoot,
  );
  expectFail(v, 'malformed-bundle');
  assert.match(v.message, /exactly one signature/);
});

const GO_ROOT = loadTrustedRoot(readShared('fixtures/sigstore-go/trusted-roots/public-good.json'));
const SIGSTORE_JS_RELEASE =
  'https://github.com/sigstore/sigstore-js/.github/workflows/release.yml@refs/heads/main';
const GITHUB_ISSUER = 'https://token.actions.githubusercontent.com';

test('sigstore-go sigstore.js@2.0.0-provenance: keyless, verifies with its real identity against public good; refused for another identity or issuer; never a signature', () => {
  const bundle = readShared('fixtures/sigstore-go/bundles/sigstore.js@2.0.0-provenance.sigstore.json');
  const digest = DIGEST; // DSSE: the digest is only used for message signatures and the statement.
  const run = (identities: Parameters<typeof compileIdentityRules>[0], roots = [GO_ROOT]) =>
    verifySigstoreBundle(
      { bundle, digest, keys: [], identities: compileIdentityRules(identities) },
      {
        tlog: roots.length > 0 ? 'required' : 'optional',
        trustedRoots: roots,
        now: NOW,
      },
    );
  for (const root of [GO_ROOT, PUBLIC_GOOD_ROOT]) {
    const v = run([{ issuer: GITHUB_ISSUER, subject: SIGSTORE_JS_RELEASE }], [root]);
    assert.equal(v.ok, true, v.ok ? '' : v.message);
    if (v.ok) {
      const cert = v.signers[0]!.certificate!;
      assert.equal(cert.identity.subject, SIGSTORE_JS_RELEASE);
      assert.equal(cert.identity.issuer, GITHUB_ISSUER);
      assert.equal(cert.identity.subjectType, 'uri');
      assert.equal(cert.identity.github.repository, 'sigstore/sigstore-js');
      assert.equal(cert.identity.github.workflowRef, 'refs/heads/main');
      assert.equal(cert.identity.github.trigger, 'push');
      assert.match(cert.identity.github.sha ?? '', /^[0-9a-f]{40}$/);
      assert.equal(v.payloadType, IN_TOTO_PAYLOAD_TYPE);
      assert.equal(cert.signingTimes.length, 1);
    }
  }
  // An anchored regular expression over the same identity; GitHub claims pinned.
  const re = run([
    {
      issuerRegExp: 'https://token\\.actions\\.githubusercontent\\.com',
      subjectRegExp:
        'https://github\\.com/sigstore/sigstore-js/\\.github/workflows/release\\.yml@refs/heads/.*',
      github: { repository: 'sigstore/sigstore-js', workflowRef: 'refs/heads/main' },
    },
  ]);
  assert.equal(re.ok, true, re.ok ? '' : re.message);
  // Another subject (sigstore-go's BadSANValue), another issuer, a claim that differs, an unanchored prefix.
  for (const rule of [
    { issuer: GITHUB_ISSUER, subject: 'BadSANValue' },
    { issuer: 'https://accounts.google.com', subject: SIGSTORE_JS_RELEASE },
    { issuer: GITHUB_ISSUER, subject: SIGSTORE_JS_RELEASE, github: { repository: 'acme/app' } },
    { issuer: GITHUB_ISSUER, subjectRegExp: 'https://github\\.com/sigstore' },
  ]) {
    const v = run([rule]);
    expectFail(v as BundleVerdict, 'untrusted-identity');
    assert.match(
      v.ok ? '' : v.message,
      /signed by https:\/\/github\.com\/sigstore\/sigstore-js\/.*release\.yml@refs\/heads\/main \(issuer https:\/\/token\.actions\.githubusercontent\.com\)/,
    );
    assert.match(v.ok ? '' : v.message, /expected: issuer/);
  }
  // No trusted root: refused.
  expectFail(
    run([{ issuer: GITHUB_ISSUER, subject: SIGSTORE_JS_RELEASE }], []) as BundleVerdict,
    'no-trusted-root',
  );
  // A root that does not hold its Fulcio CA (the scaffolding one): refused.
  const scaffolding = loadTrustedRoot(readShared('fixtures/sigstore-go/trusted-roots/scaffolding.json'));
  expectFail(
    run([{ issuer: GITHUB_ISSUER, subject: SIGSTORE_JS_RELEASE }], [scaffolding]) as BundleVerdict,
    'certificate-invalid',
  );
  // Both roots: the one that verifies wins.
  assert.equal(
    run([{ issuer: GITHUB_ISSUER, subject: SIGSTORE_JS_RELEASE }], [scaffolding, GO_ROOT]).ok,
    true,
  );
  // As an image signature: an SLSA provenance attestation is never a signature.
  expectFail(
    verifyBundle(
      {
        bundle,
        digest,
        keys: [],
        identities: compileIdentityRules([{ issuer: GITHUB_ISSUER, subject: SIGSTORE_JS_RELEASE }]),
      },
      { tlog: 'required', trustedRoot: GO_ROOT, now: NOW },
    ),
    'attestation-not-signature',
  );
});

test('sigstore-go examples/bundle-provenance.json: v0.1 with leaf, intermediate and the trusted root itself: verifies (the root is the trusted one)', () => {
  const v = verifySigstoreBundle(
    {
      bundle: readShared('fixtures/sigstore-go/examples/bundle-provenance.json'),
      digest: DIGEST,
      keys: [],
      identities: compileIdentityRules([{ issuer: GITHUB_ISSUER, subject: SIGSTORE_JS_RELEASE }]),
    },
    { tlog: 'required', trustedRoot: GO_ROOT, now: NOW },
  );
  assert.equal(v.ok, true, v.ok ? '' : v.message);
});

test('sigstore-go dsse.sigstore.json: an email identity (GitHub OAuth) with SET only, verified and matched by email', () => {
  const bundle = readShared('fixtures/sigstore-go/bundles/dsse.sigstore.json');
  const v = verifySigstoreBundle(
    {
      bundle,
      digest: DIGEST,
      keys: [],
      identities: compileIdentityRules([
        { issuer: 'https://github.com/login/oauth', subject: 'brian@dehamer.com' },
      ]),
    },
    { tlog: 'required', trustedRoot: GO_ROOT, now: NOW },
  );
  assert.equal(v.ok, true, v.ok ? '' : v.message);
  if (v.ok) assert.equal(v.signers[0]!.certificate!.identity.subjectType, 'email');
});

test('sigstore-go othername.sigstore.json: the username otherName SAN and issuer are read; the message signature needs the artifact bytes', () => {
  const doc = JSON.parse(readShared('fixtures/sigstore-go/bundles/othername.sigstore.json').toString('utf8'));
  const cert = X509Certificate.parse(Buffer.from(doc.verificationMaterial.certificate.rawBytes, 'base64'));
  const id = certificateIdentity(cert);
  assert.ok(typeof id !== 'string', String(id));
  if (typeof id !== 'string') {
    assert.equal(id.subject, 'foo!oidc.local');
    assert.equal(id.subjectType, 'othername');
    assert.equal(id.issuer, 'http://oidc.local:8080');
    assert.equal(
      compileIdentityRules([{ issuer: 'http://oidc.local:8080', subject: 'foo!oidc.local' }])[0]!.matches(id),
      true,
    );
    assert.equal(
      compileIdentityRules([{ issuer: 'http://oidc.local:8080', subject: 'foo@oidc.local' }])[0]!.matches(id),
      false,
    );
  }
  // Upstream verifies by digest; trustgate verifies a message signature over the bytes it serves.
  const digest = 'sha256:bc103b4a84971ef6459b294a2b98568a2bfb72cded09d4acd1e16366a401f95b';
  expectFail(
    verifyBundle(
      { bundle: readShared('fixtures/sigstore-go/bundles/othername.sigstore.json'), digest, keys: [] },
      noRoot,
    ),
    'unsupported-bundle',
  );
});

test('sigstore-go examples/bundle-publish.json: npm publish attestation, key-signed: an attestation, not a signature', () => {
  const bundle = readShared('fixtures/sigstore-go/examples/bundle-publish.json');
  const key = parsePublicKeyPem(readShared('fixtures/sigstore-go/examples/publish_key.pub').toString('utf8'));
  // The hint "SHA256:…" is npm's keyid spelling: it selects nothing, and the key is still tried.
  const v = verifyBundle(
    { bundle, digest: DIGEST, keys: [stranger.trusted(), { name: 'npm', key }] },
    { tlog: 'required', trustedRoot: PUBLIC_GOOD_ROOT, now: NOW },
  );
  expectFail(v, 'attestation-not-signature');
  assert.match(v.message, /npm/);
  expectFail(verifyBundle({ bundle, digest: DIGEST, keys: [stranger.trusted()] }, noRoot), 'untrusted-key');
});

// ---- cosign -------------------------------------------------------------------------------------

test('cosign oci-attestation.sigstore.json (v3 attestation, keyless): verifies as an attestation with trusted_root_pgi.json for cody@soyland.com; never a signature', () => {
  const raw = readShared('fixtures/cosign/oci-attestation.sigstore.json');
  const subject = 'sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4';
  const pgi = loadTrustedRoot(readShared('fixtures/cosign/trusted_root_pgi.json'));
  const opts = { tlog: 'required', trustedRoot: pgi, now: NOW } as const;
  const any = compileIdentityRules([{ issuerRegExp: '.*', subjectRegExp: '.*' }]);
  const v = verifySigstoreBundle({ bundle: raw, digest: subject, keys: [], identities: any }, opts);
  assert.equal(v.ok, true, v.ok ? '' : v.message);
  if (v.ok) {
    assert.equal(v.signers[0]!.certificate!.identity.subject, 'cody@soyland.com');
    assert.equal(v.signers[0]!.certificate!.identity.issuer, 'https://github.com/login/oauth');
  }
  // cosign's "wrong" subject regexp: refused, naming what was found.
  const wrong = verifySigstoreBundle(
    {
      bundle: raw,
      digest: subject,
      keys: [],
      identities: compileIdentityRules([{ issuerRegExp: '.*', subjectRegExp: 'wrong' }]),
    },
    opts,
  );
  expectFail(wrong as BundleVerdict, 'untrusted-identity');
  assert.match(wrong.ok ? '' : wrong.message, /cody@soyland\.com/);
  // As a signature of its subject: an attestation, never a signature.
  const sig = verifyBundle({ bundle: raw, digest: subject, keys: [ec.trusted()], identities: any }, opts);
  expectFail(sig, 'attestation-not-signature');
  assert.match(sig.message, /cosign\.sigstore\.dev\/attestation\/v1/);
  // A key never admits a keyless bundle (the certificate's key is not looked at).
  expectFail(
    verifyBundle({ bundle: raw, digest: subject, keys: [ec.trusted()] }, opts),
    'untrusted-identity',
  );
});

test('cosign trusted_root_pgi.json and the public-good root load; a root without tlogs is refused', () => {
  const pgi = loadTrustedRoot(readShared('fixtures/cosign/trusted_root_pgi.json'));
  assert.ok(pgi.tlogCount >= 1);
  assert.ok(PUBLIC_GOOD_ROOT.tlogCount >= 1);
  assert.throws(
    () => loadTrustedRoot(readShared('fixtures/sigstore-go/trusted-roots/public-key-validity.json')),
    /tlogs/,
  );
  assert.throws(() => loadTrustedRoot(enc({ mediaType: 'x' })), TrustedRootError);
  assert.throws(
    () => loadTrustedRoot(new TextEncoder().encode('{"mediaType":"a","mediaType":"b"}')),
    /duplicate/,
  );
});

// ---- the writer and generated bundles -----------------------------------------------------------

for (const k of [ec, ed]) {
  test(`writer (${k.pub.alg}): a trustgate-written bundle verifies for its digest, and for no other`, () => {
    const bundle = buildCosignSignBundle(DIGEST, k.signer);
    const v = verify(bundle, [stranger.trusted(), k.trusted({ identity: 'publisher-x' })]);
    assert.equal(v.ok, true, v.message);
    if (v.ok) {
      assert.equal(v.content, 'dsse');
      assert.equal(v.tlog, 'ignored');
      assert.equal(v.mediaType, 'application/vnd.dev.sigstore.bundle.v0.3+json');
      assert.deepEqual(
        v.signers.map((s) => s.identity),
        ['publisher-x'],
      );
    }
    expectFail(verify(buildCosignSignBundle(OTHER_DIGEST, k.signer), [k.trusted()]), 'digest-mismatch');
    expectFail(verify(bundle, [stranger.trusted()]), 'untrusted-key');
    expectFail(verify(bundle, []), 'untrusted-key');
    // tlog required: a written bundle has no Rekor entry.
    expectFail(
      verify(bundle, [k.trusted()], { tlog: 'required', trustedRoot: PUBLIC_GOOD_ROOT }),
      'tlog-missing',
    );
    // tlog optional with a root: no entries is fine.
    const opt = verify(bundle, [k.trusted()], { tlog: 'optional', trustedRoot: PUBLIC_GOOD_ROOT });
    assert.equal(opt.ok && opt.tlog, 'absent');
  });
}

test('writer: Ed25519 keys sign Ed25519ph (as cosign 3 verifies bundles), not pure Ed25519', () => {
  const doc = JSON.parse(Buffer.from(buildCosignSignBundle(DIGEST, ed.signer)).toString('utf8'));
  const payload = Buffer.from(doc.dsseEnvelope.payload, 'base64');
  const sig = new Uint8Array(Buffer.from(doc.dsseEnvelope.signatures[0].sig, 'base64'));
  const pae = new Uint8Array(dsse.preAuthEncoding(IN_TOTO_PAYLOAD_TYPE, payload));
  assert.ok(ed.pub.alg === 'ed25519');
  if (ed.pub.alg === 'ed25519') {
    assert.equal(verifyEd25519ph(ed.pub.raw, pae, sig), true);
    assert.equal(verifyEd25519Pure(ed.pub.raw, pae, sig), false);
  }
  // A pure Ed25519 bundle signature is accepted too (verify.ts: both modes for an Ed25519 key).
  const pure: BundleSigner = { publicKey: ed.pub, sign: (m) => new Uint8Array(nodeSign(null, m, ed.priv)) };
  assert.equal(verify(enc(dsseBundle(signStatement(HEX), pure)), [ed.trusted()]).ok, true);
});

test('writer: the bundle layout is what cosign 3 writes, and @sigstore/bundle + @sigstore/verify accept it (ECDSA)', () => {
  const bundle = buildCosignSignBundle(DIGEST, ec.signer);
  const doc = JSON.parse(Buffer.from(bundle).toString('utf8'));
  assert.deepEqual(Object.keys(doc), ['mediaType', 'verificationMaterial', 'dsseEnvelope']);
  assert.deepEqual(doc.verificationMaterial, { publicKey: { hint: publicKeyHint(ec.pub) } });
  assert.deepEqual(Object.keys(doc.dsseEnvelope), ['payload', 'payloadType', 'signatures']);
  assert.equal(
    Buffer.from(doc.dsseEnvelope.payload, 'base64').toString('utf8'),
    `{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"${HEX}"},"annotations":{}}],` +
      `"predicateType":"https://sigstore.dev/cosign/sign/v1","predicate":{}}`,
  );
  // Independent check: sigstore-js's own verifier (node crypto) accepts the signature for the key.
  const parsed = bundleFromJSON(doc);
  const keyObject = ec.priv; // node derives the public half
  const material = toTrustMaterial(
    TrustedRoot.fromJSON({ tlogs: [], ctlogs: [], certificateAuthorities: [], timestampAuthorities: [] }),
    () => ({
      publicKey: keyObject,
      validFor: () => true,
    }),
  );
  const verifier = new Verifier(material, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 });
  assert.doesNotThrow(() => verifier.verify(toSignedEntity(parsed)));
});

test('referrer manifest: exactly cosign 3 layout (artifactType, empty config, one bundle layer, subject, annotations)', () => {
  const bundle = buildCosignSignBundle(DIGEST, ec.signer);
  const r = buildBundleReferrerManifest({
    bundle,
    subject: {
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest: DIGEST,
      size: MANIFEST.length,
    },
    created: new Date('2026-02-03T04:05:06.789Z'),
  });
  const bt = 'application/vnd.dev.sigstore.bundle.v0.3+json';
  const expected =
    `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
    `"config":{"mediaType":"application/vnd.oci.empty.v1+json","size":2,` +
    `"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","artifactType":"${bt}"},` +
    `"layers":[{"mediaType":"${bt}","size":${bundle.length},"digest":"${sha256(bundle)}"}],` +
    `"annotations":{"dev.sigstore.bundle.content":"dsse-envelope",` +
    `"dev.sigstore.bundle.predicateType":"https://sigstore.dev/cosign/sign/v1",` +
    `"org.opencontainers.image.created":"2026-02-03T04:05:06Z"},` +
    `"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":${MANIFEST.length},"digest":"${DIGEST}"},` +
    `"artifactType":"${bt}"}`;
  assert.equal(Buffer.from(r.manifest).toString('utf8'), expected);
  assert.equal(r.digest, sha256(r.manifest));
  assert.deepEqual(
    r.blobs.map((b) => [b.descriptor.digest, b.descriptor.size, sha256(b.bytes), b.bytes.length]),
    [
      [
        'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a',
        2,
        'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a',
        2,
      ],
      [sha256(bundle), bundle.length, sha256(bundle), bundle.length],
    ],
  );
});

test('statement shapes: cosign 3.0.0 {digest}, 3.0.3 +annotations, 3.0.5 +predicate {} all verify', () => {
  for (const shape of ['plain', 'annotations', 'predicate'] as const) {
    const v = verify(enc(dsseBundle(signStatement(HEX, shape), ec.signer)), [ec.trusted()]);
    assert.equal(v.ok, true, `${shape}: ${v.message}`);
  }
  // Signing annotations (cosign sign -a) are allowed.
  assert.equal(verify(buildCosignSignBundle(DIGEST, ec.signer, { team: 'a' }), [ec.trusted()]).ok, true);
  // A subject list that names this digest among others.
  const multi = {
    ...(signStatement(HEX) as object),
    subject: [{ digest: { sha256: OTHER_DIGEST.slice(7) } }, { digest: { sha256: HEX } }],
  };
  assert.equal(verify(enc(dsseBundle(multi, ec.signer)), [ec.trusted()]).ok, true);
});

test('statement policy: attestations, other statement versions and odd shapes are refused', () => {
  const slsa = JSON.parse(readShared('fixtures/sigstore-conformance/statement.json').toString('utf8'));
  slsa.subject = [{ name: 'image', digest: { sha256: HEX } }];
  expectFail(verify(enc(dsseBundle(slsa, ec.signer)), [ec.trusted()]), 'attestation-not-signature');
  const vuln = {
    ...(signStatement(HEX) as object),
    predicateType: 'https://cosign.sigstore.dev/attestation/vuln/v1',
  };
  expectFail(verify(enc(dsseBundle(vuln, ec.signer)), [ec.trusted()]), 'attestation-not-signature');
  const v01 = { ...(signStatement(HEX) as object), _type: 'https://in-toto.io/Statement/v0.1' };
  expectFail(verify(enc(dsseBundle(v01, ec.signer)), [ec.trusted()]), 'malformed-signature');
  const pred = { ...(signStatement(HEX) as object), predicate: { x: 1 } };
  expectFail(verify(enc(dsseBundle(pred, ec.signer)), [ec.trusted()]), 'malformed-signature');
  const upper = signStatement(HEX.toUpperCase());
  expectFail(verify(enc(dsseBundle(upper, ec.signer)), [ec.trusted()]), 'malformed-signature');
  const dup = new TextEncoder().encode(
    `{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"${OTHER_DIGEST.slice(7)}","sha256":"${HEX}"}}],"predicateType":"${COSIGN_SIGN_PREDICATE_TYPE}"}`,
  );
  expectFail(verify(enc(dsseBundle(dup, ec.signer)), [ec.trusted()]), 'malformed-signature');
  expectFail(
    verify(enc(dsseBundle(signStatement(HEX), ec.signer, { payloadType: 'text/plain' })), [ec.trusted()]),
    'unsupported-bundle',
  );
});

test('hint is only a selector: a wrong or foreign hint does not stop the right key, and does not authorise the named key', () => {
  const wrongHint = enc(dsseBundle(signStatement(HEX), ec.signer, { hint: publicKeyHint(stranger.pub) }));
  const v = verify(wrongHint, [stranger.trusted(), ec.trusted()]);
  assert.equal(v.ok, true, v.message);
  if (v.ok)
    assert.deepEqual(
      v.signers.map((s) => s.name),
      ['release-ec'],
    );
  expectFail(verify(wrongHint, [stranger.trusted()]), 'untrusted-key');
  assert.equal(verify(enc(dsseBundle(signStatement(HEX), ec.signer, { hint: '' })), [ec.trusted()]).ok, true);
});

test('tampering: payload, signature and envelope changes are refused', () => {
  const doc = JSON.parse(Buffer.from(buildCosignSignBundle(DIGEST, ec.signer)).toString('utf8'));
  const payload = Buffer.from(doc.dsseEnvelope.payload, 'base64')
    .toString('utf8')
    .replace(HEX, OTHER_DIGEST.slice(7));
  const tampered = {
    ...doc,
    dsseEnvelope: { ...doc.dsseEnvelope, payload: b64(new TextEncoder().encode(payload)) },
  };
  expectFail(verify(enc(tampered), [ec.trusted()]), 'untrusted-key');
  const sig = Buffer.from(doc.dsseEnvelope.signatures[0].sig, 'base64');
  sig[sig.length - 1] = sig[sig.length - 1]! ^ 1;
  const badSig = { ...doc, dsseEnvelope: { ...doc.dsseEnvelope, signatures: [{ sig: b64(sig) }] } };
  expectFail(verify(enc(badSig), [ec.trusted()]), 'untrusted-key');
  const typ = { ...doc, dsseEnvelope: { ...doc.dsseEnvelope, payloadType: 'application/vnd.in-toto+json ' } };
  expectFail(verify(enc(typ), [ec.trusted()]), 'unsupported-bundle');
});

test('keys: revoked and out-of-window keys are refused; one key under two names has one fingerprint', () => {
  const bundle = buildCosignSignBundle(DIGEST, ec.signer);
  expectFail(verify(bundle, [ec.trusted({ revoked: true })]), 'revoked-key');
  expectFail(verify(bundle, [ec.trusted({ notAfter: new Date('2026-01-01T00:00:00Z') })]), 'expired-key');
  expectFail(verify(bundle, [ec.trusted({ notBefore: new Date('2027-01-01T00:00:00Z') })]), 'expired-key');
  // The same key under two names: both are reported, with one fingerprint, for the threshold to count once.
  const v = verify(bundle, [ec.trusted(), { name: 'copy', key: ec.pub }]);
  assert.equal(v.ok, true);
  if (v.ok) {
    assert.equal(v.signers.length, 2);
    assert.equal(new Set(v.signers.map((s) => s.fingerprint)).size, 1);
  }
});

test('malformed input: size, JSON strictness, fields, base64, media types, content', () => {
  const good = JSON.parse(Buffer.from(buildCosignSignBundle(DIGEST, ec.signer)).toString('utf8'));
  const k = [ec.trusted()];
  // Oversized, by default and with maxBytes.
  const big = { ...good, pad: 'x' };
  const huge = new TextEncoder().encode(JSON.stringify(good) + ' '.repeat(MAX_BUNDLE_BYTES));
  expectFail(verify(huge, k), 'malformed-bundle');
  expectFail(verify(buildCosignSignBundle(DIGEST, ec.signer), k, { maxBytes: 100 }), 'malformed-bundle');
  expectFail(verify(enc(big), k), 'malformed-bundle');
  // Duplicate and case-variant keys.
  const text = JSON.stringify(good);
  const dupMedia = text.replace(
    '{"mediaType":',
    '{"mediaType":"application/vnd.dev.sigstore.bundle+json;version=0.1","mediaType":',
  );
  expectFail(verify(new TextEncoder().encode(dupMedia), k), 'malformed-bundle');
  const dupEnv = text.replace('"dsseEnvelope":', '"DsseEnvelope":{},"dsseEnvelope":');
  expectFail(verify(new TextEncoder().encode(dupEnv), k), 'malformed-bundle');
  const dupPayload = text.replace('"payload":', `"payload":"${b64(enc({}))}","payload":`);
  expectFail(verify(new TextEncoder().encode(dupPayload), k), 'malformed-bundle');
  expectFail(verify(new TextEncoder().encode(text.slice(0, -3)), k), 'malformed-bundle');
  expectFail(verify(new Uint8Array([0xff, 0xfe]), k), 'malformed-bundle');
  // snake_case (protojson reads it too) and unknown fields.
  const { dsseEnvelope, ...rest } = good;
  expectFail(verify(enc({ ...rest, dsse_envelope: dsseEnvelope }), k), 'malformed-bundle');
  expectFail(
    verify(enc({ ...good, verificationMaterial: { ...good.verificationMaterial, extra: 1 } }), k),
    'malformed-bundle',
  );
  // Both contents, no content, two key materials.
  expectFail(
    verify(
      enc({
        ...good,
        messageSignature: {
          messageDigest: { algorithm: 'SHA2_256', digest: b64(new Uint8Array(32)) },
          signature: b64(new Uint8Array(8)),
        },
      }),
      k,
    ),
    'malformed-bundle',
  );
  expectFail(verify(enc(rest), k), 'malformed-bundle');
  expectFail(
    verify(
      enc({
        ...good,
        verificationMaterial: { ...good.verificationMaterial, certificate: { rawBytes: 'AAAA' } },
      }),
      k,
    ),
    'malformed-bundle',
  );
  // Non-canonical base64 (unpadded) in the signature.
  const sig = good.dsseEnvelope.signatures[0].sig.replace(/=+$/, '');
  if (sig !== good.dsseEnvelope.signatures[0].sig) {
    expectFail(
      verify(enc({ ...good, dsseEnvelope: { ...dsseEnvelope, signatures: [{ sig }] } }), k),
      'malformed-bundle',
    );
  }
  expectFail(
    verify(enc({ ...good, dsseEnvelope: { ...dsseEnvelope, payload: '!!!!' } }), k),
    'malformed-bundle',
  );
  // No / two signatures.
  expectFail(verify(enc({ ...good, dsseEnvelope: { ...dsseEnvelope, signatures: [] } }), k), 'no-signature');
  const s0 = dsseEnvelope.signatures[0];
  expectFail(
    verify(enc({ ...good, dsseEnvelope: { ...dsseEnvelope, signatures: [s0, s0] } }), k),
    'malformed-bundle',
  );
  // Media types: all read, unknown refused.
  for (const mt of [
    'application/vnd.dev.sigstore.bundle+json;version=0.1',
    'application/vnd.dev.sigstore.bundle+json;version=0.2',
    'application/vnd.dev.sigstore.bundle+json;version=0.3',
    'application/vnd.dev.sigstore.bundle.v0.3+json',
  ]) {
    const v = verify(enc({ ...good, mediaType: mt }), k);
    assert.equal(v.ok, true, `${mt}: ${v.message}`);
  }
  for (const mt of [
    'application/vnd.dev.sigstore.bundle.v0.4+json',
    'application/vnd.dev.sigstore.bundle+json;version=0.9',
    'application/json',
  ]) {
    expectFail(verify(enc({ ...good, mediaType: mt }), k), 'malformed-bundle');
  }
  // Keyless material that is no certificate: refused as malformed, never read as a key.
  const { publicKey: _pk, ...vmRest } = good.verificationMaterial;
  expectFail(
    verify(
      enc({
        ...good,
        verificationMaterial: { ...vmRest, certificate: { rawBytes: b64(new Uint8Array(16)) } },
      }),
      k,
    ),
    'malformed-bundle',
  );
  // Too many tlog entries.
  expectFail(
    verify(
      enc({
        ...good,
        verificationMaterial: { ...good.verificationMaterial, tlogEntries: new Array(9).fill({}) },
      }),
      k,
    ),
    'malformed-bundle',
  );
});

test('message signatures over the manifest (cosign sign-blob shape): verified over the exact bytes', () => {
  const sig = ec.signer.sign(MANIFEST);
  const bundle = enc({
    mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
    verificationMaterial: { publicKey: { hint: publicKeyHint(ec.pub) } },
    messageSignature: {
      messageDigest: { algorithm: 'SHA2_256', digest: b64(createHash('sha256').update(MANIFEST).digest()) },
      signature: b64(sig),
    },
  });
  const v = verify(bundle, [ec.trusted()], {}, { artifact: MANIFEST });
  assert.equal(v.ok, true, v.message);
  if (v.ok) assert.equal(v.content, 'message-signature');
  expectFail(verify(bundle, [stranger.trusted()], {}, { artifact: MANIFEST }), 'untrusted-key');
  expectFail(verify(bundle, [ec.trusted()]), 'unsupported-bundle');
  const other = enc({ other: true });
  expectFail(
    verifyBundle({ bundle, digest: sha256(other), artifact: other, keys: [ec.trusted()] }, noRoot),
    'digest-mismatch',
  );
});

test('options are validated at once with a TypeError', () => {
  const bundle = buildCosignSignBundle(DIGEST, ec.signer);
  assert.throws(() => verify(bundle, [], { tlog: 'maybe' as never }), TypeError);
  assert.throws(() => verify(bundle, [], { now: new Date(NaN) }), TypeError);
  assert.throws(() => verifyBundle({ bundle, digest: 'sha256:xyz', keys: [] }, noRoot), TypeError);
  assert.throws(() => verify(bundle, [], {}, { artifact: enc({ not: 'it' }) }), TypeError);
});

test('tlog required with no trusted root available: fails closed (no-trusted-root), after the signature check', () => {
  const bundle = buildCosignSignBundle(DIGEST, ec.signer);
  const v = verify(bundle, [ec.trusted()], { tlog: 'required' });
  expectFail(v, 'no-trusted-root');
  assert.match(v.message, /no Sigstore trusted root is available/);
  // A bundle from a key nobody trusts is refused for that, not for the missing root.
  expectFail(verify(bundle, [stranger.trusted()], { tlog: 'required' }), 'untrusted-key');
});

test('failure ranks cover every reason and keep evaluateTrust order (digest-mismatch highest, untrusted-key low)', () => {
  const r = BUNDLE_FAILURE_RANK;
  assert.ok(r['digest-mismatch'] > r['attestation-not-signature']);
  assert.ok(r['attestation-not-signature'] > r['revoked-key']);
  assert.ok(r['revoked-key'] > r['expired-key']);
  assert.ok(r['expired-key'] > r['untrusted-key']);
});
