import type { PeerCertificate } from 'node:tls';
import type { Identity } from '../core/types.js';

/**
 * The identity of a verified client certificate. Policy: only when the TLS layer verified the
 * chain against the configured client CA (`authorized`); an unverified certificate names nobody.
 */
export function identityFromPeerCertificate(
  cert: PeerCertificate | undefined,
  authorized: boolean,
  mode: 'CN' | 'subject',
): Identity | null {
  if (!authorized || !cert || !cert.subject) return null;
  const subject = cert.subject as unknown as Record<string, string | string[] | undefined>;
  if (mode === 'CN') {
    const cn = subject['CN'];
    // Policy: a certificate with several CNs is ambiguous and names nobody.
    if (typeof cn !== 'string' || cn.length === 0 || cn.length > 256) return null;
    return { subject: `mtls:CN=${cn}`, kind: 'mtls', groups: [] };
  }
  const parts = Object.entries(subject)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : v}`)
    .join(',');
  return parts ? { subject: `mtls:${parts}`, kind: 'mtls', groups: [] } : null;
}
