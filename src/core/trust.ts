/**
 * The trust decision (I1): is this manifest digest signed, for this repository, by enough keys that
 * an admin trusts for it? Pure: signatures, keys and the clock come in; a verdict goes out.
 */
import { createHash } from 'node:crypto';
import { isValidDigest } from './manifest.js';
import { decodeStrictBase64, publicKeyFingerprint } from './signature/keys.js';
import { tryParseDockerReference } from './reference.js';
import { parseSimpleSigningPayload } from './signature/payload.js';
import { verifySignature } from './signature/verify.js';
import {
  BUNDLE_FAILURE_RANK,
  rootsOf,
  verifyBundle,
  verifySigstoreBundle,
  type BundleFailureReason,
  type BundleSigner,
  type BundleVerifyOptions,
} from './evidence/bundle.js';
import type { IdentityMatcher } from './evidence/identity.js';
import { legacyKeylessBundle, type LegacyKeylessMaterial } from './evidence/legacy-keyless.js';
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
  /** cosign 2.x keyless: the layer's certificate, chain, Rekor bundle and timestamp annotations. */
  keyless?: LegacyKeylessMaterial;
}

export type TrustReason =
  | 'signed'
  // Sigstore bundle and keyless reasons (core/evidence/bundle.ts), shared by both formats
  | BundleFailureReason
  // simple-signing payload checks
  | 'wrong-repository'
  | 'threshold-not-met'
  | 'tag-not-bound';

export interface TrustVerdict {
  ok: boolean;
  reason: TrustReason;
  /**
   * Distinct names of trusted keys, and `subject (issuer …)` of trusted keyless identities, that
   * produced a valid signature, sorted.
   */
  signers: string[];
  /** The verified keyless certificates among the signers, as data (for audit and attestations). */
  identities?: NonNullable<BundleSigner['certificate']>[];
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
  /** How bundles are verified: the rule's transparency-log policy and the trusted roots. */
  bundleOptions?: Pick<BundleVerifyOptions, 'tlog' | 'trustedRoot' | 'trustedRoots'>;
  /** Keyless identities trusted for this repository (compileIdentityRules). */
  identities?: readonly IdentityMatcher[];
  /** The manifest bytes, for message-signature bundles (signed over the bytes themselves). */
  artifact?: Uint8Array;
  /** Keys trusted for this repository (already selected by policy). */
  keys: TrustedKey[];
  /** Number of distinct trusted keys and keyless identities that must have signed (>= 1). */
  threshold: number;
  /** When true and `tag` is given, the signed docker-reference must carry that tag. */
  tagBinding: boolean;
  now: Date;
}

/**
 * How informative a failure is; the highest one seen becomes the verdict's reason.
 * A signature that verifies under a trusted key but says something else (other digest, other repo,
 * other tag, unparsable payload) tells the user most; then signatures only from revoked/expired keys;
 * then undecodable signatures; then "no trusted key signed this". The reasons shared with bundles
 * rank as in BUNDLE_FAILURE_RANK; only the simple-signing payload's own are added here.
 */
const FAILURE_RANK: Partial<Record<TrustReason, number>> = {
  ...BUNDLE_FAILURE_RANK,
  'wrong-repository': 8,
  'tag-not-bound': 7,
};

interface Failure {
  reason: TrustReason;
  detail: string;
}

/**
 * The checks on a simple-signing payload that a trusted signer (`who`: `key NAME`, or a keyless
 * identity) vouched for: strict parse, digest, repository, pinned digest, tag. Undefined when it
 * admits `digest` of `repo`.
 */
