/**
 * Sigstore trusted roots through TUF in the running gate (issue 15), over a real registry:2: a
 * gate whose only Sigstore source is a TUF directory mirror with nothing valid in it starts, and a
 * rule that requires a transparency-log entry denies with a clear reason (fail closed), while a
 * rule that does not still serves; once the mirror holds a repository (a TEST TUF repository,
 * test/helpers/tuf-repo.ts, whose target is the public-good trusted root), a refresh puts the root
 * in force, the trust epoch moves (verdicts made without it are not reused) and the denial becomes
 * the one a root allows to be checked (this bundle has no Rekor entry).
 */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MEDIA_TYPES } from '../../src/core/manifest.js';
import {
  buildBundleReferrerManifest,
  buildCosignSignBundle,
  bundleSignerFor,
} from '../../src/core/evidence/bundle-writer.js';
import { startTrustStack, type TrustStack } from '../helpers/trust-stack.js';
import { pushBlob, pushRandomImage } from '../helpers/registry-direct.js';
import { readShared } from '../helpers/fixtures.js';
import { TestTufRepository } from '../helpers/tuf-repo.js';

const OCI = MEDIA_TYPES.ociManifest;

describe('e2e: Sigstore trusted roots from a TUF mirror', { timeout: 180_000 }, () => {
  let stack: TrustStack;
  let repo: TestTufRepository;
  let dir: string;
  let mirror: string;
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'trustgate-test-tuf-e2e-'));
    repo = new TestTufRepository();
    repo.setTarget('trusted_root.json', readShared('fixtures/sigstore-public-good/trusted_root.json'));
    const pin = path.join(dir, 'root.json');
    writeFileSync(pin, repo.pinnedRoot);
    mirror = path.join(dir, 'mirror');
    cpSync(path.join(repo.dir, 'targets'), path.join(mirror, 'targets'), { recursive: true }); // no metadata yet
    stack = await startTrustStack(
      [
        { repos: ['logged/**'], keys: ['release'], tlog: 'required' },
        { repos: ['**'], keys: ['release'] },
      ],
      {
        sigstore: [
          {
            name: 'private',
            tuf: { mirror, root: pin, cacheDir: path.join(dir, 'cache'), refreshSeconds: 3600 },
          },
        ],
      },
    );
  });
  after(async () => {
    await stack?.stop();
    repo?.remove();
    rmSync(dir, { recursive: true, force: true });
  });

  async function signedImage(name: string): Promise<void> {
    const img = await pushRandomImage(stack.registry.url, name, 'v1');
    const r = buildBundleReferrerManifest({
      bundle: buildCosignSignBundle(img.digest, bundleSignerFor(stack.release.pkcs8Der)),
      subject: { mediaType: OCI, digest: img.digest, size: img.bytes.length },
      created: new Date('2026-12-04T12:00:00Z'),
    });
    for (const b of r.blobs) await pushBlob(stack.registry.url, name, Buffer.from(b.bytes));
    const put = await stack.push(name, r.digest, Buffer.from(r.manifest), OCI);
    assert.equal(put.status, 201, put.body.toString());
  }

  it('no valid root: a tlog-required rule denies with the reason, other rules still serve; a refresh puts the root in force', async () => {
    const status = stack.gate.tg.sigstoreRoots.status();
    assert.equal(status[0]?.ok, false);
    assert.ok(status[0]?.lastError);
    await signedImage('logged/app');
    await signedImage('plain/app');

    const denied = await stack.pull('logged/app', 'v1');
    assert.equal(denied.status, 403, denied.body.toString());
    const message = (
      JSON.parse(denied.body.toString()) as { errors: Array<{ code: string; message: string }> }
    ).errors[0]!;
    assert.equal(message.code, 'DENIED');
    assert.match(message.message, /no Sigstore trusted root is available/);
    assert.equal((await stack.pull('plain/app', 'v1')).status, 200);

    // The operator's mirror now holds the repository: one refresh verifies it.
    cpSync(repo.dir, mirror, { recursive: true });
    const epoch = stack.gate.tg.trust.epoch();
    assert.deepEqual(await stack.gate.tg.sigstoreRoots.refresh(), ['updated']);
    assert.notEqual(stack.gate.tg.trust.epoch(), epoch, 'a new root retires the verdicts made before it');
    const now = await stack.pull('logged/app', 'v1');
    assert.equal(now.status, 403);
    // With a root, the bundle is checked for a Rekor entry, and this one has none.
    assert.match(now.body.toString(), /no transparency-log entry/);
    assert.doesNotMatch(now.body.toString(), /no Sigstore trusted root/);
    const metrics = await stack.gate.tg.metrics.registry.metrics();
    assert.match(metrics, /trustgate_sigstore_root_valid\{source="private"\} 1/);
    assert.match(metrics, /trustgate_sigstore_root_refreshes_total\{source="private",outcome="failed"\} 1/);
    assert.match(metrics, /trustgate_sigstore_root_refreshes_total\{source="private",outcome="updated"\} 1/);
  });
});
