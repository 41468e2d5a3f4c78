/** The attestation gate inside the serve decision (core/serve-decision.ts): after the signature. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decideServe, type ServeInput } from '../../../src/core/serve-decision.js';
import { DEFAULT_TRUST_RULE } from '../../../src/core/trust-policy.js';
import type { AttestationVerdict } from '../../../src/core/attestation/decide.js';

const digest = `sha256:${'ab'.repeat(32)}`;
const base: ServeInput = {
  repo: 'prod/app',
  digest,
  rule: { ...DEFAULT_TRUST_RULE, pattern: '**', keys: ['release'] },
  manifest: {
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    kind: 'image',
    layers: [],
    manifests: [],
  },
  purpose: 'pull',
  evidence: { ok: true, reason: 'signed', message: 'signed by release', signers: ['release'], boundTags: [] },
};
const refused = (mode: 'enforce' | 'audit'): AttestationVerdict => ({
  ok: false,
  mode,
  rule: 'prod/**',
  reason: 'attestation-vulnerable',
  message: `prod/app@${digest} scan by trivy … lists CRITICAL CVE-1`,
  conditions: [],
  expiredExceptions: [],
});

test('a signed image whose attestations fail is refused with the attestation message', () => {
  const o = decideServe({ ...base, attestation: refused('enforce') });
  assert.deepEqual([o.allow, o.ok, o.reason], [false, false, 'attestation-vulnerable']);
  assert.match(o.message, /lists CRITICAL CVE-1/);
});

test('attestation audit mode serves it, and the verdict still says what enforce decides', () => {
  const o = decideServe({ ...base, attestation: refused('audit') });
  assert.deepEqual([o.allow, o.ok, o.reason], [true, false, 'attestation-vulnerable']);
});

test('a signature refusal comes first; an attestation pass does not lift it', () => {
  const unsigned = {
    ...base.evidence!,
    ok: false,
    reason: 'no-signature' as const,
    message: 'no signature',
    signers: [],
  };
  const pass: AttestationVerdict = { ...refused('enforce'), ok: true, reason: 'attested', message: 'ok' };
  for (const attestation of [pass, refused('enforce')]) {
    const o = decideServe({ ...base, evidence: unsigned, attestation });
    assert.deepEqual([o.allow, o.reason, o.message], [false, 'no-signature', 'no signature']);
  }
  // Signature audit mode with an enforced attestation refusal: still refused.
  const o = decideServe({
    ...base,
    rule: { ...base.rule, mode: 'audit' },
    evidence: unsigned,
    attestation: refused('enforce'),
  });
  assert.equal(o.allow, false);
});