function checkSimpleSigningPayload(
  bytes: Uint8Array,
  who: string,
  repo: string,
  digest: string,
  tag: string | undefined,
  tagBinding: boolean,
): Failure | undefined {
  let payload;
  try {
    payload = parseSimpleSigningPayload(bytes);
  } catch (err) {
    return {
      reason: 'malformed-signature',
      detail: `${who} signed a payload that is not a valid simple-signing document (${(err as Error).message})`,
    };
  }
  if (payload.manifestDigest !== digest) {
    return { reason: 'digest-mismatch', detail: `${who} signed ${payload.manifestDigest}, not this digest` };
  }
  const ref = tryParseDockerReference(payload.dockerReference);
  if (ref === null) {
    return {
      reason: 'malformed-signature',
      detail: `${who} signed an invalid docker-reference ${JSON.stringify(payload.dockerReference)}`,
    };
  }
  // Policy: only the repository path is compared; the host is ignored because the same registry
  // is reachable under several names, and the signature lives in this repository and is made by a
  // signer trusted for it. The path stops a signature being transplanted from another repository.
  if (ref.repo !== repo) {
    return { reason: 'wrong-repository', detail: `${who} signed it for repository ${ref.repo}, not ${repo}` };
  }
  if (ref.digest !== undefined && ref.digest !== digest) {
    return {
      reason: 'digest-mismatch',
      detail: `${who} signed a reference pinned to ${ref.digest}, not this digest`,
    };
  }
  if (tagBinding && tag !== undefined && ref.tag !== tag) {
    return {
      reason: 'tag-not-bound',
      detail:
        ref.tag === undefined
          ? `${who} signed it without a tag, and tag ${tag} must be signed (\`trustgate sign ${repo}:${tag} --format both\`)`
          : `${who} signed it as tag ${ref.tag}, not ${tag}`,
    };
  }
  return undefined;
}

/**
 * The signer each trusted key counts as. Policy: keys sharing key bytes and keys linked by
 * rotation (TrustedKey.identity) are one signer, transitively: a copy of an old key's file and
 * that key's rotation successor are one publisher too. Without the closure the greedy count below
 * depends on the order it meets them (old+new signed, the copy counted as a second signer).
 */
function keySignerGroups(
  keys: readonly TrustedKey[],
  fingerprintOf: ReadonlyMap<TrustedKey, string>,
): Map<string, string> {
  const firstBy = new Map<string, string>();
  const links = new Map<string, string[]>();
  for (const k of keys) {
    const linked: string[] = [];
    for (const attr of [`fp:${fingerprintOf.get(k)!}`, `id:${k.identity ?? k.name}`]) {
      const first = firstBy.get(attr);
      if (first === undefined) firstBy.set(attr, k.name);
      else linked.push(first);
    }
    links.set(k.name, [...(links.get(k.name) ?? []), ...linked]);
  }
  return signerIdentities(links);
}

const sha256Digest = (b: Uint8Array): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

