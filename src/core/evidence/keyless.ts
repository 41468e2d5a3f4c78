/**
 * Keyless (Fulcio certificate) verification per the Sigstore client specification: is this
 * signature made by the key of a certificate that a trusted Fulcio CA issued, that was valid when
 * it signed, whose signing was logged, and who does the certificate say signed? Pure and
 * synchronous: the parsed bundle, the checked content, the trusted roots come in; a verified
 * identity or a typed failure goes out.
 *
 * What @sigstore/verify's `Verifier` (over `toTrustMaterial`, trusted-root.ts) does here:
 * - the signing time: RFC 3161 timestamps verified against the root's TSAs (chain and validFor at
 *   the time they state, message imprint over this signature), and the integrated time of every
 *   Rekor v1 entry that carries a SET;
 * - the certificate chain from the leaf to a Fulcio CA of the root whose `validFor` covers every
 *   signing time, each certificate valid at each time, path length and CA bits;
 * - the embedded SCTs against the root's CT logs (their `validFor` at the SCT's time);
 * - every tlog entry: the SET against the log key valid at its integrated time (Rekor v1), the
 *   Merkle inclusion proof against a checkpoint signed by the log named by the entry's log ID
 *   (Rekor v1 and v2; unknown witness lines are ignored), and the body against this signature and
 *   signed digest (hashedrekord 0.0.1/0.0.2, dsse 0.0.1/0.0.2, intoto 0.0.2);
 * - the signature under the certificate's key.
 * What is added here, because @sigstore/verify does not do it:
 * - thresholds fixed by policy: at least one verified log entry, one verified SCT and one
 *   verified signing time (so a Rekor v2 entry, which has no integrated time, needs a timestamp);
 * - a bundle whose chain ships a self-signed (root) certificate is refused (sigstore-conformance
 *   `bundle-with-root-cert_fail`): trust comes from the trusted root only, and @sigstore/verify
 *   never looks at the bundle's intermediates;
 * - the leaf must be an end-entity code-signing certificate (not a CA; EKU codeSigning);
 * - each log entry must also name this certificate (or its key) as the verifier: @sigstore/verify
 *   compares only the signature and the digest (the class of cosign's "any valid Rekor entry");
 * - several trusted roots: the whole check runs within one root at a time, never mixing the CAs
 *   of one with the logs of another;
 * - the identity (identity.ts): SAN, issuer 1.8 (1.1 fallback) and the GitHub claims.
 */
import { createHash } from 'node:crypto';
import type { Bundle, TransparencyLogEntry } from '@sigstore/bundle';
import { RFC3161Timestamp, X509Certificate, crypto as sigstoreCrypto, pem } from '@sigstore/core';
import { Verifier, type SignedEntity } from '@sigstore/verify';
import { certificateIdentity, type CertificateIdentity } from './identity.js';
import type { SigstoreTrustedRoot } from './trusted-root.js';

const OID_EKU = '2.5.29.37';
const OID_CODE_SIGNING = '1.3.6.1.5.5.7.3.3';

export type KeylessFailureReason =
  | 'malformed-bundle'
  | 'certificate-invalid'
  | 'timestamp-invalid'
  | 'tlog-missing'
  | 'tlog-invalid'
  | 'signature-invalid'
  | 'no-trusted-root';

export interface KeylessFailure {
  ok: false;
  reason: KeylessFailureReason;
  detail: string;
}

export interface KeylessSuccess {
  ok: true;
  /** Who the verified certificate names. */
  identity: CertificateIdentity;
  /** The verified signing times (SET integrated times and RFC 3161 times), earliest first. */
  signingTimes: Date[];
  /** sha256 of the leaf certificate's DER, `sha256:<hex>`. */
  certificateDigest: string;
  /** Index in the trusted roots list of the root that verified it. */
  root: number;
}

