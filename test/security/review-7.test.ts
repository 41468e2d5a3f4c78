/**
 * Review 7: adversarial review of keyless verification (issue 15: identity.ts, keyless.ts,
 * legacy-keyless.ts, identity rules, threshold counting). Each attack is a test named HELD (the
 * defence stood) or fixed (…) (it failed on main 8c2dcfc and a fix is on this branch).
 *
 * The signatures come from the TEST Sigstore instance (test/helpers/keyless-ca.ts: a generated
 * Fulcio-like CA, CT log and Rekor log, labelled as a test trust root); the verifier that checks
 * them is the same code that checks public-good bundles. The cache attack runs through a real
 * trustgate over a real registry:2.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { verifyBundle, verifySigstoreBundle, type BundleVerdict } from '../../src/core/evidence/bundle.js';
import { readShared } from '../helpers/fixtures.js';
import {
  compileIdentityRules,
  validateIdentityRule,
  type IdentityRule,
} from '../../src/core/evidence/identity.js';
import { buildCosignSignStatement } from '../../src/core/evidence/statement.js';
import { loadTrustedRoot, type SigstoreTrustedRoot } from '../../src/core/evidence/trusted-root.js';
import { buildSimpleSigningPayload } from '../../src/core/signature/payload.js';
import { evaluateTrust, type SignatureCandidate } from '../../src/core/trust.js';
import { legacyKeylessBundle } from '../../src/core/evidence/legacy-keyless.js';
import { trustRuleSchema } from '../../src/config/schema.js';
import { buildBundleReferrerManifest } from '../../src/core/evidence/bundle-writer.js';
import { TestSigstore, toPem, type TestIdentity } from '../helpers/keyless-ca.js';
import { startTrustStack, type TrustStack } from '../helpers/trust-stack.js';
import { pushBlob, pushRandomImage } from '../helpers/registry-direct.js';
import { MEDIA_TYPES } from '../../src/core/manifest.js';

const NOW = new Date();
const sha256 = (b: Uint8Array): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const MANIFEST = new TextEncoder().encode('{"schemaVersion":2,"layers":[],"review":7}');
const DIGEST = sha256(MANIFEST);

const sigstore = new TestSigstore();
const rootOf = (s: TestSigstore, edit?: (j: Record<string, unknown>) => void): SigstoreTrustedRoot => {
  const j = s.trustedRoot();
  edit?.(j);
  return loadTrustedRoot(new TextEncoder().encode(JSON.stringify(j)));
};
const ROOT = rootOf(sigstore);

const GH = 'https://token.actions.githubusercontent.com';
const RELEASE = 'https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.2.0';
const releaseId: TestIdentity = { issuer: GH, subject: RELEASE, claims: { '5': 'acme/app' } };
const releaseRule: IdentityRule = {
  issuer: GH,
  subjectRegExp: 'https://github\\.com/acme/app/\\.github/workflows/release\\.yml@refs/tags/.*',
};

function verify(bundle: Uint8Array, rules: IdentityRule[] = [releaseRule], roots = [ROOT]): BundleVerdict {
  return verifyBundle(
    { bundle, digest: DIGEST, keys: [], identities: compileIdentityRules(rules) },
    { tlog: 'optional', trustedRoots: roots, now: NOW },
  );
}
function refused(v: BundleVerdict, reason?: string, re?: RegExp): void {
  assert.equal(v.ok, false, `expected a refusal, got: ${v.message}`);
  if (reason) assert.equal(v.reason, reason, v.message);
  if (re) assert.match(v.message, re);
}
const dsse = (id: TestIdentity = releaseId, o = {}, s = sigstore): Uint8Array =>
  s.dsseBundle(buildCosignSignStatement(DIGEST), id, o);
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the attacks edit arbitrary bundle JSON
type J = any;
const edit = (b: Uint8Array, f: (j: Record<string, J>) => void): Uint8Array => {
  const j = JSON.parse(Buffer.from(b).toString('utf8')) as Record<string, J>;
  f(j);
  return Buffer.from(JSON.stringify(j));
};

describe('review 7: identity confusion', () => {
  test('HELD: a SAN URI with a newline, NUL or line separator after a trusted value does not satisfy the rule', () => {
    assert.equal(verify(dsse()).ok, true, 'baseline');
    // Anchored, no `m` flag: `$` is the end of the value, and `.` matches no line terminator, so a
    // second line never hides behind `…/.*`. (NUL is an ordinary character to `.*`: a rule ending
    // in `.*` means "any tag" and admits it, as it should.)
    for (const tail of ['\nhttps://github.com/mallory/x', '\r\nx', '\u2028evil']) {
      refused(verify(dsse({ ...releaseId, subject: `${RELEASE}${tail}` })), 'untrusted-identity');
    }
    // An exact subject never matches a value with anything after it.
    for (const tail of ['\n', '\u0000evil', ' ']) {
      refused(
        verify(dsse({ ...releaseId, subject: `${RELEASE}${tail}` }), [{ issuer: GH, subject: RELEASE }]),
        'untrusted-identity',
      );
    }
  });

  test('HELD: no case folding, no trailing slash leniency on issuer or subject', () => {
    refused(verify(dsse({ ...releaseId, issuer: `${GH}/` })), 'untrusted-identity');
    refused(verify(dsse({ ...releaseId, issuer: GH.toUpperCase() })), 'untrusted-identity');
    refused(verify(dsse({ ...releaseId, subject: RELEASE.replace('acme', 'ACME') })), 'untrusted-identity');
  });

  test('HELD: an email SAN (rfc822Name) under another issuer does not pass a GitHub rule', () => {
    const v = verify(dsse({ issuer: 'https://accounts.google.com', subject: 'release.yml@refs.tags' }));
    refused(v, 'untrusted-identity');
  });

  test('HELD: issuer 1.8 (DER UTF8String) wins over a disagreeing deprecated 1.1 (raw)', () => {
    // The CA writes 1.1 and 1.8 from one value; a second 1.1 extension saying otherwise is a
    // duplicate; either way the identity is read from 1.8.
    const v = verify(dsse({ ...releaseId, issuer: 'https://evil.example', claims: {} }), [
      { issuer: 'https://evil.example', subject: RELEASE },
    ]);
    assert.equal(v.ok, true, v.message);
    const w = verify(dsse({ ...releaseId, issuer: 'https://evil.example', claims: { '1': GH } }));
    refused(w);
  });

  test('fixed (duplicate Fulcio extensions, low): a certificate carrying 1.8 twice is refused, as Go x509 (cosign) refuses it', () => {
    // Two issuer extensions: the first says GitHub, the second evil. Before the fix the first was
    // read, so the same certificate named a different issuer to trustgate than to a verifier that
    // reads the last; Go's crypto/x509 refuses duplicate extensions outright.
    const v = verify(dsse({ ...releaseId, claims: { '8': 'https://evil.example' } }));
    refused(v, 'certificate-invalid', /extension|duplicate/);
    const w = verify(dsse({ ...releaseId, claims: { '5': 'acme/app', '05': 'mallory/app' } }));
    refused(w);
  });

  test('HELD: a GitHub claim pinned by a rule is not satisfied by a missing claim or an empty one', () => {
    const rule = { ...releaseRule, github: { repository: 'acme/app' } };
    assert.equal(verify(dsse(), [rule]).ok, true);
    refused(verify(dsse({ ...releaseId, claims: {} }), [rule]), 'untrusted-identity');
    refused(verify(dsse({ ...releaseId, claims: { '5': '' } }), [rule]), 'untrusted-identity');
    // 1.12 from another forge does not stand in for 1.5.
    refused(
      verify(dsse({ ...releaseId, claims: { '12': 'https://gitlab.com/acme/app' } }), [rule]),
      'untrusted-identity',
    );
    // The schema refuses an empty pinned claim (it would otherwise only ever match an empty one).
    assert.equal(
      trustRuleSchema.safeParse({ repos: ['x'], identities: [{ ...rule, github: { repository: '' } }] })
        .success,
      false,
    );
  });

  test('fixed (regular expression breaks out of its anchors, medium): a rule with an unbalanced `)` is refused at load', () => {
    // `^(?:SOURCE)$` with SOURCE = `A)|(?:B` compiles to `^(?:A)|(?:B)$`: A anchored at the start
    // only, so `A` followed by anything matched. The source alone is not a valid expression.
    const source = 'https://github\\.com/acme/.*)|(?:x';
    assert.throws(() => validateIdentityRule({ issuer: GH, subjectRegExp: source }), /regular expression/);
    assert.equal(
      trustRuleSchema.safeParse({ repos: ['x'], identities: [{ issuer: GH, subjectRegExp: source }] })
        .success,
      false,
    );
    // And a rule a well-meaning admin writes with a top-level alternation stays anchored.
    const alt = 'https://github\\.com/acme/a/.*|https://github\\.com/acme/b/.*';
    refused(
      verify(dsse({ ...releaseId, subject: 'https://evil.example/https://github.com/acme/b/x' }), [
        { issuer: GH, subjectRegExp: alt },
      ]),
      'untrusted-identity',
    );
  });
});

describe('review 7: certificate chain and validity', () => {
  test('HELD: a leaf from another CA, with that CA shipped in the v0.1 chain, is refused (foreign root)', () => {
    const mallory = new TestSigstore();
    const b = edit(dsse(releaseId, {}, mallory), (j) => {
      j['mediaType'] = 'application/vnd.dev.sigstore.bundle+json;version=0.1';
      const leaf = j['verificationMaterial'].certificate;
      delete j['verificationMaterial'].certificate;
      j['verificationMaterial'].x509CertificateChain = {
        certificates: [leaf, { rawBytes: mallory.caCertificate.toString('base64') }],
      };
      // v0.1 has no DSSE requirement issue; inclusion proof present; keep as is.
    });
    refused(verify(b), 'certificate-invalid');
    // Without the shipped root: the chain does not reach the trusted CA.
    refused(verify(dsse(releaseId, {}, mallory)), 'certificate-invalid');
  });

  test('HELD: signing before the trusted root says the CA became valid, or after its validFor ended, is refused', () => {
    const future = new TestSigstore(new Date(Date.now() + 3600_000));
    // The CA certificate itself starts in the future too; sign with a time inside its validity
    // but before the trusted root's validFor.start by editing the root instead:
    const late = rootOf(sigstore, (j) => {
      (j['certificateAuthorities'] as J[])[0].validFor = {
        start: new Date(Date.now() - 1000).toISOString(),
      };
    });
    refused(verify(dsse(), [releaseRule], [late]), 'certificate-invalid');
    const ended = rootOf(sigstore, (j) => {
      (j['certificateAuthorities'] as J[])[0].validFor = {
        start: '2020-01-01T00:00:00Z',
        end: new Date(Date.now() - 3600_000).toISOString(),
      };
    });
    refused(verify(dsse(), [releaseRule], [ended]), 'certificate-invalid');
    refused(verify(dsse(releaseId, {}, future), [releaseRule], [rootOf(future)]));
  });

  test('HELD: a certificate of a CA that is not an end-entity code-signing leaf: the CA certificate itself as the leaf', () => {
    const b = edit(dsse(), (j) => {
      j['verificationMaterial'].certificate = { rawBytes: sigstore.caCertificate.toString('base64') };
    });
    refused(verify(b), 'certificate-invalid', /self-signed|CA/);
  });
});

describe('review 7: signing time and log entries', () => {
  test('HELD: an expired certificate cannot borrow a time by editing integratedTime (the SET covers it)', () => {
    const at = new Date(Date.now() - 3600_000);
    const b = dsse(releaseId, { at, integratedAt: new Date(at.getTime() + 20 * 60_000) });
    refused(verify(b), 'certificate-invalid');
    const forged = edit(b, (j) => {
      j['verificationMaterial'].tlogEntries[0].integratedTime = String(Math.floor(at.getTime() / 1000) + 60);
    });
    refused(verify(forged));
  });

  test('HELD: an entry without a SET gives no signing time (inclusion proof only, no timestamp): refused', () => {
    const b = edit(dsse(), (j) => {
      delete j['verificationMaterial'].tlogEntries[0].inclusionPromise;
    });
    refused(verify(b));
  });

  test('HELD: a timestamp from a TSA the root does not list is not a signing time', () => {
    // Any DER the RFC 3161 parser would read must verify against the root's TSAs (none here).
    const b = edit(dsse(), (j) => {
      j['verificationMaterial'].timestampVerificationData = {
        rfc3161Timestamps: [{ signedTimestamp: Buffer.from('3003020100', 'hex').toString('base64') }],
      };
    });
    refused(verify(b));
  });

  test('HELD: a Rekor entry for the same signature logged with another certificate (same key) is refused', () => {
    // Same key, another certificate naming another identity: the entry is for that one.
    const other = sigstore.issue(
      generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey,
      { issuer: GH, subject: 'https://github.com/mallory/x/.github/workflows/a.yml@refs/heads/main' },
      new Date(Date.now() - 60_000),
    );
    refused(verify(dsse(releaseId, { logCertificate: other })), 'tlog-invalid', /another certificate/);
  });

  test('HELD: a second, unrelated, valid entry appended next to the right one is refused (every entry must be for this certificate)', () => {
    const good = dsse();
    const stranger = JSON.parse(Buffer.from(dsse({ ...releaseId, subject: `${RELEASE}x` })).toString()) as J;
    const b = edit(good, (j) => {
      j['verificationMaterial'].tlogEntries.push(stranger.verificationMaterial.tlogEntries[0]);
    });
    refused(verify(b));
  });

  test('HELD: many log entries and certificates are bounded by the 64 KiB bundle limit before any verification', () => {
    const b = edit(dsse(), (j) => {
      const e = j['verificationMaterial'].tlogEntries[0];
      j['verificationMaterial'].tlogEntries = Array.from({ length: 40 }, () => e);
    });
    refused(verify(b), 'malformed-bundle', /64 KiB|65536|too large|bytes/);
  });
});

describe('review 7: legacy .sig and threshold counting', () => {
  const payload = Buffer.from(
    buildSimpleSigningPayload({ dockerReference: 'registry.test/acme/app', manifestDigest: DIGEST }),
  );
  const legacy = (id: TestIdentity, o = {}): SignatureCandidate => sigstore.legacySignature(payload, id, o);
  const trust = (
    signatures: SignatureCandidate[],
    bundles: Uint8Array[],
    threshold: number,
    rules = [releaseRule],
  ) =>
    evaluateTrust({
      repo: 'acme/app',
      digest: DIGEST,
      signatures,
      bundles,
      bundleOptions: { tlog: 'optional', trustedRoots: [ROOT] },
      identities: compileIdentityRules(rules),
      keys: [],
      threshold,
      tagBinding: false,
      now: NOW,
    });

  test('HELD: a keyless .sig whose certificate annotation is not the certificate the Rekor entry names is refused', () => {
    const other = sigstore.sign(payload, { ...releaseId, subject: `${RELEASE}-other` });
    const cand = legacy(releaseId, { logCertificate: other.certificate });
    const v = trust([cand], [], 1);
    assert.equal(v.ok, false, v.message);
    // Two certificates in the annotation: refused before anything else.
    assert.equal(
      typeof legacyKeylessBundle(payload, cand.signature, {
        certificate: toPem(other.certificate) + toPem(sigstore.caCertificate),
      }),
      'string',
    );
  });

  test('HELD: a keyless .sig whose chain annotation ships a foreign CA does not make a foreign leaf trusted', () => {
    const mallory = new TestSigstore();
    const v = trust([mallory.legacySignature(payload, releaseId)], [], 1);
    assert.equal(v.ok, false, v.message);
  });

  test('HELD: the same identity through two certificates, two formats and two bundles counts once toward a threshold of 2', () => {
    const v = trust([legacy(releaseId), legacy(releaseId)], [dsse(), dsse()], 2);
    assert.equal(v.ok, false, v.message);
    assert.equal(v.reason, 'threshold-not-met');
    assert.equal(v.signers.length, 1);
    // Two distinct trusted identities, each named by its own rule, do meet it.
    const mirror = 'https://github.com/acme/mirror/.github/workflows/release.yml@refs/tags/v1.2.0';
    const two = trust([legacy(releaseId)], [dsse({ ...releaseId, subject: mirror })], 2, [
      releaseRule,
      { issuer: GH, subject: mirror },
    ]);
    assert.equal(two.ok, true, two.message);
  });

  test('fixed (threshold inflation by one workflow, medium): one regular-expression rule satisfied by one workflow on two tags counted as two signers; now each identity rule entry counts once', () => {
    // One principal (whoever can push a tag to acme/app) signs with the same workflow on v1.2.0
    // and v1.3.0: two subjects, one rule, one repository. A threshold of 2 is meant to need two
    // independent signers; counting each identity rule at most once (as each key counts once)
    // would make it so.
    const v = trust(
      [legacy(releaseId)],
      [dsse({ ...releaseId, subject: RELEASE.replace('v1.2.0', 'v1.3.0') })],
      2,
    );
    assert.equal(v.ok, false, `one workflow met a threshold of 2: ${v.message}`);
  });
});

describe('review 7: a cached pass outlives a change of trusted root', { timeout: 120_000 }, () => {
  let stack: TrustStack;
  before(async () => {
    stack = await startTrustStack(
      [
        { repos: ['prod/**'], identities: [releaseRule] },
        { repos: ['**'], keys: ['release'] },
      ],
      { trustedRoot: sigstore.trustedRoot() },
    );
  });
  after(async () => {
    await stack?.stop();
  });

  async function attach(repo: string, img: { digest: string; bytes: Buffer }, id: TestIdentity) {
    const r = buildBundleReferrerManifest({
      bundle: sigstore.dsseBundle(buildCosignSignStatement(img.digest), id),
      subject: { mediaType: MEDIA_TYPES.ociManifest, digest: img.digest, size: img.bytes.length },
      created: new Date('2026-12-04T12:00:00Z'),
    });
    for (const b of r.blobs) await pushBlob(stack.registry.url, repo, Buffer.from(b.bytes));
    const put = await stack.push(repo, r.digest, Buffer.from(r.manifest), MEDIA_TYPES.ociManifest);
    assert.equal(put.status, 201, put.body.toString());
  }

  test('HELD: a certificate subject carrying CR LF and a header line does not reach the status line or headers of the denial', async () => {
    const repo = 'prod/crlf';
    const img = await pushRandomImage(stack.registry.url, repo, 'v1');
    await attach(repo, img, { issuer: GH, subject: 'https://evil.example/x\r\nX-Injected: yes\r\n' });
    const r = await stack.pull(repo, 'v1');
    assert.equal(r.status, 403);
    assert.equal(r.headers['x-injected'], undefined);
    assert.doesNotMatch(r.statusMessage, /[\r\n]/);
    // The body is JSON with the subject escaped inside the message, not a second line.
    const body = r.json() as { errors: Array<{ message: string }> };
    assert.match(body.errors[0]!.message, /evil\.example\/x\r\nX-Injected: yes/);
  });

  test('fixed on main by the tuf merge a2c5671 (stale verdict across a trusted-root change, medium): a withdrawn CA stops admitting at once', async () => {
    // BROKEN on 8c2dcfc: the cache epoch hashed the keys and rules only, so a pass verified under
    // a Fulcio CA stayed cached after the roots changed. Main since puts the roots' version in the
    // epoch (SigstoreRoots.version()); this is the same attack against that.
    const repo = 'prod/rootswap';
    const img = await pushRandomImage(stack.registry.url, repo, 'v1');
    await attach(repo, img, releaseId);
    assert.equal((await stack.pull(repo, 'v1')).status, 200, 'signed by the trusted workflow under CA A');

    // The trusted root changes as a TUF update changes it (SigstoreRoots' source state, then
    // publish()): CA A is withdrawn (a compromised Fulcio CA), another instance is trusted.
    const roots = stack.gate.tg.sigstoreRoots as unknown as {
      states: Array<{ root?: { trusted: SigstoreTrustedRoot; sha256: string } }>;
      publish(): void;
    };
    roots.states[0]!.root = { trusted: rootOf(new TestSigstore()), sha256: 'f'.repeat(64) };
    roots.publish();
    const again = await stack.pull(repo, 'v1');
    assert.equal(again.status, 403, 'a pass verified under a withdrawn CA is not served from the cache');
  });
});

describe('review 7: real public-good bundles (sigstore-conformance, shared part)', () => {
  const CONF = 'fixtures/sigstore-conformance/bundle-verify';
  const PUBLIC_GOOD = loadTrustedRoot(readShared('fixtures/sigstore-public-good/trusted_root.json'));
  const artifact = readShared(`${CONF}/a.txt`);
  const BEACON =
    'https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main';
  const real = (c: string): Uint8Array => readShared(`${CONF}/${c}/bundle.sigstore.json`);
  const check = (bundle: Uint8Array, rules: IdentityRule[]) =>
    verifySigstoreBundle(
      { bundle, digest: sha256(artifact), artifact, keys: [], identities: compileIdentityRules(rules) },
      { tlog: 'required', trustedRoot: PUBLIC_GOOD, now: NOW },
    );

  test('HELD: a real Fulcio certificate: GitHub claims read from it; a fork, a prefix rule, a trailing slash are refused', () => {
    const b = real('happy-path-v0.3-new-mediaType');
    const ok = check(b, [
      {
        issuer: GH,
        subject: BEACON,
        github: { repository: 'sigstore-conformance/extremely-dangerous-public-oidc-beacon' },
      },
    ]);
    assert.equal(ok.ok, true, ok.ok ? '' : ok.detail);
    for (const rule of [
      {
        issuer: GH,
        subject: BEACON,
        github: { repository: 'mallory/extremely-dangerous-public-oidc-beacon' },
      },
      { issuer: GH, subjectRegExp: 'https://github\\.com/sigstore-conformance/' },
      { issuer: `${GH}/`, subject: BEACON },
      { issuer: GH, subject: BEACON.replace('refs/heads/main', 'refs/heads/mai') },
    ]) {
      const v = check(b, [rule]);
      assert.equal(v.ok, false, JSON.stringify(rule));
      if (!v.ok) assert.equal(v.reason, 'untrusted-identity');
    }
  });

  test("HELD: a real certificate spliced with another real bundle's log entry (same CA, same identity) is refused", () => {
    const other = JSON.parse(Buffer.from(real('happy-path-v0.2')).toString('utf8')) as J;
    const b = edit(real('happy-path-v0.3-new-mediaType'), (j) => {
      j['verificationMaterial'].tlogEntries = other.verificationMaterial.tlogEntries;
    });
    const v = check(b, [{ issuer: GH, subject: BEACON }]);
    assert.equal(v.ok, false);
    // Its integrated time lies outside this certificate's 10 minutes, so the chain check at the
    // signing time refuses it first (the body check, for an entry inside the window, is the test
    // Sigstore case above: "logged with another certificate").
    if (!v.ok) assert.match(v.reason, /^(certificate|tlog)-invalid$/, v.detail);
  });

  test('HELD: a real Rekor v2 bundle with its TSA timestamp removed has no signing time and is refused', () => {
    const root = loadTrustedRoot(readShared(`${CONF}/rekor2-dsse-happy-path/trusted_root.json`));
    const run = (bundle: Uint8Array) =>
      verifySigstoreBundle(
        {
          bundle,
          digest: sha256(artifact),
          keys: [],
          identities: compileIdentityRules([{ issuer: GH, subject: BEACON }]),
        },
        { tlog: 'required', trustedRoot: root, now: NOW },
      );
    const original = real('rekor2-dsse-happy-path');
    const baseline = run(original);
    assert.equal(baseline.ok, true, baseline.ok ? '' : baseline.detail);
    const v = run(
      edit(original, (j) => {
        delete j['verificationMaterial'].timestampVerificationData;
      }),
    );
    assert.equal(v.ok, false);
    if (!v.ok) assert.match(v.detail, /timestamp/i);
  });
});
