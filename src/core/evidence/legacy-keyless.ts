/**
 * cosign 2.x keyless legacy `.sig` layers, read as the Sigstore bundle they amount to. A layer of
 * a `sha256-<hex>.sig` artifact signed keyless carries, besides the payload and
 * `dev.cosignproject.cosign/signature`:
 * - `dev.sigstore.cosign/certificate`: the Fulcio leaf (PEM);
 * - `dev.sigstore.cosign/chain`: the intermediates and root (PEM);
 * - `dev.sigstore.cosign/bundle`: the Rekor v1 "bundle" `{"SignedEntryTimestamp", "Payload":
 *   {"body", "integratedTime", "logIndex", "logID"}}` (a SET, no inclusion proof);
 * - optionally `dev.sigstore.cosign/rfc3161timestamp`: `{"SignedRFC3161TimestampToken"}`.
 * That is exactly a v0.1 bundle with a message signature over the payload, so it is turned into
 * one and verified by the same code (bundle.ts, keyless.ts). Pure.
 */
import { createHash } from 'node:crypto';
import { pem } from '@sigstore/core';
import { isJsonObject, parseStrictJson } from '../json-strict.js';
import { decodeStrictBase64 } from '../signature/keys.js';
import { BUNDLE_V01_MEDIA_TYPE } from '@sigstore/bundle';

export const COSIGN_CERTIFICATE_ANNOTATION = 'dev.sigstore.cosign/certificate';
export const COSIGN_CHAIN_ANNOTATION = 'dev.sigstore.cosign/chain';
export const COSIGN_BUNDLE_ANNOTATION = 'dev.sigstore.cosign/bundle';
export const COSIGN_TIMESTAMP_ANNOTATION = 'dev.sigstore.cosign/rfc3161timestamp';

/** The keyless parts of a legacy layer (annotation values as stored). */
export interface LegacyKeylessMaterial {
  certificate: string;
  chain?: string;
  rekorBundle?: string;
  rfc3161Timestamp?: string;
}

/**
 * The bundle JSON bytes equivalent to a keyless legacy layer, or a string naming why the
 * annotations cannot be one. Policy: the chain annotation is not used: the CA chain comes from the
 * trusted root only (it would, moreover, ship cosign's root, which bundles may not).
 */
export function legacyKeylessBundle(
  payload: Uint8Array,
  signatureB64: string,
  m: LegacyKeylessMaterial,
): Uint8Array | string {
  const sig = decodeStrictBase64(signatureB64);
  if (sig === null || sig.length === 0) return 'the signature annotation is not valid base64';
  let leaf: Buffer;
  try {
    const blocks = m.certificate.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    if (blocks.length !== 1) return 'the certificate annotation must hold exactly one PEM certificate';
    leaf = pem.toDER(blocks[0]!);
  } catch {
    return 'the certificate annotation is not a PEM certificate';
  }
  const tlogEntries: unknown[] = [];
  if (m.rekorBundle !== undefined) {
    let rb: unknown;
    try {
      rb = parseStrictJson(new TextEncoder().encode(m.rekorBundle), 'cosign bundle annotation');
    } catch (err) {
      return (err as Error).message;
    }
    const p = isJsonObject(rb) ? rb['Payload'] : undefined;
    const set = isJsonObject(rb) ? rb['SignedEntryTimestamp'] : undefined;
    if (!isJsonObject(p) || typeof set !== 'string') return 'the Rekor bundle annotation is malformed';
    const { body, integratedTime, logIndex, logID } = p as Record<string, unknown>;
    if (
      typeof body !== 'string' ||
      typeof integratedTime !== 'number' ||
      typeof logIndex !== 'number' ||
      typeof logID !== 'string' ||
      !/^[0-9a-f]{64}$/.test(logID)
    ) {
      return 'the Rekor bundle annotation is malformed';
    }
    let kind: unknown;
    let version: unknown;
    try {
      const b = JSON.parse(Buffer.from(body, 'base64').toString('utf8')) as Record<string, unknown>;
      kind = b['kind'];
      version = b['apiVersion'];
    } catch {
      return 'the Rekor entry body is not JSON';
    }
    if (typeof kind !== 'string' || typeof version !== 'string') return 'the Rekor entry body names no kind';
    tlogEntries.push({
      logIndex: String(logIndex),
      logId: { keyId: Buffer.from(logID, 'hex').toString('base64') },
      kindVersion: { kind, version },
      integratedTime: String(integratedTime),
      inclusionPromise: { signedEntryTimestamp: set },
      canonicalizedBody: body,
    });
  }
  const timestamps: unknown[] = [];
  if (m.rfc3161Timestamp !== undefined) {
    let t: unknown;
    try {
      t = parseStrictJson(new TextEncoder().encode(m.rfc3161Timestamp), 'cosign timestamp annotation');
    } catch (err) {
      return (err as Error).message;
    }
    const token = isJsonObject(t) ? t['SignedRFC3161TimestampToken'] : undefined;
    if (typeof token !== 'string') return 'the RFC 3161 timestamp annotation is malformed';
    timestamps.push({ signedTimestamp: token });
  }
  const doc = {
    mediaType: BUNDLE_V01_MEDIA_TYPE,
    verificationMaterial: {
      x509CertificateChain: { certificates: [{ rawBytes: leaf.toString('base64') }] },
      tlogEntries,
      ...(timestamps.length > 0 ? { timestampVerificationData: { rfc3161Timestamps: timestamps } } : {}),
    },
    messageSignature: {
      messageDigest: {
        algorithm: 'SHA2_256',
        digest: createHash('sha256').update(payload).digest('base64'),
      },
      signature: Buffer.from(sig).toString('base64'),
    },
  };
  return new TextEncoder().encode(JSON.stringify(doc));
}
