/**
 * May this manifest be served to a pull-only client (or accepted under a tag, for a signed push)?
 * The one place that weighs the trust rule, how the manifest was reached and the signature
 * evidence. Pure: the service fetches the evidence and the index admission, this decides.
 */
import { isSignatureDiscoveryRead, type ParsedManifest } from './manifest.js';
import { isBundleReferrer } from './referrers.js';
import type { TrustReason } from './trust.js';
import type { EffectiveTrustRule } from './trust-policy.js';
import type { AttestationReason, AttestationVerdict } from './attestation/decide.js';

export type ServeReason =
  TrustReason | 'policy-off' | 'index-child' | 'signature-artifact' | Exclude<AttestationReason, 'attested'>;

/** What the signatures of the digest showed (evaluateTrust's verdict plus the tags it binds). */
export interface SignatureEvidence {
  ok: boolean;
  reason: TrustReason;
  message: string;
  signers: string[];
  /** Tags named by signatures that meet the threshold on their own. */
  boundTags: readonly string[];
}

export interface ServeInput {
  repo: string;
  digest: string;
  rule: EffectiveTrustRule;
  manifest: ParsedManifest;
  /** The tag the client named; undefined for a pull by digest. */
  tag?: string;
  /** A pull, or the check of a push by tag under `signedPush`. */
  purpose: 'pull' | 'signed-push';
  /** The signature evidence; undefined when a shortcut decided without it. */
  evidence?: SignatureEvidence;
  /** The digest of a verified index of this repository listing this manifest, if one does. */
  indexParent?: string;
  /**
   * For a manifest with a subject read by digest: may this caller pull the subject? (Looked up by
   * the caller only for bundle referrers; undefined otherwise.)
   */
  subjectPullable?: boolean;
  /**
   * The attestation decision (core/attestation/decide.ts), when an attestation rule applies to the
   * repository; weighed after the signature check.
   */
  attestation?: AttestationVerdict;
}

export interface ServeOutcome {
  /** May the bytes be sent (audit mode sends what enforce would refuse)? */
  allow: boolean;
  /** What enforce mode decides. */
  ok: boolean;
  reason: ServeReason;
  message: string;
  signers: string[];
  /** The attestation decision it weighed, if any (the explain endpoint shows its conditions). */
  attestation?: AttestationVerdict;
}

/**
 * The decision before any evidence is fetched, when one can be made: the rule is off, or the read
 * is signature discovery. Undefined means: fetch the evidence and call decideServe.
 */
export function serveShortcut(input: Omit<ServeInput, 'evidence' | 'indexParent'>): ServeOutcome | undefined {
  if (input.rule.mode !== 'off' && input.purpose === 'pull' && isBundleReferrerRead(input)) {
    // Policy (I1): a Sigstore bundle referrer is signature evidence about its subject; a client
    // verifying the subject for itself (cosign verify) reads it by digest from the referrers API.
    // It is served only to a caller who may pull the subject, and admits only its bundle layers
    // (bounded, parsing as bundles) and the 2-byte empty config, never a runnable layer.
    if (input.subjectPullable === true) {
      return {
        allow: true,
        ok: true,
        reason: 'signature-artifact',
        message: 'Sigstore bundle referrer of a subject the caller may pull',
        signers: [],
      };
    }
  }
  if (input.rule.mode === 'off') {
    return { allow: true, ok: true, reason: 'policy-off', message: 'trust policy off', signers: [] };
  }
  if (input.purpose === 'pull' && isSignatureDiscoveryRead(input.tag, input.manifest)) {
    // Policy (I1): a client verifying a digest for itself reads its .sig tag; that read is served
    // so clients can check signatures themselves. By digest the same document is verified like
    // any manifest (registry:2 serves any linked blob as a manifest by digest). The read admits
    // only payloads that really are signature payloads, never the artifact's config.
    return {
      allow: true,
      ok: true,
      reason: 'signature-artifact',
      message: 'signature artifact read through its .sig tag',
      signers: [],
    };
  }
  return undefined;
}

