/**
 * A TEST Sigstore instance, made in the test: a Fulcio-like CA, a CT log and a Rekor v1 log whose
 * keys are generated here, and the trusted_root.json that names them. It is labelled as a test
 * trust root and stands for a private Sigstore deployment (the real public-good bundles are
 * tested in test/core/evidence/bundle.test.ts); it is not a fake of trustgate's verifier, which
 * checks everything it makes with the same code that checks public-good bundles.
 *
 * Certificates are written with a minimal DER writer so that the SCT can be computed over the
 * exact TBS (RFC 6962 precertificate entry) the verifier rebuilds.
 */
import { createHash, generateKeyPairSync, randomBytes, sign as nodeSign, type KeyObject } from 'node:crypto';
import { dsse, json } from '@sigstore/core';
import type { SignatureCandidate } from '../../src/core/trust.js';

// ---- DER ----------------------------------------------------------------------------------------

function len(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v >>= 8) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}
const tlv = (tag: number, body: Buffer): Buffer =>
  Buffer.concat([Buffer.from([tag]), len(body.length), body]);
const seq = (...items: Buffer[]): Buffer => tlv(0x30, Buffer.concat(items));
const set = (...items: Buffer[]): Buffer => tlv(0x31, Buffer.concat(items));
const octets = (b: Buffer): Buffer => tlv(0x04, b);
const utf8 = (s: string): Buffer => tlv(0x0c, Buffer.from(s, 'utf8'));
const bool = (v: boolean): Buffer => tlv(0x01, Buffer.from([v ? 0xff : 0]));
const bits = (b: Buffer): Buffer => tlv(0x03, Buffer.concat([Buffer.from([0]), b]));
const ctx = (n: number, body: Buffer, constructed = true): Buffer =>
  tlv((constructed ? 0xa0 : 0x80) | n, body);
function int(b: Buffer): Buffer {
  let v = b;
  while (v.length > 1 && v[0] === 0 && v[1]! < 0x80) v = v.subarray(1);
  if (v[0]! >= 0x80) v = Buffer.concat([Buffer.from([0]), v]);
  return tlv(0x02, v);
}
function oid(s: string): Buffer {
  const parts = s.split('.').map(Number);
  const out: number[] = [parts[0]! * 40 + parts[1]!];
  for (const p of parts.slice(2)) {
    const stack: number[] = [p & 0x7f];
    for (let v = p >>> 7; v > 0; v >>>= 7) stack.unshift((v & 0x7f) | 0x80);
    out.push(...stack);
  }
  return tlv(0x06, Buffer.from(out));
}
function utcTime(d: Date): Buffer {
  const p = (n: number): string => String(n).padStart(2, '0');
  const s = `${p(d.getUTCFullYear() % 100)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}Z`;
  return tlv(0x17, Buffer.from(s, 'ascii'));
}
const ext = (id: string, critical: boolean, value: Buffer): Buffer =>
  seq(oid(id), ...(critical ? [bool(true)] : []), octets(value));
const name = (o: string, cn: string): Buffer =>
  seq(set(seq(oid('2.5.4.10'), utf8(o))), set(seq(oid('2.5.4.3'), utf8(cn))));
const ECDSA_SHA256 = seq(oid('1.2.840.10045.4.3.2'));
const spki = (k: KeyObject): Buffer => k.export({ format: 'der', type: 'spki' }) as Buffer;
const keyId = (k: KeyObject): Buffer => createHash('sha256').update(spki(k)).digest().subarray(0, 20);
const sha256 = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest();

function tbs(opts: {
  serial: Buffer;
  issuer: Buffer;
  subject: Buffer;
  notBefore: Date;
  notAfter: Date;
  key: KeyObject;
  extensions: Buffer[];
}): Buffer {
  return seq(
    ctx(0, int(Buffer.from([2]))),
    int(opts.serial),
    ECDSA_SHA256,
    opts.issuer,
    seq(utcTime(opts.notBefore), utcTime(opts.notAfter)),
    opts.subject,
    spki(opts.key),
    ctx(3, seq(...opts.extensions)),
  );
}
const certificate = (tbsDer: Buffer, signer: KeyObject): Buffer =>
  seq(tbsDer, ECDSA_SHA256, bits(nodeSign('sha256', tbsDer, signer)));
