import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Config } from '../config/schema.js';
import { compilePolicy, type Policy } from '../core/policy.js';
import { compileTrustRules, type EffectiveTrustRule } from '../core/trust-policy.js';
import { compileAttestationRules, type EffectiveAttestationRule } from '../core/attestation/rule.js';
import { compileLayerUrlPolicy, type LayerUrlPolicy } from '../core/layer-urls.js';
import { CredentialStore, type CredentialLogger } from '../auth/credentials.js';

/** Everything derived from one configuration that requests read while it is in force. */
interface Derived {
  config: Config;
  policy: Policy;
  ruleFor: (repo: string) => EffectiveTrustRule;
  attestationRuleFor: (repo: string) => EffectiveAttestationRule | undefined;
  policyHash: string;
  credentials: CredentialStore;
  layerUrls: LayerUrlPolicy;
  realm: string | undefined;
}

/**
 * The one holder of the values a SIGHUP changes. Every part built at start that needs a
 * reloadable value reads it here, per use (`() => live.policy`), never from the config it was
 * built with: which keys are reloadable is declared in config/schema.ts, and a reload replaces
 * the whole holder content at once (`replace`), so a request never sees half of two configs.
 */
export class LiveSettings {
  private d: Derived;
  private credentialsHash: string;

  constructor(
    config: Config,
    private readonly credLog: CredentialLogger & { error(obj: object, msg: string): void },
  ) {
    this.d = derive(config, CredentialStore.load(config.auth, credLog));
    this.credentialsHash = credentialFilesHash(config.auth);
  }

  /** The configuration in force: after a reload, restart-only keys keep their running values. */
  get config(): Config {
    return this.d.config;
  }
  get policy(): Policy {
    return this.d.policy;
  }
  ruleFor(repo: string): EffectiveTrustRule {
    return this.d.ruleFor(repo);
  }
  /** The attestation rule of a repository (trust.attestations), if one applies. */
  attestationRuleFor(repo: string): EffectiveAttestationRule | undefined {
    return this.d.attestationRuleFor(repo);
  }
  /** A hash of the trust rules (part of the trust epoch). */
  get policyHash(): string {
    return this.d.policyHash;
  }
  get credentials(): CredentialStore {
    return this.d.credentials;
  }
  get layerUrls(): LayerUrlPolicy {
    return this.d.layerUrls;
  }
  /** The token realm named in challenges (from publicUrl); undefined: derived from the Host header. */
  get realm(): string | undefined {
    return this.d.realm;
  }

  /**
   * Derives everything from `next` (throws, changing nothing, when a part of it does not load:
   * credential files, patterns) and returns the function that puts it in force.
   */
  prepare(next: Config): () => void {
    // Hashed before the read (as in reloadCredentials): a file written after the hash, even
    // during this reload, differs from it, so the 1 s timer reads it again.
    const hash = credentialFilesHash(next.auth);
    // A reload keeps the failure counters: a lockout survives SIGHUP.
    const d = derive(next, this.d.credentials.reload(next.auth, this.credLog));
    return () => {
      this.d = d;
      this.credentialsHash = hash;
    };
  }

  /** Re-reads the credential files when their content changed since the last read (the 1 s timer). */
  credentialFilesChanged(): boolean {
    return credentialFilesHash(this.d.config.auth) !== this.credentialsHash;
  }

  /**
   * Re-reads the credential files (after the admin API wrote one, or when the timer saw another
   * replica's or a hand change), keeping the failure counters, so adding a user never lifts a lockout.
   */
  reloadCredentials(): void {
    const auth = this.d.config.auth;
    // Read once per change: the admin API calls this after its own writes, the timer after others'.
    this.credentialsHash = credentialFilesHash(auth);
    try {
      this.d = { ...this.d, credentials: this.d.credentials.reload(auth, this.credLog) };
    } catch (err) {
      // Policy: credential files that cannot be read accept nobody until they can again (logins
      // get 401; tokens already issued live to their expiry), never the accounts last seen, and
      // the process keeps running.
      this.credLog.error(
        { err: String(err) },
        'credential files unreadable: no password or robot login is accepted until they are back',
      );
      const none = { ...auth, htpasswd: undefined, robotsFile: undefined };
      this.d = { ...this.d, credentials: this.d.credentials.reload(none, this.credLog) };
    }
  }
}

function derive(c: Config, credentials: CredentialStore): Derived {
  return {
    config: c,
    policy: compilePolicy(c.policy),
    ruleFor: compileTrustRules(c.trust.rules),
    attestationRuleFor: compileAttestationRules(c.trust.attestations),
    // The attestation rules are part of the trust epoch (cached attestation facts are reduced by them).
    policyHash: createHash('sha256')
      .update(JSON.stringify(c.trust.rules))
      .update(c.trust.attestations.length > 0 ? JSON.stringify(c.trust.attestations) : '')
      .digest('hex'),
    credentials,
    layerUrls: compileLayerUrlPolicy(c.manifests.layerUrls),
    realm: c.publicUrl ? new URL('/token', c.publicUrl).toString() : undefined,
  };
}

/** A hash of the credential files' contents (missing files hash as empty). */
function credentialFilesHash(auth: Config['auth']): string {
  const h = createHash('sha256');
  for (const file of [auth.htpasswd, auth.robotsFile]) {
    let text = '';
    try {
      if (file) text = readFileSync(file, 'utf8');
    } catch {
      text = '\0unreadable';
    }
    h.update(`${file ?? ''}\0${text}\0`);
  }
  return h.digest('hex');
}
