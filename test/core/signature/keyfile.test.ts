import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey, scryptSync } from 'node:crypto';
import nacl from 'tweetnacl';
import { GateError } from '../../../src/core/errors.js';
import { decryptCosignKey, encryptCosignKey } from '../../../src/core/signature/keyfile.js';
import { pemEncode } from '../../../src/core/signature/keys.js';
import { generateKeyPair } from '../../../src/core/signature/sign.js';

const PASS = 'correct horse battery staple';

function body(pem: string): Record<string, unknown> {
  const b64 = pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '');
  return JSON.parse(Buffer.from(b64, 'base64').toString('utf8')) as Record<string, unknown>;
}

function rewrap(doc: unknown, label = 'ENCRYPTED COSIGN PRIVATE KEY'): string {
  return pemEncode(label, new TextEncoder().encode(JSON.stringify(doc)));
}

// An encrypted key written by cosign itself (N = 65536, label ENCRYPTED SIGSTORE PRIVATE KEY, empty
// passphrase), published as test data in conforma/cli's VSA tests, which sign with it under
// COSIGN_PASSWORD="". Decrypting it proves we read what cosign writes.
const COSIGN_WRITTEN_KEY = `-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----
eyJrZGYiOnsibmFtZSI6InNjcnlwdCIsInBhcmFtcyI6eyJOIjo2NTUzNiwiciI6
OCwicCI6MX0sInNhbHQiOiJLYU9OQzduQVJLOVgxM1FoaWFucjAwTTBGYys2Sitr
dnAxN1FuanpiVk9nPSJ9LCJjaXBoZXIiOnsibmFtZSI6Im5hY2wvc2VjcmV0Ym94
Iiwibm9uY2UiOiJVOHZqWWtqMlZOUFZGdlZFZWZ3bXZ5VGloUERrelBoaCJ9LCJj
aXBoZXJ0ZXh0IjoidWNWMnQ4TTZVNFJvb29FOXc0d3dkc3E1RDYrS2RKY245dERT
KzFwRDRGN040SVJOWEgzSTBua3h1a3NackFOUHR1emIvTkVYQ201dUp3Zjh3Qzl1
VlprbXdwNU5jRUZ6b3ZNS3JCZmNvdXdjaEkrMzkrQ0NhbVZPbzBucmRnZjhvcmpK
dXdrWDBYL1phY0RUTERGaUxyc1laMWVMMmlqMGU1MVRpZmVQNTl4WXNPK1FnM1Jv
OURRVjNQMk9ndDFDaVFHeGg1VXhUZytGc3c9PSJ9
-----END ENCRYPTED SIGSTORE PRIVATE KEY-----
`;

