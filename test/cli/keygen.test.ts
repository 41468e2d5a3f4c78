/**
 * `trustgate keygen`: the key file is checked with an implementation written here (node:crypto
 * scrypt + tweetnacl secretbox), independent of src/core/signature/keyfile.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, scryptSync } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import nacl from 'tweetnacl';
import { keygenCommand } from '../../src/cli/keygen.js';
import { makeTempDir } from '../helpers/stack.js';
import { repoRoot } from '../helpers/fixtures.js';
import { memoryIo } from './support.js';

/** Independent reader of a cosign encrypted key: PEM -> JSON -> scrypt -> secretbox.open -> PKCS#8. */
function independentDecrypt(pem: string, passphrase: string): Buffer {
  const m =
    /^-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----\n([\s\S]+)\n-----END ENCRYPTED COSIGN PRIVATE KEY-----\n$/.exec(
      pem,
    );
  assert.ok(m, 'PEM label is ENCRYPTED COSIGN PRIVATE KEY');
  const doc = JSON.parse(Buffer.from(m[1]!.replace(/\n/g, ''), 'base64').toString('utf8')) as {
    kdf: { name: string; params: { N: number; r: number; p: number }; salt: string };
    cipher: { name: string; nonce: string };
    ciphertext: string;
  };
  assert.deepEqual(Object.keys(doc), ['kdf', 'cipher', 'ciphertext']);
  assert.equal(doc.kdf.name, 'scrypt');
  assert.deepEqual(doc.kdf.params, { N: 32768, r: 8, p: 1 });
  assert.equal(doc.cipher.name, 'nacl/secretbox');
  const salt = Buffer.from(doc.kdf.salt, 'base64');
  assert.equal(salt.length, 32);
  const key = scryptSync(passphrase, salt, 32, { N: 32768, r: 8, p: 1, maxmem: 64 * 1024 * 1024 });
  const opened = nacl.secretbox.open(
    Buffer.from(doc.ciphertext, 'base64'),
    Buffer.from(doc.cipher.nonce, 'base64'),
    new Uint8Array(key),
  );
  if (opened === null) throw new Error('secretbox.open failed');
  return Buffer.from(opened);
}

