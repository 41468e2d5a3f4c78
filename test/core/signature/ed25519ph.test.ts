import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { ed25519Seed, signEd25519ph } from '../../../src/core/signature/ed25519ph.js';
import { verifyEd25519ph, verifyEd25519Pure } from '../../../src/core/signature/verify.js';

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));

test('Ed25519ph: RFC 8032 §7.3 test vector (message "abc")', () => {
  const seed = hex('833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42');
  const pub = hex('ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf');
  const expected =
    '98a70222f0b8121aa9d30f813d683f809e462b469c7ff87639499bb94e6dae41' +
    '31f85042463c2a355a2003d062adf5aaa10b8c61e636062aaad11c2a26083406';
  const sig = signEd25519ph(seed, hex('616263'));
  assert.equal(Buffer.from(sig).toString('hex'), expected);
  assert.equal(verifyEd25519ph(pub, hex('616263'), sig), true);
  assert.equal(verifyEd25519Pure(pub, hex('616263'), sig), false);
});

test('Ed25519ph: signs with a node key, verifies with its public key', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const raw = new Uint8Array(publicKey.export({ format: 'der', type: 'spki' }).subarray(12));
  const msg = new TextEncoder().encode('payload');
  const sig = signEd25519ph(ed25519Seed(privateKey), msg);
  assert.equal(verifyEd25519ph(raw, msg, sig), true);
  assert.equal(verifyEd25519ph(raw, new TextEncoder().encode('payloaD'), sig), false);
  assert.throws(
    () => ed25519Seed(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey),
    TypeError,
  );
});
