/**
 * The trust decision (I1): is this manifest digest signed, for this repository, by enough keys that
 * an admin trusts for it? Pure: signatures, keys and the clock come in; a verdict goes out.
 */
import { isValidDigest } from './manifest.js';
import { decodeStrictBase64, publicKeyFingerprint } from './signature/keys.js';
import { tryParseDockerReference } from './reference.js';
import { parseSimpleSigningPayload } from './signature/payload.js';
import { verifySignature } from './signature/verify.js';
import {
  BUNDLE_FAILURE_RANK,
  verifyBundle,
  type BundleInput,
  type BundleVerdict,
  type BundleVerifyOptions,
} from './evidence/bundle.js';
import type { SigstoreTrustedRoot } from './evidence/trusted-root.js';
import { keyUsability, type TrustedKey } from './trusted-key.js';

export { keyUsability, type TrustedKey };

/**
 * Signer identities of keys linked by rotation: `links` maps a key name to the names it stands
 * in for (a key's meta `trustedAs`). Linked names, transitively, get one identity (the smallest
 * name of the group), so a publisher signing with both its old and its new key during a
 * rotation's grace period is one signer, not two.
 */
export function signerIdentities(links: ReadonlyMap<string, readonly string[]>): Map<string, string> {
  const parent = new Map<string, string>();
  const find = (n: string): string => {
    let root = n;
    while (parent.has(root) && parent.get(root) !== root) root = parent.get(root)!;
    return root;
  };
  const union = (a: string, b: string): void => {
    const [ra, rb] = [find(a), find(b)];
    if (ra === rb) return;
    if (ra < rb) parent.set(rb, ra);
    else parent.set(ra, rb);
  };
  for (const [name, others] of links) {
    if (!parent.has(name)) parent.set(name, name);
    for (const o of others) {
      if (!parent.has(o)) parent.set(o, o);
      union(name, o);
    }
  }
  return new Map([...parent.keys()].map((n) => [n, find(n)]));
}

export interface SignatureCandidate {
  /** The layer blob of the signature artifact: the raw signed payload. */
  payload: Uint8Array;
  /** Layer annotation dev.cosignproject.cosign/signature: standard padded base64. */
  signature: string;
}

export type TrustReason =
  | 'signed'
  | 'no-signature'
  | 'untrusted-key'
  | 'wrong-repository'
  | 'digest-mismatch'
  | 'threshold-not-met'
  | 'expired-key'
  | 'revoked-key'
  | 'tag-not-bound'
  | 'malformed-signature'
  // Sigstore bundles (core/evidence/bundle.ts)
  | 'attestation-not-signature'
  | 'malformed-bundle'
  | 'unsupported-bundle'
  | 'tlog-missing'
  | 'tlog-invalid'
  // A rule needs a transparency-log entry and no Sigstore trusted root is available (issue 15)
  | 'no-trusted-root';

export interface TrustVerdict {
  ok: boolean;
  reason: TrustReason;
  /** Distinct names of trusted keys that produced a valid signature, sorted. */
  signers: string[];
  message: string;
}

export interface TrustInput {
  /** Repository being pulled, e.g. `prod/app`. */
  repo: string;
  /** The manifest digest: sha256 of the exact bytes that would be served. */
  digest: string;
  /** The tag the client asked for, when it pulled by tag. */
  tag?: string;
  signatures: SignatureCandidate[];
  /** Sigstore bundles found as referrers of the digest (bytes as stored; verified here). */
  bundles?: readonly Uint8Array[];
  /**
   * How bundles are verified: the rule's transparency-log policy and the Sigstore trusted roots in
   * force (all of them trusted; an entry must verify under one). Empty or absent: none available.
   */
  bundleOptions?: Pick<BundleVerifyOptions, 'tlog'> & { trustedRoots?: readonly SigstoreTrustedRoot[] };
  /** The manifest bytes, for message-signature bundles (signed over the bytes themselves). */
  artifact?: Uint8Array;
  /** Keys trusted for this repository (already selected by policy). */
  keys: TrustedKey[];
  /** Number of distinct trusted keys that must have signed (>= 1). */
  threshold: number;
  /** When true and `tag` is given, the signed docker-reference must carry that tag. */
  tagBinding: boolean;
  now: Date;
}

/**
 * How informative a failure is; the highest one seen becomes the verdict's reason.
 * A signature that verifies under a trusted key but says something else (other digest, other repo,
 * other tag, unparsable payload) tells the user most; then signatures only from revoked/expired keys;
 * then undecodable signatures; then "no trusted key signed this".
 */
