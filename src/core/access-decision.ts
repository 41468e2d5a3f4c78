/**
 * The one access decision of a /v2 request: may this identity do what the parsed route asks, given
 * the trust facts the adapters fetched? Pure: the HTTP layer (server/v2.ts) gathers facts, calls
 * `decideAccess`, and acts on the outcome; every authorisation choice of the registry API is here.
 *
 * Facts are fetched only when a decision needs them (a publisher's pull never costs a signature
 * check): when one is missing the outcome is `need`, the caller fetches that fact and asks again.
 * The decision is re-made from the start each time, so the order of the checks lives here alone.
 */
import { GateError } from './errors.js';
import type { RepoAction } from './policy.js';
import type { ServeReason } from './serve-decision.js';
import type { Route } from './types.js';

/** What the authenticated identity may do (the server's Principal satisfies this). */
export interface Grants {
  /** The identity's subject, named in denials. */
  readonly subject: string;
  /** A token or a client certificate was presented and checked. */
  readonly credentialed: boolean;
  /** Granted for this request (the token's grant within policy, or policy for mTLS). */
  can(action: RepoAction, repo: string): boolean;
  /** Allowed by current policy: a token that asked for it would get it. */
  policyAllows(action: RepoAction, repo: string): boolean;
  /** The token grants `registry:catalog:*`. */
  canCatalog(): boolean;
  /** The identity is a trustgate admin (auth.admins). */
  isAdmin(): boolean;
}

/** The trust verdict of the manifest bytes a pull-only caller asked for (trust/service.ts). */
export interface ManifestVerdictFact {
  /** May the bytes be sent (audit mode sends what enforce refuses)? */
  allow: boolean;
  /** What enforce mode decides. */
  ok: boolean;
  reason: ServeReason;
  /** The verdict's own explanation (names the image when it can). */
  message: string;
  signers: readonly string[];
  /** The trust rule's pattern. */
  rule: string;
  /** The digest computed from the bytes (named in the denial when the message does not). */
  digest: string;
}

/** What a manifest PUT carries, read from the strictly parsed body and the trust rule. */
export interface PushedManifestFact {
  /** The digest of the pushed bytes. */
  digest: string;
  /** The tag is a cosign `sha256-<hex>.sig` tag. */
  signatureTag: boolean;
  /** The tag is an OCI referrers fallback tag `sha256-<hex>`. */
  referrersTag: boolean;
  /** The manifest is a cosign signature artifact (served unverified through its .sig tag). */
  signatureArtifact: boolean;
  rule: { mode: 'off' | 'audit' | 'enforce'; signedPush: boolean; pattern: string };
}

/** Facts the adapters fetch on demand; each is asked for by a `need` outcome. */
export interface AccessFacts {
  /** Blob read by a pull-only caller: the blob belongs to a verified manifest of the repository. */
  blobAdmitted?: boolean;
  /** Blob mount: the blob belongs to a verified manifest of the `from` repository. */
  mountBlobAdmitted?: boolean;
  /** Manifest pull by a pull-only caller: the verdict on the bytes fetched. */
  manifestVerdict?: ManifestVerdictFact;
  /** Referrers listing: may the caller pull the subject ('absent': the registry has no such manifest)? */
  subjectPullable?: 'yes' | 'no' | 'absent';
  /** Manifest push: what was pushed. */
  pushed?: PushedManifestFact;
  /** Push to a .sig tag: the keys of its signatures, every one verified (trust/service.ts throws otherwise). */
  signaturePushSigners?: readonly string[];
  /** Push by tag under `signedPush`: the verdict of the pushed digest's own signatures. */
  signedPushVerdict?: { ok: boolean; signers: readonly string[] };
  /** Keys trusted for the repository (named in denials, so a client knows what would do). */
  trustedKeys?: readonly string[];
}

export type AccessFact = keyof AccessFacts;

