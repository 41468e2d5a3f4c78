/**
 * Keyless signer identities: what a Fulcio certificate says about who signed (the SAN and the
 * Fulcio OID extensions 1.3.6.1.4.1.57264.1.*), and whether that matches an identity an admin
 * trusts. Pure. The certificate is only read here; whether it is trustworthy (chain, SCT, log,
 * timestamps) is keyless.ts's job, and nothing here is used before that passed.
 */
import { ASN1Obj, type X509Certificate } from '@sigstore/core';

const OID_SAN = '2.5.29.17';

/** Fulcio's arc: https://github.com/sigstore/fulcio/blob/main/docs/oid-info.md */
export const FULCIO_OID = '1.3.6.1.4.1.57264.1';
/** The OIDC issuer: 1.8 (a DER UTF8String), and the deprecated 1.1 (raw bytes) as fallback. */
export const OID_ISSUER_V2 = `${FULCIO_OID}.8`;
export const OID_ISSUER_V1 = `${FULCIO_OID}.1`;
/** An otherName SAN of this type carries a username identity (`user!issuer-host`). */
export const OID_OTHERNAME_USERNAME = `${FULCIO_OID}.7`;

/**
 * The GitHub Actions claims an identity rule may pin, each read from the Fulcio extension named
 * first and, when that is absent, from the second (the v1 extensions 1.2-1.6 are deprecated but
 * still issued; cosign's `--certificate-github-workflow-*` flags read them).
 */
export const GITHUB_CLAIMS = {
  /** `owner/repo` (1.5 GitHub Workflow Repository; else 1.12 Source Repository URI without `https://github.com/`). */
  repository: [`${FULCIO_OID}.5`, `${FULCIO_OID}.12`],
  /** e.g. `refs/tags/v1.2.3` (1.6 GitHub Workflow Ref; else 1.14 Source Repository Ref). */
  workflowRef: [`${FULCIO_OID}.6`, `${FULCIO_OID}.14`],
  /** e.g. `push`, `workflow_dispatch` (1.2 GitHub Workflow Trigger; else 1.20 Build Trigger). */
  trigger: [`${FULCIO_OID}.2`, `${FULCIO_OID}.20`],
  /** The commit (1.3 GitHub Workflow SHA; else 1.13 Source Repository Digest). */
  sha: [`${FULCIO_OID}.3`, `${FULCIO_OID}.13`],
  /** `github-hosted` or `self-hosted` (1.11 Runner Environment). */
  runnerEnvironment: [`${FULCIO_OID}.11`],
} as const;
export type GithubClaim = keyof typeof GITHUB_CLAIMS;
export const GITHUB_CLAIM_NAMES = Object.keys(GITHUB_CLAIMS) as GithubClaim[];

/** A certificate identity, as read from a certificate that has been verified. */
export interface CertificateIdentity {
  /** The OIDC issuer (extension 1.8, or 1.1). */
  issuer: string;
  /** The SAN: a URI, an email address, or a Fulcio username otherName. */
  subject: string;
  subjectType: 'uri' | 'email' | 'othername';
  /** The GitHub claims present (see GITHUB_CLAIMS). */
  github: Partial<Record<GithubClaim, string>>;
  /** Every Fulcio extension 1.3.6.1.4.1.57264.1.N present, by OID, as text. */
  extensions: Record<string, string>;
}

/** An identity an admin trusts (the config's `identities[]` entry), validated. */
export interface IdentityRule {
  issuer?: string;
  issuerRegExp?: string;
  subject?: string;
  subjectRegExp?: string;
  github?: Partial<Record<GithubClaim, string>>;
}

/** A compiled IdentityRule. */
export interface IdentityMatcher {
  readonly rule: IdentityRule;
  /** For messages: `issuer=… subject~=…`. */
  readonly description: string;
  matches(id: CertificateIdentity): boolean;
}

