import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  createHash,
  createPrivateKey,
  generateKeyPairSync,
  sign as nodeSign,
  verify as nodeVerify,
} from 'node:crypto';
import fc from 'fast-check';
import * as ed from '@noble/ed25519';
import { parsePublicKeyPem, type PublicKey } from '../../../src/core/signature/keys.js';
import { verifyEd25519Pure, verifyEd25519ph, verifySignature } from '../../../src/core/signature/verify.js';
import { cosignPublicKeyPem, loadCosignFixture, unknownKeySignature } from '../../helpers/fixtures.js';

// noble-ed25519 is the independent reference here; its synchronous API needs a SHA-512 (src, now on
// @noble/curves, no longer sets one).
ed.hashes.sha512 ??= (m) => new Uint8Array(createHash('sha512').update(m).digest());

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
const b64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'base64'));
const edKey = (raw: Uint8Array): PublicKey => ({ alg: 'ed25519', raw });

// RFC 8032 §7.1 (Ed25519) test vectors: secret seed, public key, message, signature.
const RFC8032 = [
  {
    name: 'TEST 1',
    sk: '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60',
    pk: 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
    msg: '',
    sig: 'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
  },
  {
    name: 'TEST 2',
    sk: '4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb',
    pk: '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c',
    msg: '72',
    sig: '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00',
  },
  {
    name: 'TEST 3',
    sk: 'c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7',
    pk: 'fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025',
    msg: 'af82',
    sig: '6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a',
  },
  {
    name: 'TEST 1024',
    sk: 'f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5',
    pk: '278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e',
    msg:
      '08b8b2b733424243760fe426a4b54908632110a66c2f6591eabd3345e3e4eb98fa6e264bf09efe12ee50f8f54e9f77b1e355f6c50544e23fb1433ddf73be84d8' +
      '79de7c0046dc4996d9e773f4bc9efe5738829adb26c81b37c93a1b270b20329d658675fc6ea534e0810a4432826bf58c941efb65d57a338bbd2e26640f89ffbc' +
      '1a858efcb8550ee3a5e1998bd177e93a7363c344fe6b199ee5d02e82d522c4feba15452f80288a821a579116ec6dad2b3b310da903401aa62100ab5d1a36553e' +
      '06203b33890cc9b832f79ef80560ccb9a39ce767967ed628c6ad573cb116dbefefd75499da96bd68a8a97b928a8bbc103b6621fcde2beca1231d206be6cd9ec7' +
      'aff6f6c94fcd7204ed3455c68c83f4a41da4af2b74ef5c53f1d8ac70bdcb7ed185ce81bd84359d44254d95629e9855a94a7c1958d1f8ada5d0532ed8a5aa3fb2' +
      'd17ba70eb6248e594e1a2297acbbb39d502f1a8c6eb6f1ce22b3de1a1f40cc24554119a831a9aad6079cad88425de6bde1a9187ebb6092cf67bf2b13fd65f270' +
      '88d78b7e883c8759d2c4f5c65adb7553878ad575f9fad878e80a0c9ba63bcbcc2732e69485bbc9c90bfbd62481d9089beccf80cfe2df16a2cf65bd92dd597b07' +
      '07e0917af48bbb75fed413d238f5555a7a569d80c3414a8d0859dc65a46128bab27af87a71314f318c782b23ebfe808b82b0ce26401d2e22f04d83d1255dc51a' +
      'ddd3b75a2b1ae0784504df543af8969be3ea7082ff7fc9888c144da2af58429ec96031dbcad3dad9af0dcbaaaf268cb8fcffead94f3c7ca495e056a9b47acdb7' +
      '51fb73e666c6c655ade8297297d07ad1ba5e43f1bca32301651339e22904cc8c42f58c30c04aafdb038dda0847dd988dcda6f3bfd15c4b4c4525004aa06eeff8' +
      'ca61783aacec57fb3d1f92b0fe2fd1a85f6724517b65e614ad6808d6f6ee34dff7310fdc82aebfd904b01e1dc54b2927094b2db68d6f903b68401adebf5a7e08' +
      'd78ff4ef5d63653a65040cf9bfd4aca7984a74d37145986780fc0b16ac451649de6188a7dbdf191f64b5fc5e2ab47b57f7f7276cd419c17a3ca8e1b939ae49e4' +
      '88acba6b965610b5480109c8b17b80e1b7b750dfc7598d5d5011fd2dcc5600a32ef5b52a1ecc820e308aa342721aac0943bf6686b64b2579376504ccc493d97e' +
      '6aed3fb0f9cd71a43dd497f01f17c0e2cb3797aa2a2f256656168e6c496afc5fb93246f6b1116398a346f1a641f3b041e989f7914f90cc2c7fff357876e506b5' +
      '0d334ba77c225bc307ba537152f3f1610e4eafe595f6d9d90d11faa933a15ef1369546868a7f3a45a96768d40fd9d03412c091c6315cf4fde7cb68606937380d' +
      'b2eaaa707b4c4185c32eddcdd306705e4dc1ffc872eeee475a64dfac86aba41c0618983f8741c5ef68d3a101e8a3b8cac60c905c15fc910840b94c00a0b9d0',
    sig: '0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e460fec350aa5371b1508f9f4528ecea23c436d94b5e8fcd4f681e30a6ac00a9704a188a03',
  },
];

