import { LRUCache } from 'lru-cache';
import { createHash } from 'node:crypto';
import { GateError } from '../core/errors.js';
import { isSignatureArtifact, type ParsedManifest } from '../core/manifest.js';
import { parseDockerReference } from '../core/reference.js';
import { EMPTY_JSON_DIGEST, MAX_BUNDLE_BYTES } from '../core/referrers.js';
import { isWellFormedBundle } from '../core/evidence/bundle.js';
import { parseSimpleSigningPayload } from '../core/signature/payload.js';
import {
  evaluateTrust,
  signerIdentities,
  type SignatureCandidate,
  type TrustedKey,
  type TrustInput,
  type TrustVerdict,
} from '../core/trust.js';
import type { EffectiveTrustRule } from '../core/trust-policy.js';
import type { SigstoreTrustedRoot } from '../core/evidence/trusted-root.js';
import {
  decideServe,
  inheritsAttestations,
  mayInheritAttestations,
  serveShortcut,
  wantsIndexParent,
  type ServeReason,
  type SignatureEvidence,
} from '../core/serve-decision.js';
import type { VerdictCache } from '../cache/verdict-cache.js';
import { verifyChannel, type VerifyEvent } from './events.js';
import type { KeyEntry, Keyring } from '../keys/keyring.js';
import type { EffectiveAttestationRule } from '../core/attestation/rule.js';
import {
  evaluateAttestations,
  type AttestationVerdict,
  type VulnException,
} from '../core/attestation/decide.js';
import type { AttestationFacts } from '../core/attestation/facts.js';
import { attestationFacts } from '../core/attestation/verify.js';
import {
  ATTESTATION_LIMITS,
  attestationEvidence,
  bundleEvidence,
  legacyEvidence,
  readSignatureArtifact,
  signatureCandidates,
  verifiedBlob,
  type EvidenceReader,
} from './evidence.js';

const SINGLE_FLIGHT_LINGER_MS = 1000;
/** Write-started verifications (evidenceChanged) running at once, over all digests. */
const MAX_BACKGROUND_REVERIFICATIONS = 8;

export interface Verdict {
  /** May a pull-only client receive this manifest? */
  allow: boolean;
  /** What the policy would have decided in enforce mode (audit mode logs it). */
  ok: boolean;
  mode: EffectiveTrustRule['mode'];
  reason: ServeReason;
  message: string;
  signers: string[];
  rule: string;
  cached: boolean;
  /** The trust epoch (keys and rules) the decision was made under; admissions carry it. */
  epoch: string;
  /** The attestation decision, when an attestation rule applies (explain shows its conditions). */
  attestation?: AttestationVerdict;
}

/**
 * The generation of trust one decision uses, read together before any I/O (see verify): the
 * attestation facts are verified with it, never with rules or roots read again after an await.
 */
interface TrustGeneration {
  keys: ReadonlyMap<string, KeyEntry>;
  bundleOptions: { tlog: EffectiveTrustRule['tlog']; trustedRoots: readonly SigstoreTrustedRoot[] };
  epoch: string;
}

/** Attestation facts as cached (per epoch; decided again at every pull). */
interface CachedFacts extends AttestationFacts {
  at: number;
}

/** The signature evidence of a digest as cached (the verdict cache's value). */
interface CachedVerdict extends SignatureEvidence {
  boundTags: string[];
  /** When it was computed (ms since epoch). */
  at: number;
}

export interface TrustServiceOptions {
  /** Where signature evidence comes from (registry:2, through the evidence seam). */
  evidence: EvidenceReader;
  /** The Sigstore trusted root transparency-log entries of bundles are verified with, if any. */
  trustedRoot?: SigstoreTrustedRoot;
  /**
   * The current Sigstore trusted roots (keyless certificates and log entries verify against any
   * one of them), read at every cold verification so a refreshed list applies at once. Joined with
   * `trustedRoot`.
   */
  trustedRoots?: () => readonly SigstoreTrustedRoot[];
  /**
   * Changes whenever trustedRoots() does (SigstoreRoots.version()): part of the epoch, so a new
   * root (a TUF update) retires every verdict made before it.
   */
  trustedRootsVersion?: () => string;
  keyring: Keyring;
  cache: VerdictCache;
  ruleFor: (repo: string) => EffectiveTrustRule;
  /** Changes when trust rules change; part of the epoch. */
  policyHash: () => string;
  positiveTtlSeconds: number;
  negativeTtlSeconds: number;
  now?: () => Date;
  /** The attestation rule of a repository (trust.attestations); none: no attestation gate. */
  attestationRuleFor?: (repo: string) => EffectiveAttestationRule | undefined;
  /** The vulnerability exceptions in force (read at every decision, never cached with it). */
  exceptions?: () => readonly VulnException[];
  /** Told how long each cold attestation check took (fetch plus verify plus read). */
  onAttestationCheck?: (seconds: number) => void;
}

