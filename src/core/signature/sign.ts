/**
 * Signing for `trustgate sign` and key generation for `trustgate keygen`. No I/O: keys come in as
 * bytes (PKCS#8 DER) or KeyObjects.
 */
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign as nodeSign,
  type KeyObject,
} from 'node:crypto';
import { GateError } from '../errors.js';
import { parsePublicKeyDer, publicKeyToPem } from './keys.js';

/** A private key: PKCS#8 DER bytes (what a cosign key file decrypts to) or a node KeyObject. */
export type PrivateKeyMaterial = Uint8Array | KeyObject;

export type KeyType = 'ed25519' | 'ecdsa-p256';

function toKeyObject(key: PrivateKeyMaterial): KeyObject {
  if (key instanceof Uint8Array) {
    try {
      return createPrivateKey({ key: Buffer.from(key), format: 'der', type: 'pkcs8' });
    } catch (err) {
      throw new GateError('BAD_REQUEST', 'private key is not a valid PKCS#8 key', {
        cause: err,
      });
    }
  }
  if (key.type !== 'private') throw new TypeError('signing needs a private key');
  return key;
}

/** The algorithm of a private key, or a GateError for anything but Ed25519 / ECDSA P-256. */
export function privateKeyType(key: PrivateKeyMaterial): KeyType {
  const ko = toKeyObject(key);
  if (ko.asymmetricKeyType === 'ed25519') return 'ed25519';
  if (ko.asymmetricKeyType === 'ec' && ko.asymmetricKeyDetails?.namedCurve === 'prime256v1')
    return 'ecdsa-p256';
  // Policy: same algorithm set as verification, so we never produce a signature we would refuse.
  throw new GateError('BAD_REQUEST', 'only Ed25519 and ECDSA P-256 private keys are supported');
}

/**
 * Signs the raw payload bytes. Ed25519: pure Ed25519 (RFC 8032), which every cosign version and
 * containers/image verify. ECDSA P-256: SHA-256, ASN.1 DER signature (as cosign writes).
 */
export function signPayload(privateKey: PrivateKeyMaterial, payload: Uint8Array): Uint8Array {
  const ko = toKeyObject(privateKey);
  const type = privateKeyType(ko);
  const sig =
    type === 'ed25519'
      ? nodeSign(null, payload, ko)
      : nodeSign('sha256', payload, { key: ko, dsaEncoding: 'der' });
  return new Uint8Array(sig.buffer, sig.byteOffset, sig.byteLength);
}

/** Generates a key pair: PKCS#8 DER private key (to be encrypted by keyfile.ts) and PEM SPKI public key. */
export function generateKeyPair(type: KeyType): { pkcs8Der: Uint8Array; publicKeyPem: string } {
  const { privateKey, publicKey } =
    type === 'ed25519'
      ? generateKeyPairSync('ed25519')
      : generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const pkcs8 = privateKey.export({ format: 'der', type: 'pkcs8' });
  const spki = publicKey.export({ format: 'der', type: 'spki' });
  // Round-trip through our own parser: the public key we hand out is one we accept.
  const pub = parsePublicKeyDer(new Uint8Array(spki));
  return { pkcs8Der: new Uint8Array(pkcs8), publicKeyPem: publicKeyToPem(pub) };
}

/** The PEM public key that belongs to a private key. */
export function publicKeyPemOf(privateKey: PrivateKeyMaterial): string {
  const ko = toKeyObject(privateKey);
  privateKeyType(ko);
  const spki = createPublicKey(ko).export({ format: 'der', type: 'spki' });
  return publicKeyToPem(parsePublicKeyDer(new Uint8Array(spki)));
}