// RFC 8032 §7.3 Ed25519ph, TEST abc.
const PH_ABC = {
  sk: '833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42',
  pk: 'ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf',
  msg: '616263',
  sig: '98a70222f0b8121aa9d30f813d683f809e462b469c7ff87639499bb94e6dae4131f85042463c2a355a2003d062adf5aaa10b8c61e636062aaad11c2a26083406',
};

const L = 2n ** 252n + 27742317777372353535851937790883648493n;
const leToNum = (b: Uint8Array): bigint => BigInt('0x' + Buffer.from(b).reverse().toString('hex'));
const numToLe = (n: bigint): Uint8Array =>
  new Uint8Array(Buffer.from(n.toString(16).padStart(64, '0'), 'hex').reverse());

// Small-order points of edwards25519 (the torsion subgroup) and non-canonical spellings of them.
const SMALL_ORDER = {
  identity: '0100000000000000000000000000000000000000000000000000000000000000',
  'order 2': 'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'order 4 (y=0)': '0000000000000000000000000000000000000000000000000000000000000000',
  'order 4 (y=0, x negative)': '0000000000000000000000000000000000000000000000000000000000000080',
  'order 8 a': 'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
  'order 8 b': 'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa',
  'order 8 c': '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
  'order 8 d': '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85',
};

test('RFC 8032 Ed25519 vectors verify (pure), and not as Ed25519ph', () => {
  for (const v of RFC8032) {
    // The transcribed vectors are self-consistent: node's signer reproduces the signature from the seed.
    const pkcs8 = Buffer.concat([
      Buffer.from('302e020100300506032b657004220420', 'hex'),
      Buffer.from(v.sk, 'hex'),
    ]);
    const sk = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
    assert.equal(nodeSign(null, hex(v.msg), sk).toString('hex'), v.sig, v.name);

    assert.equal(verifySignature(edKey(hex(v.pk)), hex(v.msg), hex(v.sig)), true, v.name);
    assert.equal(verifyEd25519Pure(hex(v.pk), hex(v.msg), hex(v.sig)), true, v.name);
    assert.equal(verifyEd25519ph(hex(v.pk), hex(v.msg), hex(v.sig)), false, v.name);
    // Wrong message, wrong key.
    assert.equal(verifySignature(edKey(hex(v.pk)), hex(v.msg + '00'), hex(v.sig)), false, v.name);
    assert.equal(verifySignature(edKey(hex(RFC8032[0]!.pk)), hex('ff'), hex(v.sig)), false, v.name);
  }
});

test('RFC 8032 Ed25519ph TEST abc verifies (cosign >= 2.6 --key), and not as pure Ed25519', () => {
  const key = edKey(hex(PH_ABC.pk));
  assert.equal(verifyEd25519ph(hex(PH_ABC.pk), hex(PH_ABC.msg), hex(PH_ABC.sig)), true);
  assert.equal(verifyEd25519Pure(hex(PH_ABC.pk), hex(PH_ABC.msg), hex(PH_ABC.sig)), false);
  assert.equal(verifySignature(key, hex(PH_ABC.msg), hex(PH_ABC.sig)), true);
  assert.equal(verifySignature(key, hex('616264'), hex(PH_ABC.sig)), false);
  assert.equal(verifySignature(key, hex(''), hex(PH_ABC.sig)), false);
  // Ed25519ph signs SHA-512(M); the digest itself is not the message.
  const sigS = leToNum(hex(PH_ABC.sig).subarray(32));
  const malleated = Uint8Array.from([...hex(PH_ABC.sig).subarray(0, 32), ...numToLe(sigS + L)]);
  assert.equal(verifySignature(key, hex(PH_ABC.msg), malleated), false);
});