/** Why a request was let through (audit `reason`). Trust reasons come from the serve decision. */
export type AllowReason =
  'ok' | 'publisher-read' | 'signature-push' | 'referrers-tag-push' | 'mount-dropped' | ServeReason;

/** Why a request was refused (audit `reason`). Trust reasons come from the serve decision. */
export type DenyReason =
  | 'no-credentials'
  | 'insufficient-scope'
  | 'not-allowlisted'
  | 'blob-not-admitted'
  | 'subject-not-verified'
  | 'signature-artifact-misplaced'
  | 'signed-push-required'
  | ServeReason;

export type AccessOutcome =
  | {
      decision: 'allow';
      reason: AllowReason;
      /** Keys whose signatures decided (audit `keys`). */
      keys?: readonly string[];
      /** A blob mount becomes a plain upload (the spec allows it; it leaks nothing). */
      dropMount?: true;
      /** The catalog lists every repository (not only those catalogLists lets through). */
      listAll?: true;
    }
  /** Audit mode: served, although enforce mode would refuse for `reason`. */
  | { decision: 'audit-allow'; reason: ServeReason; keys: readonly string[] }
  | { decision: 'deny'; reason: DenyReason; keys?: readonly string[]; error: GateError }
  | { decision: 'need'; fact: AccessFact };

export type DecidedAccess = Exclude<AccessOutcome, { decision: 'need' }>;

export interface AccessQuestion {
  route: Route;
  grants: Grants;
  facts: AccessFacts;
}

const allow = (reason: AllowReason = 'ok', keys?: readonly string[]): AccessOutcome =>
  keys === undefined ? { decision: 'allow', reason } : { decision: 'allow', reason, keys };
const need = (fact: AccessFact): AccessOutcome => ({ decision: 'need', fact });
const deny = (reason: DenyReason, error: GateError, keys?: readonly string[]): AccessOutcome =>
  keys === undefined ? { decision: 'deny', reason, error } : { decision: 'deny', reason, error, keys };

/** The access decision for one /v2 request, from what is known so far. */
export function decideAccess(q: AccessQuestion): AccessOutcome {
  const { route, grants } = q;
  if (route.kind === 'base') {
    // Policy: the ping answers 200 only to a credentialed caller; everyone else gets the
    // challenge that tells the client where the token endpoint is.
    return grants.credentialed
      ? allow()
      : deny('no-credentials', new GateError('UNAUTHORIZED', 'authentication required'));
  }
  if (route.kind === 'catalog') {
    if (!grants.credentialed) {
      return deny(
        'no-credentials',
        new GateError('UNAUTHORIZED', 'authentication required to list repositories'),
      );
    }
    // Policy: any signed-in caller may list (the listing is filtered by catalogLists); a token
    // that did not ask for the catalog gets the challenge for it.
    if (!grants.canCatalog()) {
      return deny(
        'insufficient-scope',
        new GateError('UNAUTHORIZED', 'the token does not grant registry:catalog:*'),
      );
    }
    // Policy: an admin sees every repository (registry:2's own listing and paging); everyone
    // else only the repositories catalogLists lets through.
    return grants.isAdmin() ? { decision: 'allow', reason: 'ok', listAll: true } : allow();
  }
  const refused = repositoryGrant(route, grants);
  if (refused) return refused;
  switch (route.kind) {
    case 'blob':
      return route.action === 'pull' ? blobRead(route, q) : allow();
    case 'upload-start':
      return blobMount(route, q);
    case 'manifest':
      if (route.action === 'pull') return manifestRead(route, q);
      if (route.action === 'push') return manifestPush(route, q);
      return allow();
    case 'referrers':
      return referrersList(route, q);
    case 'tags':
    case 'upload':
      return allow();
  }
}

