/**
 * Signature edge cases through trustgate and a real registry:2 (the pure core has its own unit
 * tests in test/core): the layer cap, oversized payloads, non-canonical base64 annotations,
 * ambiguous payload JSON, docker-reference spellings, a threshold met by one key under two names,
 * key validity windows, Ed25519ph (cosign >= 2.6 --key), raw r||s ECDSA, and signature artifacts
 * pushed by digest instead of under their sha256-<hex>.sig tag.
 *
 * Signature artifacts are written straight into registry:2 (the publisher side); every verdict is
 * observed as a consumer pull through trustgate.
 */
import assert from 'node:assert/strict';
import { createPrivateKey, randomBytes, sign as nodeSign } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as ed from '@noble/ed25519';
import { sha512 } from '@noble/hashes/sha2.js';
import { buildSimpleSigningPayload } from '../../src/core/signature/payload.js';
import { generateKeyPair, signPayload } from '../../src/core/signature/sign.js';
import { publicKeyToPem } from '../../src/core/signature/keys.js';
import { verifyEd25519ph } from '../../src/core/signature/verify.js';
import { COSIGN_SIGNATURE_ANNOTATION, MEDIA_TYPES } from '../../src/core/manifest.js';
import { signatureTagFor } from '../../src/core/reference.js';
import { makeTempDir, removeTempDir, startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';
import { assertBlobNotAdmitted, bearer, getToken, request, type Reply } from '../helpers/http.js';
import { direct, pushBlob, pushManifest, pushRandomImage, sha256 } from '../helpers/registry-direct.js';

const OCI = MEDIA_TYPES.ociManifest;

// ---------------------------------------------------------------------------------------------
// Ed25519ph signing (RFC 8032 §5.1, phflag 1, empty context), as Go's ed25519 with Hash: SHA512
// and so cosign >= 2.6 with --key. Written on noble's point arithmetic; checked against the RFC's
// TEST abc vector below before it is used.
// ---------------------------------------------------------------------------------------------
const L = 2n ** 252n + 27742317777372353535851937790883648493n;
const DOM2_PH = Uint8Array.from([...Buffer.from('SigEd25519 no Ed25519 collisions'), 1, 0]);
const le = (b: Uint8Array): bigint => BigInt(`0x${Buffer.from(b).reverse().toString('hex') || '0'}`);
const le32 = (n: bigint): Uint8Array => Buffer.from(n.toString(16).padStart(64, '0'), 'hex').reverse();
function ed25519ph(seed: Uint8Array, msg: Uint8Array): { sig: Uint8Array; pub: Uint8Array } {
  const h = sha512(seed);
  const a = Uint8Array.from(h.subarray(0, 32));
  a[0]! &= 248;
  a[31]! &= 127;
  a[31]! |= 64;
  const s = le(a) % L;
  const pub = ed.Point.BASE.multiply(s).toBytes();
  const ph = sha512(msg);
  const r = le(sha512(ed.etc.concatBytes(DOM2_PH, h.subarray(32), ph))) % L;
  const R = ed.Point.BASE.multiply(r).toBytes();
  const k = le(sha512(ed.etc.concatBytes(DOM2_PH, R, pub, ph))) % L;
  return { sig: ed.etc.concatBytes(R, le32((r + k * s) % L)), pub };
}

interface Layer {
  payload: Buffer;
  signature?: string;
  /** Declared size (default: the payload's length). */
  size?: number;
  mediaType?: string;
}

describe('security: signature edge cases through the pipeline', { timeout: 240_000 }, () => {
  let registry: RegistryHandle;
  let gate: TestGate;
  let keysDir: string;
  let consumerToken: (repo: string) => Promise<string>;
  const users = { consumer: 'consumer-password', publisher: 'publisher-password' };
  const release = generateKeyPair('ecdsa-p256');
  const stranger = generateKeyPair('ecdsa-p256');
  const twin = generateKeyPair('ecdsa-p256');
  const k1 = generateKeyPair('ecdsa-p256');
  const k2 = generateKeyPair('ecdsa-p256');
  const old = generateKeyPair('ecdsa-p256');
  const future = generateKeyPair('ed25519');
  const edSeed = new Uint8Array(randomBytes(32));
  // PKCS#8 of an Ed25519 seed (RFC 8410): a fixed 16-byte prefix, then the 32-byte seed.
  const edPkcs8 = new Uint8Array(
    Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), Buffer.from(edSeed)]),
  );
  const edPub = ed25519ph(edSeed, new Uint8Array()).pub;

  before(async () => {
    registry = await startRegistry();
    keysDir = makeTempDir('sig-keys');
    const files: Record<string, string> = {
      'release.pub': release.publicKeyPem,
      'twin-a.pub': twin.publicKeyPem,
      // the same key bytes under a second name (a copied file, or a re-import)
      'twin-b.pub': twin.publicKeyPem,
      'k1.pub': k1.publicKeyPem,
      'k2.pub': k2.publicKeyPem,
      'old.pub': old.publicKeyPem,
      'old.meta.json': JSON.stringify({
        notBefore: '2020-01-01T00:00:00Z',
        notAfter: '2021-01-01T00:00:00Z',
      }),
      'future.pub': future.publicKeyPem,
      'future.meta.json': JSON.stringify({ notBefore: '2099-01-01T00:00:00Z' }),
      'ed.pub': publicKeyToPem({ alg: 'ed25519', raw: edPub }),
    };
    for (const [f, text] of Object.entries(files)) writeFileSync(path.join(keysDir, f), text);
    gate = await startTestGate({
      registryUrl: registry.url,
      users,
      keysDir,
      policy: {
        access: [{ repos: ['**'], pull: ['consumer', 'publisher'], push: ['publisher'], delete: [] }],
      },
      trustRules: [
        { repos: ['thr/**'], keys: ['twin-a', 'twin-b'], threshold: 2 },
        { repos: ['thr2/**'], keys: ['k1', 'k2'], threshold: 2 },
        { repos: ['exp/**'], keys: ['old'] },
        { repos: ['nyv/**'], keys: ['future'] },
        { repos: ['ed/**'], keys: ['ed'] },
        { repos: ['**'], keys: ['release'] },
      ],
    });
    assert.deepEqual(gate.tg.keyring.snapshot.errors, []);
    consumerToken = (repo) =>
      getToken(gate.url, gate.ca, 'consumer', users.consumer, [`repository:${repo}:pull`]);
  });
  after(async () => {
    await gate?.close();
    await registry?.stop();
    if (keysDir) removeTempDir(keysDir);
  });

  const image = async (repo: string) => pushRandomImage(registry.url, repo, 'v1');
  const payloadFor = (repo: string, digest: string, o: { ref?: string; timestamp?: number } = {}) =>
    Buffer.from(
      buildSimpleSigningPayload({
        dockerReference: o.ref ?? `localhost/${repo}`,
        manifestDigest: digest,
        ...(o.timestamp !== undefined ? { timestamp: o.timestamp } : {}),
      }),
    );
  const sig = (key: Uint8Array, payload: Buffer): string =>
    Buffer.from(signPayload(key, payload)).toString('base64');

  /** Writes the signature artifact for repo@digest with exactly these layers (replacing any). */
  async function writeSig(repo: string, digest: string, layers: Layer[]): Promise<void> {
    const config = Buffer.from('{}');
    const configDigest = await pushBlob(registry.url, repo, config);
    const descs = [];
    const pushed = new Set<string>();
    for (const l of layers) {
      const d = sha256(l.payload);
      if (!pushed.has(d)) {
        await pushBlob(registry.url, repo, l.payload);
        pushed.add(d);
      }
      descs.push({
        mediaType: l.mediaType ?? MEDIA_TYPES.cosignSimpleSigning,
        digest: d,
        size: l.size ?? l.payload.length,
        ...(l.signature !== undefined ? { annotations: { [COSIGN_SIGNATURE_ANNOTATION]: l.signature } } : {}),
      });
    }
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI,
        config: { mediaType: MEDIA_TYPES.ociConfig, digest: configDigest, size: config.length },
        layers: descs,
      }),
    );
    await pushManifest(registry.url, repo, signatureTagFor(digest), manifest, OCI);
  }

  const pull = async (repo: string, ref = 'v1'): Promise<Reply> =>
    request(gate.url, gate.ca, {
      path: `/v2/${repo}/manifests/${ref}`,
      headers: { ...bearer(await consumerToken(repo)), accept: OCI },
    });
  const expectPull = async (repo: string, status: 200 | 403, what: string, match?: RegExp) => {
    const r = await pull(repo);
    assert.equal(r.status, status, `${what}: ${r.status} ${r.body.toString()}`);
    if (status === 403) assert.doesNotMatch(r.body.toString(), /schemaVersion/, what);
    if (match) assert.match(r.body.toString(), match, what);
    return r;
  };

  it('the layer cap: only the first 64 signature layers are read (a valid 65th is not reached)', async () => {
    const junkFor = (repo: string, digest: string): Layer => {
      const p = payloadFor(repo, digest, { timestamp: 1 });
      return { payload: p, signature: sig(stranger.pkcs8Der, p) };
    };
    const last = await image('cap/last');
    const good = payloadFor('cap/last', last.digest);
    await writeSig('cap/last', last.digest, [
      ...Array.from({ length: 64 }, () => junkFor('cap/last', last.digest)),
      { payload: good, signature: sig(release.pkcs8Der, good) },
    ]);
    const t0 = Date.now();
    await expectPull('cap/last', 403, 'valid signature at layer 65', /untrusted|no key trusted/);
    assert.ok(Date.now() - t0 < 10_000, `${Date.now() - t0} ms`);

    const first = await image('cap/first');
    const good2 = payloadFor('cap/first', first.digest);
    await writeSig('cap/first', first.digest, [
      { payload: good2, signature: sig(release.pkcs8Der, good2) },
      ...Array.from({ length: 80 }, () => junkFor('cap/first', first.digest)),
    ]);
    await expectPull('cap/first', 200, 'valid signature at layer 1 of 81');
  });

  it('a payload over 64 KiB is skipped unread, whether its declared size is honest or not', async () => {
    const img = await image('big/honest');
    const bigPayload = (repo: string, digest: string) =>
      Buffer.from(
        JSON.stringify({
          critical: {
            identity: { 'docker-reference': `localhost/${repo}` },
            image: { 'docker-manifest-digest': digest },
            type: 'cosign container image signature',
          },
          optional: { creator: 'x'.repeat(70 * 1024) },
        }),
      );
    const p = bigPayload('big/honest', img.digest);
    await writeSig('big/honest', img.digest, [{ payload: p, signature: sig(release.pkcs8Der, p) }]);
    await expectPull('big/honest', 403, 'a validly signed 70 KiB payload');

    // The descriptor lies about the size (registry:2 does not check it): the read stops at the
    // bound and the layer is skipped; a valid signature next to it still counts.
    const liar = await image('big/liar');
    const lp = bigPayload('big/liar', liar.digest);
    const small = payloadFor('big/liar', liar.digest);
    await writeSig('big/liar', liar.digest, [
      { payload: lp, signature: sig(release.pkcs8Der, lp), size: 1000 },
      { payload: small, signature: sig(release.pkcs8Der, small) },
    ]);
    await expectPull('big/liar', 200, 'an oversized lying layer next to a valid signature');
    const alone = await image('big/liar-alone');
    const ap = bigPayload('big/liar-alone', alone.digest);
    await writeSig('big/liar-alone', alone.digest, [
      { payload: ap, signature: sig(release.pkcs8Der, ap), size: 1000 },
    ]);
    await expectPull('big/liar-alone', 403, 'an oversized lying layer alone');
  });

  it('the signature annotation must be standard padded base64: unpadded, whitespace and base64url are refused', async () => {
    // Ed25519 signatures are 64 bytes: always two `=` of padding. Find a payload whose signature
    // has a `+` or `/`, so the base64url spelling differs.
    const variants: Array<[string, (s: string) => string, 200 | 403]> = [
      ['standard, padded (control)', (s) => s, 200],
      ['unpadded', (s) => s.replace(/=+$/, ''), 403],
      ['line break inside', (s) => `${s.slice(0, 40)}\n${s.slice(40)}`, 403],
      ['leading space', (s) => ` ${s}`, 403],
      ['trailing newline', (s) => `${s}\n`, 403],
      ['base64url', (s) => s.replace(/\+/g, '-').replace(/\//g, '_'), 403],
      ['base64url unpadded', (s) => s.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, ''), 403],
    ];
    for (const [i, [what, mangle, status]] of variants.entries()) {
      const repo = `ed/b64-${i}`;
      const img = await image(repo);
      let p: Buffer;
      let s: string;
      let ts = 0;
      do {
        p = payloadFor(repo, img.digest, { timestamp: ts++ });
        s = sig(edPkcs8, p);
      } while (!/[+/]/.test(s) && ts < 200);
      assert.match(s, /==$/);
      await writeSig(repo, img.digest, [{ payload: p, signature: mangle(s) }]);
      await expectPull(repo, status, what, status === 403 ? /not valid base64/ : undefined);
    }
  });

  it('payload JSON with duplicate or case-variant keys, or an uppercase-hex digest, is refused', async () => {
    const crit = (repo: string, digest: string, digestKeys = `"docker-manifest-digest":"${digest}"`) =>
      `{"identity":{"docker-reference":"localhost/${repo}"},"image":{${digestKeys}},"type":"cosign container image signature"}`;
    const cases: Array<[string, (repo: string, d: string) => string, 200 | 403]> = [
      ['canonical hand-written (control)', (r, d) => `{"critical":${crit(r, d)},"optional":null}`, 200],
      [
        'critical twice',
        (r, d) => `{"critical":${crit(r, d)},"critical":${crit(r, d)},"optional":null}`,
        403,
      ],
      ['optional twice', (r, d) => `{"critical":${crit(r, d)},"optional":null,"optional":null}`, 403],
      [
        'Critical next to critical',
        (r, d) => `{"critical":${crit(r, d)},"Critical":${crit(r, d)},"optional":null}`,
        403,
      ],
      [
        'Docker-Manifest-Digest next to docker-manifest-digest',
        (r, d) =>
          `{"critical":${crit(r, d, `"docker-manifest-digest":"${d}","Docker-Manifest-Digest":"${d}"`)},"optional":null}`,
        403,
      ],
      [
        'uppercase hex digest',
        (r, d) => `{"critical":${crit(r, `sha256:${d.slice(7).toUpperCase()}`)},"optional":null}`,
        403,
      ],
      [
        'Sha256 algorithm name',
        (r, d) => `{"critical":${crit(r, `SHA256:${d.slice(7)}`)},"optional":null}`,
        403,
      ],
    ];
    for (const [i, [what, build, status]] of cases.entries()) {
      const repo = `pl/case-${i}`;
      const img = await image(repo);
      const p = Buffer.from(build(repo, img.digest));
      await writeSig(repo, img.digest, [{ payload: p, signature: sig(release.pkcs8Der, p) }]);
      await expectPull(repo, status, what);
    }
  });

  it('docker-reference: another host, no host, repo@digest and repo:tag are allowed; a trailing slash or other digest is not', async () => {
    const cases: Array<[string, (repo: string, d: string, other: string) => string, 200 | 403]> = [
      // Policy (documented in core/trust.ts): the host is ignored, the repository path is compared.
      ['different host, same repository', (r) => `registry.example.com:5000/${r}`, 200],
      ['no host', (r) => r, 200],
      ['repo@digest of this manifest', (r, d) => `localhost/${r}@${d}`, 200],
      ['repo:tag@digest', (r, d) => `localhost/${r}:v1@${d}`, 200],
      ['repo:tag (tag binding off)', (r) => `localhost/${r}:v1`, 200],
      ['repo@digest of another manifest', (r, _d, o) => `localhost/${r}@${o}`, 403],
      ['trailing slash', (r) => `localhost/${r}/`, 403],
      ['host only', () => 'localhost', 403],
      ['another repository under the same prefix', (r) => `localhost/${r}-evil`, 403],
    ];
    const other = (await image('ref/other')).digest;
    for (const [i, [what, ref, status]] of cases.entries()) {
      const repo = `ref/case-${i}`;
      const img = await image(repo);
      // built by hand: buildSimpleSigningPayload refuses what the grammar refuses
      const p = Buffer.from(
        JSON.stringify({
          critical: {
            identity: { 'docker-reference': ref(repo, img.digest, other) },
            image: { 'docker-manifest-digest': img.digest },
            type: 'cosign container image signature',
          },
          optional: null,
        }),
      );
      await writeSig(repo, img.digest, [{ payload: p, signature: sig(release.pkcs8Der, p) }]);
      await expectPull(repo, status, what);
    }
  });

  it('threshold 2 is not met by one key trusted under two names (twin-a.pub and twin-b.pub hold the same bytes)', async () => {
    const img = await image('thr/app');
    const p = payloadFor('thr/app', img.digest);
    await writeSig('thr/app', img.digest, [{ payload: p, signature: sig(twin.pkcs8Der, p) }]);
    await expectPull('thr/app', 403, 'one key, two names', /needs 2/);
    // nor by the same key signing twice
    const img2 = await image('thr/twice');
    const a = payloadFor('thr/twice', img2.digest, { timestamp: 1 });
    const b = payloadFor('thr/twice', img2.digest, { timestamp: 2 });
    await writeSig('thr/twice', img2.digest, [
      { payload: a, signature: sig(twin.pkcs8Der, a) },
      { payload: b, signature: sig(twin.pkcs8Der, b) },
    ]);
    await expectPull('thr/twice', 403, 'one key, two signatures, two names');
    // control: two distinct keys meet it, one does not
    const ok = await image('thr2/app');
    const q = payloadFor('thr2/app', ok.digest);
    await writeSig('thr2/app', ok.digest, [
      { payload: q, signature: sig(k1.pkcs8Der, q) },
      { payload: q, signature: sig(k2.pkcs8Der, q) },
    ]);
    await expectPull('thr2/app', 200, 'two distinct keys');
    const one = await image('thr2/one');
    const o = payloadFor('thr2/one', one.digest);
    await writeSig('thr2/one', one.digest, [{ payload: o, signature: sig(k1.pkcs8Der, o) }]);
    await expectPull('thr2/one', 403, 'one of two keys', /needs 2/);
  });

  it('a key outside its validity window (notAfter past, notBefore future) admits nothing', async () => {
    const e = await image('exp/app');
    const p = payloadFor('exp/app', e.digest);
    await writeSig('exp/app', e.digest, [{ payload: p, signature: sig(old.pkcs8Der, p) }]);
    await expectPull('exp/app', 403, 'expired key', /old, which is not valid at/);
    const f = await image('nyv/app');
    const q = payloadFor('nyv/app', f.digest);
    await writeSig('nyv/app', f.digest, [{ payload: q, signature: sig(future.pkcs8Der, q) }]);
    await expectPull('nyv/app', 403, 'not-yet-valid key', /future, which is not valid at/);
  });

  it('Ed25519ph signatures (cosign >= 2.6 --key) are accepted, as are pure Ed25519 ones', async () => {
    // the signer reproduces RFC 8032 §7.3 TEST abc
    const rfc = ed25519ph(
      Buffer.from('833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42', 'hex'),
      Buffer.from('abc'),
    );
    assert.equal(
      Buffer.from(rfc.sig).toString('hex'),
      '98a70222f0b8121aa9d30f813d683f809e462b469c7ff87639499bb94e6dae4131f85042463c2a355a2003d062adf5aaa10b8c61e636062aaad11c2a26083406',
    );
    const img = await image('ed/ph');
    const p = payloadFor('ed/ph', img.digest);
    const ph = ed25519ph(edSeed, p).sig;
    assert.ok(verifyEd25519ph(edPub, p, ph));
    await writeSig('ed/ph', img.digest, [{ payload: p, signature: Buffer.from(ph).toString('base64') }]);
    await expectPull('ed/ph', 200, 'Ed25519ph');
    const pure = await image('ed/pure');
    const q = payloadFor('ed/pure', pure.digest);
    await writeSig('ed/pure', pure.digest, [{ payload: q, signature: sig(edPkcs8, q) }]);
    await expectPull('ed/pure', 200, 'pure Ed25519');
  });

  it('an ECDSA signature in raw r||s (IEEE P1363) form is refused; DER is accepted', async () => {
    const key = createPrivateKey({ key: Buffer.from(release.pkcs8Der), format: 'der', type: 'pkcs8' });
    const raw = await image('ecdsa/raw');
    const p = payloadFor('ecdsa/raw', raw.digest);
    const rs = nodeSign('sha256', p, { key, dsaEncoding: 'ieee-p1363' });
    assert.equal(rs.length, 64);
    await writeSig('ecdsa/raw', raw.digest, [{ payload: p, signature: rs.toString('base64') }]);
    await expectPull('ecdsa/raw', 403, 'raw r||s');
    const der = await image('ecdsa/der');
    const q = payloadFor('ecdsa/der', der.digest);
    await writeSig('ecdsa/der', der.digest, [
      { payload: q, signature: nodeSign('sha256', q, { key, dsaEncoding: 'der' }).toString('base64') },
    ]);
    await expectPull('ecdsa/der', 200, 'DER');
  });

  it('Policy: a signature artifact pushed by digest is refused (it enters only under its .sig tag, where it is verified)', async () => {
    const repo = 'byd/app';
    const pushTok = await getToken(gate.url, gate.ca, 'publisher', users.publisher, [
      `repository:${repo}:pull,push`,
    ]);
    // An unsigned image disguised as a cosign artifact: OCI config, simplesigning-typed layers.
    const cfg = Buffer.from('{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/evil"]}}');
    const cfgDigest = await pushBlob(registry.url, repo, cfg);
    const layer = randomBytes(512);
    const layerDigest = await pushBlob(registry.url, repo, layer);
    const disguised = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI,
        config: { mediaType: MEDIA_TYPES.ociConfig, digest: cfgDigest, size: cfg.length },
        layers: [{ mediaType: MEDIA_TYPES.cosignSimpleSigning, digest: layerDigest, size: layer.length }],
      }),
    );
    const d = sha256(disguised);
    const put = await request(gate.url, gate.ca, {
      method: 'PUT',
      path: `/v2/${repo}/manifests/${d}`,
      headers: { ...bearer(pushTok), 'content-type': OCI },
      body: disguised,
    });
    assert.equal(put.status, 403, put.body.toString());
    assert.match(put.body.toString(), /sha256-<hex>\.sig tag/);
    const stored = await direct(registry.url, 'HEAD', `/v2/${repo}/manifests/${d}`, undefined, {
      accept: OCI,
    });
    assert.equal(stored.status, 404, 'nothing reached the registry');
    const byDigest = await pull(repo, d);
    assert.notEqual(byDigest.status, 200, 'a consumer pulled the disguised image by digest');
    const blob = await request(gate.url, gate.ca, {
      path: `/v2/${repo}/blobs/${layerDigest}`,
      headers: bearer(await consumerToken(repo)),
    });
    assertBlobNotAdmitted(blob, 'its layer was admitted');

    // control: a genuine signature still goes in under its tag, through trustgate, and verifies
    const img = await image(repo);
    const p = payloadFor(repo, img.digest);
    const pd = await pushBlob(registry.url, repo, p);
    const c = await pushBlob(registry.url, repo, Buffer.from('{}'));
    const sigManifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI,
        config: { mediaType: MEDIA_TYPES.ociConfig, digest: c, size: 2 },
        layers: [
          {
            mediaType: MEDIA_TYPES.cosignSimpleSigning,
            digest: pd,
            size: p.length,
            annotations: { [COSIGN_SIGNATURE_ANNOTATION]: sig(release.pkcs8Der, p) },
          },
        ],
      }),
    );
    const byTag = await request(gate.url, gate.ca, {
      method: 'PUT',
      path: `/v2/${repo}/manifests/${signatureTagFor(img.digest)}`,
      headers: { ...bearer(pushTok), 'content-type': OCI },
      body: sigManifest,
    });
    assert.equal(byTag.status, 201, byTag.body.toString());
    await expectPull(repo, 200, 'signed through its .sig tag');
    // and the same genuine artifact by digest is refused like any other
    const again = await request(gate.url, gate.ca, {
      method: 'PUT',
      path: `/v2/${repo}/manifests/${sha256(sigManifest)}`,
      headers: { ...bearer(pushTok), 'content-type': OCI },
      body: sigManifest,
    });
    assert.equal(again.status, 403);
  });
});