const FAILURE_RANK: Partial<Record<TrustReason, number>> = {
  ...BUNDLE_FAILURE_RANK,
  'no-trusted-root': 6.4,
  'digest-mismatch': 9,
  'wrong-repository': 8,
  'tag-not-bound': 7,
  'malformed-signature': 6,
  'revoked-key': 5,
  'expired-key': 4,
  'untrusted-key': 2,
};

/** Whether a trusted key may vouch at `now`: not revoked, and inside its validity window. */

interface Failure {
  reason: TrustReason;
  detail: string;
}

export function evaluateTrust(input: TrustInput): TrustVerdict {
  const { repo, digest, tag, signatures, keys, threshold, tagBinding, now } = input;
  const bundles = input.bundles ?? [];
  // Programming errors (config validation should have stopped these): fail loudly, never open.
  if (!Number.isSafeInteger(threshold) || threshold < 1)
    throw new TypeError('threshold must be an integer >= 1');
  if (!isValidDigest(digest)) throw new TypeError(`invalid digest ${JSON.stringify(digest)}`);
  if (Number.isNaN(now.getTime())) throw new TypeError('invalid clock value');

  const subject = `${repo}@${digest}`;
  const trusted = [...new Set(keys.map((k) => k.name))].sort();
  const trustedList = `trusted: ${trusted.length > 0 ? trusted.join(', ') : 'none'}`;

  const signers = new Set<string>();
  // Policy: the threshold counts distinct key material, not names: two names for the same key
  // bytes (two .pub files, or one file copied under a second name) are one signer.
  const fingerprintOf = new Map(keys.map((k) => [k, publicKeyFingerprint(k.key)]));
  const signedKeys = new Set<string>();
  // Policy: …and a rotated key and the key it replaces are one signer (TrustedKey.identity).
  const signedIdentities = new Set<string>();
  let best: Failure | undefined;
  const fail = (f: Failure): void => {
    if (best === undefined || (FAILURE_RANK[f.reason] ?? 0) > (FAILURE_RANK[best.reason] ?? 0)) best = f;
  };

  for (const cand of signatures) {
    // Policy: strict base64 (padded, canonical), so one signature has one spelling.
    const sig = decodeStrictBase64(cand.signature);
    if (sig === null || sig.length === 0) {
      fail({ reason: 'malformed-signature', detail: 'a signature annotation is not valid base64' });
      continue;
    }
    let verifiedAny = false;
    for (const k of keys) {
      // Policy: the signature is checked over the raw payload FIRST; the payload is parsed only
      // once a trusted key vouches for its bytes.
      if (!verifySignature(k.key, cand.payload, sig)) continue;
      verifiedAny = true;
      const fingerprint = fingerprintOf.get(k)!;
      const usable = keyUsability(k, now);
      if (usable !== 'usable') {
        fail({
          reason: usable,
          detail:
            usable === 'revoked-key'
              ? `it is signed by key ${k.name}, which is revoked`
              : `it is signed by key ${k.name}, which is not valid at ${now.toISOString()}`,
        });
        continue;
      }
      const identity = k.identity ?? k.name;
      if (signers.has(k.name) || signedKeys.has(fingerprint) || signedIdentities.has(identity)) continue;
      let payload;
      try {
        payload = parseSimpleSigningPayload(cand.payload);
      } catch (err) {
        fail({
          reason: 'malformed-signature',
          detail: `key ${k.name} signed a payload that is not a valid simple-signing document (${(err as Error).message})`,
        });
        continue;
      }
      if (payload.manifestDigest !== digest) {
        fail({
          reason: 'digest-mismatch',
          detail: `key ${k.name} signed ${payload.manifestDigest}, not this digest`,
        });
        continue;
      }
      const ref = tryParseDockerReference(payload.dockerReference);
      if (ref === null) {
        fail({
          reason: 'malformed-signature',
          detail: `key ${k.name} signed an invalid docker-reference ${JSON.stringify(payload.dockerReference)}`,
        });
        continue;
      }
      // Policy: only the repository path is compared; the host is ignored because the same registry
      // is reachable under several names, and the signature lives in this repository and is made by a
      // key trusted for it. The path stops a signature being transplanted from another repository.
      if (ref.repo !== repo) {
        fail({
          reason: 'wrong-repository',
          detail: `key ${k.name} signed it for repository ${ref.repo}, not ${repo}`,
        });
        continue;
      }
      if (ref.digest !== undefined && ref.digest !== digest) {
        fail({
          reason: 'digest-mismatch',
          detail: `key ${k.name} signed a reference pinned to ${ref.digest}, not this digest`,
        });
        continue;
      }
      if (tagBinding && tag !== undefined && ref.tag !== tag) {
        fail({
          reason: 'tag-not-bound',
          detail:
            ref.tag === undefined
              ? `key ${k.name} signed it without a tag, and tag ${tag} must be signed`
              : `key ${k.name} signed it as tag ${ref.tag}, not ${tag}`,
        });
        continue;
      }
      signers.add(k.name);
      signedKeys.add(fingerprint);
      signedIdentities.add(identity);
    }
    if (!verifiedAny) {
      fail({ reason: 'untrusted-key', detail: 'no key trusted for this repository made its signatures' });
    }
  }

  for (const bundle of bundles) {
    const v = verifyBundleUnderRoots(
      { bundle, digest, keys, ...(input.artifact ? { artifact: input.artifact } : {}) },
      input.bundleOptions?.tlog ?? 'optional',
      input.bundleOptions?.trustedRoots ?? [],
      now,
    );
    if (!v.ok) {
      fail({ reason: v.reason, detail: `a Sigstore bundle: ${v.detail}` });
      continue;
    }
    for (const signer of v.signers) {
      // Policy: a bundle's statement names the digest only, never a repository or a tag. It is
      // found as a referrer of this digest in this repository, so the repository is not compared
      // (as cosign does); but it can never bind a tag: under tag binding, a pull by tag needs a
      // legacy signature naming the tag.
      if (tagBinding && tag !== undefined) {
        fail({
          reason: 'tag-not-bound',
          detail: `key ${signer.name} signed it in a Sigstore bundle, which names no tag, and tag ${tag} must be signed`,
        });
        continue;
      }
      // Policy: one key signing in both formats is one signer (thresholds count distinct keys).
      if (
        signers.has(signer.name) ||
        signedKeys.has(signer.fingerprint) ||
        signedIdentities.has(signer.identity)
      )
        continue;
      signers.add(signer.name);
      signedKeys.add(signer.fingerprint);
      signedIdentities.add(signer.identity);
    }
  }

  const signerList = [...signers].sort();
  if (signerList.length >= threshold) {
    return {
      ok: true,
      reason: 'signed',
      signers: signerList,
      message: `${subject} is signed by ${signerList.join(', ')}`,
    };
  }
  if (signatures.length === 0 && bundles.length === 0) {
    return {
      ok: false,
      reason: 'no-signature',
      signers: signerList,
      message: `${subject} has no signature; sign it with a key trusted for this repository (${trustedList})`,
    };
  }
  if (signerList.length > 0) {
    return {
      ok: false,
      reason: 'threshold-not-met',
      signers: signerList,
      message:
        `${subject} has valid signatures from ${signerList.length} trusted key(s) (${signerList.join(', ')}) ` +
        `but needs ${threshold} (${trustedList})`,
    };
  }
  const f = best ?? {
    reason: 'untrusted-key' as const,
    detail: 'no key trusted for this repository signed it',
  };
  return {
    ok: false,
    reason: f.reason,
    signers: signerList,
    message: `${subject} has no valid signature from a key trusted for this repository: ${f.detail} (${trustedList})`,
  };
}

