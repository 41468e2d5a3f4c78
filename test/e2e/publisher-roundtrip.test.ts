/**
 * The publisher round trip through trustgate with real clients and the compiled CLI:
 * keygen → admin trusts the key (`trustgate keys add`) and creates the consumer (`trustgate users
 * add`) → skopeo pushes as the publisher → `trustgate sign` → skopeo pulls as a pull-only user,
 * byte-identical → the admin revokes the key (`trustgate keys revoke`) → the next pull is refused.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { assertSameImage, makeOciImage, readDiskImage } from '../helpers/images.js';
import { createSkopeoContext, type SkopeoContext } from '../helpers/skopeo.js';
import { makeTempDir, removeTempDir, startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');
const ADMIN = { username: 'admin', password: 'admin-password-1' };
const PUBLISHER = { username: 'publisher', password: 'publisher-password' };
const CONSUMER = { username: 'consumer', password: 'consumer-password-1' };
const PASSPHRASE = 'correct horse battery staple';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the compiled CLI as a user would (a child process), with only the env given. */
function trustgate(args: string[], env: Record<string, string>, stdin?: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [CLI, ...args],
      { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...env }, timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
    child.stdin?.end(stdin ?? '');
  });
}

describe('e2e: publisher round trip with the trustgate CLI and skopeo', { timeout: 300_000 }, () => {
  let registry: RegistryHandle;
  let gate: TestGate;
  let sk: SkopeoContext;
  let work: string;

  before(async () => {
    registry = await startRegistry();
    gate = await startTestGate({
      registryUrl: registry.url,
      users: { admin: ADMIN.password, publisher: PUBLISHER.password },
      policy: {
        admins: ['admin'],
        access: [{ repos: ['prod/**'], pull: ['publisher', 'consumer'], push: ['publisher'], delete: [] }],
      },
      trustRules: [{ repos: ['prod/**'], keys: ['release'] }],
    });
    sk = createSkopeoContext();
    work = makeTempDir('roundtrip');
  });

  after(async () => {
    sk?.close();
    if (work) removeTempDir(work);
    await gate?.close();
    await registry?.stop();
  });

  const conn = (): string[] => ['--server', gate.host, '--cert-dir', gate.certDir];
  const asAdmin = { TRUSTGATE_USERNAME: ADMIN.username, TRUSTGATE_PASSWORD: ADMIN.password };
  let n = 0;
  const pull = async (ref: string) => {
    const out = path.join(work, `pull-${n++}`);
    mkdirSync(out);
    const r = await sk.copy(`docker://${gate.host}/${ref}`, `oci:${out}:x`, {
      src: { certDir: gate.certDir, creds: CONSUMER },
    });
    return { ...r, out: `oci:${out}:x` };
  };

  it('push, sign, pull as a pull-only user; revoke through the CLI; the next pull is refused', async () => {
    // The publisher makes a key pair (cosign format).
    const keyBase = path.join(work, 'release');
    const kg = await trustgate(['keygen', '--out', keyBase], { TRUSTGATE_KEY_PASSPHRASE: PASSPHRASE });
    assert.equal(kg.code, 0, kg.stderr);

    // The admin trusts the public key and creates the consumer, through the CLI (admin API).
    const add = await trustgate(['keys', 'add', 'release', '--pem', `${keyBase}.pub`, ...conn()], asAdmin);
    assert.equal(add.code, 0, add.stderr);
    assert.match(add.stdout, /^added release\s+active\s+ecdsa-p256/);
    const user = await trustgate(
      ['users', 'add', CONSUMER.username, ...conn()],
      asAdmin,
      `${CONSUMER.password}\n`,
    );
    assert.equal(user.code, 0, user.stderr);
    // A non-admin gets the server's refusal, not a stack trace.
    const notAdmin = await trustgate(['keys', 'list', ...conn()], {
      TRUSTGATE_USERNAME: PUBLISHER.username,
      TRUSTGATE_PASSWORD: PUBLISHER.password,
    });
    assert.equal(notAdmin.code, 1);
    assert.match(notAdmin.stderr, /403 DENIED: publisher is not an admin/);

    // skopeo pushes as the publisher; unsigned, the consumer cannot pull it.
    const img = await makeOciImage(path.join(work, 'img'), { layers: 2, layerBytes: 40_000 });
    await sk.copyOk(img.ref, `docker://${gate.host}/prod/app:v1`, {
      dest: { certDir: gate.certDir, creds: PUBLISHER },
    });
    const unsigned = await pull('prod/app:v1');
    assert.notEqual(unsigned.code, 0);
    assert.match(unsigned.stderr, /denied/);

    // `trustgate sign` through trustgate, as the publisher.
    const sign = await trustgate(
      ['sign', `${gate.host}/prod/app:v1`, '--key', `${keyBase}.key`, '--cert-dir', gate.certDir],
      {
        TRUSTGATE_USERNAME: PUBLISHER.username,
        TRUSTGATE_PASSWORD: PUBLISHER.password,
        TRUSTGATE_KEY_PASSPHRASE: PASSPHRASE,
      },
    );
    assert.equal(sign.code, 0, sign.stderr);

    // The pull-only consumer gets exactly the pushed image.
    const ok = await pull('prod/app:v1');
    assert.equal(ok.code, 0, ok.stderr);
    await assertSameImage(img, readDiskImage(ok.out));

    const list = await trustgate(['keys', 'list', '--json', ...conn()], asAdmin);
    assert.equal(list.code, 0, list.stderr);
    const keys = (JSON.parse(list.stdout) as { keys: Array<{ name: string; status: string; pem: string }> })
      .keys;
    assert.deepEqual(
      keys.map((k) => `${k.name}:${k.status}`),
      ['release:active'],
    );
    assert.equal(keys[0]!.pem, readFileSync(`${keyBase}.pub`, 'utf8'));

    // The admin revokes the key; the very next pull is refused, with the reason.
    const revoke = await trustgate(
      ['keys', 'revoke', 'release', '--reason', 'key leaked', ...conn()],
      asAdmin,
    );
    assert.equal(revoke.code, 0, revoke.stderr);
    assert.match(revoke.stdout, /^revoked release\s+revoked/);
    const refused = await pull('prod/app:v1');
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /denied: .*prod\/app@sha256:[0-9a-f]{64}.*revoked/);
    // By digest too, and for the blobs the earlier pull had admitted.
    const byDigest = await pull(`prod/app@${img.manifestDigest}`);
    assert.notEqual(byDigest.code, 0);
  });
});
