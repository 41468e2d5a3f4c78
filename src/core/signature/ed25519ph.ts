/**
 * Ed25519ph signing (RFC 8032 §5.1, phflag = 1, empty context, PH = SHA-512): what cosign >= 2.6
 * signs with an Ed25519 key, and the only Ed25519 mode cosign 3 verifies bundles with
 * (pkg/cosign/keys.go GetDefaultLoadOptions: WithED25519ph). Node's crypto only signs pure Ed25519;
 * @noble/curves' ed25519ph signs it (RFC 8032 §5.1.6). Pure.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { ed25519ph } from '@noble/curves/ed25519.js';

/** The 32-byte RFC 8032 seed of an Ed25519 private key (PKCS#8 DER or a KeyObject). */
export function ed25519Seed(key: Uint8Array | KeyObject): Uint8Array {
  const ko =
    key instanceof Uint8Array
      ? createPrivateKey({ key: Buffer.from(key), format: 'der', type: 'pkcs8' })
      : key;
  if (ko.type !== 'private' || ko.asymmetricKeyType !== 'ed25519')
    throw new TypeError('not an Ed25519 private key');
  const d = ko.export({ format: 'jwk' }).d;
  if (d === undefined) throw new TypeError('Ed25519 private key has no seed');
  return new Uint8Array(Buffer.from(d, 'base64url'));
}

/** Signs `message` with Ed25519ph (empty context). `seed` is the 32-byte RFC 8032 secret key. */
export function signEd25519ph(seed: Uint8Array, message: Uint8Array): Uint8Array {
  return ed25519ph.sign(message, seed);
}
