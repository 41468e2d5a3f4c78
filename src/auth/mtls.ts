import type { PeerCertificate } from 'node:tls';
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