/**
 * The verifier service: fetches signature artifacts from the registry, calls the pure core, and
 * caches verdicts under (repository, digest, epoch). All I/O of verification happens here.
 */
export class TrustService {
  private readonly inflight = new Map<string, Promise<unknown>>();
  private readonly now: () => Date;
  private epochOf = { keys: '', policy: '', roots: '', value: '' };
  private identityCache?: { keys: ReadonlyMap<string, KeyEntry>; value: Map<string, string> };
  private readonly admitted: LRUCache<string, true>;
  /** Computations of `inflight` that have finished (kept there a moment for late joiners). */
  private readonly settled = new WeakSet<Promise<unknown>>();
  /** Digests being verified again after a write (evidenceChanged): true when another write landed. */
  private readonly reverifying = new Map<string, boolean>();
  /** Numbers invalidate() calls; `invalidatedAt` holds the last one per `repo@digest` (bounded). */
  private invalidations = 0;
  private readonly invalidatedAt = new LRUCache<string, number>({ max: 10_000 });
  /** Signature artifact fetches, for tests and metrics (single flight is measured with it). */
  signatureFetches = 0;
  /**
   * Cold verifications decided from one evidence layout before the other's reads were done (see
   * evidenceVerdict), for tests.
   */
  earlyVerdicts = 0;
  /** Attestation evidence fetches (cold attestation checks), for tests and metrics. */
  attestationFetches = 0;

  constructor(private readonly o: TrustServiceOptions) {
    this.now = o.now ?? (() => new Date());
    this.admitted = new LRUCache({ max: 10_000, ttl: Math.min(60, o.positiveTtlSeconds / 2) * 1000 });
  }

  /**
   * Hash of the trusted keys, the trust policy and the Sigstore trusted roots: every cache key
   * carries it, so a new key, rule or root (a TUF update) retires every verdict made before it.
   */
  epoch(): string {
    const keys = this.o.keyring.snapshot.contentHash;
    const policy = this.o.policyHash();
    const roots = this.o.trustedRootsVersion?.() ?? '';
    // Recomputed only when one of them changed: this runs several times per pull.
    if (this.epochOf.keys !== keys || this.epochOf.policy !== policy || this.epochOf.roots !== roots) {
      const h = createHash('sha256').update(keys).update('\0').update(policy);
      // Without a Sigstore source the epoch is what it was before roots were part of it.
      if (roots !== '') h.update('\0').update(roots);
      this.epochOf = { keys, policy, roots, value: h.digest('hex').slice(0, 32) };
    }
    return this.epochOf.value;
  }

  ruleFor(repo: string): EffectiveTrustRule {
    return this.o.ruleFor(repo);
  }

  /** The attestation rule of `repo`, if one applies. */
  attestationRuleFor(repo: string): EffectiveAttestationRule | undefined {
    return this.o.attestationRuleFor?.(repo);
  }

  /** The Sigstore trusted roots in force now. */
  private roots(): SigstoreTrustedRoot[] {
    return [...(this.o.trustedRoots?.() ?? []), ...(this.o.trustedRoot ? [this.o.trustedRoot] : [])];
  }

  /**
   * The keys trusted for `repo` under `rule`: those the rule names (directly, or through a name in
   * a key's `trustedAs`, which rotation sets) and those whose meta `repos` globs match `repo`.
   * Policy: revoked and expired keys stay in the list; evaluateTrust refuses their signatures with
   * the reason, so a denial says "revoked" rather than "untrusted".
   */
  trustedKeys(
    rule: EffectiveTrustRule,
    repo: string,
    keySet: ReadonlyMap<string, KeyEntry> = this.o.keyring.snapshot.keys,
  ): TrustedKey[] {
    const named = new Set(rule.keys);
    const identities = this.identitiesOf(keySet);
    const out: TrustedKey[] = [];
    for (const k of keySet.values()) {
      if (named.has(k.name) || (k.meta.trustedAs ?? []).some((n) => named.has(n)) || k.appliesTo(repo)) {
        out.push({ ...k, identity: identities.get(k.name) ?? k.name });
      }
    }
    return out;
  }

