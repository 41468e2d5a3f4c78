import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey, generateKeyPairSync, verify as nodeVerify } from 'node:crypto';
import { GateError } from '../../../src/core/errors.js';
import { parsePublicKeyPem } from '../../../src/core/signature/keys.js';
import { generateKeyPair, publicKeyPemOf, signPayload } from '../../../src/core/signature/sign.js';
import { verifyEd25519Pure, verifySignature } from '../../../src/core/signature/verify.js';

const payload = new TextEncoder().encode(
  '{"critical":{"identity":{"docker-reference":"reg.example/prod/app:1"},"image":{"docker-manifest-digest":"sha256:' +
    'a'.repeat(64) +
    '"},"type":"cosign container image signature"},"optional":null}',
);

test('Ed25519 signing is pure RFC 8032 Ed25519 (TEST 2 reproduced from the seed)', () => {
  const seed = Buffer.from('4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb', 'hex');
  const pkcs8 = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]);
  const sig = signPayload(new Uint8Array(pkcs8), Uint8Array.of(0x72));
  assert.equal(
    Buffer.from(sig).toString('hex'),
    '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00',
  );
  const pub = Buffer.from('3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c', 'hex');
  assert.equal(verifyEd25519Pure(pub, Uint8Array.of(0x72), sig), true);
});

for (const type of ['ed25519', 'ecdsa-p256'] as const) {
  test(`${type}: generate, sign, verify with our verifier and with node's`, () => {
    const { pkcs8Der, publicKeyPem } = generateKeyPair(type);
    const key = parsePublicKeyPem(publicKeyPem);
    assert.equal(key.alg, type);
    assert.equal(publicKeyPemOf(pkcs8Der), publicKeyPem);
    const sig = signPayload(pkcs8Der, payload);
    assert.equal(verifySignature(key, payload, sig), true);
    const nodePub = createPublicKey(publicKeyPem);
    if (type === 'ed25519') {
      assert.equal(sig.length, 64);
      assert.equal(nodeVerify(null, payload, nodePub, sig), true);
    } else {
      assert.equal(sig[0], 0x30); // DER SEQUENCE
      assert.equal(nodeVerify('sha256', payload, { key: nodePub, dsaEncoding: 'der' }, sig), true);
    }
    // A KeyObject works as well as DER bytes.
    const ko = createPrivateKey({ key: Buffer.from(pkcs8Der), format: 'der', type: 'pkcs8' });
    assert.equal(verifySignature(key, payload, signPayload(ko, payload)), true);
    // A different payload does not verify.
    assert.equal(verifySignature(key, payload.subarray(1), sig), false);
  });
}

test('refuses private keys we would not verify', () => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({
    format: 'der',
    type: 'pkcs8',
  });
  assert.throws(
    () => signPayload(new Uint8Array(rsa), payload),
    (e: unknown) => e instanceof GateError && /Ed25519/.test(e.message),
  );
  const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey;
  assert.throws(() => signPayload(p384, payload), GateError);
  assert.throws(() => signPayload(new Uint8Array([1, 2, 3]), payload), GateError);
  assert.throws(() => signPayload(generateKeyPairSync('ed25519').publicKey, payload), TypeError);
});