/** The signed content as bundle.ts checked it. */
export interface KeylessContent {
  kind: 'dsse' | 'message-signature';
  /** The bytes the signature is over: the DSSE PAE, or the artifact. */
  signedBytes: Uint8Array;
  signature: Uint8Array;
  /** DSSE: the payload. */
  payload?: Uint8Array;
  /** Message signature: the digest the bundle states (already equal to sha256 of the artifact). */
  messageDigest?: Uint8Array;
}

const fail = (reason: KeylessFailureReason, detail: string): KeylessFailure => ({
  ok: false,
  reason,
  detail,
});
const eq = (a: Uint8Array, b: Uint8Array): boolean => Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;
const sha256 = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest();

/**
 * The SignatureContent @sigstore/verify matches Rekor entry bodies (and, by default, the signature)
 * against; `verify` replaces its signature check when the caller already made a stricter one.
 */
export function signatureContent(
  c: KeylessContent,
  verify?: SignedEntity['signature']['verifySignature'],
): SignedEntity['signature'] {
  const sig = Buffer.from(c.signature);
  const digest = c.kind === 'dsse' ? sha256(c.payload!) : Buffer.from(c.messageDigest!);
  const signedDigest = c.kind === 'dsse' ? sha256(c.signedBytes) : digest;
  return {
    signature: sig,
    compareSignature: (s) => eq(s, sig),
    compareDigest: (d) => eq(d, digest),
    compareSignedDigest: (d) => eq(d, signedDigest),
    // DSSE: over the PAE with the key's own hash (ECDSA P-256: SHA-256); message: SHA-256 of the
    // artifact (bundle.ts admits SHA2_256 message digests only). Node's verify takes DER ECDSA only.
    verifySignature:
      verify ??
      ((key) =>
        sigstoreCrypto.verify(
          Buffer.from(c.signedBytes),
          key,
          sig,
          c.kind === 'dsse' ? undefined : 'sha256',
        )),
  };
}

/** The certificates of the bundle: the leaf first, then any the bundle ships. */
function bundleCertificates(bundle: Bundle): Uint8Array[] {
  const m = bundle.verificationMaterial.content;
  if (m.$case === 'certificate') return [m.certificate.rawBytes];
  if (m.$case === 'x509CertificateChain') return m.x509CertificateChain.certificates.map((c) => c.rawBytes);
  return [];
}

function isSelfSigned(cert: X509Certificate): boolean {
  if (!cert.subject.equals(cert.issuer)) return false;
  try {
    return cert.verify();
  } catch {
    return false;
  }
}

function isCodeSigningLeaf(leaf: X509Certificate): string | undefined {
  if (leaf.isCA || leaf.extBasicConstraints?.isCA === true)
    return 'the signing certificate is a CA certificate';
  const eku = leaf.extension(OID_EKU);
  if (eku === undefined) return 'the signing certificate has no extended key usage';
  let oids: string[];
  try {
    oids = eku.valueObj.subs[0]!.subs.map((o) => o.toOID());
  } catch {
    return 'the signing certificate extended key usage does not parse';
  }
  return oids.includes(OID_CODE_SIGNING) ? undefined : 'the signing certificate is not for code signing';
}

/**
 * The verifier a Rekor entry body names (a certificate or public key, PEM or DER), by entry kind.
 * Undefined when the body names none that this module can read.
 */