export function evaluateTrust(input: TrustInput): TrustVerdict {
  const { repo, digest, tag, signatures, keys, threshold, tagBinding, now } = input;
  const bundles = input.bundles ?? [];
  const identities = input.identities ?? [];
  // Programming errors (config validation should have stopped these): fail loudly, never open.
  if (!Number.isSafeInteger(threshold) || threshold < 1)
    throw new TypeError('threshold must be an integer >= 1');
  if (!isValidDigest(digest)) throw new TypeError(`invalid digest ${JSON.stringify(digest)}`);
  if (Number.isNaN(now.getTime())) throw new TypeError('invalid clock value');

  const subject = `${repo}@${digest}`;
  const trusted = [
    ...[...new Set(keys.map((k) => k.name))].sort(),
    ...identities.map((m) => `identity ${m.description}`),
  ];
  const trustedList = `trusted: ${trusted.length > 0 ? trusted.join(', ') : 'none'}`;
  const aSigner = identities.length > 0 ? 'a key or identity' : 'a key';
  const bundleOptions = {
    tlog: input.bundleOptions?.tlog ?? 'optional',
    trustedRoots: rootsOf(input.bundleOptions ?? {}),
    now,
  } as const;

  const signers = new Set<string>();
  // Policy: the threshold counts distinct key material, not names: two names for the same key
  // bytes (two .pub files, or one file copied under a second name) are one signer.
  const fingerprintOf = new Map(keys.map((k) => [k, publicKeyFingerprint(k.key)]));
  const groupOf = keySignerGroups(keys, fingerprintOf);
  const signedKeys = new Set<string>();
  // Policy: …and a rotated key and the key it replaces are one signer (TrustedKey.identity); a
  // keyless signer is its (issuer, subject): many short-lived certificates of one workflow are one.
  const signedIdentities = new Set<string>();
  const certificates = new Map<string, NonNullable<BundleSigner['certificate']>>();
  let best: Failure | undefined;
  const fail = (f: Failure): void => {
    if (best === undefined || (FAILURE_RANK[f.reason] ?? 0) > (FAILURE_RANK[best.reason] ?? 0)) best = f;
  };
  const seen = (s: Pick<BundleSigner, 'name' | 'fingerprint' | 'identity'>): boolean =>
    signers.has(s.name) || signedKeys.has(s.fingerprint) || signedIdentities.has(s.identity);
  const add = (s: Pick<BundleSigner, 'name' | 'fingerprint' | 'identity' | 'certificate'>): void => {
    signers.add(s.name);
    signedKeys.add(s.fingerprint);
    signedIdentities.add(s.identity);
    if (s.certificate) certificates.set(s.name, s.certificate);
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
      const signer = { name: k.name, fingerprint, identity: groupOf.get(k.name)! };
      if (seen(signer)) continue;
      const f = checkSimpleSigningPayload(cand.payload, `key ${k.name}`, repo, digest, tag, tagBinding);
      if (f) {
        fail(f);
        continue;
      }
      add(signer);
    }
    // cosign 2.x keyless: the layer is the v0.1 bundle it amounts to, verified as bundles are.
    if (!verifiedAny && cand.keyless !== undefined) {
      const bundle = legacyKeylessBundle(cand.payload, cand.signature, cand.keyless);
      if (typeof bundle === 'string') {
        fail({ reason: 'malformed-signature', detail: `a keyless signature: ${bundle}` });
        continue;
      }
      const v = verifySigstoreBundle(
        { bundle, digest: sha256Digest(cand.payload), artifact: cand.payload, keys: [], identities },
        bundleOptions,
      );
      if (!v.ok) {
        fail({ reason: v.reason, detail: `a keyless signature: ${v.detail}` });
        continue;
      }
      for (const signer of v.signers) {
        if (seen(signer)) continue;
        const f = checkSimpleSigningPayload(cand.payload, signer.name, repo, digest, tag, tagBinding);
        if (f) fail(f);
        else add(signer);
      }
      continue;
    }
    if (!verifiedAny) {
      fail({ reason: 'untrusted-key', detail: 'no key trusted for this repository made its signatures' });
    }
  }

  for (const bundle of bundles) {
    const v = verifyBundle(
      { bundle, digest, keys, identities, ...(input.artifact ? { artifact: input.artifact } : {}) },
      bundleOptions,
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
          detail: `${signer.kind === 'key' ? `key ${signer.name}` : signer.name} signed it in a Sigstore bundle, which names no tag, and tag ${tag} must be signed (add one naming it: \`trustgate sign ${repo}:${tag} --format both\`)`,
        });
        continue;
      }
      // Policy: one signer in both formats is one signer (thresholds count distinct signers).
      const counted = signer.kind === 'key' ? { ...signer, identity: groupOf.get(signer.name)! } : signer;
      if (seen(counted)) continue;
      add(counted);
    }
  }

  const signerList = [...signers].sort();
  const verified =
    certificates.size > 0 ? { identities: signerList.flatMap((s) => certificates.get(s) ?? []) } : {};
  if (signerList.length >= threshold) {
    return {
      ok: true,
      reason: 'signed',
      signers: signerList,
      ...verified,
      message: `${subject} is signed by ${signerList.join(', ')}`,
    };
  }
  if (signatures.length === 0 && bundles.length === 0) {
    return {
      ok: false,
      reason: 'no-signature',
      signers: signerList,
      message: `${subject} has no signature; sign it with ${aSigner} trusted for this repository (${trustedList})`,
    };
  }
  if (signerList.length > 0) {
    return {
      ok: false,
      reason: 'threshold-not-met',
      signers: signerList,
      ...verified,
      message:
        `${subject} has valid signatures from ${signerList.length} trusted ${identities.length > 0 ? 'signer(s)' : 'key(s)'} (${signerList.join(', ')}) ` +
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
    message: `${subject} has no valid signature from ${aSigner} trusted for this repository: ${f.detail} (${trustedList})`,
  };
}
