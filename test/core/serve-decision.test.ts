import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  MEDIA_TYPE_COSIGN_SIMPLESIGNING,
  MEDIA_TYPE_OCI_CONFIG,
  MEDIA_TYPE_OCI_MANIFEST,
  parseManifest,
} from '../../src/core/manifest.js';
import {
  decideServe,
  inheritsAttestations,
  mayInheritAttestations,
  serveShortcut,
  wantsIndexParent,
  type ServeInput,
  type SignatureEvidence,
} from '../../src/core/serve-decision.js';
import { DEFAULT_TRUST_RULE, type EffectiveTrustRule } from '../../src/core/trust-policy.js';

const D = `sha256:${'a'.repeat(64)}`;
const SIG_TAG = `sha256-${'a'.repeat(64)}.sig`;
const image = parseManifest(
  JSON.stringify({
    schemaVersion: 2,
    mediaType: MEDIA_TYPE_OCI_MANIFEST,
    config: { mediaType: MEDIA_TYPE_OCI_CONFIG, digest: D, size: 2 },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: D, size: 2 }],
  }),
);
const sigArtifact = parseManifest(
  JSON.stringify({
    schemaVersion: 2,
    mediaType: MEDIA_TYPE_OCI_MANIFEST,
    config: { mediaType: MEDIA_TYPE_OCI_CONFIG, digest: D, size: 2 },
    layers: [{ mediaType: MEDIA_TYPE_COSIGN_SIMPLESIGNING, digest: D, size: 2 }],
  }),
);
const rule = (o: Partial<EffectiveTrustRule> = {}): EffectiveTrustRule => ({
  ...DEFAULT_TRUST_RULE,
  pattern: 'team/**',
  keys: ['release'],
  ...o,
});
const signed = (boundTags: string[] = []): SignatureEvidence => ({
  ok: true,
  reason: 'signed',
  message: 'signed',
  signers: ['release'],
  boundTags,
});
const unsigned: SignatureEvidence = {
  ok: false,
  reason: 'no-signature',
  message: 'has no signature',
  signers: [],
  boundTags: [],
};
const input = (o: Partial<ServeInput>): ServeInput => ({
  repo: 'team/app',
  digest: D,
  rule: rule(),
  manifest: image,
  purpose: 'pull',
  ...o,
});

test('shortcuts: a rule that is off, and signature discovery through the .sig tag only', () => {
  assert.equal(serveShortcut(input({ rule: rule({ mode: 'off' }) }))?.reason, 'policy-off');
  assert.equal(serveShortcut(input({ manifest: sigArtifact, tag: SIG_TAG }))?.reason, 'signature-artifact');
  assert.equal(serveShortcut(input({ manifest: sigArtifact })), undefined, 'by digest: verified');
  assert.equal(serveShortcut(input({ manifest: sigArtifact, tag: 'latest' })), undefined);
  assert.equal(
    serveShortcut(input({ manifest: image, tag: SIG_TAG })),
    undefined,
    'an image under a .sig tag',
  );
  assert.equal(
    serveShortcut(input({ manifest: sigArtifact, tag: SIG_TAG, purpose: 'signed-push' })),
    undefined,
  );
});

test('evidence: signed serves, unsigned refuses, audit serves what enforce refuses', () => {
  assert.equal(decideServe(input({ evidence: signed() })).allow, true);
  const refused = decideServe(input({ evidence: unsigned }));
  assert.deepEqual([refused.allow, refused.ok, refused.reason], [false, false, 'no-signature']);
  const audit = decideServe(input({ evidence: unsigned, rule: rule({ mode: 'audit' }) }));
  assert.deepEqual([audit.allow, audit.ok], [true, false]);
  assert.throws(() => decideServe(input({})), TypeError);
});

test('tag binding: a pull by tag needs a signature naming that tag', () => {
  const bound = rule({ tagBinding: true });
  assert.equal(decideServe(input({ rule: bound, tag: 'v1', evidence: signed(['v1']) })).ok, true);
  const other = decideServe(input({ rule: bound, tag: 'prod', evidence: signed(['v1']) }));
  assert.deepEqual([other.ok, other.reason], [false, 'tag-not-bound']);
  assert.equal(decideServe(input({ rule: bound, evidence: signed([]) })).ok, true, 'by digest');
});

test('index children: admitted by digest; not by a bound tag, not for a signed push (issue 12 finding 3)', () => {
  const evidence = unsigned;
  const parent = `sha256:${'b'.repeat(64)}`;
  assert.equal(wantsIndexParent(input({ evidence })), true);
  assert.equal(wantsIndexParent(input({ evidence: signed() })), false);
  assert.equal(wantsIndexParent(input({ evidence, purpose: 'signed-push' })), false);
  assert.equal(decideServe(input({ evidence, indexParent: parent })).reason, 'index-child');
  assert.equal(decideServe(input({ evidence, indexParent: parent, tag: 'prod' })).reason, 'index-child');
  const bound = decideServe(
    input({ evidence, indexParent: parent, tag: 'prod', rule: rule({ tagBinding: true }) }),
  );
  assert.deepEqual([bound.allow, bound.reason], [false, 'no-signature']);
  assert.match(bound.message, /needs its own signature naming the tag prod/);
  const push = decideServe(input({ evidence, indexParent: parent, tag: 'prod', purpose: 'signed-push' }));
  assert.equal(push.ok, false);
  const index = parseManifest(
    JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] }),
  );
  assert.equal(
    decideServe(input({ evidence, indexParent: parent, manifest: index })).ok,
    false,
    'an index child',
  );
});

test('attestation inheritance: a child by digest or unbound tag inherits; a bound tag or signed push never does, nor needs the lookup', () => {
  const parent = `sha256:${'b'.repeat(64)}`;
  const bound = rule({ tagBinding: true });
  assert.equal(inheritsAttestations(input({ indexParent: parent })), true);
  assert.equal(inheritsAttestations(input({ indexParent: parent, tag: 'prod' })), true);
  assert.equal(inheritsAttestations(input({})), false, 'no parent');
  assert.equal(inheritsAttestations(input({ indexParent: parent, tag: 'prod', rule: bound })), false);
  assert.equal(inheritsAttestations(input({ indexParent: parent, rule: bound })), true, 'by digest');
  assert.equal(inheritsAttestations(input({ indexParent: parent, purpose: 'signed-push' })), false);
  // The lookup of the index admission is skipped exactly where inheritance is impossible.
  assert.equal(mayInheritAttestations(input({ tag: 'prod', rule: bound })), false);
  assert.equal(mayInheritAttestations(input({ purpose: 'signed-push' })), false);
  assert.equal(mayInheritAttestations(input({ manifest: sigArtifact })), true, 'an image manifest');
  assert.equal(mayInheritAttestations(input({ rule: bound })), true);
});
