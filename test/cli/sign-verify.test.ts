/**
 * `trustgate sign` and `trustgate verify` against a real registry:2 on loopback (plain http), and
 * sign through the HTTPS token front (mTLS + Docker token flow).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { keygenCommand } from '../../src/cli/keygen.js';
import { signCommand } from '../../src/cli/sign.js';
import { verifyCommand, type VerifyReport } from '../../src/cli/verify.js';
import { COSIGN_SIGNATURE_ANNOTATION, MEDIA_TYPES } from '../../src/core/manifest.js';
import { parsePublicKeyPem } from '../../src/core/signature/keys.js';
import { verifySignature } from '../../src/core/signature/verify.js';
import { RegistryClient } from '../../src/cli/registry-client.js';
import {
  buildBundleReferrerManifest,
  buildCosignSignBundle,
  bundleSignerFor,
} from '../../src/core/evidence/bundle-writer.js';
import { decryptCosignKey } from '../../src/core/signature/keyfile.js';
import { makeTempDir, startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { readFileSync } from 'node:fs';
import { makeCerts, memoryIo, pushImage, pushIndex, startTokenFront } from './support.js';

const PASS = { TRUSTGATE_KEY_PASSPHRASE: 'pw-for-tests' };
let reg: RegistryHandle;
let host: string;
let client: RegistryClient;
let keys: string;

before(async () => {
  reg = await startRegistry();
  host = `127.0.0.1:${reg.port}`;
  client = new RegistryClient({ baseUrl: reg.url });
  keys = makeTempDir('sign-keys');
  for (const [name, type] of [
    ['alice', 'ecdsa-p256'],
    ['bob', 'ed25519'],
    ['mallory', 'ecdsa-p256'],
  ] as const) {
    const mem = memoryIo(PASS);
    assert.equal(await keygenCommand(['--out', path.join(keys, name), '--type', type], mem.io), 0, mem.err());
  }
});
after(async () => {
  client.close();
  await reg.stop();
});

const key = (name: string, ext: 'key' | 'pub'): string => path.join(keys, `${name}.${ext}`);

async function sign(args: string[], env: NodeJS.ProcessEnv = PASS, now?: Date) {
  const mem = memoryIo(env, now ? { now } : {});
  const code = await signCommand([...args, '--plain-http'], mem.io);
  return { code, out: mem.out(), err: mem.err() };
}

async function verify(args: string[]) {
  const mem = memoryIo();
  const code = await verifyCommand([...args, '--plain-http'], mem.io);
  return { code, out: mem.out(), err: mem.err() };
}

interface SigManifest {
  schemaVersion: number;
  mediaType: string;
  config: { mediaType: string; size: number; digest: string };
  layers: Array<{ mediaType: string; size: number; digest: string; annotations: Record<string, string> }>;
}

async function readSig(repo: string, digest: string): Promise<{ doc: SigManifest; mediaType: string }> {
  const m = await client.getManifest(repo, `${digest.replace(':', '-')}.sig`);
  return { doc: JSON.parse(Buffer.from(m.bytes).toString()) as SigManifest, mediaType: m.mediaType };
}

test('sign --format legacy by tag writes a cosign .sig artifact of the exact expected structure', async () => {
  const img = await pushImage(client, 'team/app', 'v1', 'sign-1');
  const before = Math.floor(Date.now() / 1000);
  const r = await sign([`${host}/team/app:v1`, '--key', key('alice', 'key'), '--format', 'legacy']);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.err, '', 'no progress lines when stderr is not a terminal');
  assert.match(
    r.out,
    new RegExp(
      `^signed ${host}/team/app@${img.digest} as ${host}/team/app:v1 with sha256:[0-9a-f]{64} \\(1 signature\\(s\\) in sha256-[0-9a-f]{64}\\.sig\\)\\n$`,
    ),
  );

  const { doc, mediaType } = await readSig('team/app', img.digest);
  assert.equal(mediaType, 'application/vnd.oci.image.manifest.v1+json');
  assert.deepEqual(Object.keys(doc), ['schemaVersion', 'mediaType', 'config', 'layers']);
  assert.equal(doc.schemaVersion, 2);
  assert.equal(doc.mediaType, 'application/vnd.oci.image.manifest.v1+json');
  assert.equal(doc.config.mediaType, 'application/vnd.oci.image.config.v1+json');
  assert.equal(doc.layers.length, 1);
  const layer = doc.layers[0]!;
  assert.equal(layer.mediaType, 'application/vnd.dev.cosign.simplesigning.v1+json');
  assert.deepEqual(Object.keys(layer.annotations), [COSIGN_SIGNATURE_ANNOTATION]);
  const sigB64 = layer.annotations[COSIGN_SIGNATURE_ANNOTATION]!;
  assert.match(sigB64, /^[A-Za-z0-9+/]+={0,2}$/);
  assert.equal(sigB64.length % 4, 0, 'padded standard base64');

  const payload = await client.getBlob('team/app', layer.digest);
  assert.equal(layer.size, payload.length);
  const p = JSON.parse(Buffer.from(payload).toString()) as {
    critical: {
      identity: { 'docker-reference': string };
      image: { 'docker-manifest-digest': string };
      type: string;
    };
    optional: { creator: string; timestamp: number };
  };
  assert.deepEqual(p.critical, {
    identity: { 'docker-reference': `${host}/team/app:v1` },
    image: { 'docker-manifest-digest': img.digest },
    type: 'cosign container image signature',
  });
  assert.match(p.optional.creator, /^trustgate \d+\.\d+\.\d+/);
  assert.ok(Number.isInteger(p.optional.timestamp) && Math.abs(p.optional.timestamp - before) < 60);
  const pub = parsePublicKeyPem(readFileSync(key('alice', 'pub'), 'utf8'));
  assert.equal(verifySignature(pub, payload, Buffer.from(sigB64, 'base64')), true);

  // The config blob is the one cosign writes: one diff_id (= layer digest) and history entry per layer.
  const cfg = JSON.parse(
    Buffer.from(await client.getBlob('team/app', doc.config.digest)).toString(),
  ) as Record<string, unknown>;
  assert.deepEqual(Object.keys(cfg), ['architecture', 'created', 'history', 'os', 'rootfs', 'config']);
  assert.deepEqual(cfg.rootfs, { type: 'layers', diff_ids: [layer.digest] });
  assert.deepEqual(cfg.history, [{ created: '0001-01-01T00:00:00Z' }]);
  assert.deepEqual(cfg.config, {});
});

test('a second key adds a second layer; verify passes with each key and fails with an unrelated one', async () => {
  const img = await pushImage(client, 'team/two', 'v1', 'sign-2');
  assert.equal(
    (await sign([`${host}/team/two:v1`, '--key', key('alice', 'key'), '--format', 'legacy'])).code,
    0,
  );
  const first = (await readSig('team/two', img.digest)).doc.layers[0];
  const r = await sign([`${host}/team/two:v1`, '--key', key('bob', 'key'), '--format', 'legacy']);
  assert.equal(r.code, 0, r.err);
  const { doc } = await readSig('team/two', img.digest);
  assert.equal(doc.layers.length, 2);
  assert.deepEqual(doc.layers[0], first, 'the existing layer is kept exactly');
  const cfg = JSON.parse(Buffer.from(await client.getBlob('team/two', doc.config.digest)).toString()) as {
    rootfs: { diff_ids: string[] };
  };
  assert.deepEqual(
    cfg.rootfs.diff_ids,
    doc.layers.map((l) => l.digest),
  );

  for (const who of ['alice', 'bob']) {
    const v = await verify([`${host}/team/two:v1`, '--key', key(who, 'pub')]);
    assert.equal(v.code, 0, v.out + v.err);
    assert.match(v.out, new RegExp(`signatures: 2 in sha256-[0-9a-f]{64}\\.sig`));
    assert.match(v.out, new RegExp(`verdict: {4}TRUSTED: team/two@${img.digest} is signed by ${who}\\n`));
  }
  const both = await verify([
    `${host}/team/two@${img.digest}`,
    '--key',
    key('alice', 'pub'),
    '--key',
    key('bob', 'pub'),
    '--threshold',
    '2',
    '--json',
  ]);
  assert.equal(both.code, 0, both.out);
  const rep = JSON.parse(both.out) as VerifyReport;
  assert.deepEqual(rep.verdict.signers, ['alice', 'bob']);
  assert.deepEqual(
    rep.signatures.map((s) => s.signedBy),
    [['alice'], ['bob']],
  );
  assert.equal(rep.signatures[1]?.payload?.dockerReference, `${host}/team/two:v1`);

  const bad = await verify([`${host}/team/two:v1`, '--key', key('mallory', 'pub')]);
  assert.equal(bad.code, 1);
  assert.match(bad.out, /#1 sha256:[0-9a-f]{64}: made by none of the given keys/);
  assert.match(bad.out, /payload claims \(unverified\) /);
  assert.match(
    bad.out,
    /verdict: {4}REFUSED \(untrusted-key\): team\/two@sha256:[0-9a-f]{64} has no valid signature from a key trusted for this repository: no key trusted for this repository made its signatures \(trusted: mallory\)\n/,
  );
});

test('unsigned image: verify says no-signature; registry errors exit 2', async () => {
  await pushImage(client, 'team/unsigned', 'v1', 'unsigned');
  const v = await verify([`${host}/team/unsigned:v1`, '--key', key('alice', 'pub')]);
  assert.equal(v.code, 1);
  assert.match(v.out, /signatures: none \(no sha256-[0-9a-f]{64}\.sig\)/);
  assert.match(v.out, /REFUSED \(no-signature\)/);
  const missing = await verify([`${host}/team/unsigned:nope`, '--key', key('alice', 'pub')]);
  assert.equal(missing.code, 2);
  assert.match(missing.err, /GET manifest team\/unsigned:nope: 404/);
});

test('verify weighs Sigstore bundle referrers too (cosign 3 layout on a bare registry:2: the referrers tag)', async () => {
  const img = await pushImage(client, 'team/bundled', 'v1', 'bundled');
  const pkcs8 = decryptCosignKey(readFileSync(key('alice', 'key'), 'utf8'), PASS.TRUSTGATE_KEY_PASSPHRASE);
  const bundle = buildCosignSignBundle(img.digest, bundleSignerFor(pkcs8));
  const ref = buildBundleReferrerManifest({
    bundle,
    subject: { mediaType: MEDIA_TYPES.ociManifest, digest: img.digest, size: img.bytes.length },
    created: new Date('2026-12-04T12:00:00Z'),
  });
  for (const b of ref.blobs) await client.uploadBlob('team/bundled', b.bytes);
  await client.putManifest('team/bundled', ref.digest, ref.manifest, MEDIA_TYPES.ociManifest);
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociIndex,
      manifests: [{ mediaType: MEDIA_TYPES.ociManifest, digest: ref.digest, size: ref.manifest.length }],
    }),
  );
  await client.putManifest('team/bundled', `sha256-${img.digest.slice(7)}`, index, MEDIA_TYPES.ociIndex);
  const v = await verify([`${host}/team/bundled:v1`, '--key', key('alice', 'pub')]);
  assert.equal(v.code, 0, v.out + v.err);
  assert.match(v.out, /bundles: {4}1 Sigstore bundle referrer/);
  const other = await verify([`${host}/team/bundled:v1`, '--key', key('bob', 'pub')]);
  assert.equal(other.code, 1);
});

test('sign writes a bundle by default: on a bare registry:2 the referrer and the referrers tag, no .sig; verify finds it', async () => {
  const img = await pushImage(client, 'team/bundle-sign', 'v1', 'bundle-sign');
  const s = await sign([`${host}/team/bundle-sign:v1`, '--key', key('bob', 'key')]);
  assert.equal(s.code, 0, s.err);
  assert.match(s.out, /\(Sigstore bundle in referrer sha256:[0-9a-f]{64}\)\n$/);
  // Signed by tag in the default format: the publisher is told the tag is not bound.
  assert.match(s.err, /note: a Sigstore bundle names no tag; .*tagBinding.*--format both/);
  const tag = await client.getManifestIfExists('team/bundle-sign', `sha256-${img.digest.slice(7)}`);
  assert.ok(tag, 'registry:2 has no referrers API: the referrers tag was written');
  const index = JSON.parse(Buffer.from(tag.bytes).toString()) as {
    manifests: Array<{ digest: string; artifactType?: string }>;
  };
  assert.equal(index.manifests.length, 1);
  assert.equal(index.manifests[0]!.artifactType, 'application/vnd.dev.sigstore.bundle.v0.3+json');
  const referrer = await client.getManifest('team/bundle-sign', index.manifests[0]!.digest);
  const doc = JSON.parse(Buffer.from(referrer.bytes).toString()) as { subject: unknown };
  assert.deepEqual(doc.subject, { mediaType: img.mediaType, size: img.bytes.length, digest: img.digest });
  assert.equal(
    await client.getManifestIfExists('team/bundle-sign', `sha256-${img.digest.slice(7)}.sig`),
    null,
  );
  const v = await verify([`${host}/team/bundle-sign:v1`, '--key', key('bob', 'pub')]);
  assert.equal(v.code, 0, v.out + v.err);
  assert.match(v.out, /bundles: {4}1 Sigstore bundle referrer/);
  // A bundle names no tag: under tag binding verify refuses it, and says how to sign.
  const bound = await verify([`${host}/team/bundle-sign:v1`, '--key', key('bob', 'pub'), '--tag-binding']);
  assert.equal(bound.code, 1, bound.out);
  assert.match(bound.out, /tag-not-bound/);
  // Signing again with the same key writes nothing; another key adds its own referrer.
  const again = await sign([`${host}/team/bundle-sign:v1`, '--key', key('bob', 'key')]);
  assert.equal(again.code, 0, again.err);
  assert.match(
    again.out,
    /^already signed: .*team\/bundle-sign@sha256:[0-9a-f]{64} has a Sigstore bundle by this key\n$/,
  );
  const alice = await sign([`${host}/team/bundle-sign:v1`, '--key', key('alice', 'key')]);
  assert.equal(alice.code, 0, alice.err);
  const after = await client.getManifest('team/bundle-sign', `sha256-${img.digest.slice(7)}`);
  assert.equal(
    (JSON.parse(Buffer.from(after.bytes).toString()) as { manifests: unknown[] }).manifests.length,
    2,
  );
  const bad = await sign([`${host}/team/bundle-sign:v1`, '--key', key('bob', 'key'), '--format', 'cms']);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /--format is bundle, legacy or both/);
});

test('sign --format both: a .sig naming the tag and a bundle referrer; the verdict names the key once', async () => {
  const img = await pushImage(client, 'team/both', 'v1', 'both');
  const s = await sign([`${host}/team/both:v1`, '--key', key('alice', 'key'), '--format', 'both']);
  assert.equal(s.code, 0, s.err);
  assert.equal(s.err, '', 'no tag-binding note: the legacy signature names the tag');
  assert.match(
    s.out,
    /^signed .* as .*team\/both:v1 .*in sha256-[0-9a-f]{64}\.sig\)\nsigned .*Sigstore bundle/,
  );
  assert.equal((await readSig('team/both', img.digest)).doc.layers.length, 1);
  assert.ok(await client.getManifestIfExists('team/both', `sha256-${img.digest.slice(7)}`));
  const v = await verify([`${host}/team/both:v1`, '--key', key('alice', 'pub'), '--tag-binding']);
  assert.equal(v.code, 0, v.out + v.err);
  assert.match(v.out, /TRUSTED: .* is signed by alice\n/);
});

test('an identical payload + signature is not added twice (Ed25519 is deterministic, same clock)', async () => {
  const img = await pushImage(client, 'team/dup', 'v1', 'dup');
  const now = new Date('2026-02-01T10:00:00Z');
  assert.equal(
    (await sign([`${host}/team/dup:v1`, '--key', key('bob', 'key'), '--format', 'legacy'], PASS, now)).code,
    0,
  );
  const again = await sign(
    [`${host}/team/dup:v1`, '--key', key('bob', 'key'), '--format', 'legacy'],
    PASS,
    now,
  );
  assert.equal(again.code, 0, again.err);
  assert.match(again.out, /^already signed: /);
  assert.equal((await readSig('team/dup', img.digest)).doc.layers.length, 1);
  const later = await sign(
    [`${host}/team/dup:v1`, '--key', key('bob', 'key'), '--format', 'legacy'],
    PASS,
    new Date('2026-02-01T10:00:01Z'),
  );
  assert.equal(later.code, 0);
  assert.equal((await readSig('team/dup', img.digest)).doc.layers.length, 2);
});

test('sign by digest with --tag: both formats, the legacy payload names REPO:T, then T points at the digest', async () => {
  const img = await pushImage(client, 'team/bydigest', 'staging', 'digest');
  const r = await sign([
    `${host}/team/bydigest@${img.digest}`,
    '--key',
    key('alice', 'key'),
    '--tag',
    'release',
  ]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, new RegExp(`tagged ${host}/team/bydigest:release -> ${img.digest}`));
  // --tag asks for a signature naming the tag: without --format it writes both formats.
  assert.match(r.out, /in sha256-[0-9a-f]{64}\.sig\)\nsigned .*\(Sigstore bundle in referrer sha256:/);
  assert.ok(await client.getManifestIfExists('team/bydigest', `sha256-${img.digest.slice(7)}`));
  const tagged = await client.getManifest('team/bydigest', 'release');
  assert.deepEqual(Buffer.from(tagged.bytes), Buffer.from(img.bytes));
  const { doc } = await readSig('team/bydigest', img.digest);
  const p = JSON.parse(
    Buffer.from(await client.getBlob('team/bydigest', doc.layers[0]!.digest)).toString(),
  ) as {
    critical: { identity: { 'docker-reference': string } };
  };
  assert.equal(p.critical.identity['docker-reference'], `${host}/team/bydigest:release`);
  const v = await verify([`${host}/team/bydigest:release`, '--key', key('alice', 'pub'), '--tag-binding']);
  assert.equal(v.code, 0, v.out);
  // Without a tag, the payload names the repository only (as cosign does).
  const img2 = await pushImage(client, 'team/bydigest', 'other', 'digest-2');
  assert.equal(
    (await sign([`${host}/team/bydigest@${img2.digest}`, '--key', key('alice', 'key'), '--format', 'legacy']))
      .code,
    0,
  );
  const d2 = (await readSig('team/bydigest', img2.digest)).doc;
  const p2 = JSON.parse(
    Buffer.from(await client.getBlob('team/bydigest', d2.layers[0]!.digest)).toString(),
  ) as {
    critical: { identity: { 'docker-reference': string } };
  };
  assert.equal(p2.critical.identity['docker-reference'], `${host}/team/bydigest`);
});

test('--recursive signs an index and every child; without it only the index', async () => {
  const a = await pushImage(client, 'team/multi', 'a', 'child-a');
  const b = await pushImage(client, 'team/multi', 'b', 'child-b');
  const idx = await pushIndex(client, 'team/multi', 'v1', [a, b]);
  const r = await sign([
    `${host}/team/multi:v1`,
    '--key',
    key('alice', 'key'),
    '--recursive',
    '--format',
    'legacy',
  ]);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out.split('\n').filter((l) => l.startsWith('signed ')).length, 3);
  for (const d of [idx.digest, a.digest, b.digest]) {
    const { doc } = await readSig('team/multi', d);
    const p = JSON.parse(
      Buffer.from(await client.getBlob('team/multi', doc.layers[0]!.digest)).toString(),
    ) as {
      critical: { identity: { 'docker-reference': string }; image: { 'docker-manifest-digest': string } };
    };
    assert.equal(p.critical.image['docker-manifest-digest'], d);
    assert.equal(p.critical.identity['docker-reference'], `${host}/team/multi:v1`);
  }
  const v = await verify([`${host}/team/multi@${b.digest}`, '--key', key('alice', 'pub')]);
  assert.equal(v.code, 0, v.out);

  const c = await pushImage(client, 'team/multi2', 'c', 'child-c');
  const idx2 = await pushIndex(client, 'team/multi2', 'v1', [c]);
  assert.equal(
    (await sign([`${host}/team/multi2:v1`, '--key', key('alice', 'key'), '--format', 'legacy'])).code,
    0,
  );
  assert.ok(await client.getManifestIfExists('team/multi2', `${idx2.digest.replace(':', '-')}.sig`));
  assert.equal(await client.getManifestIfExists('team/multi2', `${c.digest.replace(':', '-')}.sig`), null);
  const notIndex = await sign([`${host}/team/multi2:c`, '--key', key('alice', 'key'), '--recursive']);
  assert.equal(notIndex.code, 2);
  assert.match(notIndex.err, /--recursive needs an index/);
});

test('a reference with neither tag nor digest is a usage error, never a GET of manifests/undefined', async () => {
  await pushImage(client, 'team/noref', 'v1', 'noref');
  const v = await verify([`${host}/team/noref`, '--key', key('alice', 'pub')]);
  assert.equal(v.code, 2);
  assert.match(v.err, /REF needs a :TAG or an @DIGEST/);
  const s = await sign([`${host}/team/noref`, '--key', key('alice', 'key')]);
  assert.equal(s.code, 2);
  assert.match(s.err, /REF needs a :TAG or an @DIGEST/);
  assert.doesNotMatch(`${v.err}${s.err}`, /undefined/);
});

test('sign refuses a wrong passphrase, a missing key, and a .sig tag holding something else', async () => {
  await pushImage(client, 'team/refuse', 'v1', 'refuse');
  const wrong = await sign([`${host}/team/refuse:v1`, '--key', key('alice', 'key')], {
    COSIGN_PASSWORD: 'nope',
  });
  assert.equal(wrong.code, 1);
  assert.match(wrong.err, /cannot decrypt the private key: wrong passphrase/);
  const missing = await sign([`${host}/team/refuse:v1`, '--key', path.join(keys, 'none.key')]);
  assert.equal(missing.code, 2);
  assert.match(missing.err, /cannot read --key/);
  // A tag named like a signature artifact that holds an ordinary image is never replaced.
  const img = await client.getManifest('team/refuse', 'v1');
  const decoy = await pushImage(client, 'team/refuse', 'decoy', 'decoy');
  await client.putManifest(
    'team/refuse',
    `${img.digest.replace(':', '-')}.sig`,
    decoy.bytes,
    decoy.mediaType,
  );
  const r = await sign([`${host}/team/refuse:v1`, '--key', key('alice', 'key'), '--format', 'both']);
  assert.equal(r.code, 1);
  assert.match(
    r.err,
    /refusing to replace team\/refuse:sha256-[0-9a-f]{64}\.sig: .* does not hold a cosign signature artifact/,
  );
  // --format both writes the legacy signature first: the refusal stops it before any bundle.
  assert.equal(await client.getManifestIfExists('team/refuse', `sha256-${img.digest.slice(7)}`), null);
  const usage = await sign([`${host}/team/refuse:v1`, '--key', key('alice', 'key'), '--tag', 'x']);
  assert.equal(usage.code, 2);
  assert.match(usage.err, /--tag needs REF by digest/);
  const noHost = await sign(['team/refuse:v1', '--key', key('alice', 'key')]);
  assert.equal(noHost.code, 2);
  assert.match(noHost.err, /needs a registry host/);
});

test('verify explains a .sig tag that holds no signature artifact (text and --json)', async () => {
  const img = await pushImage(client, 'team/decoy-sig', 'v1', 'decoy-sig-image');
  const decoy = await pushImage(client, 'team/decoy-sig', 'decoy', 'decoy-sig-decoy');
  await client.putManifest(
    'team/decoy-sig',
    `${img.digest.replace(':', '-')}.sig`,
    decoy.bytes,
    decoy.mediaType,
  );
  const text = await verify([`${host}/team/decoy-sig:v1`, '--key', key('alice', 'pub')]);
  assert.equal(text.code, 1, text.err);
  assert.match(
    text.out,
    /signatures: unusable: tag sha256-[0-9a-f]{64}\.sig does not hold a cosign signature artifact/,
  );
  const json = await verify([`${host}/team/decoy-sig:v1`, '--key', key('alice', 'pub'), '--json']);
  assert.equal(json.code, 1, json.err);
  const report = JSON.parse(json.out) as VerifyReport;
  assert.equal(report.signatureTag, `${img.digest.replace(':', '-')}.sig`);
  assert.match(report.signatureArtifactProblem ?? '', /does not hold a cosign signature artifact/);
  assert.equal(report.verdict.ok, false);
});

test('sign and verify through HTTPS with mTLS and the token flow (--cert-dir, env credentials)', async () => {
  const certs = makeCerts(makeTempDir('sign-certs'));
  const front = await startTokenFront(reg.url, certs, { user: 'pub', password: 'lisher', mtls: true });
  try {
    const img = await pushImage(client, 'secure/app', 'v1', 'secure');
    const env = { ...PASS, TRUSTGATE_USERNAME: 'pub', TRUSTGATE_PASSWORD: 'lisher' };
    const mem = memoryIo(env);
    const code = await signCommand(
      [`${front.host}/secure/app:v1`, '--key', key('alice', 'key'), '--cert-dir', certs.certDir],
      mem.io,
    );
    assert.equal(code, 0, mem.err());
    // Signing (a bundle, the default) reads and writes with one pull,push token.
    assert.ok(front.tokenRequests.length >= 1 && front.tokenRequests.every((t) => t.user === 'pub'));
    assert.ok(front.tokenRequests.some((t) => t.scopes.includes('repository:secure/app:pull,push')));
    const vm = memoryIo(env);
    const vcode = await verifyCommand(
      [`${front.host}/secure/app:v1`, '--key', key('alice', 'pub'), '--cert-dir', certs.certDir],
      vm.io,
    );
    assert.equal(vcode, 0, vm.out() + vm.err());
    assert.match(vm.out(), new RegExp(`TRUSTED: secure/app@${img.digest} is signed by alice`));
    // Without the client certificate the front refuses: a readable I/O failure, exit 2.
    const nm = memoryIo(env);
    assert.equal(
      await verifyCommand(
        [`${front.host}/secure/app:v1`, '--key', key('alice', 'pub'), '--cert-dir', certs.caOnlyDir],
        nm.io,
      ),
      2,
    );
    assert.match(nm.err(), /403 DENIED: client certificate required/);
    // --tls-verify=false works and warns loudly.
    const tm = memoryIo(env);
    const tcode = await verifyCommand(
      [
        `${front.host}/secure/app:v1`,
        '--key',
        key('alice', 'pub'),
        '--tls-verify=false',
        '--client-cert',
        path.join(certs.certDir, 'client.cert'),
        '--client-key',
        path.join(certs.certDir, 'client.key'),
      ],
      tm.io,
    );
    assert.equal(tcode, 0, tm.err());
    assert.match(
      tm.err(),
      /^WARNING: --tls-verify=false: the certificate of 127\.0\.0\.1:\d+ is NOT checked/,
    );
  } finally {
    await front.close();
  }
});