export const toPem = (der: Uint8Array): string =>
  `-----BEGIN CERTIFICATE-----\n${Buffer.from(der)
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .replace(/\n$/, '')}\n-----END CERTIFICATE-----\n`;

// ---- the test instance --------------------------------------------------------------------------

const ec = (): { privateKey: KeyObject; publicKey: KeyObject } =>
  generateKeyPairSync('ec', { namedCurve: 'prime256v1' });

export interface TestIdentity {
  issuer: string;
  /** A URI (contains `://`) or an email. */
  subject: string;
  /** Fulcio extension OID suffix (e.g. '5' for 1.3.6.1.4.1.57264.1.5) -> text. */
  claims?: Record<string, string>;
}

export interface KeylessSignOptions {
  /** The certificate's validity (Fulcio: 10 minutes from `at`). */
  at?: Date;
  /** The log's integrated time (default `at` + 1 s). */
  integratedAt?: Date;
  /** Write no SCT into the certificate. */
  noSct?: boolean;
  /** Log the entry with another certificate (same key): the body then names that one. */
  logCertificate?: Buffer;
}

export interface KeylessSignature {
  /** The leaf certificate, DER. */
  certificate: Buffer;
  signature: Buffer;
  /** The Rekor v1 entry, as a bundle's tlogEntries[0] (JSON form). */
  tlogEntry: Record<string, unknown>;
  /** cosign's `dev.sigstore.cosign/bundle` annotation for the same entry. */
  cosignBundle: string;
}

export class TestSigstore {
  readonly label = 'TEST trust root (generated by the test; not a real Sigstore instance)';
  private readonly ca = ec();
  private readonly ct = ec();
  private readonly rekor = ec();
  private readonly caName = name('trustgate-test', 'test-fulcio-root');
  readonly caCertificate: Buffer;
  readonly rekorOrigin = 'rekor.trustgate-test.invalid';
  private logIndex = 0;

  constructor(readonly validFrom = new Date('2020-01-01T00:00:00Z')) {
    const notAfter = new Date('2040-01-01T00:00:00Z');
    this.caCertificate = certificate(
      tbs({
        serial: randomBytes(16),
        issuer: this.caName,
        subject: this.caName,
        notBefore: validFrom,
        notAfter,
        key: this.ca.publicKey,
        extensions: [
          ext('2.5.29.15', true, bits(Buffer.from([0x06]))),
          ext('2.5.29.19', true, seq(bool(true))),
          ext('2.5.29.14', false, octets(keyId(this.ca.publicKey))),
        ],
      }),
      this.ca.privateKey,
    );
  }

  private logId(k: KeyObject): Buffer {
    return sha256(spki(k));
  }

  /** The trusted_root.json of this instance. */
  trustedRoot(): Record<string, unknown> {
    const start = this.validFrom.toISOString();
    const log = (k: KeyObject, url: string) => ({
      baseUrl: url,
      hashAlgorithm: 'SHA2_256',
      publicKey: {
        rawBytes: spki(k).toString('base64'),
        keyDetails: 'PKIX_ECDSA_P256_SHA_256',
        validFor: { start },
      },
      logId: { keyId: this.logId(k).toString('base64') },
    });
    return {
      mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
      tlogs: [log(this.rekor.publicKey, `https://${this.rekorOrigin}`)],
      certificateAuthorities: [
        {
          subject: { organization: 'trustgate-test', commonName: 'test-fulcio-root' },
          uri: 'https://fulcio.trustgate-test.invalid',
          certChain: { certificates: [{ rawBytes: this.caCertificate.toString('base64') }] },
          validFor: { start },
        },
      ],
      ctlogs: [log(this.ct.publicKey, 'https://ctfe.trustgate-test.invalid')],
      timestampAuthorities: [],
    };
  }