/** The route's own repository: are its actions granted? Undefined when they are. */
function repositoryGrant(route: Extract<Route, { repo: string }>, grants: Grants): AccessOutcome | undefined {
  // A push needs pull too (clients HEAD before they write; distribution's token scopes say pull,push).
  const needed: RepoAction[] =
    route.action === 'pull' ? ['pull'] : route.action === 'push' ? ['pull', 'push'] : [route.action];
  const missing = needed.filter((a) => !grants.can(a, route.repo));
  if (missing.length === 0) return undefined;
  if (!grants.credentialed) {
    return deny(
      'no-credentials',
      new GateError('UNAUTHORIZED', `authentication required to ${route.action} ${route.repo}`),
    );
  }
  if (missing.every((a) => grants.policyAllows(a, route.repo))) {
    // The identity may do this, its token just did not ask: the client fetches a wider token.
    return deny(
      'insufficient-scope',
      new GateError('UNAUTHORIZED', `the token does not grant ${missing.join(',')} on ${route.repo}`),
    );
  }
  // Policy: the answer is the same whether or not the repository exists (nothing was asked upstream).
  return deny(
    'not-allowlisted',
    new GateError(
      'DENIED',
      `${missing.join(' and ')} access to ${route.repo} is not allowed for ${grants.subject}: no access rule grants it (ask an admin to add ${grants.subject} to a rule for ${route.repo})`,
    ),
  );
}

function blobRead(route: Extract<Route, { kind: 'blob' }>, q: AccessQuestion): AccessOutcome {
  // Publishers read upstream's own answer for anything of their repository.
  if (q.grants.can('push', route.repo)) return allow();
  const admitted = q.facts.blobAdmitted;
  if (admitted === undefined) return need('blobAdmitted');
  if (admitted) return allow();
  // Policy: for a caller without push on the repository, a blob outside every verified manifest
  // of it does not exist: 404 BLOB_UNKNOWN, as registry:2 answers for an absent blob, and the
  // same answer whether or not registry:2 holds it (nothing is asked upstream). containers/image
  // (podman, buildah, skopeo) HEADs each layer before a push and gives up on anything but
  // 200/404, so a 403 here hid the push denial that follows. The message (body and reason
  // phrase) still says what to do for a GET by hand.
  return deny(
    'blob-not-admitted',
    new GateError(
      'BLOB_UNKNOWN',
      `blob unknown: ${route.digest} belongs to no verified manifest of ${route.repo} (pull the image by tag or digest, which checks its signature first)`,
    ),
  );
}

/**
 * Policy (I1, I4): a blob mount needs pull on `from`, and the blob must be one the caller could GET
 * from `from`: a pull-only caller only gets blobs of verified manifests there, and a mount into its
 * own repository must not be a way round that. Otherwise the mount is dropped and a plain upload
 * starts, which the spec allows and which leaks nothing.
 */
function blobMount(route: Extract<Route, { kind: 'upload-start' }>, q: AccessQuestion): AccessOutcome {
  if (!route.mount) return allow();
  const { from } = route.mount;
  const dropped: AccessOutcome = { decision: 'allow', reason: 'mount-dropped', dropMount: true };
  if (!q.grants.can('pull', from)) return dropped;
  if (q.grants.can('push', from)) return allow();
  const admitted = q.facts.mountBlobAdmitted;
  if (admitted === undefined) return need('mountBlobAdmitted');
  return admitted ? allow() : dropped;
}

function manifestRead(route: Extract<Route, { kind: 'manifest' }>, q: AccessQuestion): AccessOutcome {
  // Policy: identities with push rights on a repository may read its unsigned manifests, so a
  // publisher can resolve and sign what it pushed. Everyone else gets verified bytes only (I1).
  if (q.grants.can('push', route.repo)) return allow('publisher-read');
  const v = q.facts.manifestVerdict;
  if (!v) return need('manifestVerdict');
  if (v.allow) {
    // Policy: audit mode serves what enforce would refuse; the audit event says so.
    return v.ok ? allow(v.reason, v.signers) : { decision: 'audit-allow', reason: v.reason, keys: v.signers };
  }
  // The client's denial line names the image, what was missing, and the keys that would do.
  // Attestation denials name their own rule and keys (core/attestation/decide.ts).
  const named = !v.message.includes('trusted:') && !v.reason.startsWith('attestation-');
  if (named && !q.facts.trustedKeys) return need('trustedKeys');
  const subject = v.message.startsWith(route.repo) ? '' : `${route.repo}@${v.digest}: `;
  const trusted = named ? ` (trusted for ${v.rule}: ${q.facts.trustedKeys!.join(', ') || 'none'})` : '';
  return deny(v.reason, new GateError('DENIED', `${subject}${v.message}${trusted}`), v.signers);
}