  /** Signer identities of the loaded keys (rotation links), computed once per key set. */
  private identitiesOf(keys: ReadonlyMap<string, KeyEntry>): Map<string, string> {
    if (this.identityCache?.keys !== keys) {
      const links = new Map([...keys.values()].map((k) => [k.name, k.meta.trustedAs ?? []]));
      this.identityCache = { keys, value: signerIdentities(links) };
    }
    return this.identityCache.value;
  }

  /** Names of the keys trusted for `repo` (configured ones included even when not loaded). */
  trustedKeyNames(repo: string): string[] {
    const rule = this.o.ruleFor(repo);
    return [...new Set([...rule.keys, ...this.trustedKeys(rule, repo).map((k) => k.name)])].sort();
  }

  /**
   * The verdict for serving `digest` of `repo` to a pull-only client. `tag` is the tag the client
   * asked for (tag binding), `manifest` the parsed bytes about to be served. `purpose` is
   * `signed-push` for the check of a push by tag under `signedPush`. The decision is
   * core/serve-decision.ts's; this fetches and caches what it needs.
   */
  async verify(
    repo: string,
    digest: string,
    manifest: ParsedManifest,
    tag?: string,
    opts: {
      fresh?: boolean;
      purpose?: 'pull' | 'signed-push';
      subjectPullable?: boolean;
      /** False: the signature decision only (may evidence about the digest be listed?). */
      attestations?: boolean;
    } = {},
  ): Promise<Verdict> {
    // Policy: the rules, the keys and the epoch are read together, synchronously, before any I/O:
    // a decision uses one generation of trust, and its cache entries carry that generation's epoch
    // (a reload during the signature fetch must not store an old-rule verdict under the new epoch).
    const epoch = this.epoch();
    const rule = this.o.ruleFor(repo);
    const attestationRule = this.o.attestationRuleFor?.(repo);
    const keys = this.o.keyring.snapshot.keys;
    const roots = this.roots();
    const input = {
      repo,
      digest,
      rule,
      manifest,
      tag,
      purpose: opts.purpose ?? 'pull',
      subjectPullable: opts.subjectPullable,
    } as const;
    const base = { mode: rule.mode, rule: rule.pattern, epoch };
    const shortcut = serveShortcut(input);
    if (shortcut) return { ...base, ...shortcut, cached: false };
    const key = `v:${epoch}:${repo}:${digest}`;
    let cached = true;
    // A computation still running for this key (the prefetch of this very pull, usually) began
    // after a cache miss moments ago: it is joined without asking the cache again (one round trip
    // less to Redis on the cold path). A finished one is not (the cache answers, as before), and a
    // `fresh` check never joins one.
    const inflight = opts.fresh === true ? undefined : this.inflight.get(key);
    const running =
      inflight && !this.settled.has(inflight) ? (inflight as Promise<CachedVerdict>) : undefined;
    let evidence = running ? undefined : ((await this.o.cache.get(key)) as CachedVerdict | undefined);
    if (isCachedVerdict(evidence) && this.stale(evidence, rule, tag, opts.fresh === true))
      evidence = undefined;
    if (!isCachedVerdict(evidence)) {
      cached = false;
      evidence = await (running ??
        this.singleFlight(
          key,
          () => this.compute(repo, digest, rule, keys, roots, epoch),
          opts.fresh === true,
        ));
    }
    let outcome = decideServe({ ...input, evidence });
    let indexParent: string | undefined;
    let parentLookedUp = false;
    // The index admission is read at most once per request (a miss is a miss for both uses below).
    const lookUpParent = async (): Promise<void> => {
      if (parentLookedUp) return;
      parentLookedUp = true;
      const parent = await this.o.cache.get(`c:${epoch}:${repo}:${digest}`);
      if (typeof parent === 'string') indexParent = parent;
    };
    if (!outcome.ok && wantsIndexParent({ ...input, evidence })) {
      await lookUpParent();
      if (indexParent !== undefined) {
        outcome = decideServe({ ...input, evidence, indexParent });
        if (outcome.reason === 'index-child') cached = true;
      }
    }
    if (attestationRule && opts.attestations !== false && input.purpose === 'pull') {
      if (mayInheritAttestations(input)) await lookUpParent();
      const withParent = indexParent !== undefined ? { indexParent } : {};
      // Policy: a child that inherits is judged by its index's attestations as they stand now
      // (decided again from the index's cached facts), never by the verdict the index had when it
      // admitted its children: a stale scan or an expired exception refuses the children too.
      const judged = inheritsAttestations({ ...input, ...withParent }) ? indexParent! : digest;
      const attestation = await this.attestationVerdict(
        repo,
        judged,
        attestationRule,
        { keys, bundleOptions: { tlog: rule.tlog, trustedRoots: roots }, epoch },
        opts.fresh === true,
      );
      outcome = decideServe({ ...input, evidence, attestation, ...withParent });
    }
    return { ...base, ...outcome, cached };
  }