test('non-canonical S (S + L) is refused, although the group equation still holds', () => {
  const v = RFC8032[0]!;
  const sig = hex(v.sig);
  const s = leToNum(sig.subarray(32));
  const malleated = Uint8Array.from([...sig.subarray(0, 32), ...numToLe(s + L)]);
  assert.equal(verifySignature(edKey(hex(v.pk)), hex(v.msg), malleated), false);
  // S = L exactly and S = 2^256 - 1 are refused too.
  assert.equal(
    verifySignature(edKey(hex(v.pk)), hex(v.msg), Uint8Array.from([...sig.subarray(0, 32), ...numToLe(L)])),
    false,
  );
  assert.equal(
    verifySignature(
      edKey(hex(v.pk)),
      hex(v.msg),
      Uint8Array.from([...sig.subarray(0, 32), ...new Uint8Array(32).fill(0xff)]),
    ),
    false,
  );
});

test('small-order public keys are refused: the "any message" forgery (small R, S = 0) fails', () => {
  const msg = new TextEncoder().encode('{"critical":"forged"}');
  for (const [name, A] of Object.entries(SMALL_ORDER)) {
    for (const R of Object.values(SMALL_ORDER)) {
      const sig = Uint8Array.from([...hex(R), ...new Uint8Array(32)]);
      assert.equal(verifySignature(edKey(hex(A)), msg, sig), false, `A=${name}`);
    }
  }
  // Not hollow: the permissive ZIP-215 mode of the same library accepts this forgery for a canonical
  // small-order key, which is exactly what the strict checks exist to stop.
  const forged = Uint8Array.from([...hex(SMALL_ORDER.identity), ...new Uint8Array(32)]);
  assert.equal(ed.verify(forged, msg, hex(SMALL_ORDER.identity), { zip215: true }), true);
});

test('small-order R is refused; the all-zero signature is refused', () => {
  const v = RFC8032[1]!;
  const key = edKey(hex(v.pk));
  for (const R of Object.values(SMALL_ORDER)) {
    const sig = Uint8Array.from([...hex(R), ...hex(v.sig).subarray(32)]);
    assert.equal(verifySignature(key, hex(v.msg), sig), false);
  }
  assert.equal(verifySignature(key, hex(v.msg), new Uint8Array(64)), false);
});

test('non-canonical R and A encodings (y >= p) are refused', () => {
  // y = p + 1 spells the identity's y = 1 non-canonically.
  const nonCanonical = 'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f';
  const v = RFC8032[0]!;
  assert.equal(verifySignature(edKey(hex(nonCanonical)), hex(v.msg), hex(v.sig)), false);
  const sig = Uint8Array.from([...hex(nonCanonical), ...hex(v.sig).subarray(32)]);
  assert.equal(verifySignature(edKey(hex(v.pk)), hex(v.msg), sig), false);
});

test('malformed Ed25519 inputs return false and never throw', () => {
  const key = edKey(hex(RFC8032[0]!.pk));
  for (const sig of [
    new Uint8Array(0),
    new Uint8Array(63),
    new Uint8Array(65),
    new Uint8Array(64).fill(0xff),
  ]) {
    assert.equal(verifySignature(key, new Uint8Array(0), sig), false);
  }
  assert.equal(verifySignature(edKey(new Uint8Array(31)), new Uint8Array(0), hex(RFC8032[0]!.sig)), false);
});

test('ECDSA P-256: the real cosign fixtures verify under cosign.pub', () => {
  const key = parsePublicKeyPem(cosignPublicKeyPem());
  for (const name of ['valid', 'valid-with-tag', 'manifest-digest-error', 'modified-manifest']) {
    for (const s of loadCosignFixture(name).signatures) {
      const sig = b64(s.annotations['dev.cosignproject.cosign/signature']!);
      // The cryptographic signature is valid in all of them; the digest checks happen in trust.ts.
      assert.equal(verifySignature(key, s.payload, sig), true, name);
    }
  }
  const unknown = unknownKeySignature();
  assert.equal(
    verifySignature(key, unknown.payload, b64(unknown.annotations['dev.cosignproject.cosign/signature']!)),
    false,
  );
});

test('ECDSA P-256: DER only; raw r||s and BER variants are refused', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const key = parsePublicKeyPem(publicKey.export({ format: 'pem', type: 'spki' }) as string);
  const msg = new TextEncoder().encode('payload');
  const der = new Uint8Array(nodeSign('sha256', msg, { key: privateKey, dsaEncoding: 'der' }));
  assert.equal(verifySignature(key, msg, der), true);
  const raw = new Uint8Array(nodeSign('sha256', msg, { key: privateKey, dsaEncoding: 'ieee-p1363' }));
  assert.equal(raw.length, 64);
  // Not hollow: the raw form is a valid signature for node when asked for P1363.
  assert.equal(nodeVerify('sha256', msg, { key: publicKey, dsaEncoding: 'ieee-p1363' }, raw), true);
  assert.equal(verifySignature(key, msg, raw), false);
  // BER: the same SEQUENCE with a long-form length byte.
  const ber = Uint8Array.from([0x30, 0x81, der[1]!, ...der.subarray(2)]);
  assert.equal(verifySignature(key, msg, ber), false);
  // Trailing garbage after the DER.
  assert.equal(verifySignature(key, msg, Uint8Array.from([...der, 0])), false);
  assert.equal(verifySignature(key, msg, new Uint8Array(0)), false);
  // Ed25519 signatures are not ECDSA signatures and vice versa.
  assert.equal(verifySignature(edKey(hex(RFC8032[0]!.pk)), msg, der), false);
});

