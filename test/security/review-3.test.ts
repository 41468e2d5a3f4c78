/**
 * Review 3 (issue 13 additions): adversarial tests of the OCI 1.1 referrers API, bundle referrers
 * read by digest by pull-only callers, and bundle evidence in the trust decision. HELD tests held
 * at review; `fixed` tests broke at review (they failed before the fix) and pass now.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MEDIA_TYPES } from '../../src/core/manifest.js';
import { EMPTY_JSON_DIGEST, MEDIA_TYPE_OCI_EMPTY } from '../../src/core/referrers.js';
import {
  buildBundleReferrerManifest,
  buildCosignSignBundle,
  bundleSignerFor,
} from '../../src/core/evidence/bundle-writer.js';
import { startTrustStack, type TrustStack } from '../helpers/trust-stack.js';
import { pushBlob, pushManifest, pushRandomImage, sha256 } from '../helpers/registry-direct.js';
import { signDirect } from '../helpers/sign.js';
import { engineUnavailable, startPodman } from '../helpers/engines.js';
import { USERS } from '../helpers/trust-stack.js';

const OCI = MEDIA_TYPES.ociManifest;
const OCI_INDEX = MEDIA_TYPES.ociIndex;
const BUNDLE = 'application/vnd.dev.sigstore.bundle.v0.3+json';

/**
 * Bytes that are at once a strict JSON object naming a Sigstore bundle media type (what
 * admitBundleLayers admits) and a V7 tar archive (what moby's layer store applies) holding
 * `pwned.sh`. Every tar field is printable ASCII inside one JSON string; the archive ends on a
 * 512-byte boundary with the closing `"}` in the last entry's padding.
 */
function jsonTarPolyglot(fileName: string, content: string): Buffer {
  const prefix = `{"mediaType":"${BUNDLE}","x":"`;
  const header = (name: string, size: number, type: string): Buffer => {
    const b = Buffer.alloc(512, 'a'.charCodeAt(0));
    if (name.length > 100) throw new Error('name');
    b.write(name.padEnd(100, 'a'), 0, 'latin1');
    b.write('0000755 ', 100, 'latin1'); // mode
    b.write('0000000 ', 108, 'latin1'); // uid
    b.write('0000000 ', 116, 'latin1'); // gid
    b.write(size.toString(8).padStart(11, '0') + ' ', 124, 'latin1');
    b.write('00000000000 ', 136, 'latin1'); // mtime
    b.write('        ', 148, 'latin1'); // chksum as spaces
    b.write(type, 156, 'latin1');
    let sum = 0;
    for (const x of b) sum += x;
    b.write(sum.toString(8).padStart(7, '0') + ' ', 148, 'latin1');
    return b;
  };
  // Entry 1: a directory whose (100-byte) name starts with the JSON prefix.
  const first = header(prefix + 'd'.repeat(100 - prefix.length), 0, '5');
  // Entry 2: ./././…/pwned.sh (100 bytes, no NUL), cleaned to pwned.sh by tar appliers.
  const name = './'.repeat((100 - fileName.length) / 2) + fileName;
  const second = header(name, content.length, '0');
  const data = Buffer.alloc(512, 'a'.charCodeAt(0));
  data.write(content, 0, 'latin1');
  data.write('"}', 510, 'latin1');
  const out = Buffer.concat([first, second, data]);
  JSON.parse(out.toString('latin1')); // a JSON object
  return out;
}