  /**
   * The attestation decision for `digest`, when a rule applies: facts from the cache (or fetched
   * and verified once, single flight), decided now with the exceptions in force. Policy: only the
   * facts are cached; the decision over them is made at every pull, so a cached entry can never
   * extend a scan's age limit, an exception's expiry or an attesting key's validity.
   */
  private async attestationVerdict(
    repo: string,
    digest: string,
    rule: EffectiveAttestationRule,
    generation: TrustGeneration,
    fresh: boolean,
  ): Promise<AttestationVerdict> {
    const key = `a:${generation.epoch}:${repo}:${digest}`;
    let facts = (await this.o.cache.get(key)) as CachedFacts | undefined;
    if (isCachedFacts(facts) && fresh) facts = undefined;
    if (!isCachedFacts(facts)) {
      facts = await this.singleFlight(key, () => this.computeFacts(repo, digest, rule, generation), fresh);
    }
    return evaluateAttestations({
      repo,
      digest,
      rule,
      facts,
      now: this.now(),
      exceptions: this.o.exceptions?.() ?? [],
    });
  }

  /** The keys a rule trusts for attestations: those it names, and their rotation successors. */
  attestationKeys(
    rule: Pick<EffectiveAttestationRule, 'keys'>,
    keySet: ReadonlyMap<string, KeyEntry> = this.o.keyring.snapshot.keys,
  ): TrustedKey[] {
    const named = new Set(rule.keys);
    const identities = this.identitiesOf(keySet);
    return [...keySet.values()]
      .filter((k) => named.has(k.name) || (k.meta.trustedAs ?? []).some((n) => named.has(n)))
      .map((k) => ({ ...k, identity: identities.get(k.name) ?? k.name }));
  }

  private async computeFacts(
    repo: string,
    digest: string,
    rule: EffectiveAttestationRule,
    { keys: keySet, bundleOptions, epoch }: TrustGeneration,
  ): Promise<CachedFacts> {
    const started = performance.now();
    const seq = this.invalidations;
    this.attestationFetches++;
    const envelopes = await attestationEvidence(this.o.evidence, repo, digest);
    const now = this.now();
    const facts = attestationFacts({
      digest,
      envelopes,
      keys: this.attestationKeys(rule, keySet),
      rule,
      now,
      bundleOptions,
      maxBytes: ATTESTATION_LIMITS.maxEnvelopeBytes,
    });
    const result: CachedFacts = { ...facts, at: now.getTime() };
    this.o.onAttestationCheck?.((performance.now() - started) / 1000);
    // Policy: facts that pass now are kept for the positive TTL, others for the negative TTL (a new
    // attestation is then seen soon even on another replica); never past an attesting key's
    // notAfter (the decision checks that too).
    const passes = evaluateAttestations({
      repo,
      digest,
      rule,
      facts,
      now,
      exceptions: this.o.exceptions?.() ?? [],
    }).ok;
    let ttl = passes ? this.o.positiveTtlSeconds : this.o.negativeTtlSeconds;
    for (const f of facts.facts) {
      for (const s of f.signers) {
        if (s.notAfter !== undefined)
          ttl = Math.min(ttl, Math.max(1, Math.ceil((s.notAfter - now.getTime()) / 1000)));
      }
    }
    if (this.epoch() === epoch && !this.invalidatedSince(repo, digest, seq))
      await this.o.cache.set(`a:${epoch}:${repo}:${digest}`, result, ttl);
    return result;
  }

  /**
   * Starts fetching and verifying the evidence of `digest` before its manifest has arrived, for a
   * pull by digest whose verdict is not cached: the evidence depends on the digest alone, so the
   * registry reads of both run at once. `verify` then joins this computation (single flight);
   * nothing is decided here. A failure is left for `verify` to report (or for nobody, when the
   * manifest turns out to need no evidence).
   */
  prefetch(repo: string, digest: string): void {
    void this.verifyInBackground(repo, digest);
  }