  /** A Fulcio-like leaf for `key`, with an embedded SCT unless `noSct`. */
  issue(key: KeyObject, id: TestIdentity, at: Date, noSct = false): Buffer {
    const sanName = id.subject.includes('://')
      ? ctx(6, Buffer.from(id.subject), false)
      : ctx(1, Buffer.from(id.subject), false);
    const base = {
      serial: randomBytes(16),
      issuer: this.caName,
      subject: seq(),
      notBefore: at,
      notAfter: new Date(at.getTime() + 10 * 60_000),
      key,
    };
    const extensions = [
      ext('2.5.29.15', true, bits(Buffer.from([0x80]))),
      ext('2.5.29.37', false, seq(oid('1.3.6.1.5.5.7.3.3'))),
      ext('2.5.29.35', false, seq(ctx(0, keyId(this.ca.publicKey), false))),
      ext('2.5.29.17', true, seq(sanName)),
      ext('1.3.6.1.4.1.57264.1.1', false, Buffer.from(id.issuer)),
      ext('1.3.6.1.4.1.57264.1.8', false, utf8(id.issuer)),
      ...Object.entries(id.claims ?? {}).map(([n, v]) =>
        ext(`1.3.6.1.4.1.57264.1.${n}`, false, Number(n) >= 8 ? utf8(v) : Buffer.from(v)),
      ),
    ];
    const pre = tbs({ ...base, extensions });
    if (noSct) return certificate(pre, this.ca.privateKey);
    // RFC 6962 3.2: the SCT signs the precertificate TBS (the final TBS without the SCT extension).
    const ts = Buffer.alloc(8);
    ts.writeBigUInt64BE(BigInt(at.getTime()));
    const preLen = Buffer.alloc(3);
    preLen.writeUIntBE(pre.length, 0, 3);
    const signed = Buffer.concat([
      Buffer.from([0, 0]),
      ts,
      Buffer.from([0, 1]),
      sha256(spki(this.ca.publicKey)),
      preLen,
      pre,
      Buffer.from([0, 0]),
    ]);
    const sig = nodeSign('sha256', signed, this.ct.privateKey);
    const sct = Buffer.concat([
      Buffer.from([0]),
      this.logId(this.ct.publicKey),
      ts,
      Buffer.from([0, 0]),
      Buffer.from([4, 3]),
      Buffer.from([sig.length >> 8, sig.length & 0xff]),
      sig,
    ]);
    const list = Buffer.concat([
      Buffer.from([(sct.length + 2) >> 8, (sct.length + 2) & 0xff]),
      Buffer.from([sct.length >> 8, sct.length & 0xff]),
      sct,
    ]);
    return certificate(
      tbs({ ...base, extensions: [...extensions, ext('1.3.6.1.4.1.11129.2.4.2', false, octets(list))] }),
      this.ca.privateKey,
    );
  }

