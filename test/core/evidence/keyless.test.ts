/**
 * Keyless verification (core/evidence/keyless.ts, identity.ts, legacy-keyless.ts, and their use in
 * bundle.ts and trust.ts) with bundles made here by a TEST Sigstore instance (test/helpers/
 * keyless-ca.ts: a generated Fulcio-like CA, CT log and Rekor log, labelled as a test trust root).
 * Real public-good bundles are in bundle.test.ts; these cover what no public fixture can: the
 * image-signature statement over a digest we choose, every refusal path, and the legacy layout.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { verifyBundle, type BundleVerdict } from '../../../src/core/evidence/bundle.js';
import { compileIdentityRules, type IdentityRule } from '../../../src/core/evidence/identity.js';
import { buildCosignSignStatement } from '../../../src/core/evidence/statement.js';
import { loadTrustedRoot } from '../../../src/core/evidence/trusted-root.js';
import { buildSimpleSigningPayload } from '../../../src/core/signature/payload.js';
import { evaluateTrust, type SignatureCandidate } from '../../../src/core/trust.js';
import { parsePublicKeyPem } from '../../../src/core/signature/keys.js';
import { signPayload, generateKeyPair } from '../../../src/core/signature/sign.js';
import { trustRuleSchema, configSchema } from '../../../src/config/schema.js';
import { TestSigstore, type TestIdentity } from '../../helpers/keyless-ca.js';

const NOW = new Date();
const sha256 = (b: Uint8Array): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const MANIFEST = new TextEncoder().encode('{"schemaVersion":2,"layers":[]}');
const DIGEST = sha256(MANIFEST);
const OTHER = sha256(new TextEncoder().encode('other'));

const sigstore = new TestSigstore();
const ROOT = loadTrustedRoot(new TextEncoder().encode(JSON.stringify(sigstore.trustedRoot())));
const elsewhere = new TestSigstore();
const OTHER_ROOT = loadTrustedRoot(new TextEncoder().encode(JSON.stringify(elsewhere.trustedRoot())));

const GH = 'https://token.actions.githubusercontent.com';
const RELEASE = 'https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.2.0';
const releaseId: TestIdentity = {
  issuer: GH,
  subject: RELEASE,
  claims: {
    '2': 'push',
    '3': 'c0ffee'.padEnd(40, '0'),
    '5': 'acme/app',
    '6': 'refs/tags/v1.2.0',
    '11': 'github-hosted',
  },
};
const releaseRule: IdentityRule = {
  issuer: GH,
  subjectRegExp: 'https://github\\.com/acme/app/\\.github/workflows/release\\.yml@refs/tags/.*',
};

function verify(
  bundle: Uint8Array,
  rules: IdentityRule[] = [releaseRule],
  roots = [ROOT],
  digest = DIGEST,
): BundleVerdict {
  return verifyBundle(
    { bundle, digest, keys: [], identities: compileIdentityRules(rules) },
    { tlog: 'optional', trustedRoots: roots, now: NOW },
  );
}
function expectFail(v: BundleVerdict, reason: string, re?: RegExp): void {
  assert.equal(v.ok, false, `expected ${reason}, got: ${v.message}`);
  assert.equal(v.reason, reason, v.message);
  if (re) assert.match(v.message, re);
}
const bundleFor = (digest = DIGEST, id = releaseId, o = {}): Uint8Array =>
  sigstore.dsseBundle(buildCosignSignStatement(digest), id, o);

test('keyless v0.3 bundle from a test Fulcio CA: verifies for a matching identity and returns it as data', () => {
  const v = verify(bundleFor());
  assert.equal(v.ok, true, v.message);
  if (!v.ok) return;
  const s = v.signers[0]!;
  assert.equal(s.kind, 'identity');
  assert.equal(s.certificate!.identity.subject, RELEASE);
  assert.equal(s.certificate!.identity.issuer, GH);
  assert.deepEqual(s.certificate!.identity.github, {
    repository: 'acme/app',
    workflowRef: 'refs/tags/v1.2.0',
    trigger: 'push',
    sha: 'c0ffee'.padEnd(40, '0'),
    runnerEnvironment: 'github-hosted',
  });
  assert.equal(s.certificate!.signingTimes.length, 1);
  assert.match(v.message, /acme\/app.*release\.yml/);
  // GitHub claims pinned: all match; one differs: refused.
  assert.equal(
    verify(bundleFor(), [
      {
        ...releaseRule,
        github: {
          repository: 'acme/app',
          workflowRef: 'refs/tags/v1.2.0',
          trigger: 'push',
          runnerEnvironment: 'github-hosted',
        },
      },
    ]).ok,
    true,
  );
  expectFail(
    verify(bundleFor(), [{ ...releaseRule, github: { runnerEnvironment: 'self-hosted' } }]),
    'untrusted-identity',
  );
});

test('keyless: wrong identity or issuer is refused, naming the identity found and the identities expected', () => {
  const b = bundleFor();
  const v = verify(b, [
    { issuer: GH, subject: 'https://github.com/acme/app/.github/workflows/other.yml@refs/heads/main' },
  ]);
  expectFail(
    v,
    'untrusted-identity',
    /signed by https:\/\/github\.com\/acme\/app\/\.github\/workflows\/release\.yml@refs\/tags\/v1\.2\.0 \(issuer https:\/\/token\.actions\.githubusercontent\.com\)/,
  );
  assert.match(
    v.message,
    /expected: issuer=https:\/\/token\.actions\.githubusercontent\.com subject=https:\/\/github\.com\/acme\/app\/\.github\/workflows\/other\.yml/,
  );
  expectFail(
    verify(b, [{ ...releaseRule, issuer: 'https://accounts.google.com' }]),
    'untrusted-identity',
    /issuer=https:\/\/accounts\.google\.com/,
  );
  // Regular expressions are anchored: a prefix or a substring does not match.
  expectFail(verify(b, [{ issuer: GH, subjectRegExp: 'https://github\\.com/acme/' }]), 'untrusted-identity');
  expectFail(verify(b, [{ issuerRegExp: 'token\\.actions', subjectRegExp: '.*' }]), 'untrusted-identity');
  assert.equal(verify(b, [{ issuerRegExp: 'https://token\\.actions\\..*', subjectRegExp: '.*' }]).ok, true);
  // No identity trusted at all (a key-only rule): a keyless bundle never verifies.
  expectFail(verify(b, []), 'untrusted-identity', /expected: none/);
});

test('keyless: expired certificate (logged after its 10 minutes), no SCT, another instance, no root: refused', () => {
  const at = new Date(Date.now() - 3600_000);
  expectFail(
    verify(bundleFor(DIGEST, releaseId, { at, integratedAt: new Date(at.getTime() + 20 * 60_000) })),
    'certificate-invalid',
    /expired|not valid/,
  );
  expectFail(verify(bundleFor(DIGEST, releaseId, { noSct: true })), 'certificate-invalid', /SCT/);
  expectFail(verify(bundleFor(), [releaseRule], [OTHER_ROOT]), 'certificate-invalid');
  // Several roots: the one that verifies is used.
  assert.equal(verify(bundleFor(), [releaseRule], [OTHER_ROOT, ROOT]).ok, true);
  expectFail(
    verifyBundle(
      { bundle: bundleFor(), digest: DIGEST, keys: [], identities: compileIdentityRules([releaseRule]) },
      { tlog: 'optional', now: NOW },
    ),
    'no-trusted-root',
  );
});

test('keyless: a tampered log entry (SET, body, checkpoint) is refused', () => {
  const doc = JSON.parse(Buffer.from(bundleFor()).toString('utf8'));
  const e = doc.verificationMaterial.tlogEntries[0];
  const tamper = (f: (x: typeof e) => void): Uint8Array => {
    const d = structuredClone(doc);
    f(d.verificationMaterial.tlogEntries[0]);
    return Buffer.from(JSON.stringify(d));
  };
  expectFail(
    verify(tamper((x) => (x.inclusionPromise.signedEntryTimestamp = Buffer.alloc(70, 1).toString('base64')))),
    'tlog-invalid',
  );
  expectFail(
    verify(tamper((x) => (x.integratedTime = String(Number(e.integratedTime) + 1)))),
    'tlog-invalid',
  );
  expectFail(
    verify(
      tamper(
        (x) =>
          (x.inclusionProof.checkpoint.envelope = x.inclusionProof.checkpoint.envelope.replace(
            '\n1\n',
            '\n2\n',
          )),
      ),
    ),
    'tlog-invalid',
  );
  // No log entry at all: keyless always needs one.
  expectFail(
    verify(
      Buffer.from(
        JSON.stringify({ ...doc, verificationMaterial: { ...doc.verificationMaterial, tlogEntries: [] } }),
      ),
    ),
    'tlog-missing',
  );
});

test('keyless: "any valid Rekor entry accepted": a valid entry for another artifact, signature or certificate does not verify', () => {
  const mine = JSON.parse(Buffer.from(bundleFor()).toString('utf8'));
  const theirs = JSON.parse(Buffer.from(bundleFor(OTHER)).toString('utf8'));
  // Their entry is valid (it verifies in their bundle) but for another statement and signature.
  assert.equal(verify(Buffer.from(JSON.stringify(theirs)), [releaseRule], [ROOT], OTHER).ok, true);
  mine.verificationMaterial.tlogEntries = theirs.verificationMaterial.tlogEntries;
  expectFail(verify(Buffer.from(JSON.stringify(mine))), 'tlog-invalid', /mismatch/);
  // The same signature and digest logged with another certificate (same signature bytes, other
  // certificate in the body): @sigstore/verify alone would accept it; trustgate refuses it.
  const other = sigstore.issue(
    generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey,
    { issuer: GH, subject: 'https://evil.example/x' },
    new Date(Date.now() - 60_000),
  );
  expectFail(
    verify(bundleFor(DIGEST, releaseId, { logCertificate: other })),
    'tlog-invalid',
    /another certificate/,
  );
});

test('keyless: a bundle shipping its own root is refused; repeating the trusted root is accepted', () => {
  const doc = JSON.parse(Buffer.from(bundleFor()).toString('utf8'));
  const leaf = doc.verificationMaterial.certificate.rawBytes;
  const withChain = (certs: string[]): Uint8Array =>
    Buffer.from(
      JSON.stringify({
        ...doc,
        mediaType: 'application/vnd.dev.sigstore.bundle+json;version=0.2',
        verificationMaterial: {
          tlogEntries: doc.verificationMaterial.tlogEntries,
          x509CertificateChain: { certificates: certs.map((rawBytes) => ({ rawBytes })) },
        },
      }),
    );
  assert.equal(verify(withChain([leaf, sigstore.caCertificate.toString('base64')])).ok, true);
  expectFail(
    verify(withChain([leaf, elsewhere.caCertificate.toString('base64')])),
    'certificate-invalid',
    /ships its own root/,
  );
});

test('keyless: the statement must name this digest; an attestation is not a signature', () => {
  expectFail(verify(bundleFor(OTHER)), 'digest-mismatch');
  const att = new TextEncoder().encode(
    JSON.stringify({
      _type: 'https://in-toto.io/Statement/v1',
      subject: [{ digest: { sha256: DIGEST.slice(7) } }],
      predicateType: 'https://slsa.dev/provenance/v1',
      predicate: {},
    }),
  );
  expectFail(verify(sigstore.dsseBundle(att, releaseId)), 'attestation-not-signature');
});

// ---- cosign 2.x keyless legacy .sig, and thresholds ----------------------------------------------

function legacyKeyless(repo: string, digest: string, id = releaseId, o = {}): SignatureCandidate {
  const payload = buildSimpleSigningPayload({
    dockerReference: `registry.example/${repo}`,
    manifestDigest: digest,
  });
  return sigstore.legacySignature(payload, id, o);
}
const trustBase = {
  threshold: 1,
  tagBinding: false,
  now: NOW,
  bundleOptions: { tlog: 'optional' as const, trustedRoots: [ROOT] },
};

test('legacy keyless .sig (certificate, chain and Rekor bundle annotations): verified as a v0.1 bundle', () => {
  const identities = compileIdentityRules([releaseRule]);
  const ok = evaluateTrust({
    ...trustBase,
    repo: 'prod/app',
    digest: DIGEST,
    signatures: [legacyKeyless('prod/app', DIGEST)],
    keys: [],
    identities,
  });
  assert.equal(ok.ok, true, ok.message);
  assert.equal(ok.identities?.[0]?.identity.subject, RELEASE);
  // Transplanted from another repository, or over another digest.
  const moved = evaluateTrust({
    ...trustBase,
    repo: 'prod/other',
    digest: DIGEST,
    signatures: [legacyKeyless('prod/app', DIGEST)],
    keys: [],
    identities,
  });
  assert.equal(moved.reason, 'wrong-repository', moved.message);
  const other = evaluateTrust({
    ...trustBase,
    repo: 'prod/app',
    digest: DIGEST,
    signatures: [legacyKeyless('prod/app', OTHER)],
    keys: [],
    identities,
  });
  assert.equal(other.reason, 'digest-mismatch', other.message);
  // Wrong identity: named in the denial, with what was expected.
  const wrong = evaluateTrust({
    ...trustBase,
    repo: 'prod/app',
    digest: DIGEST,
    signatures: [
      legacyKeyless('prod/app', DIGEST, {
        issuer: GH,
        subject: 'https://github.com/evil/x/.github/workflows/a.yml@refs/heads/main',
      }),
    ],
    keys: [],
    identities,
  });
  assert.equal(wrong.reason, 'untrusted-identity', wrong.message);
  assert.match(
    wrong.message,
    /signed by https:\/\/github\.com\/evil\/x\/.*\(expected: issuer=https:\/\/token\.actions\.githubusercontent\.com subject~=/,
  );
  assert.match(wrong.message, /trusted: identity issuer=/);
  // No Rekor bundle annotation: refused (keyless needs a log entry).
  const c = legacyKeyless('prod/app', DIGEST);
  const noLog = evaluateTrust({
    ...trustBase,
    repo: 'prod/app',
    digest: DIGEST,
    signatures: [{ ...c, keyless: { certificate: c.keyless!.certificate } }],
    keys: [],
    identities,
  });
  assert.equal(noLog.ok, false);
  assert.equal(noLog.reason, 'tlog-missing', noLog.message);
  // A tampered Rekor bundle annotation.
  const rb = JSON.parse(c.keyless!.rekorBundle!);
  rb.Payload.integratedTime += 1;
  const bad = evaluateTrust({
    ...trustBase,
    repo: 'prod/app',
    digest: DIGEST,
    signatures: [{ ...c, keyless: { ...c.keyless!, rekorBundle: JSON.stringify(rb) } }],
    keys: [],
    identities,
  });
  assert.equal(bad.reason, 'tlog-invalid', bad.message);
});

test('threshold: distinct keys and distinct identities count together; one identity signing twice is one', () => {
  const kp = generateKeyPair('ecdsa-p256');
  const key = { name: 'release-key', key: parsePublicKeyPem(kp.publicKeyPem) };
  const payload = buildSimpleSigningPayload({
    dockerReference: 'registry.example/prod/app',
    manifestDigest: DIGEST,
  });
  const keySig: SignatureCandidate = {
    payload,
    signature: Buffer.from(signPayload(kp.pkcs8Der, payload)).toString('base64'),
  };
  const security: TestIdentity = { issuer: 'https://accounts.google.com', subject: 'security@acme.example' };
  const identities = compileIdentityRules([
    releaseRule,
    { issuer: security.issuer, subject: security.subject },
  ]);
  const input = { ...trustBase, threshold: 2, repo: 'prod/app', digest: DIGEST, keys: [key], identities };
  // One identity, twice (two certificates, a bundle and a legacy layer): one signer.
  const twice = evaluateTrust({
    ...input,
    signatures: [legacyKeyless('prod/app', DIGEST)],
    bundles: [bundleFor()],
  });
  assert.equal(twice.reason, 'threshold-not-met', twice.message);
  assert.match(twice.message, /1 trusted signer\(s\)/);
  // A key and an identity: two.
  const mixed = evaluateTrust({ ...input, signatures: [keySig], bundles: [bundleFor()] });
  assert.equal(mixed.ok, true, mixed.message);
  assert.deepEqual(mixed.signers.length, 2);
  // Two identities: two.
  const two = evaluateTrust({
    ...input,
    keys: [],
    signatures: [],
    bundles: [bundleFor(), bundleFor(DIGEST, security)],
  });
  assert.equal(two.ok, true, two.message);
});

test('config: identity rules are validated at load (exactly one of exact/regexp, valid regexp, known claims, a trusted root)', () => {
  const rule = (identities: unknown[]) => trustRuleSchema.safeParse({ repos: ['prod/**'], identities });
  assert.equal(rule([{ issuer: GH, subjectRegExp: '.*@acme\\.example' }]).success, true);
  assert.equal(rule([{ issuer: GH, issuerRegExp: '.*', subject: 'x' }]).success, false);
  assert.equal(rule([{ issuer: GH }]).success, false);
  assert.equal(rule([{ issuer: GH, subjectRegExp: '(' }]).success, false);
  assert.equal(rule([{ issuer: GH, subject: 'x', github: { branch: 'main' } }]).success, false);
  assert.equal(rule([{ issuer: GH, subject: 'x', email: 'y' }]).success, false);
  const base = { tls: { cert: 'c', key: 'k' }, upstream: { url: 'http://127.0.0.1:5000' } };
  const noRoot = configSchema.safeParse({
    ...base,
    trust: { rules: [{ repos: ['a'], identities: [{ issuer: GH, subject: 'x' }] }] },
  });
  assert.equal(noRoot.success, false);
  assert.match(
    JSON.stringify(noRoot.error?.issues),
    /needs a Sigstore trusted root: configure trust\.sigstore \(or trust\.trustedRoot\)/,
  );
  const withTuf = configSchema.safeParse({
    ...base,
    trust: {
      sigstore: [{ tuf: { mirror: 'https://tuf.example', root: 'root.json' } }],
      rules: [{ repos: ['a'], identities: [{ issuer: GH, subject: 'x' }] }],
    },
  });
  assert.equal(withTuf.success, true, JSON.stringify(withTuf.error?.issues));
  const withRoot = configSchema.safeParse({
    ...base,
    trust: { trustedRoot: 'r.json', rules: [{ repos: ['a'], identities: [{ issuer: GH, subject: 'x' }] }] },
  });
  assert.equal(withRoot.success, true, JSON.stringify(withRoot.error?.issues));
});