  /** What prefetch starts; settles (never rejects) when the verification is done or not needed. */
  private async verifyInBackground(repo: string, digest: string): Promise<void> {
    const epoch = this.epoch();
    const rule = this.o.ruleFor(repo);
    if (rule.mode === 'off') return;
    const keys = this.o.keyring.snapshot.keys;
    const roots = this.roots();
    const key = `v:${epoch}:${repo}:${digest}`;
    if (this.inflight.has(key)) return;
    try {
      const cached = (await this.o.cache.get(key)) as CachedVerdict | undefined;
      // A cached verdict (even a stale refusal, which verify re-checks itself) needs no prefetch.
      if (isCachedVerdict(cached) || this.inflight.has(key)) return;
      await this.singleFlight(key, () => this.compute(repo, digest, rule, keys, roots, epoch), false);
    } catch {
      // left for verify to report (or for nobody, when the manifest needs no evidence)
    }
  }

  /** Records that the children of a verified index may be served by digest in this repository. */
  async admitChildren(
    repo: string,
    indexDigest: string,
    manifest: ParsedManifest,
    epoch: string,
  ): Promise<void> {
    await this.admitOnce(epoch, `c:${repo}:${indexDigest}`, () =>
      manifest.manifests.map((d) => [`c:${epoch}:${repo}:${d.digest}`, indexDigest]),
    );
  }

  /** Records the blobs of a manifest that was served to a pull-only client. */
  async admitBlobs(
    repo: string,
    manifestDigest: string,
    digests: readonly string[],
    epoch: string,
  ): Promise<void> {
    await this.admitOnce(epoch, `b:${repo}:${manifestDigest}`, () =>
      digests.map((d) => [`b:${epoch}:${repo}:${d}`, 1]),
    );
  }

  /**
   * Records the payload blobs of a signature artifact read through its .sig tag. Policy: only
   * layers whose bytes are a well-formed simple-signing payload (at most 64 KiB, the digest the
   * layer names, strict JSON) are admitted, so nothing admitted this way can be an image layer
   * (a tar) or config; the artifact's config is never admitted.
   */
  async admitSignaturePayloads(
    repo: string,
    manifestDigest: string,
    manifest: ParsedManifest,
    epoch: string,
  ): Promise<void> {
    await this.admitOnce(epoch, `s:${repo}:${manifestDigest}`, async () => {
      const payloads = await signatureCandidates(this.o.evidence, repo, manifest);
      return payloads
        .filter((c) => isSimpleSigningPayload(c.payload))
        .map((c) => [`b:${epoch}:${repo}:${c.layerDigest}`, 1]);
    });
  }

  /**
   * Records the blobs of a bundle referrer read by a client who may pull its subject. Policy: only
   * its bundle layer when the bytes (at most MAX_BUNDLE_BYTES, the digest the layer names) are a
   * structurally valid bundle (strict JSON, known fields only), and the 2-byte empty config; never
   * anything that can serve as an image config.
   */
  async admitBundleLayers(
    repo: string,
    manifestDigest: string,
    manifest: ParsedManifest,
    epoch: string,
  ): Promise<void> {
    await this.admitOnce(epoch, `r:${repo}:${manifestDigest}`, async () => {
      // isBundleReferrer fixed the shape: the empty config and exactly one bundle layer.
      const out: Array<[string, unknown]> = [[`b:${epoch}:${repo}:${EMPTY_JSON_DIGEST}`, 1]];
      const layer = manifest.layers[0];
      const bytes =
        layer && layer.size <= MAX_BUNDLE_BYTES
          ? await verifiedBlob(this.o.evidence, repo, layer.digest, MAX_BUNDLE_BYTES)
          : undefined;
      if (layer && bytes && isWellFormedBundle(bytes)) out.push([`b:${epoch}:${repo}:${layer.digest}`, 1]);
      return out;
    });
  }