/** True when the manifest is read by digest and is a bundle referrer (its subject decides). */
export function isBundleReferrerRead(input: Pick<ServeInput, 'tag' | 'manifest'>): boolean {
  return input.tag === undefined && isBundleReferrer(input.manifest);
}

/** True when the index admission of this manifest could change the decision (worth a lookup). */
export function wantsIndexParent(input: Omit<ServeInput, 'indexParent'>): boolean {
  return input.manifest.kind === 'image' && input.purpose === 'pull' && input.evidence?.ok !== true;
}

/**
 * True when a manifest inherits the attestation verdict of a verified index that lists it, so its
 * own attestations are not looked at. Policy: attestations are made for the index (as `cosign
 * attest` of a multi-platform tag does), and the index met the attestation rule when it was
 * served; a child signed on its own (`sign --recursive`) still inherits, by digest only: a pull by
 * tag under tag binding, or a signed push, never does.
 */
export function inheritsAttestations(
  input: Pick<ServeInput, 'manifest' | 'purpose' | 'tag' | 'rule' | 'indexParent'>,
): boolean {
  return input.indexParent !== undefined && mayInheritAttestations(input);
}

/**
 * True when a manifest reached this way would inherit from an index parent if it had one: the
 * index admission is worth looking up for the attestation gate only then (not for a pull by a
 * bound tag, nor a signed push).
 */
export function mayInheritAttestations(
  input: Pick<ServeInput, 'manifest' | 'purpose' | 'tag' | 'rule'>,
): boolean {
  return (
    input.manifest.kind === 'image' &&
    input.purpose === 'pull' &&
    !(input.rule.tagBinding && input.tag !== undefined)
  );
}

/** The decision from the evidence (and the index admission, when looked up). */
export function decideServe(input: ServeInput): ServeOutcome {
  const shortcut = serveShortcut(input);
  if (shortcut) return shortcut;
  const { repo, digest, rule, tag, evidence } = input;
  if (!evidence) throw new TypeError('decideServe: evidence is required unless a shortcut applies');
  let { ok, message } = evidence;
  let reason: ServeReason = evidence.reason;
  let signers = evidence.signers;
  const tagBound = rule.tagBinding && tag !== undefined;
  if (ok && tagBound && !evidence.boundTags.includes(tag)) {
    ok = false;
    reason = 'tag-not-bound';
    message = `${repo}:${tag} resolves to ${digest}, but no signature trusted for ${rule.pattern} names the tag ${tag} (tag binding is on): sign ${repo}:${tag} with a trusted key in a format that names the tag (\`trustgate sign ${repo}:${tag} --format both\`; a Sigstore bundle names no tag)`;
  }
  const parent = input.indexParent;
  if (!ok && parent !== undefined && input.manifest.kind === 'image' && input.purpose === 'pull') {
    // Policy: a child of a verified index of this repository is admitted by digest. Not by tag
    // when tags are bound (the parent's signature names the parent's tags, never a tag someone
    // later put on a child), and never for a signed push, which needs the manifest's own signature.
    // The attestation verdict (the index's, judged now: trust/service.ts) still applies below.
    if (!tagBound) {
      ok = true;
      reason = 'index-child';
      message = `listed in verified index ${parent}`;
      signers = [];
    } else
      message = `${repo}:${tag} resolves to ${digest}, listed in verified index ${parent}; with tag binding on, a manifest pulled by tag needs its own signature naming the tag ${tag}: sign ${repo}:${tag} with a trusted key, or pull it through the index`;
  }
  // Policy: audit mode serves what enforce would refuse; the verdict still says what enforce decides.
  let allow = ok || rule.mode === 'audit';
  const att = input.attestation;
  if (att !== undefined) {
    // Policy: the attestation gate comes after the signature check: a refused signature is the
    // denial (its message says what to sign); a signed image must also meet the attestation rule,
    // whose own mode (enforce or audit) decides whether its refusal is served anyway.
    if (ok && !att.ok) {
      ok = false;
      reason = att.reason as Exclude<AttestationReason, 'attested'>;
      message = att.message;
    }
    allow = allow && (att.ok || att.mode === 'audit');
    return { allow, ok, reason, message, signers, attestation: att };
  }
  return { allow, ok, reason, message, signers };
}