test('decrypts a key file written by real cosign (N=2^16, SIGSTORE label)', () => {
  const der = decryptCosignKey(COSIGN_WRITTEN_KEY, '');
  const ko = createPrivateKey({ key: Buffer.from(der), format: 'der', type: 'pkcs8' });
  assert.equal(ko.asymmetricKeyType, 'ec');
  assert.equal(ko.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  assert.throws(
    () => decryptCosignKey(COSIGN_WRITTEN_KEY, 'x'),
    (e: unknown) => e instanceof GateError && e.code === 'DENIED',
  );
});

test('encrypt -> decrypt round trip; the file has the cosign layout', () => {
  const { pkcs8Der } = generateKeyPair('ed25519');
  const pem = encryptCosignKey(pkcs8Der, PASS);
  assert.match(pem, /^-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----\n/);
  assert.ok(pem.split('\n').every((l) => l.length <= 64));
  const doc = body(pem);
  assert.deepEqual(Object.keys(doc), ['kdf', 'cipher', 'ciphertext']);
  const kdf = doc.kdf as { name: string; params: Record<string, number>; salt: string };
  assert.equal(kdf.name, 'scrypt');
  assert.deepEqual(kdf.params, { N: 32768, r: 8, p: 1 });
  assert.equal(Buffer.from(kdf.salt, 'base64').length, 32);
  assert.equal((doc.cipher as { name: string }).name, 'nacl/secretbox');
  assert.deepEqual(decryptCosignKey(pem, PASS), pkcs8Der);
  // The SIGSTORE label (what current cosign writes) is read too.
  assert.deepEqual(decryptCosignKey(rewrap(doc, 'ENCRYPTED SIGSTORE PRIVATE KEY'), PASS), pkcs8Der);
});

test('independent decryption with node scrypt + tweetnacl.secretbox.open proves the format', () => {
  const { pkcs8Der } = generateKeyPair('ecdsa-p256');
  const doc = body(encryptCosignKey(pkcs8Der, PASS)) as {
    kdf: { params: { N: number; r: number; p: number }; salt: string };
    cipher: { nonce: string };
    ciphertext: string;
  };
  const key = scryptSync(PASS, Buffer.from(doc.kdf.salt, 'base64'), 32, {
    N: doc.kdf.params.N,
    r: doc.kdf.params.r,
    p: doc.kdf.params.p,
    maxmem: 64 * 1024 * 1024,
  });
  const opened = nacl.secretbox.open(
    new Uint8Array(Buffer.from(doc.ciphertext, 'base64')),
    new Uint8Array(Buffer.from(doc.cipher.nonce, 'base64')),
    new Uint8Array(key),
  );
  assert.ok(opened !== null);
  assert.deepEqual(Buffer.from(opened), Buffer.from(pkcs8Der));
});

test('independent encryption with tweetnacl is read by decryptCosignKey (N = 2^15, 2^16, 2^17)', () => {
  const { pkcs8Der } = generateKeyPair('ed25519');
  for (const N of [2 ** 15, 2 ** 16, 2 ** 17]) {
    const salt = nacl.randomBytes(32);
    const nonce = nacl.randomBytes(24);
    const key = scryptSync(PASS, salt, 32, { N, r: 8, p: 1, maxmem: 512 * 1024 * 1024 });
    const ciphertext = nacl.secretbox(pkcs8Der, nonce, new Uint8Array(key));
    const pem = rewrap({
      kdf: { name: 'scrypt', params: { N, r: 8, p: 1 }, salt: Buffer.from(salt).toString('base64') },
      cipher: { name: 'nacl/secretbox', nonce: Buffer.from(nonce).toString('base64') },
      ciphertext: Buffer.from(ciphertext).toString('base64'),
    });
    assert.deepEqual(decryptCosignKey(pem, PASS), pkcs8Der, `N=${N}`);
  }
});

test('wrong passphrase is refused with a clear error', () => {
  const { pkcs8Der } = generateKeyPair('ed25519');
  const pem = encryptCosignKey(pkcs8Der, PASS);
  assert.throws(
    () => decryptCosignKey(pem, `${PASS}!`),
    (e: unknown) => e instanceof GateError && e.code === 'DENIED' && /wrong passphrase/.test(e.message),
  );
});

test('scrypt parameters outside the accepted set are refused before any work is done', () => {
  const { pkcs8Der } = generateKeyPair('ed25519');
  const doc = body(encryptCosignKey(pkcs8Der, PASS)) as { kdf: { params: Record<string, unknown> } };
  const withParams = (params: Record<string, unknown>): string =>
    rewrap({ ...doc, kdf: { ...doc.kdf, params: { ...doc.kdf.params, ...params } } });
  for (const N of [2 ** 14, 2 ** 18, 2 ** 20, 2 ** 30, 32767, 0, -1, '32768']) {
    assert.throws(
      () => decryptCosignKey(withParams({ N }), PASS),
      (e: unknown) => e instanceof GateError && /scrypt N=/.test(e.message),
      String(N),
    );
  }
  assert.throws(() => decryptCosignKey(withParams({ r: 16 }), PASS), /r=16/);
  assert.throws(() => decryptCosignKey(withParams({ p: 2 }), PASS), /p=2/);
});

test('malformed key files are refused', () => {
  const { pkcs8Der } = generateKeyPair('ed25519');
  const pem = encryptCosignKey(pkcs8Der, PASS);
  const doc = body(pem) as Record<string, Record<string, unknown>>;
  const bad = (d: unknown, re: RegExp): void =>
    assert.throws(
      () => decryptCosignKey(rewrap(d), PASS),
      (e: unknown) => e instanceof GateError && re.test(e.message),
    );
  bad({ ...doc, kdf: { ...doc.kdf, name: 'argon2' } }, /unsupported kdf/);
  bad({ ...doc, cipher: { ...doc.cipher, name: 'aes-gcm' } }, /unsupported cipher/);
  bad({ ...doc, cipher: { ...doc.cipher, nonce: 'AAAA' } }, /nonce/);
  bad({ ...doc, ciphertext: 'not base64!' }, /base64/);
  bad({ ...doc, extra: 1 }, /unexpected field/);
  bad({ kdf: doc.kdf, cipher: doc.cipher }, /missing field/);
  assert.throws(() => decryptCosignKey(pem.replace(/COSIGN/g, 'RSA'), PASS), /not supported/);
  assert.throws(
    () => decryptCosignKey(pemEncode('ENCRYPTED COSIGN PRIVATE KEY', new Uint8Array([1, 2])), PASS),
    GateError,
  );
  // A flipped ciphertext bit is an authentication failure.
  const ct = Buffer.from(doc.ciphertext as unknown as string, 'base64');
  ct[5] = ct[5]! ^ 1;
  assert.throws(
    () => decryptCosignKey(rewrap({ ...doc, ciphertext: ct.toString('base64') }), PASS),
    (e: unknown) => e instanceof GateError && e.code === 'DENIED',
  );
});

test('refuses an empty passphrase on encrypt', () => {
  const { pkcs8Der } = generateKeyPair('ed25519');
  assert.throws(
    () => encryptCosignKey(pkcs8Der, ''),
    (e: unknown) => e instanceof GateError && /empty passphrase/.test(e.message),
  );
});

test('the decrypted key matches its public key', () => {
  const { pkcs8Der, publicKeyPem } = generateKeyPair('ecdsa-p256');
  const der = decryptCosignKey(encryptCosignKey(pkcs8Der, PASS), PASS);
  const pub = createPublicKey(createPrivateKey({ key: Buffer.from(der), format: 'der', type: 'pkcs8' }));
  assert.equal(pub.export({ format: 'pem', type: 'spki' }), publicKeyPem);
});