  /**
   * Writes admission entries at most once a minute per manifest and replica, so a warm pull costs
   * one verdict lookup rather than a cache write per blob. The entries themselves live for the
   * positive TTL, so they are refreshed well before they expire. Policy: entries carry the epoch
   * of the verdict that admitted them, and none are written once that epoch has been replaced.
   */
  private async admitOnce(
    epoch: string,
    memoKey: string,
    entries: () => Array<[string, unknown]> | Promise<Array<[string, unknown]>>,
  ): Promise<void> {
    const key = `${epoch}:${memoKey}`;
    if (this.admitted.has(key) || this.epoch() !== epoch) return;
    const list = await entries();
    if (this.epoch() !== epoch) return;
    await Promise.all(list.map(([k, v]) => this.o.cache.set(k, v, this.o.positiveTtlSeconds)));
    this.admitted.set(key, true);
  }

  async isBlobAdmitted(repo: string, digest: string): Promise<boolean> {
    if (this.o.ruleFor(repo).mode === 'off') return true;
    return (await this.o.cache.get(`b:${this.epoch()}:${repo}:${digest}`)) === 1;
  }

  /** Forgets a (negative) verdict, e.g. after a new signature was pushed for it. */
  async invalidate(repo: string, digest: string): Promise<void> {
    const epoch = this.epoch();
    this.invalidatedAt.set(`${repo}@${digest}`, ++this.invalidations);
    for (const key of [`v:${epoch}:${repo}:${digest}`, `a:${epoch}:${repo}:${digest}`]) {
      this.inflight.delete(key);
      await this.o.cache.delete(key);
    }
  }

  /**
   * True when `digest`'s evidence was invalidated after invalidation number `seq`. Policy: a
   * computation that began before a write read the evidence as it was before it, so its result
   * answers its own pull only and is not stored over the one made after the write (a refusal
   * would otherwise outlive the signature for the negative TTL). Past 10,000 other subjects
   * invalidated meanwhile the entry may be gone: the result is then stored, as before.
   */
  private invalidatedSince(repo: string, digest: string, seq: number): boolean {
    return (this.invalidatedAt.get(`${repo}@${digest}`) ?? 0) > seq;
  }

  /**
   * New signature evidence for `digest` was written through this gate (a `.sig` push or a
   * referrer): the cached verdict is dropped and the verification runs again at once, in the
   * background, so the first pull after signing finds it done (or joins it) instead of reading the
   * evidence itself. Policy: this is the verification a pull would run, under the epoch in force,
   * with nothing decided here; it starts after the registry accepted the write (and, for a
   * referrer, after the referrers index was updated), so it reads the new evidence. A failure is
   * left for the next pull, which verifies again. Per digest at most one such verification runs;
   * writes that land meanwhile make it run once more afterwards (its verdict may predate them), so
   * a publisher's burst of writes costs at most one verification per write, one at a time.
   * Policy: at most MAX_BACKGROUND_REVERIFICATIONS run at once over all digests. A referrer needs
   * no signing key and may name any subject, so a pusher writing to many subjects at once would
   * otherwise start as many verifications (each up to 64 referrers and 64 signature layers read)
   * and crowd pulls out of the registry connections; past the cap a write only drops the cached
   * verdict, and the next pull verifies, as before.
   */
  async evidenceChanged(repo: string, digest: string): Promise<void> {
    await this.invalidate(repo, digest);
    const k = `${repo}@${digest}`;
    if (this.reverifying.has(k)) {
      this.reverifying.set(k, true);
      return;
    }
    if (this.reverifying.size >= MAX_BACKGROUND_REVERIFICATIONS) return;
    this.reverifying.set(k, false);
    void (async () => {
      try {
        await this.verifyInBackground(repo, digest);
        while (this.reverifying.get(k) === true) {
          this.reverifying.set(k, false);
          await this.invalidate(repo, digest);
          await this.verifyInBackground(repo, digest);
        }
      } finally {
        this.reverifying.delete(k);
      }
    })();
  }