describe('security: review 3 (referrers, bundle referrers, bundle evidence)', { timeout: 240_000 }, () => {
  let stack: TrustStack;
  before(async () => {
    stack = await startTrustStack();
  });
  after(async () => {
    await stack?.stop();
  });

  it('fixed (high, review 3): a publisher without a trusted key serves a runnable unsigned image (config + tar layer) to pull-only clients as a "bundle referrer" of a signed image', async () => {
    const repo = 'r3/polyglot';
    // A signed image the publisher did not sign (the release key did).
    const signed = await pushRandomImage(stack.registry.url, repo, 'v1');
    await signDirect(stack.registry.url, repo, signed.digest, stack.release.pkcs8Der);
    const subject = { mediaType: OCI, digest: signed.digest, size: signed.bytes.length };

    // The layer: a JSON "bundle" that is also a tar with ./pwned.sh.
    const layer = jsonTarPolyglot('pwned.sh', 'echo pwned > /tmp/pwned');
    const dir = mkdtempSync(path.join(os.tmpdir(), 'r3-'));
    try {
      writeFileSync(path.join(dir, 'layer.tar'), layer);
      const listing = execFileSync('tar', ['-tvf', path.join(dir, 'layer.tar')]).toString();
      assert.match(listing, /pwned\.sh/, 'the bundle layer is a tar holding pwned.sh');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    // The config: an image config that is also a JSON object naming a bundle media type.
    const config = Buffer.from(
      JSON.stringify({
        mediaType: BUNDLE,
        architecture: 'amd64',
        os: 'linux',
        config: { Entrypoint: ['/bin/sh', '/pwned.sh'] },
        rootfs: { type: 'layers', diff_ids: [sha256(layer)] },
      }),
    );
    const L = await pushBlob(stack.registry.url, repo, layer);
    const C = await pushBlob(stack.registry.url, repo, config);
    await pushBlob(stack.registry.url, repo, Buffer.from('{}'));

    // Referrer 1 (cosign-shaped, empty config) carries both blobs as "bundle" layers.
    const r1 = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI,
        artifactType: BUNDLE,
        config: { mediaType: MEDIA_TYPE_OCI_EMPTY, digest: EMPTY_JSON_DIGEST, size: 2 },
        layers: [
          { mediaType: BUNDLE, digest: C, size: config.length },
          { mediaType: BUNDLE, digest: L, size: layer.length },
        ],
        subject,
      }),
    );
    // Referrer 2: the runnable image, config C, one "bundle" layer L.
    const r2 = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI,
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: C, size: config.length },
        layers: [{ mediaType: BUNDLE, digest: L, size: layer.length }],
        subject,
      }),
    );
    assert.equal((await stack.push(repo, sha256(r1), r1, OCI)).status, 201, 'publisher pushes referrer 1');
    assert.equal((await stack.push(repo, sha256(r2), r2, OCI)).status, 201, 'publisher pushes referrer 2');

    // Before the fix, any pull-only read of referrer 1 (e.g. a consumer's cosign verify of the
    // signed image) admitted C and L for the whole repository. Fixed: a bundle referrer has
    // exactly cosign's shape (the empty config, one bundle layer), so r1 is verified like any
    // manifest (refused); and a cosign-shaped referrer carrying L admits nothing, since L is no
    // well-formed bundle.
    assert.equal((await stack.pull(repo, sha256(r1))).status, 403);
    const r3 = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI,
        artifactType: BUNDLE,
        config: { mediaType: MEDIA_TYPE_OCI_EMPTY, digest: EMPTY_JSON_DIGEST, size: 2 },
        layers: [{ mediaType: BUNDLE, digest: L, size: layer.length }],
        subject,
      }),
    );
    assert.equal((await stack.push(repo, sha256(r3), r3, OCI)).status, 201);
    assert.equal((await stack.pull(repo, sha256(r3))).status, 200, 'a cosign-shaped referrer is served');
    // The victim pulls referrer 2 by digest: manifest, config and layer all leave.
    const m = await stack.pull(repo, sha256(r2));
    const c = await stack.blob(repo, C);
    const l = await stack.blob(repo, L);
    const leaked: Array<number | string> = [m.status, c.status, l.status];
    if (!engineUnavailable('podman')) {
      // A real client: podman (containers/image) pulls the disguised image as the consumer.
      const pm = startPodman();
      try {
        const ref = `${stack.gate.host}/${repo}@${sha256(r2)}`;
        const auth = ['--cert-dir', stack.gate.certDir, '--creds', `consumer:${USERS.consumer}`];
        const pulled = await pm.podman(['pull', ...auth, ref], { timeoutMs: 60_000 });
        const listing = await pm.podman(['image', 'inspect', '--format', '{{.Config.Entrypoint}}', ref]);
        console.log(
          'podman pull:',
          pulled.code,
          pulled.stdout,
          pulled.stderr,
          listing.stdout,
          listing.stderr,
        );
        if (pulled.code === 0) leaked.push('podman pull ok: ' + listing.stdout.trim());
      } finally {
        await pm.stop();
      }
    }
    assert.ok(
      m.status !== 200 || c.status !== 200 || l.status !== 200,
      `unsigned image ${sha256(r2)} (config ${C}, tar layer ${L}) reached a pull-only client: ${leaked.join(' ')}`,
    );
  });

  it('fixed (low, review 3): a publisher hides a valid bundle signature by rewriting the referrers tag (64 duplicate bogus entries first)', async () => {
    const repo = 'r3/hide';
    const release = bundleSignerFor(stack.release.pkcs8Der);
    const setup = async (tag: string, copies: number): Promise<string> => {
      const img = await pushRandomImage(stack.registry.url, repo, tag);
      const subject = { mediaType: OCI, digest: img.digest, size: img.bytes.length };
      const good = buildBundleReferrerManifest({
        bundle: buildCosignSignBundle(img.digest, release),
        subject,
        created: new Date('2026-12-04T12:00:00Z'),
      });
      for (const b of good.blobs) await pushBlob(stack.registry.url, repo, Buffer.from(b.bytes));
      const put = await stack.push(repo, good.digest, Buffer.from(good.manifest), OCI);
      assert.equal(put.status, 201, put.body.toString());
      // A bogus bundle referrer of the same subject, straight to the registry.
      const junk = Buffer.from(JSON.stringify({ mediaType: BUNDLE, bogus: tag }));
      const jd = await pushBlob(stack.registry.url, repo, junk);
      await pushBlob(stack.registry.url, repo, Buffer.from('{}'));
      const bogus = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI,
          artifactType: BUNDLE,
          config: { mediaType: MEDIA_TYPE_OCI_EMPTY, digest: EMPTY_JSON_DIGEST, size: 2 },
          layers: [{ mediaType: BUNDLE, digest: jd, size: junk.length }],
          subject,
        }),
      );
      const bd = await pushManifest(stack.registry.url, repo, sha256(bogus), bogus, OCI);
      // The publisher's referrers-tag write: every recorded entry kept, all real referrers.
      const entries = [
        ...Array.from({ length: copies }, () => ({ mediaType: OCI, digest: bd, size: bogus.length })),
        { mediaType: OCI, digest: good.digest, size: good.manifest.length },
      ];
      const index = Buffer.from(
        JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: entries }),
      );
      const w = await stack.push(repo, `sha256-${img.digest.slice(7)}`, index, OCI_INDEX);
      // Fixed: a write listing a referrer twice is refused; a write listing each once is accepted.
      assert.equal(w.status, copies > 1 ? 403 : 201, `referrers tag write: ${w.body.toString()}`);
      if (copies > 1) assert.match(w.body.toString(), /more than once/);
      // Even 64 distinct bogus referrers could not hide it: every referrer the index may list is read.
      return img.digest;
    };
    const control = await setup('control', 1);
    const r = await stack.pull(repo, control);
    assert.equal(r.status, 200, `control: one bogus entry does not hide the signature: ${r.body.toString()}`);
    const attacked = await setup('attacked', 64);
    const a = await stack.pull(repo, attacked);
    assert.equal(a.status, 200, `a validly bundle-signed image is refused: ${a.body.toString()}`);
  });

  it('HELD: a bundle referrer whose subject is another bundle referrer (chain) is not served; neither is one of an unsigned subject', async () => {
    const repo = 'r3/chain';
    const signed = await pushRandomImage(stack.registry.url, repo, 'v1');
    await signDirect(stack.registry.url, repo, signed.digest, stack.release.pkcs8Der);
    await pushBlob(stack.registry.url, repo, Buffer.from('{}'));
    const junk = Buffer.from(JSON.stringify({ mediaType: BUNDLE }));
    const jd = await pushBlob(stack.registry.url, repo, junk);
    const referrerOf = (s: { digest: string; size: number }): Buffer =>
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI,
          artifactType: BUNDLE,
          config: { mediaType: MEDIA_TYPE_OCI_EMPTY, digest: EMPTY_JSON_DIGEST, size: 2 },
          layers: [{ mediaType: BUNDLE, digest: jd, size: junk.length }],
          subject: { mediaType: OCI, digest: s.digest, size: s.size },
        }),
      );
    const r1 = referrerOf({ digest: signed.digest, size: signed.bytes.length });
    assert.equal((await stack.push(repo, sha256(r1), r1, OCI)).status, 201);
    const r2 = referrerOf({ digest: sha256(r1), size: r1.length });
    assert.equal((await stack.push(repo, sha256(r2), r2, OCI)).status, 201);
    assert.equal((await stack.pull(repo, sha256(r1))).status, 200, 'referrer of a signed image');
    assert.equal((await stack.pull(repo, sha256(r2))).status, 403, 'referrer of a referrer');
    const rr = await stack.pull(repo, sha256(r2), 'HEAD');
    assert.equal(rr.status, 403);
  });

  it('HELD: a bundle referrer in another repository does not count, nor is it served, for a subject signed elsewhere', async () => {
    const signed = await pushRandomImage(stack.registry.url, 'r3/a', 'v1');
    await signDirect(stack.registry.url, 'r3/a', signed.digest, stack.release.pkcs8Der);
    // Same bytes in r3/b, unsigned there; a bundle referrer in r3/b names it.
    const img = await pushRandomImage(stack.registry.url, 'r3/b', 'v1');
    await pushBlob(stack.registry.url, 'r3/b', Buffer.from('{}'));
    const junk = Buffer.from(JSON.stringify({ mediaType: BUNDLE }));
    const jd = await pushBlob(stack.registry.url, 'r3/b', junk);
    const ref = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI,
        config: { mediaType: MEDIA_TYPE_OCI_EMPTY, digest: EMPTY_JSON_DIGEST, size: 2 },
        layers: [{ mediaType: BUNDLE, digest: jd, size: junk.length }],
        subject: { mediaType: OCI, digest: signed.digest, size: signed.bytes.length },
      }),
    );
    assert.equal((await stack.push('r3/b', sha256(ref), ref, OCI)).status, 201);
    assert.equal((await stack.pull('r3/b', sha256(ref))).status, 403, 'its subject is not pullable in r3/b');
    assert.equal((await stack.pull('r3/b', img.digest)).status, 403);
  });
});