  /**
   * A Rekor v1 hashedrekord/0.0.1 entry for (signature, signed digest, certificate): body, SET
   * and a one-leaf inclusion proof with a signed checkpoint.
   */
  logEntry(
    signature: Buffer,
    signedDigest: Buffer,
    cert: Buffer,
    integratedAt: Date,
  ): {
    tlogEntry: Record<string, unknown>;
    cosignBundle: string;
  } {
    const body = Buffer.from(
      json.canonicalize({
        apiVersion: '0.0.1',
        kind: 'hashedrekord',
        spec: {
          data: { hash: { algorithm: 'sha256', value: signedDigest.toString('hex') } },
          signature: {
            content: signature.toString('base64'),
            publicKey: { content: Buffer.from(toPem(cert)).toString('base64') },
          },
        },
      }),
    );
    const logIndex = this.logIndex++;
    const integratedTime = Math.floor(integratedAt.getTime() / 1000);
    const logID = this.logId(this.rekor.publicKey);
    const setPayload = json.canonicalize({
      body: body.toString('base64'),
      integratedTime,
      logIndex,
      logID: logID.toString('hex'),
    });
    const set = nodeSign('sha256', Buffer.from(setPayload), this.rekor.privateKey);
    // A one-leaf tree: the root hash is the leaf hash (RFC 6962 2.1: sha256(0x00 || body)).
    const root = sha256(Buffer.concat([Buffer.from([0]), body]));
    const note = `${this.rekorOrigin} - 1\n1\n${root.toString('base64')}\n`;
    const noteSig = nodeSign('sha256', Buffer.from(note), this.rekor.privateKey);
    const checkpoint = `${note}\n\u2014 ${this.rekorOrigin} ${Buffer.concat([logID.subarray(0, 4), noteSig]).toString('base64')}\n`;
    return {
      tlogEntry: {
        logIndex: String(logIndex),
        logId: { keyId: logID.toString('base64') },
        kindVersion: { kind: 'hashedrekord', version: '0.0.1' },
        integratedTime: String(integratedTime),
        inclusionPromise: { signedEntryTimestamp: set.toString('base64') },
        inclusionProof: {
          logIndex: '0',
          rootHash: root.toString('base64'),
          treeSize: '1',
          hashes: [],
          checkpoint: { envelope: checkpoint },
        },
        canonicalizedBody: body.toString('base64'),
      },
      cosignBundle: JSON.stringify({
        SignedEntryTimestamp: set.toString('base64'),
        Payload: { body: body.toString('base64'), integratedTime, logIndex, logID: logID.toString('hex') },
      }),
    };
  }

  /** Signs `signedBytes` keyless: a fresh key, its certificate, the signature, the log entry. */
  sign(signedBytes: Uint8Array, id: TestIdentity, o: KeylessSignOptions = {}): KeylessSignature {
    const at = o.at ?? new Date(Date.now() - 60_000);
    const key = ec();
    const cert = this.issue(key.publicKey, id, at, o.noSct === true);
    const signature = nodeSign('sha256', signedBytes, key.privateKey);
    const { tlogEntry, cosignBundle } = this.logEntry(
      signature,
      sha256(signedBytes),
      o.logCertificate ?? cert,
      o.integratedAt ?? new Date(at.getTime() + 1000),
    );
    return { certificate: cert, signature, tlogEntry, cosignBundle };
  }

  /**
   * A cosign 2.x keyless `.sig` signature over a simple-signing `payload`: the signature and the
   * certificate, chain and Rekor bundle annotations its layer carries.
   */
  legacySignature(payload: Uint8Array, id: TestIdentity, o: KeylessSignOptions = {}): SignatureCandidate {
    const s = this.sign(payload, id, o);
    return {
      payload,
      signature: s.signature.toString('base64'),
      keyless: {
        certificate: toPem(s.certificate),
        chain: toPem(this.caCertificate),
        rekorBundle: s.cosignBundle,
      },
    };
  }

  /** A v0.3 keyless DSSE bundle (cosign 3's `cosign sign` layout) over an in-toto statement. */
  dsseBundle(statement: Uint8Array, id: TestIdentity, o: KeylessSignOptions = {}): Uint8Array {
    const payloadType = 'application/vnd.in-toto+json';
    const pae = dsse.preAuthEncoding(payloadType, Buffer.from(statement));
    const s = this.sign(pae, id, o);
    return Buffer.from(
      JSON.stringify({
        mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
        verificationMaterial: {
          certificate: { rawBytes: s.certificate.toString('base64') },
          tlogEntries: [s.tlogEntry],
        },
        dsseEnvelope: {
          payload: Buffer.from(statement).toString('base64'),
          payloadType,
          signatures: [{ sig: s.signature.toString('base64'), keyid: '' }],
        },
      }),
    );
  }
}