/**
 * Verifies a bundle under the trusted roots in force: it passes when it verifies under one of them.
 *
 * Policy: a rule that requires a transparency-log entry, with no trusted root available (a TUF
 * source that never verified, issue 15), fails closed with `no-trusted-root`; the signature is
 * still checked first, so a bundle from an untrusted key is refused for that instead.
 */
function verifyBundleUnderRoots(
  input: BundleInput,
  tlog: BundleVerifyOptions['tlog'],
  roots: readonly SigstoreTrustedRoot[],
  now: Date,
): BundleVerdict | { ok: false; reason: TrustReason; detail: string } {
  if (roots.length === 0) {
    const v = verifyBundle(input, { tlog: 'optional', now });
    if (!v.ok || tlog !== 'required') return v;
    return {
      ok: false,
      reason: 'no-trusted-root',
      detail: `${v.signers.map((s) => s.name).join(', ')} signed it, but this repository requires a transparency-log entry and no Sigstore trusted root is available to verify it (trust.sigstore: no source has a valid root)`,
    };
  }
  let first: BundleVerdict | undefined;
  for (const trustedRoot of roots) {
    const v = verifyBundle(input, { tlog, trustedRoot, now });
    if (v.ok) return v;
    first ??= v;
  }
  if (first && !first.ok && roots.length > 1) {
    return { ...first, detail: `under none of the ${roots.length} trusted roots: ${first.detail}` };
  }
  return first!;
}