for (const type of ['ecdsa-p256', 'ed25519'] as const) {
  test(`keygen --type ${type}: decrypts independently, public key matches, key file is 0600`, async () => {
    const dir = makeTempDir('keygen');
    const out = path.join(dir, 'release');
    const mem = memoryIo({ TRUSTGATE_KEY_PASSPHRASE: 'correct horse' });
    assert.equal(await keygenCommand(['--out', out, '--type', type], mem.io), 0, mem.err());
    const pkcs8 = independentDecrypt(readFileSync(`${out}.key`, 'utf8'), 'correct horse');
    const priv = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
    assert.equal(priv.asymmetricKeyType, type === 'ed25519' ? 'ed25519' : 'ec');
    if (type === 'ecdsa-p256') assert.equal(priv.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    const derived = createPublicKey(priv).export({ format: 'der', type: 'spki' });
    const pubPem = readFileSync(`${out}.pub`, 'utf8');
    assert.match(pubPem, /^-----BEGIN PUBLIC KEY-----\n/);
    const written = createPublicKey(pubPem).export({ format: 'der', type: 'spki' });
    assert.deepEqual(written, derived);
    assert.equal(statSync(`${out}.key`).mode & 0o777, 0o600);
    assert.throws(
      () => independentDecrypt(readFileSync(`${out}.key`, 'utf8'), 'wrong'),
      /secretbox.open failed/,
    );
    assert.match(
      mem.out(),
      new RegExp(`wrote ${out}\\.key and ${out}\\.pub \\(${type}, sha256:[0-9a-f]{64}\\)`),
    );
  });
}

test('keygen defaults to ecdsa-p256 and takes COSIGN_PASSWORD', async () => {
  const out = path.join(makeTempDir('keygen'), 'k');
  const mem = memoryIo({ COSIGN_PASSWORD: 'from-cosign-env' });
  assert.equal(await keygenCommand(['--out', out], mem.io), 0, mem.err());
  const priv = createPrivateKey({
    key: independentDecrypt(readFileSync(`${out}.key`, 'utf8'), 'from-cosign-env'),
    format: 'der',
    type: 'pkcs8',
  });
  assert.equal(priv.asymmetricKeyDetails?.namedCurve, 'prime256v1');
});

test('keygen refuses to overwrite either file, and leaves them untouched', async () => {
  const out = path.join(makeTempDir('keygen'), 'k');
  writeFileSync(`${out}.pub`, 'precious');
  const mem = memoryIo({ TRUSTGATE_KEY_PASSPHRASE: 'pw' });
  assert.equal(await keygenCommand(['--out', out], mem.io), 1);
  assert.match(mem.err(), /k\.pub already exists; not overwriting it/);
  assert.equal(existsSync(`${out}.key`), false);
  assert.equal(readFileSync(`${out}.pub`, 'utf8'), 'precious');
});

test('keygen refuses an empty passphrase (env) and usage errors exit 2', async () => {
  const out = path.join(makeTempDir('keygen'), 'k');
  const mem = memoryIo({ COSIGN_PASSWORD: '' });
  assert.equal(await keygenCommand(['--out', out], mem.io), 1);
  assert.match(mem.err(), /COSIGN_PASSWORD is empty; an empty passphrase is not allowed/);
  assert.equal(existsSync(`${out}.key`), false);
  const m2 = memoryIo({ COSIGN_PASSWORD: 'x' });
  assert.equal(await keygenCommand(['--out', out, '--type', 'rsa'], m2.io), 2);
  assert.equal(await keygenCommand([], m2.io), 2);
  assert.match(m2.err(), /--out NAME is required/);
});

test('keygen on a terminal: asks twice without echo; mismatch and empty are refused', async () => {
  const dir = makeTempDir('keygen');
  const tty = memoryIo({}, { tty: true });
  const done = keygenCommand(['--out', path.join(dir, 'a')], tty.io);
  tty.type('hunter22\r');
  tty.type('hunter22\r');
  assert.equal(await done, 0, tty.err());
  assert.doesNotMatch(tty.err(), /hunter22/);
  assert.match(tty.err(), /Passphrase for .*a\.key: \nRepeat the passphrase: \n/);
  independentDecrypt(readFileSync(path.join(dir, 'a.key'), 'utf8'), 'hunter22');

  const mismatch = memoryIo({}, { tty: true });
  const d2 = keygenCommand(['--out', path.join(dir, 'b')], mismatch.io);
  mismatch.type('one\rtwo\r');
  assert.equal(await d2, 1);
  assert.match(mismatch.err(), /the passphrases do not match/);
  assert.equal(existsSync(path.join(dir, 'b.key')), false);

  const empty = memoryIo({}, { tty: true });
  const d3 = keygenCommand(['--out', path.join(dir, 'c')], empty.io);
  empty.type('\r');
  assert.equal(await d3, 1);
  assert.match(empty.err(), /an empty passphrase is not allowed/);
});

test('trustgate keygen with no terminal and no passphrase env: a clear error (real CLI)', () => {
  const out = path.join(makeTempDir('keygen'), 'k');
  const env = { ...process.env };
  delete env['TRUSTGATE_KEY_PASSPHRASE'];
  delete env['COSIGN_PASSWORD'];
  const r = spawnSync(
    process.execPath,
    [path.join(repoRoot(), 'dist/src/cli/main.js'), 'keygen', '--out', out],
    {
      env,
      stdio: ['pipe', 'pipe', 'pipe'],
      encoding: 'utf8',
    },
  );
  assert.equal(r.status, 1);
  assert.match(
    r.stderr,
    /no passphrase for .*k\.key: set TRUSTGATE_KEY_PASSPHRASE \(or COSIGN_PASSWORD\), or run on a terminal/,
  );
  assert.equal(existsSync(`${out}.key`), false);
});
