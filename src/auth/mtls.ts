import { X509Certificate } from 'node:crypto';
import type { DetailedPeerCertificate, PeerCertificate, TLSSocket } from 'node:tls';
import type { Identity } from '../core/types.js';

const MAX_SUBJECT = 1024;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * Escapes an attribute value the RFC 4514 way, so that a value containing `,`, `+`, `=` or quotes
 * cannot forge a different subject string (`CN=x,O=admins` as one CN value stays `CN=x\,O\=admins`).
 */
export function escapeDnValue(v: string): string {
  let out = v.replace(/[\\,+"<>;=]/g, (c) => `\\${c}`);
  if (out.startsWith('#') || out.startsWith(' ')) out = `\\${out}`;
  if (out.endsWith(' ') && out.length > 0) out = `${out.slice(0, -1)}\\ `;
  return out;
}

/**
 * The identity of a verified client certificate, or null.
 * - Policy: only when the TLS layer verified the chain against the configured client CA
 *   (`authorized`); an unverified certificate names nobody, whatever its subject says.
 * - `CN` mode: the subject is `mtls:CN=<cn>`; a certificate with no CN, several CNs, control
 *   characters or an oversized CN names nobody (ambiguous).
 * - `subject` mode: the whole subject in the order Node reports it, `mtls:C=..,O=..,CN=..`, each
 *   value RFC 4514-escaped; repeated attributes appear once per value.
 */
export function identityFromPeerCertificate(
  cert: PeerCertificate | undefined,
  authorized: boolean,
  mode: 'CN' | 'subject',
): Identity | null {
  if (authorized !== true || !cert || typeof cert !== 'object' || !cert.subject) return null;
  const subject = cert.subject as unknown as Record<string, string | string[] | undefined>;
  const ok = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && !CONTROL.test(v);
  let name: string;
  if (mode === 'CN') {
    const cn = subject['CN'];
    if (!ok(cn)) return null;
    name = `CN=${escapeDnValue(cn)}`;
  } else {
    const parts: string[] = [];
    for (const [k, v] of Object.entries(subject)) {
      if (!/^[A-Za-z][A-Za-z0-9.-]*$/.test(k)) return null;
      for (const one of Array.isArray(v) ? v : [v]) {
        if (one === undefined) continue;
        if (!ok(one)) return null;
        parts.push(`${k}=${escapeDnValue(one)}`);
      }
    }
    if (parts.length === 0) return null;
    name = parts.join(',');
  }
  if (name.length > MAX_SUBJECT) return null;
  return { subject: `mtls:${name}`, kind: 'mtls', groups: [] };
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;
/** Longest issuer chain walked; Node completes it up to the self-signed anchor. */
const MAX_CHAIN = 10;

/**
 * The client CA certificates in force, by SHA-256 fingerprint. A TLS connection keeps the CA set
 * of its handshake, so after a SIGHUP replaced `tls.clientCa`'s contents a keep-alive connection
 * would still carry a certificate the new set no longer trusts (review 5).
 * - Policy: a client certificate names someone only while its verified chain still ends in (or
 *   passes through) a certificate of the current set; each connection is checked once per set.
 */
export class ClientCaAnchors {
  private fingerprints = new Set<string>();
  private generation = 0;
  private readonly checked = new WeakMap<TLSSocket, { generation: number; anchored: boolean }>();

  /** Takes the client CA bundle now in force (PEM), or none. */
  replace(pem: Buffer | string | undefined): void {
    const next = new Set<string>();
    for (const block of String(pem ?? '').match(PEM_CERTIFICATE) ?? []) {
      next.add(new X509Certificate(block).fingerprint256);
    }
    this.fingerprints = next;
    this.generation++;
  }

  /** Whether the verified chain of this connection's client certificate is anchored in the set. */
  anchors(socket: TLSSocket): boolean {
    const seen = this.checked.get(socket);
    if (seen?.generation === this.generation) return seen.anchored;
    let anchored = false;
    let cert: DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
    for (let i = 0; i < MAX_CHAIN && cert?.fingerprint256; i++) {
      if (this.fingerprints.has(cert.fingerprint256)) {
        anchored = true;
        break;
      }
      const issuer: DetailedPeerCertificate | undefined = cert.issuerCertificate;
      if (!issuer || issuer === cert || issuer.fingerprint256 === cert.fingerprint256) break;
      // Policy: Node links a certificate to an issuer by name (and key identifiers when present),
      // not by signature, and the client chooses the certificates it sends: a link counts only
      // when the issuer's key signed the certificate. Otherwise a client of a removed CA could
      // send the public certificate of a CA in force under the same name and pass as anchored.
      if (!signedBy(cert, issuer)) break;
      cert = issuer;
    }
    this.checked.set(socket, { generation: this.generation, anchored });
    return anchored;
  }
}

/** Whether `issuer` issued `cert` and its key signed it; false for anything unparseable. */
function signedBy(cert: PeerCertificate, issuer: PeerCertificate): boolean {
  try {
    const c = new X509Certificate(cert.raw);
    const i = new X509Certificate(issuer.raw);
    return c.checkIssued(i) && c.verify(i.publicKey);
  } catch {
    return false;
  }
}

/**
 * The identity of the client certificate of a TLS connection, or null: verified at the handshake
 * (see identityFromPeerCertificate) and still anchored in the client CA set in force.
 */
export function connectionIdentity(
  socket: TLSSocket,
  mode: 'CN' | 'subject',
  anchors: ClientCaAnchors,
): Identity | null {
  if (typeof socket.getPeerCertificate !== 'function' || socket.authorized !== true) return null;
  if (!anchors.anchors(socket)) return null;
  return identityFromPeerCertificate(socket.getPeerCertificate(), true, mode);
}