  /**
   * Checks a push to a signature tag: every layer it adds to what is already stored must verify
   * with a key trusted for this repository, over the digest the tag names, and it must add one.
   */
  async checkSignaturePush(
    repo: string,
    tag: string,
    manifest: ParsedManifest,
  ): Promise<{ signers: string[] }> {
    const m = /^(sha256)-([0-9a-f]{64})\.sig$/.exec(tag);
    if (!m || !isSignatureArtifact(manifest)) {
      throw new GateError(
        'DENIED',
        `${repo}:${tag}: only cosign signature artifacts may be pushed to sha256-<hex>.sig tags, and only under those tags`,
      );
    }
    const digest = `${m[1]}:${m[2]}`;
    const rule = this.o.ruleFor(repo);
    const existing = await readSignatureArtifact(this.o.evidence, repo, digest);
    const known = new Set(existing?.layers.map((l) => l.digest) ?? []);
    const added = manifest.layers.filter((l) => !known.has(l.digest));
    if (added.length === 0) {
      throw new GateError('DENIED', `${repo}:${tag} adds no new signature`);
    }
    const keys = this.trustedKeys(rule, repo);
    const signers = new Set<string>();
    for (const layer of added) {
      const [cand] = await signatureCandidates(this.o.evidence, repo, { ...manifest, layers: [layer] });
      const v = cand
        ? evaluateTrust({
            repo,
            digest,
            signatures: [cand],
            keys,
            identities: rule.identities,
            bundleOptions: { tlog: rule.tlog, trustedRoots: this.roots() },
            threshold: 1,
            tagBinding: false,
            now: this.now(),
          })
        : undefined;
      if (!v?.ok) {
        throw new GateError(
          'DENIED',
          `${repo}:${tag}: signature layer ${layer.digest} does not verify with a key trusted for ${rule.pattern} (trusted: ${this.trustedKeyNames(repo).join(', ') || 'none'})${v ? `: ${v.message}` : ''}`,
        );
      }
      v.signers.forEach((s) => signers.add(s));
    }
    return { signers: [...signers] };
  }

  /**
   * A cached refusal is looked at again when it is older than the negative TTL (a tag-binding
   * refusal rides on a positive entry), or at once for a push, which is rare and where a publisher
   * has just signed. Policy: only refusals are re-checked early; a cached pass never is.
   */
  private stale(
    v: CachedVerdict,
    rule: EffectiveTrustRule,
    tag: string | undefined,
    fresh: boolean,
  ): boolean {
    const unbound = rule.tagBinding && tag !== undefined && !v.boundTags.includes(tag);
    if (v.ok && !unbound) return false;
    return fresh || this.now().getTime() - v.at > this.o.negativeTtlSeconds * 1000;
  }

  /**
   * One computation per key at a time; a finished one is reused for a moment, so requests whose
   * cache lookup missed just before the result was stored do not start another (except `fresh`).
   */
  private async singleFlight<T>(key: string, fn: () => Promise<T>, fresh: boolean): Promise<T> {
    const running = this.inflight.get(key) as Promise<T> | undefined;
    if (running && !fresh) return running;
    const p = fn();
    this.inflight.set(key, p);
    const done = (): void => void this.settled.add(p);
    p.then(done, done);
    const forget = (): void => {
      setTimeout(() => {
        if (this.inflight.get(key) === p) this.inflight.delete(key);
      }, SINGLE_FLIGHT_LINGER_MS).unref();
    };
    p.then(forget, () => {
      if (this.inflight.get(key) === p) this.inflight.delete(key);
    });
    return p;
  }

  /**
   * Reads the evidence of `digest` in both layouts at once and judges it (tag binding aside). The
   * verdict is made from one layout alone as soon as that layout's reads are done and its evidence
   * alone already meets the rule, without waiting for the other layout's reads.
   * Policy: only an allow is ever made early, never a refusal. evaluateTrust is monotone: a signer
   * counted from part of the evidence is counted from all of it, and evidence only adds signers
   * (a bad signature, a revoked key or an attestation in the other layout adds a failure, which
   * matters only when the threshold is not met). So the allow is the one the complete evidence
   * gives; only its signer list may name fewer signers. A failed read of the other layout cannot
   * turn it into a refusal either, so it is not waited for (a failure of the first read still
   * fails the verification, I3). Bundles never bind a tag, so under tag binding the bundle layout
   * never decides early: the tags bound are read from the legacy signatures, which must be in.
   */
  private async evidenceVerdict(
    repo: string,
    digest: string,
    rule: EffectiveTrustRule,
    base: Omit<TrustInput, 'signatures' | 'bundles' | 'tagBinding' | 'now'>,
  ): Promise<{ signatures: SignatureCandidate[]; v: TrustVerdict; now: Date }> {
    const legacyRead = legacyEvidence(this.o.evidence, repo, digest).then((e) => e.legacy);
    const bundleRead = bundleEvidence(this.o.evidence, repo, digest).then((b) => b.map((c) => c.bytes));
    // Either may be left unawaited below; a rejection then has no one to tell.
    legacyRead.catch(() => undefined);
    bundleRead.catch(() => undefined);
    const first = await Promise.race([
      legacyRead.then((signatures) => ({ signatures, bundles: [] as Uint8Array[] })),
      bundleRead.then((bundles) => ({ signatures: [] as SignatureCandidate[], bundles })),
    ]);
    const decidesAlone = first.signatures.length > 0 || (first.bundles.length > 0 && !rule.tagBinding);
    if (decidesAlone) {
      const now = this.now();
      const v = evaluateTrust({ ...base, ...first, now, tagBinding: false });
      if (v.ok) {
        this.earlyVerdicts++;
        return { signatures: first.signatures, v, now };
      }
    }
    const [signatures, bundles] = await Promise.all([legacyRead, bundleRead]);
    const now = this.now();
    return { signatures, v: evaluateTrust({ ...base, signatures, bundles, now, tagBinding: false }), now };
  }

