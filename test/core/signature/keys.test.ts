import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { Point } from '@noble/ed25519';
import { GateError } from '../../../src/core/errors.js';
import {
  ed25519PublicKeyFromRaw,
  parsePublicKeyDer,
  parsePublicKeyPem,
  publicKeyFingerprint,
  publicKeyToPem,
} from '../../../src/core/signature/keys.js';
import { cosignPublicKeyPem } from '../../helpers/fixtures.js';

const ED_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const edSpkiPem = (raw: Buffer): string =>
  `-----BEGIN PUBLIC KEY-----\n${Buffer.concat([ED_PREFIX, raw]).toString('base64')}\n-----END PUBLIC KEY-----\n`;

function refused(pem: string, pattern: RegExp): void {
  assert.throws(
    () => parsePublicKeyPem(pem),
    (e: unknown) => e instanceof GateError && e.status === 400 && pattern.test(e.message),
  );
}

test('parses the real cosign.pub (ECDSA P-256); PEM and fingerprint are stable', () => {
  const pem = cosignPublicKeyPem();
  const key = parsePublicKeyPem(pem);
  assert.equal(key.alg, 'ecdsa-p256');
  // Same 64-column layout as Go's pem.Encode, so re-encoding gives the file back.
  assert.equal(publicKeyToPem(key), pem);
  const der = Buffer.from(pem.replace(/-----[A-Z ]+-----|\n/g, ''), 'base64');
  assert.equal(publicKeyFingerprint(key), `sha256:${createHash('sha256').update(der).digest('hex')}`);
});

test('parses Ed25519 SPKI (RFC 8032 TEST 1 key) and round-trips it', () => {
  const raw = Buffer.from('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a', 'hex');
  const key = parsePublicKeyPem(edSpkiPem(raw));
  assert.equal(key.alg, 'ed25519');
  assert.deepEqual(key.alg === 'ed25519' ? Buffer.from(key.raw) : null, raw);
  assert.deepEqual(parsePublicKeyPem(publicKeyToPem(key)), key);
  const gen = generateKeyPairSync('ed25519').publicKey.export({ format: 'pem', type: 'spki' }) as string;
  assert.equal(publicKeyToPem(parsePublicKeyPem(gen)), gen);
});

test('refuses RSA, other curves and other algorithms with a clear message', () => {
  const pem = (k: { export(o: { format: 'pem'; type: 'spki' }): string | Buffer }): string =>
    k.export({ format: 'pem', type: 'spki' }) as string;
  refused(pem(generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey), /rsa keys are not supported/);
  refused(
    pem(generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).publicKey),
    /curve secp384r1 is not supported/,
  );
  refused(pem(generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).publicKey), /curve secp256k1/);
  refused(pem(generateKeyPairSync('ed448').publicKey), /ed448 keys are not supported/);
  refused(pem(generateKeyPairSync('x25519').publicKey), /x25519 keys are not supported/);
});

test('refuses small-order, non-canonical and mixed-order Ed25519 keys', () => {
  for (const h of [
    '0100000000000000000000000000000000000000000000000000000000000000', // identity
    'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // order 2
    '0000000000000000000000000000000000000000000000000000000000000000', // order 4
    'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a', // order 8
  ]) {
    refused(edSpkiPem(Buffer.from(h, 'hex')), /small-order/);
  }
  refused(
    edSpkiPem(Buffer.from('eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', 'hex')),
    /canonical/,
  );
  // A valid key plus an order-8 point: on the curve, not small order, but not in the prime-order group.
  const A = Point.fromHex('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a');
  const T = Point.fromHex('c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a');
  refused(edSpkiPem(Buffer.from(A.add(T).toBytes())), /prime-order subgroup/);
  assert.throws(() => ed25519PublicKeyFromRaw(new Uint8Array(31)), GateError);
});

test('refuses malformed PEM: wrong label, two blocks, certificates, junk, bad base64', () => {
  const good = cosignPublicKeyPem();
  refused(good.replace(/PUBLIC KEY/g, 'RSA PUBLIC KEY'), /"RSA PUBLIC KEY" is not supported/);
  refused(good.replace(/PUBLIC KEY/g, 'CERTIFICATE'), /"CERTIFICATE" is not supported/);
  refused(good + good, /exactly one PEM block/);
  refused(`junk\n${good}`, /exactly one PEM block/);
  refused(good.replace('-----END PUBLIC KEY-----', '-----END PRIVATE KEY-----'), /labels differ/);
  refused(good.replace('MFkw', 'MFk*'), /exactly one PEM block|base64/);
  refused(good.replace('MFkw', 'MFkwA'), /base64/);
  refused('', /exactly one PEM block/);
});

test('refuses non-canonical DER (compressed EC point, trailing bytes)', () => {
  const key = parsePublicKeyPem(cosignPublicKeyPem());
  assert.equal(key.alg, 'ecdsa-p256');
  if (key.alg !== 'ecdsa-p256') return;
  const spki = Buffer.from(key.spkiDer);
  // Uncompressed point = 04 || X || Y at the end; build the compressed SPKI 02/03 || X.
  const point = spki.subarray(spki.length - 65);
  const X = point.subarray(1, 33);
  const yOdd = (point[64]! & 1) === 1;
  const compressed = Buffer.concat([
    Buffer.from('3039301306072a8648ce3d020106082a8648ce3d030107032200', 'hex'),
    Buffer.from([yOdd ? 3 : 2]),
    X,
  ]);
  assert.throws(
    () => parsePublicKeyDer(compressed),
    (e: unknown) => e instanceof GateError && /canonical/.test(e.message),
  );
  assert.throws(() => parsePublicKeyDer(Buffer.concat([spki, Buffer.from([0])])), GateError);
  assert.throws(() => parsePublicKeyDer(new Uint8Array([0x30, 0x00])), GateError);
});

test('fingerprints differ between keys and do not depend on PEM line layout', () => {
  const a = generateKeyPairSync('ed25519').publicKey.export({ format: 'pem', type: 'spki' }) as string;
  const b = generateKeyPairSync('ed25519').publicKey.export({ format: 'pem', type: 'spki' }) as string;
  assert.notEqual(publicKeyFingerprint(parsePublicKeyPem(a)), publicKeyFingerprint(parsePublicKeyPem(b)));
  const ec = cosignPublicKeyPem();
  const oneLine = ec.replace(/\n(?!-----END)/g, '\n').replace(/([A-Za-z0-9+/=])\n([A-Za-z0-9+/=])/g, '$1$2');
  assert.equal(publicKeyFingerprint(parsePublicKeyPem(oneLine)), publicKeyFingerprint(parsePublicKeyPem(ec)));
  assert.match(publicKeyFingerprint(parsePublicKeyPem(ec)), /^sha256:[0-9a-f]{64}$/);
});
