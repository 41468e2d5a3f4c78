/**
 * `trustgate verify --offline` on the real cosign fixtures (containers/image "dir" layout), with the
 * verdicts their README documents.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { verifyCommand, type VerifyReport } from '../../src/cli/verify.js';
import { COSIGN_FIXTURES, sharedDir } from '../helpers/fixtures.js';
import { makeTempDir } from '../helpers/stack.js';
import { memoryIo } from './support.js';
import { TestSigstore } from '../helpers/keyless-ca.js';
import { buildCosignSignStatement } from '../../src/core/evidence/statement.js';

const fx = (rel: string): string => path.join(sharedDir(), COSIGN_FIXTURES, rel);
const KEY = fx('cosign.pub');

async function run(args: string[]): Promise<{ code: number; out: string; err: string; json?: VerifyReport }> {
  const mem = memoryIo();
  const code = await verifyCommand(['--offline', ...args], mem.io);
  const out = mem.out();
  return {
    code,
    out,
    err: mem.err(),
    ...(args.includes('--json') ? { json: JSON.parse(out) as VerifyReport } : {}),
  };
}

const dirArgs = (name: string): string[] => [
  '--manifest',
  fx(`dir-img-cosign-${name}/manifest.json`),
  '--signature',
  fx(`dir-img-cosign-${name}/signature-1`),
  '--key',
  KEY,
];

test('valid: trusted for cosign-signed-single-sample (exit 0), readable explanation', async () => {
  const r = await run([...dirArgs('valid'), '--repo', 'cosign-signed-single-sample']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /digest: {5}sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00/);
  assert.match(r.out, /#1 signature-1: signed by cosign\n/);
  assert.match(r.out, /payload names 192\.168\.64\.2:5000\/cosign-signed-single-sample @ sha256:634a8f35/);
  assert.match(
    r.out,
    /verdict: {4}TRUSTED: cosign-signed-single-sample@sha256:634a8f35\S+ is signed by cosign\n$/,
  );
});

test('valid, other repository: refused as wrong-repository (exit 1)', async () => {
  const r = await run([...dirArgs('valid'), '--repo', 'prod/app', '--json']);
  assert.equal(r.code, 1);
  assert.equal(r.json?.verdict.reason, 'wrong-repository');
  assert.deepEqual(r.json?.signatures[0]?.signedBy, ['cosign']);
});

test('valid-with-tag: skopeo signature trusted for skopeo-signed, tag bound to :tag', async () => {
  const r = await run([...dirArgs('valid-with-tag'), '--repo', 'skopeo-signed', '--json']);
  assert.equal(r.code, 0);
  assert.equal(r.json?.signatures[0]?.payload?.dockerReference, '192.168.64.2:5000/skopeo-signed:tag');
  assert.deepEqual(r.json?.signatures[0]?.payload?.optional, {
    creator: 'containers/image 5.21.2-dev',
    timestamp: 1657296609,
  });
  const bound = await run([
    ...dirArgs('valid-with-tag'),
    '--repo',
    'skopeo-signed',
    '--tag',
    'tag',
    '--tag-binding',
  ]);
  assert.equal(bound.code, 0, bound.out);
  const other = await run([
    ...dirArgs('valid-with-tag'),
    '--repo',
    'skopeo-signed',
    '--tag',
    'v2',
    '--tag-binding',
  ]);
  assert.equal(other.code, 1);
  assert.match(other.out, /REFUSED \(tag-not-bound\).*signed it as tag tag, not v2/);
});

for (const name of ['manifest-digest-error', 'modified-manifest']) {
  test(`${name}: refused as digest-mismatch (exit 1)`, async () => {
    const r = await run([...dirArgs(name), '--repo', 'cosign-signed-single-sample']);
    assert.equal(r.code, 1);
    assert.match(r.out, /\(NOT this digest\)/);
    assert.match(
      r.out,
      /verdict: {4}REFUSED \(digest-mismatch\): .*key cosign signed sha256:634a8f35\S+, not this digest/,
    );
  });
}

test('unknown-cosign-key: refused as untrusted-key; the payload is shown as unverified', async () => {
  const r = await run([
    '--manifest',
    fx('dir-img-cosign-valid/manifest.json'),
    '--signature',
    fx('unknown-cosign-key.signature'),
    '--key',
    KEY,
    '--repo',
    'cosign-signed-single-sample',
  ]);
  assert.equal(r.code, 1);
  assert.match(r.out, /#1 unknown-cosign-key\.signature: made by none of the given keys/);
  assert.match(r.out, /payload claims \(unverified\) /);
  assert.match(r.out, /REFUSED \(untrusted-key\)/);
});

test('a key-signed payload that is no simple-signing payload is never reported as verified', async () => {
  const dir = makeTempDir('verify-unreadable-payload');
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const payload = Buffer.from('not a simple-signing payload');
  const signature = sign('sha256', payload, privateKey).toString('base64');
  const sigFile = path.join(dir, 'signature-1');
  const doc = {
    mimeType: 'application/vnd.dev.cosign.simplesigning.v1+json',
    payload: payload.toString('base64'),
    annotations: { 'dev.cosignproject.cosign/signature': signature },
  };
  writeFileSync(
    sigFile,
    Buffer.concat([Buffer.from('\x00sigstore-json\n', 'latin1'), Buffer.from(JSON.stringify(doc))]),
  );
  const keyFile = path.join(dir, 'signer.pub');
  writeFileSync(keyFile, publicKey.export({ type: 'spki', format: 'pem' }));
  const r = await run([
    '--manifest',
    fx('dir-img-cosign-valid/manifest.json'),
    '--signature',
    sigFile,
    '--key',
    keyFile,
    '--repo',
    'cosign-signed-single-sample',
    '--json',
  ]);
  assert.equal(r.code, 1, r.err);
  assert.deepEqual(r.json?.signatures[0]?.signedBy, ['signer']);
  assert.ok(r.json?.signatures[0]?.payloadError);
  assert.equal(r.json?.signatures[0]?.verified, false);
  assert.equal(r.json?.verdict.ok, false);
});

test('no signatures: no-signature; malformed inputs and missing files exit 2', async () => {
  const none = await run([
    '--manifest',
    fx('dir-img-cosign-valid/manifest.json'),
    '--key',
    KEY,
    '--repo',
    'x',
  ]);
  assert.equal(none.code, 1);
  assert.match(none.out, /signatures: none/);
  assert.match(none.out, /REFUSED \(no-signature\)/);

  const dir = makeTempDir('verify-offline');
  const bogus = path.join(dir, 'sig');
  writeFileSync(bogus, '{"mimeType":"x"}');
  const bad = await run([...dirArgs('valid'), '--signature', bogus, '--repo', 'x']);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /not a sigstore-json signature file/);
  const missing = await run(['--manifest', path.join(dir, 'nope.json'), '--key', KEY, '--repo', 'x']);
  assert.equal(missing.code, 2);
  assert.match(missing.err, /cannot read manifest .*nope\.json/);
  const usage = await run(['--manifest', fx('dir-img-cosign-valid/manifest.json'), '--key', KEY]);
  assert.equal(usage.code, 2);
  assert.match(usage.err, /--offline needs --manifest FILE and --repo REPO\n\nusage:/);
});

test('keyless: --bundle with --certificate-identity/--certificate-oidc-issuer and --trusted-root (a TEST Sigstore instance)', async () => {
  const sigstore = new TestSigstore();
  const dir = makeTempDir('verify-keyless');
  const manifest = Buffer.from(
    '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}',
  );
  const digest = `sha256:${createHash('sha256').update(manifest).digest('hex')}`;
  const files = {
    manifest: path.join(dir, 'manifest.json'),
    bundle: path.join(dir, 'sig.sigstore.json'),
    root: path.join(dir, 'trusted_root.json'),
  };
  writeFileSync(files.manifest, manifest);
  const subject = 'https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1';
  const issuer = 'https://token.actions.githubusercontent.com';
  writeFileSync(files.bundle, sigstore.dsseBundle(buildCosignSignStatement(digest), { issuer, subject }));
  writeFileSync(files.root, JSON.stringify(sigstore.trustedRoot()));
  const args = [
    '--manifest',
    files.manifest,
    '--bundle',
    files.bundle,
    '--repo',
    'prod/app',
    '--trusted-root',
    files.root,
  ];
  const ok = await run([...args, '--certificate-identity', subject, '--certificate-oidc-issuer', issuer]);
  assert.equal(ok.code, 0, ok.out + ok.err);
  assert.match(
    ok.out,
    /identities: issuer=https:\/\/token\.actions\.githubusercontent\.com subject=https:\/\/github\.com\/acme\/app/,
  );
  assert.match(
    ok.out,
    /TRUSTED: prod\/app@sha256:[0-9a-f]{64} is signed by https:\/\/github\.com\/acme\/app\/.*release\.yml@refs\/tags\/v1 \(issuer https:\/\/token\.actions\.githubusercontent\.com\)/,
  );
  const re = await run([
    ...args,
    '--certificate-identity-regexp',
    'https://github\\.com/acme/.*',
    '--certificate-oidc-issuer',
    issuer,
  ]);
  assert.equal(re.code, 0, re.out);
  // Another identity, another issuer: refused, naming the identity found and the one expected.
  const wrong = await run([
    ...args,
    '--certificate-identity',
    'https://github.com/acme/app/.github/workflows/x.yml@refs/heads/main',
    '--certificate-oidc-issuer',
    issuer,
  ]);
  assert.equal(wrong.code, 1);
  assert.match(
    wrong.out,
    /REFUSED \(untrusted-identity\).*signed by https:\/\/github\.com\/acme\/app\/\.github\/workflows\/release\.yml@refs\/tags\/v1 .*expected: issuer=.* subject=https:\/\/github\.com\/acme\/app\/\.github\/workflows\/x\.yml/,
  );
  const wrongIssuer = await run([
    ...args,
    '--certificate-identity',
    subject,
    '--certificate-oidc-issuer',
    'https://accounts.google.com',
  ]);
  assert.equal(wrongIssuer.code, 1);
  assert.match(wrongIssuer.out, /untrusted-identity/);
  // Usage: a regexp and an exact value together; an identity without a trusted root.
  const both = await run([
    ...args,
    '--certificate-identity',
    subject,
    '--certificate-identity-regexp',
    '.*',
    '--certificate-oidc-issuer',
    issuer,
  ]);
  assert.equal(both.code, 2);
  assert.match(both.err, /exactly one of --certificate-identity and --certificate-identity-regexp/);
  const noRoot = await run([
    '--manifest',
    files.manifest,
    '--bundle',
    files.bundle,
    '--repo',
    'prod/app',
    '--certificate-identity',
    subject,
    '--certificate-oidc-issuer',
    issuer,
  ]);
  assert.equal(noRoot.code, 2);
  assert.match(noRoot.err, /needs --trusted-root/);
});

test('keyless: the real cosign v3 attestation bundle verifies its identity but is refused as a signature', async () => {
  const dir = makeTempDir('verify-keyless-att');
  // The subject of the fixture is go-containerregistry's empty.Image; any bytes stand in for the
  // manifest here: the statement is judged (attestation) before its digest.
  const manifest = path.join(dir, 'manifest.json');
  writeFileSync(manifest, '{}');
  const verifyAs = (identity: string) =>
    run([
      '--manifest',
      manifest,
      '--repo',
      'repo',
      '--bundle',
      path.join(sharedDir(), 'fixtures/cosign/oci-attestation.sigstore.json'),
      '--trusted-root',
      path.join(sharedDir(), 'fixtures/cosign/trusted_root_pgi.json'),
      '--certificate-identity',
      identity,
      '--certificate-oidc-issuer',
      'https://github.com/login/oauth',
    ]);
  const r = await verifyAs('cody@soyland.com');
  assert.equal(r.code, 1, r.out + r.err);
  assert.match(r.out, /REFUSED \(attestation-not-signature\)/);
  const other = await verifyAs('someone@else.example');
  assert.match(other.out, /REFUSED \(untrusted-identity\).*cody@soyland\.com/);
});