function manifestPush(route: Extract<Route, { kind: 'manifest' }>, q: AccessQuestion): AccessOutcome {
  const p = q.facts.pushed;
  if (!p) return need('pushed');
  const { repo, ref } = route;
  if (p.signatureTag) {
    // Policy: a signature enters only when every signature in it verifies with a trusted key
    // (trust/service.ts checkSignaturePush refuses otherwise); with the rule off nothing is checked.
    if (p.rule.mode === 'off') return allow();
    const signers = q.facts.signaturePushSigners;
    if (!signers) return need('signaturePushSigners');
    return allow('signature-push', signers);
  }
  // Checked by the referrers store, under the subject's lock, together with the write.
  if (p.referrersTag) return allow('referrers-tag-push');
  if (p.rule.mode === 'off') return allow();
  if (p.signatureArtifact) {
    // Policy (I1): signature artifacts are served unverified, so one under an ordinary tag, or
    // pushed by digest (then pulled by that digest), would be an unsigned image in disguise
    // (moby's pull does not check layer media types). They enter only through their
    // sha256-<hex>.sig tag, where every added signature is verified.
    return deny(
      'signature-artifact-misplaced',
      new GateError(
        'DENIED',
        `${repo}${ref.tag ? `:${ref.tag}` : `@${p.digest}`}: a cosign signature artifact may only be pushed under its sha256-<hex>.sig tag`,
      ),
    );
  }
  if (ref.tag === undefined || !p.rule.signedPush) return allow();
  // Policy: under `signedPush` a tag may only be put on a digest already signed by a trusted key.
  const v = q.facts.signedPushVerdict;
  if (!v) return need('signedPushVerdict');
  if (v.ok) return allow('ok', v.signers);
  if (!q.facts.trustedKeys) return need('trustedKeys');
  return deny(
    'signed-push-required',
    new GateError(
      'DENIED',
      `${repo} requires signed pushes: push ${repo}@${p.digest} by digest, sign it with a key trusted for ${p.rule.pattern} (trusted: ${q.facts.trustedKeys.join(', ') || 'none'}), e.g. \`trustgate sign ${repo}@${p.digest} --tag ${ref.tag}\`, then tag it`,
    ),
  );
}

/**
 * Policy: the referrers of a digest are listed only to a caller who may pull that digest; anyone
 * else is refused like a pull of it. A subject the registry does not hold lists nothing (the API
 * never answers 404, spec 1.1), which says no more than the pull's own 404.
 */
function referrersList(route: Extract<Route, { kind: 'referrers' }>, q: AccessQuestion): AccessOutcome {
  if (q.grants.can('push', route.repo)) return allow();
  const pullable = q.facts.subjectPullable;
  if (pullable === undefined) return need('subjectPullable');
  if (pullable !== 'no') return allow();
  return deny(
    'subject-not-verified',
    new GateError(
      'DENIED',
      `${route.repo}@${route.digest} has no valid signature from a key trusted for this repository, so its referrers are not listed`,
    ),
  );
}

/**
 * Policy (I4): the catalog lists only the repositories the caller's identity may pull (by policy,
 * not by the catalog token, which names no repository).
 */
export function catalogLists(grants: Grants, repo: string): boolean {
  return grants.policyAllows('pull', repo);
}
