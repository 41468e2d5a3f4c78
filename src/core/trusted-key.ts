/**
 * A key an admin trusts for a repository, and whether it may vouch at a given time. Its own module
 * so both signature formats (trust.ts and evidence/bundle.ts) judge keys one way without importing
 * each other.
 */
import type { PublicKey } from './signature/keys.js';

export interface TrustedKey {
  name: string;
  key: PublicKey;
  notBefore?: Date;
  notAfter?: Date;
  revoked?: boolean;
  /**
   * The signer this key belongs to, for the threshold (default: its name). A rotated key and the
   * key it replaces share one: see signerIdentities.
   */
  identity?: string;
}

/** Policy: a revoked key never vouches; a key outside its validity window does not at `now`. */
export function keyUsability(k: TrustedKey, now: Date): 'usable' | 'revoked-key' | 'expired-key' {
  if (k.revoked === true) return 'revoked-key';
  const t = now.getTime();
  if (k.notBefore !== undefined && !(t >= k.notBefore.getTime())) return 'expired-key';
  if (k.notAfter !== undefined && !(t <= k.notAfter.getTime())) return 'expired-key';
  return 'usable';
}