function flipBit(b: Uint8Array, bit: number): Uint8Array {
  const c = Uint8Array.from(b);
  c[bit >> 3] = (c[bit >> 3] as number) ^ (1 << (bit & 7));
  return c;
}

test('property: a flipped bit in the payload or the signature is refused (ECDSA, Ed25519, Ed25519ph)', () => {
  const ecdsaKey = parsePublicKeyPem(cosignPublicKeyPem());
  const fx = loadCosignFixture('valid').signatures[0]!;
  const ecdsaSig = b64(fx.annotations['dev.cosignproject.cosign/signature']!);
  const v = RFC8032[2]!;
  const cases: Array<[PublicKey, Uint8Array, Uint8Array]> = [
    [ecdsaKey, fx.payload, ecdsaSig],
    [edKey(hex(v.pk)), hex(v.msg), hex(v.sig)],
    [edKey(hex(PH_ABC.pk)), hex(PH_ABC.msg), hex(PH_ABC.sig)],
  ];
  for (const [key, payload, sig] of cases) {
    assert.equal(verifySignature(key, payload, sig), true);
    fc.assert(
      fc.property(fc.boolean(), fc.nat(), (inPayload, n) => {
        if (inPayload) {
          assert.equal(verifySignature(key, flipBit(payload, n % (payload.length * 8)), sig), false);
        } else {
          assert.equal(verifySignature(key, payload, flipBit(sig, n % (sig.length * 8))), false);
        }
      }),
      { numRuns: 150 },
    );
  }
});

test('property: random bytes never verify and never throw', () => {
  const key = edKey(hex(RFC8032[0]!.pk));
  const ecdsaKey = parsePublicKeyPem(cosignPublicKeyPem());
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 80 }), fc.uint8Array({ maxLength: 80 }), (payload, sig) => {
      assert.equal(verifySignature(key, payload, sig), false);
      assert.equal(verifySignature(ecdsaKey, payload, sig), false);
    }),
    { numRuns: 200 },
  );
});

test('property: pure Ed25519 agrees with noble-ed25519 strict verify (fresh keys, messages, tampered and torsioned signatures)', () => {
  // verify.ts checks the equation itself (shared decoding, a per-key table for [k]A); it must
  // accept exactly what noble's own zip215=false verify accepts, key after key (a new key is
  // prepared each time; a repeated one comes from the prepared-key memo).
  const order8 = ed.Point.fromBytes(hex(SMALL_ORDER['order 8 a']), true);
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.uint8Array({ maxLength: 200 }),
      fc.constantFrom('valid', 'flip', 'torsion', 'other-message'),
      fc.nat(),
      (seed, msg, change, n) => {
        const pk = ed.getPublicKey(seed);
        let sig: Uint8Array = ed.sign(msg, seed);
        let m = msg;
        if (change === 'flip') sig = flipBit(sig, n % 512);
        if (change === 'other-message') m = Uint8Array.from([...msg, n & 0xff]);
        if (change === 'torsion') {
          // Signed by the key holder with R' = [r]B + a point of order 8 (not small order): the
          // cofactored equation accepts it (noble does), a cofactorless one would not.
          const { scalar, prefix } = ed.utils.getExtendedPublicKey(seed);
          const h = (...b: Uint8Array[]): bigint =>
            leToNum(createHash('sha512').update(Buffer.concat(b)).digest()) % L;
          const r = h(prefix, m);
          const R = ed.Point.BASE.multiply(r).add(order8).toBytes();
          const S = (r + h(R, pk, m) * scalar) % L;
          sig = Uint8Array.from([...R, ...numToLe(S)]);
        }
        const expected = ed.verify(sig, m, pk, { zip215: false });
        if (change === 'torsion' || change === 'valid') assert.equal(expected, true);
        assert.equal(verifyEd25519Pure(pk, m, sig), expected);
        assert.equal(verifySignature(edKey(pk), m, sig), expected || verifyEd25519ph(pk, m, sig));
        assert.equal(verifyEd25519Pure(pk, m, sig), expected, 'again, from the prepared key');
      },
    ),
    { numRuns: 60 },
  );
});