function bodyVerifiers(entry: TransparencyLogEntry): Uint8Array[] | undefined {
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(Buffer.from(entry.canonicalizedBody).toString('utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const spec = body['spec'] as Record<string, unknown> | undefined;
  if (typeof spec !== 'object' || spec === null) return undefined;
  const fromB64Pem = (v: unknown): Uint8Array | undefined => {
    if (typeof v !== 'string') return undefined;
    const text = Buffer.from(v, 'base64').toString('utf8');
    try {
      return text.includes('-----BEGIN') ? pem.toDER(text) : Buffer.from(v, 'base64');
    } catch {
      return undefined;
    }
  };
  const fromV2 = (v: unknown): Uint8Array | undefined => {
    const o = v as { x509Certificate?: { rawBytes?: string }; publicKey?: { rawBytes?: string } } | undefined;
    const raw = o?.x509Certificate?.rawBytes ?? o?.publicKey?.rawBytes;
    return typeof raw === 'string' ? Buffer.from(raw, 'base64') : undefined;
  };
  const list = (xs: unknown, pick: (x: Record<string, unknown>) => Uint8Array | undefined): Uint8Array[] =>
    Array.isArray(xs)
      ? xs.flatMap((x) => {
          const v = typeof x === 'object' && x !== null ? pick(x as Record<string, unknown>) : undefined;
          return v ? [v] : [];
        })
      : [];
  const kind = `${String(body['kind'])}/${String(body['apiVersion'])}`;
  const v2 = spec['hashedRekordV002'] ?? spec['dsseV002'];
  switch (kind) {
    case 'hashedrekord/0.0.1': {
      const sig = spec['signature'] as { publicKey?: { content?: unknown } } | undefined;
      const v = fromB64Pem(sig?.publicKey?.content);
      return v ? [v] : undefined;
    }
    case 'dsse/0.0.1':
      return list(spec['signatures'], (s) => fromB64Pem(s['verifier']));
    case 'intoto/0.0.2': {
      const env = (spec['content'] as { envelope?: { signatures?: unknown } } | undefined)?.envelope;
      return list(env?.signatures, (s) => fromB64Pem(s['publicKey']));
    }
    case 'hashedrekord/0.0.2': {
      const h = v2 as { signature?: { verifier?: unknown } } | undefined;
      const v = fromV2(h?.signature?.verifier);
      return v ? [v] : undefined;
    }
    case 'dsse/0.0.2': {
      const d = v2 as { signatures?: unknown } | undefined;
      return list(d?.signatures, (s) => fromV2(s['verifier']));
    }
    default:
      return undefined;
  }
}

function reasonOf(code: string | undefined): KeylessFailureReason {
  if (code === undefined) return 'certificate-invalid';
  if (code.startsWith('TLOG')) return 'tlog-invalid';
  if (code === 'TIMESTAMP_ERROR') return 'timestamp-invalid';
  if (code === 'SIGNATURE_ERROR') return 'signature-invalid';
  return 'certificate-invalid';
}

function errorText(err: unknown): string {
  const e = err as { message?: string; cause?: { message?: string } };
  const cause = e.cause?.message;
  return cause !== undefined && cause !== e.message ? `${e.message}: ${cause}` : String(e.message);
}

/**
 * Verifies the certificate material of a keyless bundle against the trusted roots (the first
 * that verifies every part wins). The identity is returned, not judged: the caller matches it.
 */
export function verifyKeyless(
  bundle: Bundle,
  content: KeylessContent,
  roots: readonly SigstoreTrustedRoot[],
): KeylessSuccess | KeylessFailure {
  const ders = bundleCertificates(bundle);
  if (ders.length === 0 || ders[0]!.length === 0)
    return fail('malformed-bundle', 'the bundle carries no certificate');
  let certs: X509Certificate[];
  try {
    certs = ders.map((d) => X509Certificate.parse(Buffer.from(d)));
  } catch (err) {
    return fail('malformed-bundle', `a bundle certificate does not parse: ${(err as Error).message}`);
  }
  const leaf = certs[0]!;
  if (isSelfSigned(leaf)) return fail('certificate-invalid', 'the signing certificate is self-signed');
  const leafProblem = isCodeSigningLeaf(leaf);
  if (leafProblem !== undefined) return fail('certificate-invalid', leafProblem);
  if (roots.length === 0) {
    return fail(
      'no-trusted-root',
      'a keyless (certificate) signature needs a Sigstore trusted root, and none is configured',
    );
  }

  const tlogEntries: TransparencyLogEntry[] = bundle.verificationMaterial.tlogEntries;
  // Policy: keyless always needs a log entry, whatever the rule's `tlog` says (the short-lived
  // certificate is only meaningful with a witnessed signing time and a public record).
  if (tlogEntries.length === 0) {
    return fail(
      'tlog-missing',
      'a keyless signature must carry a transparency-log entry, and this one has none',
    );
  }
  let timestamps: SignedEntity['timestamps'];
  try {
    timestamps = [
      // Only a Rekor v1 entry with a SET vouches for its integrated time.
      ...tlogEntries
        .filter((e) => e.inclusionPromise !== undefined && e.integratedTime !== '0')
        .map((tlogEntry) => ({ $case: 'transparency-log' as const, tlogEntry })),
      ...(bundle.verificationMaterial.timestampVerificationData?.rfc3161Timestamps ?? []).map((t) => ({
        $case: 'timestamp-authority' as const,
        timestamp: RFC3161Timestamp.parse(Buffer.from(t.signedTimestamp)),
      })),
    ];
  } catch (err) {
    return fail('timestamp-invalid', `an RFC 3161 timestamp does not parse: ${(err as Error).message}`);
  }
  const entity: SignedEntity = {
    signature: signatureContent(content),
    key: { $case: 'certificate', certificate: leaf },
    tlogEntries,
    timestamps,
  };

  let firstFailure: KeylessFailure | undefined;
  const selfSigned = certs.slice(1).filter(isSelfSigned);
  for (const [index, root] of roots.entries()) {
    // Policy: the trust anchor comes from the trusted root only. A bundle that ships a root of its
    // own is refused (not silently ignored); one that repeats a root this trusted root holds
    // (sigstore-js 1.x v0.1 bundles carry leaf, intermediate and root) is read as it is.
    const foreign = selfSigned.find(
      (c) => !root.material.certificateAuthorities.some((ca) => ca.certChain.some((t) => t.equals(c))),
    );
    if (foreign !== undefined) {
      const f = fail(
        'certificate-invalid',
        'the bundle ships its own root certificate, which the trusted root does not hold',
      );
      firstFailure ??= roots.length > 1 ? { ...f, detail: `trusted root ${index + 1}: ${f.detail}` } : f;
      continue;
    }
    const verifier = new Verifier(
      {
        ...root.material,
        publicKey: () => {
          throw new Error('a keyless signature has no public-key hint');
        },
      },
      // Policy: one verified log entry, one verified SCT and one verified signing time, at least.
      { tlogThreshold: 1, ctlogThreshold: 1, timestampThreshold: 1 },
    );
    try {
      verifier.verify(entity);
    } catch (err) {
      const f = fail(reasonOf((err as { code?: string }).code), errorText(err));
      firstFailure ??= roots.length > 1 ? { ...f, detail: `trusted root ${index + 1}: ${f.detail}` } : f;
      continue;
    }
    // Policy: every entry must be for this certificate too, not only this signature and digest.
    const leafDer = Buffer.from(ders[0]!);
    const leafKey = Buffer.from(leaf.publicKey);
    for (const entry of tlogEntries) {
      const named = bodyVerifiers(entry);
      if (named === undefined || named.length === 0) {
        return fail(
          'tlog-invalid',
          'its transparency-log entry names no verifier certificate that can be read',
        );
      }
      if (!named.some((n) => eq(n, leafDer) || eq(n, leafKey))) {
        return fail('tlog-invalid', 'its transparency-log entry was made with another certificate');
      }
    }
    const identity = certificateIdentity(leaf);
    if (typeof identity === 'string') return fail('certificate-invalid', identity);
    const signingTimes = timestamps
      .map((t) =>
        t.$case === 'timestamp-authority'
          ? t.timestamp.signingTime
          : new Date(Number(t.tlogEntry.integratedTime) * 1000),
      )
      .sort((a, b) => a.getTime() - b.getTime());
    return {
      ok: true,
      identity,
      signingTimes,
      certificateDigest: `sha256:${sha256(leafDer).toString('hex')}`,
      root: index,
    };
  }
  return firstFailure!;
}