  private async compute(
    repo: string,
    digest: string,
    rule: EffectiveTrustRule,
    keySet: ReadonlyMap<string, KeyEntry>,
    trustedRoots: readonly SigstoreTrustedRoot[],
    epoch: string,
  ): Promise<CachedVerdict> {
    const started = performance.now();
    const seq = this.invalidations;
    this.signatureFetches++;
    const keys = this.trustedKeys(rule, repo, keySet);
    const base = {
      repo,
      digest,
      bundleOptions: { tlog: rule.tlog, trustedRoots },
      identities: rule.identities,
      keys,
      threshold: rule.threshold,
    };
    const { signatures, v, now } = await this.evidenceVerdict(repo, digest, rule, base);
    const input = { ...base, signatures, now };
    const boundTags: string[] = [];
    if (v.ok && rule.tagBinding) {
      // Bundles name no tag, so they never bind one: verifying them again per tag is wasted work.
      for (const t of tagsNamed(signatures)) {
        if (evaluateTrust({ ...input, bundles: [], tag: t, tagBinding: true }).ok) boundTags.push(t);
      }
    }
    const missing = rule.keys.filter((n) => !keys.some((k) => k.name === n));
    const message =
      missing.length > 0 && !v.ok
        ? `${v.message} (configured but not loaded: ${missing.join(', ')})`
        : v.message;
    const result: CachedVerdict = {
      ok: v.ok,
      reason: v.reason,
      message,
      signers: v.signers,
      boundTags,
      at: now.getTime(),
    };
    if (verifyChannel.hasSubscribers) {
      verifyChannel.publish({
        source: this,
        seconds: (performance.now() - started) / 1000,
      } satisfies VerifyEvent);
    }
    const ttl = v.ok ? this.o.positiveTtlSeconds : this.o.negativeTtlSeconds;
    // Policy: a verdict is stored under the epoch it was computed with, and not at all when the
    // keys or rules changed meanwhile (the caller still gets it: its pull began before the change).
    // Nor when the evidence was written through this gate meanwhile (invalidatedSince).
    if (this.epoch() === epoch && !this.invalidatedSince(repo, digest, seq))
      await this.o.cache.set(`v:${epoch}:${repo}:${digest}`, result, ttl);
    return result;
  }
}

function tagsNamed(signatures: SignatureCandidate[]): Set<string> {
  const tags = new Set<string>();
  for (const s of signatures) {
    try {
      const ref = parseDockerReference(parseSimpleSigningPayload(s.payload).dockerReference);
      if (ref.tag) tags.add(ref.tag);
    } catch {
      // unparseable payloads name no tag; evaluateTrust reports them
    }
  }
  return tags;
}

/** True when the bytes are a well-formed simple-signing payload (what a signature layer holds). */
function isSimpleSigningPayload(bytes: Uint8Array): boolean {
  try {
    parseSimpleSigningPayload(bytes);
    return true;
  } catch {
    return false;
  }
}

function isCachedVerdict(v: unknown): v is CachedVerdict {
  if (typeof v !== 'object' || v === null) return false;
  const c = v as Record<string, unknown>;
  return (
    typeof c['ok'] === 'boolean' &&
    typeof c['reason'] === 'string' &&
    typeof c['message'] === 'string' &&
    Array.isArray(c['signers']) &&
    Array.isArray(c['boundTags']) &&
    typeof c['at'] === 'number'
  );
}

function isCachedFacts(v: unknown): v is CachedFacts {
  if (typeof v !== 'object' || v === null) return false;
  const c = v as Record<string, unknown>;
  return Array.isArray(c['facts']) && Array.isArray(c['ignored']) && typeof c['at'] === 'number';
}