function extensionText(cert: X509Certificate, oid: string): string | undefined {
  const ext = cert.extension(oid);
  if (ext === undefined) return undefined;
  const raw = ext.value;
  // Fulcio's v2 extensions (1.8 onwards) hold a DER UTF8String; the v1 ones (1.1-1.6) the raw bytes.
  const arc = Number(oid.slice(FULCIO_OID.length + 1));
  if (arc >= 8) {
    try {
      const obj = ASN1Obj.parseBuffer(Buffer.from(raw) as Buffer<ArrayBuffer>);
      // UTF8String (12); anything else is not a Fulcio claim.
      if (!obj.tag.isUniversal() || obj.tag.number !== 12 || obj.subs.length > 0) return undefined;
      return obj.value.toString('utf8');
    } catch {
      return undefined;
    }
  }
  return Buffer.from(raw).toString('utf8');
}

/**
 * Reads the identity of a Fulcio certificate: SAN (exactly one name: URI, email or the username
 * otherName) and issuer. Returns a string naming the problem when the certificate carries none.
 * Policy: a certificate with several SAN names is refused, so one certificate is one identity.
 */
export function certificateIdentity(cert: X509Certificate): CertificateIdentity | string {
  const san = cert.extension(OID_SAN);
  if (san === undefined) return 'the certificate has no subject alternative name';
  let names: ASN1Obj[];
  try {
    // extnValue holds one SEQUENCE of GeneralName.
    names = san.valueObj.subs[0]!.subs;
  } catch {
    return 'the certificate subject alternative name does not parse';
  }
  if (names.length !== 1) return `the certificate names ${names.length} identities; Fulcio issues one`;
  const name = names[0]!;
  let subject: string;
  let subjectType: CertificateIdentity['subjectType'];
  if (name.tag.isContextSpecific(0x06)) {
    subject = name.value.toString('utf8');
    subjectType = 'uri';
  } else if (name.tag.isContextSpecific(0x01)) {
    subject = name.value.toString('utf8');
    subjectType = 'email';
  } else if (name.tag.isContextSpecific(0x00)) {
    try {
      const oid = name.subs[0]?.toOID();
      const value = name.subs[1]?.subs[0];
      if (oid !== OID_OTHERNAME_USERNAME || value === undefined)
        return 'the certificate otherName is not a username';
      subject = value.value.toString('utf8');
      subjectType = 'othername';
    } catch {
      return 'the certificate otherName does not parse';
    }
  } else return 'the certificate subject alternative name is neither a URI, an email nor a username';
  if (subject === '') return 'the certificate subject alternative name is empty';

  const extensions: Record<string, string> = {};
  // Policy: a certificate repeating an extension is refused (RFC 5280 4.2; Go's crypto/x509, and so
  // cosign, refuses to parse it): otherwise the first 1.8 would be our issuer and the last another's.
  const seenOids = new Set<string>();
  for (const ext of cert.extensions) {
    let oid: string;
    try {
      oid = ext.subs[0]!.toOID();
    } catch {
      return 'the certificate has an extension whose identifier does not parse';
    }
    if (seenOids.has(oid)) return `the certificate repeats extension ${oid}`;
    seenOids.add(oid);
    if (!oid.startsWith(`${FULCIO_OID}.`) || !/^\d+$/.test(oid.slice(FULCIO_OID.length + 1))) continue;
    const text = extensionText(cert, oid);
    if (text !== undefined) extensions[oid] = text;
  }
  // Policy: the issuer is 1.8, with the deprecated 1.1 only when 1.8 is absent (Fulcio writes both).
  const issuer = extensions[OID_ISSUER_V2] ?? extensions[OID_ISSUER_V1];
  if (issuer === undefined || issuer === '')
    return 'the certificate names no OIDC issuer (extension 1.3.6.1.4.1.57264.1.8)';

  const github: Partial<Record<GithubClaim, string>> = {};
  for (const claim of GITHUB_CLAIM_NAMES) {
    const [first, second] = GITHUB_CLAIMS[claim] as readonly string[];
    let v = extensions[first!];
    if (v === undefined && second !== undefined) {
      v = extensions[second];
      if (v !== undefined && claim === 'repository') {
        v = v.startsWith('https://github.com/') ? v.slice('https://github.com/'.length) : undefined;
      }
    }
    if (v !== undefined) github[claim] = v;
  }
  return { issuer, subject, subjectType, github, extensions };
}

/** `issuer (subject)`, for messages. */
export function describeIdentity(id: Pick<CertificateIdentity, 'issuer' | 'subject'>): string {
  return `${id.subject} (issuer ${id.issuer})`;
}

/** The anchored form of an admin's regular expression: it must match the whole value. */
export function anchoredRegExp(source: string): RegExp {
  // Policy: always anchored (cosign's --certificate-identity-regexp is not, a known trap: `acme`
  // would match `https://evil.example/acme`). `u` so that `.` is one code point.
  return new RegExp(`^(?:${source})$`, 'u');
}

/** Throws TypeError naming the problem; config validation calls it so a bad rule never loads. */
export function validateIdentityRule(rule: IdentityRule): void {
  if ((rule.issuer === undefined) === (rule.issuerRegExp === undefined)) {
    throw new TypeError('an identity names exactly one of issuer and issuerRegExp');
  }
  if ((rule.subject === undefined) === (rule.subjectRegExp === undefined)) {
    throw new TypeError('an identity names exactly one of subject and subjectRegExp');
  }
  for (const [k, v] of [
    ['issuerRegExp', rule.issuerRegExp],
    ['subjectRegExp', rule.subjectRegExp],
  ] as const) {
    if (v === undefined) continue;
    try {
      // Policy: the expression must compile on its own too, so that it cannot close the anchoring
      // group: `A)|(?:B` compiles only wrapped, as `^(?:A)|(?:B)$`, where A is not anchored at the end.
      new RegExp(v, 'u');
      anchoredRegExp(v);
    } catch (err) {
      throw new TypeError(
        `${k} ${JSON.stringify(v)} is not a valid regular expression: ${(err as Error).message}`,
      );
    }
  }
  for (const k of Object.keys(rule.github ?? {})) {
    if (!(GITHUB_CLAIM_NAMES as string[]).includes(k))
      throw new TypeError(`unknown GitHub claim ${JSON.stringify(k)}`);
  }
}

export function compileIdentityRule(rule: IdentityRule): IdentityMatcher {
  validateIdentityRule(rule);
  const issuerRe = rule.issuerRegExp !== undefined ? anchoredRegExp(rule.issuerRegExp) : undefined;
  const subjectRe = rule.subjectRegExp !== undefined ? anchoredRegExp(rule.subjectRegExp) : undefined;
  const github = Object.entries(rule.github ?? {}) as Array<[GithubClaim, string]>;
  const parts = [
    rule.issuer !== undefined ? `issuer=${rule.issuer}` : `issuer~=/${rule.issuerRegExp}/`,
    rule.subject !== undefined ? `subject=${rule.subject}` : `subject~=/${rule.subjectRegExp}/`,
    ...github.map(([k, v]) => `${k}=${v}`),
  ];
  return Object.freeze({
    rule,
    description: parts.join(' '),
    matches(id: CertificateIdentity): boolean {
      // Policy: exact strings compare exactly (no case folding, no trailing-slash leniency).
      const issuerOk = issuerRe ? issuerRe.test(id.issuer) : id.issuer === rule.issuer;
      const subjectOk = subjectRe ? subjectRe.test(id.subject) : id.subject === rule.subject;
      return issuerOk && subjectOk && github.every(([k, v]) => id.github[k] === v);
    },
  });
}

export function compileIdentityRules(rules: readonly IdentityRule[]): IdentityMatcher[] {
  return rules.map(compileIdentityRule);
}
