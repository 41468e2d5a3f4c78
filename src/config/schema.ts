import path from 'node:path';
import { z } from 'zod';
import { isPredicateTypeSpelling, PREDICATE_ALIASES } from '../core/attestation/predicates.js';
import { validateIdentityRule } from '../core/evidence/identity.js';
import { reloadable, restartOnly } from './reloads.js';

/**
 * The one configuration schema. `config/load.ts` reads YAML, applies environment overrides,
 * and validates with this; errors name the key path and the problem.
 *
 * Every leaf key says what a SIGHUP does with it: `reloadable(schema, how)` or
 * `restartOnly(schema, why)` around its whole schema (config/reloads.ts; docs/operating.md,
 * "Signals: reload and drain"). test/config/reloads.test.ts fails on a key without one.
 */

const LISTENER = 'the HTTPS listener and its HTTP parser are set up at start';
const UPSTREAM = 'the upstream connection pool is built at start';
const CACHE = 'the verdict cache (and its Redis connection) is built at start';
const LIMITS = 'the relay limiter and write-idle watch are built at start';
const CREDENTIALS =
  'the credential store is rebuilt and the new failure limits apply at once; failure counters (lockouts) carry over';
const POLICY = 'the access policy is rebuilt and read per request';

const principal = z
  .string()
  .min(1)
  .describe(
    'an identity subject (alice, robot:ci, mtls:CN=x), `group:NAME`, `anonymous`, or `*` (any authenticated)',
  );

const regexSource = z
  .string()
  .min(1)
  .refine(
    (s) => {
      try {
        new RegExp(s);
        return true;
      } catch {
        return false;
      }
    },
    { message: 'not a valid regular expression' },
  );

export const accessRuleSchema = z.strictObject({
  /** Repository globs: `*` matches within one path segment, `**` any number of segments. */
  repos: z.array(z.string().min(1)).min(1),
  pull: z.array(principal).default([]),
  push: z.array(principal).default([]),
  delete: z.array(principal).default([]),
});

/**
 * A keyless identity (Fulcio certificate): the OIDC issuer and the SAN, each exact or an anchored
 * regular expression (it must match the whole value), plus optional GitHub Actions claims read
 * from Fulcio's certificate extensions (exact).
 */
export const identityRuleSchema = z
  .strictObject({
    issuer: z.string().min(1).optional(),
    issuerRegExp: z.string().min(1).optional(),
    subject: z.string().min(1).optional(),
    subjectRegExp: z.string().min(1).optional(),
    github: z
      .strictObject({
        /** `owner/repo` */
        repository: z.string().min(1).optional(),
        /** e.g. `refs/tags/v1.2.3` */
        workflowRef: z.string().min(1).optional(),
        /** e.g. `push` */
        trigger: z.string().min(1).optional(),
        /** the commit SHA */
        sha: z.string().min(1).optional(),
        /** `github-hosted` or `self-hosted` */
        runnerEnvironment: z.string().min(1).optional(),
      })
      .optional(),
  })
  .superRefine((r, ctx) => {
    try {
      validateIdentityRule(r);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
    }
  });

export const trustRuleSchema = z.strictObject({
  repos: z.array(z.string().min(1)).min(1),
  /** Names of trusted keys (files `<name>.pub` in trust.keysDir). */
  keys: z.array(z.string().min(1)).default([]),
  /**
   * Keyless identities trusted for these repositories, with or instead of keys. The threshold
   * counts distinct keys and distinct identity entries it names together (a certificate counts as the first entry it matches).
   */
  identities: z.array(identityRuleSchema).max(64).default([]),
  threshold: z.number().int().min(1).default(1),
  mode: z.enum(['enforce', 'audit', 'off']).default('enforce'),
  /** A pull by tag also needs a signature whose docker-reference names that tag. */
  tagBinding: z.boolean().default(false),
  /** A manifest PUT by tag needs an existing trusted signature of its digest. */
  signedPush: z.boolean().default(false),
  /**
   * Sigstore bundles: `required` needs a transparency-log entry verified against
   * trust.trustedRoot; `optional` verifies entries when a root is configured and ignores them
   * otherwise. Entries are never trusted as they come.
   */
  tlog: z.enum(['required', 'optional']).default('optional'),
});

const severity = z.enum(['NONE', 'UNKNOWN', 'LOW', 'MEDIUM', 'HIGH', 'CRITICAL']);
/** A predicate type: one of cosign's short names, or an absolute https URI. */
const predicateType = z
  .string()
  .min(1)
  .max(512)
  .refine((t) => isPredicateTypeSpelling(t), {
    message: `a predicate type is an https URI or one of ${Object.keys(PREDICATE_ALIASES).join(', ')}`,
  });

/** `trust.attestations[]`: what a repository's images must be attested with (issue 16). */
export const attestationRuleSchema = z
  .strictObject({
    repos: z.array(z.string().min(1)).min(1),
    /** Names of trusted keys (files `<name>.pub` in trust.keysDir) whose attestations count. */
    keys: z.array(z.string().min(1)).default([]),
    /** Keyless identities (Fulcio certificates, needs trust.trustedRoot) whose attestations count. */
    identities: z.array(identityRuleSchema).max(64).default([]),
    /** Predicate types that must be present, signed by one of `keys`, about the served digest. */
    require: z.array(predicateType).default([]),
    /** A signed vulnerability scan is required; findings above maxSeverity refuse the image. */
    vulnerabilities: z
      .strictObject({
        maxSeverity: severity,
        /** The newest scan must have finished at most this long ago, at pull time. */
        maxScanAgeHours: z
          .number()
          .positive()
          .max(24 * 365)
          .optional(),
      })
      .optional(),
    /** A signed SBOM (CycloneDX or SPDX) is required, with none of these packages or licences. */
    sbom: z
      .strictObject({
        deniedPackages: z.array(z.string().min(1).max(256)).max(1000).default([]),
        deniedLicenses: z.array(z.string().min(1).max(256)).max(1000).default([]),
      })
      .optional(),
    /** A signed SLSA v1 provenance is required, matching what is given. */
    provenance: z
      .strictObject({
        builderId: z.string().min(1).max(1024).optional(),
        sourceRepo: z.string().min(1).max(1024).optional(),
        sourceRef: z.string().min(1).max(1024).optional(),
      })
      .optional(),
    mode: z.enum(['enforce', 'audit']).default('enforce'),
  })
  .refine((r) => r.keys.length > 0 || r.identities.length > 0, {
    message: 'an attestation rule names at least one key or identity whose attestations count',
    path: ['keys'],
  });

/**
 * The Sigstore sources of a parsed trust section as the trust root supply reads them: the
 * `trustedRoot` shorthand first, then `sigstore` in order (names filled in by the schema).
 */
export function sigstoreSourcesOf(trust: {
  trustedRoot?: string | undefined;
  sigstore: ReadonlyArray<z.infer<typeof sigstoreSourceSchema>>;
}): SigstoreSource[] {
  return [
    ...(trust.trustedRoot !== undefined
      ? [{ kind: 'file' as const, name: 'trustedRoot', trustedRoot: trust.trustedRoot }]
      : []),
    ...trust.sigstore.map((source): SigstoreSource => {
      const s = withDefaults(source);
      return s.tuf
        ? { kind: 'tuf', ...s.tuf, name: s.name }
        : { kind: 'file', name: s.name, trustedRoot: s.trustedRoot! };
    }),
  ];
}

/** True when a mirror is an http(s) URL, false for a directory. */
export const isMirrorUrl = (mirror: string): boolean => /^https?:\/\//i.test(mirror);

/** A name for logs, metrics and denials: letters, digits, dot, dash, underscore. */
const sourceName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'a name is 1-64 letters, digits, dots, dashes or underscores');

/**
 * One supply of a Sigstore trusted root (issue 15): a `trusted_root.json` file (air-gapped), or a
 * TUF repository (a URL, or a directory laid out like one) updated from a pinned, offline-signed
 * TUF root. Exactly one of `trustedRoot` and `tuf`.
 */
export const sigstoreSourceSchema = z
  .strictObject({
    name: sourceName.optional(),
    trustedRoot: z.string().min(1).optional(),
    tuf: z
      .strictObject({
        /** The repository: an http(s) URL (metadata at its root, targets under targets/) or a directory. */
        mirror: z
          .string()
          .min(1)
          .refine((m) => !m.includes('://') || (isMirrorUrl(m) && URL.canParse(m)), {
            message: 'a mirror is an http(s) URL or a directory',
          }),
        /** The pinned TUF root.json the chain starts from (distributed out of band, offline-signed). */
        root: z.string().min(1),
        /** Where verified TUF metadata and the target are kept; default: tuf-cache/<name>. */
        cacheDir: z.string().min(1).optional(),
        /** The target holding the trusted root. */
        target: z.string().min(1).default('trusted_root.json'),
        /** How often the repository is checked for a new trusted root. */
        refreshSeconds: z
          .number()
          .int()
          .min(60)
          .max(7 * 86_400)
          .default(3600),
        /** Time allowed for one metadata or target download. */
        timeoutSeconds: z.number().int().min(1).max(300).default(30),
      })
      .optional(),
  })
  .refine((s) => (s.trustedRoot === undefined) !== (s.tuf === undefined), {
    message: 'a trust.sigstore source has exactly one of trustedRoot (a file) or tuf (a repository)',
  });

/** A source as the trust root supply reads it (names filled in, after path resolution). */
export type SigstoreSource =
  | { kind: 'file'; name: string; trustedRoot: string }
  | {
      kind: 'tuf';
      name: string;
      mirror: string;
      root: string;
      cacheDir: string;
      target: string;
      refreshSeconds: number;
      timeoutSeconds: number;
    };

type SourceConfig = z.infer<typeof sigstoreSourceSchema>;
/** A source with its name and (TUF) cache folder filled in: tuf-cache/<name> by default. */
function withDefaults(s: SourceConfig): Omit<SourceConfig, 'name' | 'tuf'> & {
  name: string;
  tuf?: NonNullable<SourceConfig['tuf']> & { cacheDir: string };
} {
  const name = s.name ?? defaultSourceName(s);
  const { tuf, ...rest } = s;
  return tuf
    ? { ...rest, name, tuf: { ...tuf, cacheDir: tuf.cacheDir ?? `tuf-cache/${name}` } }
    : { ...rest, name };
}

/** The default name of a source: the mirror's host or the file's or directory's base name. */
function defaultSourceName(s: z.infer<typeof sigstoreSourceSchema>): string {
  const where = s.tuf?.mirror ?? s.trustedRoot ?? '';
  let base = where;
  if (s.tuf && isMirrorUrl(where)) {
    try {
      base = new URL(where).host;
    } catch {
      base = where;
    }
  } else {
    base =
      where
        .replace(/[\\/]+$/, '')
        .split(/[\\/]/)
        .pop() ?? where;
  }
  const clean = base.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[^A-Za-z0-9]+/, '');
  return (clean || 'sigstore').slice(0, 64);
}

const configObject = z.strictObject({
  listen: z
    .strictObject({
      host: restartOnly(z.string().default('127.0.0.1'), LISTENER),
      port: restartOnly(z.number().int().min(0).max(65535).default(5443), LISTENER),
      /** Request head limits: bytes (request line and header fields) and header lines; more is 431. */
      maxHeaderBytes: restartOnly(
        z
          .number()
          .int()
          .min(8 * 1024)
          .max(1024 * 1024)
          .default(32 * 1024),
        LISTENER,
      ),
      maxHeaders: restartOnly(z.number().int().min(32).max(1000).default(100), LISTENER),
    })
    .prefault({}),
  /** The URL clients use to reach trustgate (token realm); defaults to https://host:port. */
  publicUrl: reloadable(z.url().optional(), 'new challenges name the new token realm'),
  tls: z.strictObject({
    cert: reloadable(z.string().min(1), 'new TLS handshakes use the new certificate'),
    key: reloadable(z.string().min(1), 'new TLS handshakes use the new key'),
    /** CA bundle for mTLS client certificates; when set, client certificates are requested (not required). */
    clientCa: restartOnly(
      z.string().min(1).optional(),
      'whether client certificates are requested is fixed when the listener starts (the file itself is re-read on every SIGHUP)',
    ),
    minVersion: reloadable(
      z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
      'new TLS handshakes use the new minimum',
    ),
  }),
  upstream: z.strictObject({
    url: restartOnly(z.url(), UPSTREAM),
    /** Time allowed for the upstream to answer headers. */
    timeoutMs: restartOnly(z.number().int().min(100).default(30_000), UPSTREAM),
    /** Pooled connections to the registry: blob relays (limits.blobRelays) and the rest together. */
    maxSockets: restartOnly(z.number().int().min(2).default(256), UPSTREAM),
    /**
     * How GET/HEAD answers are read from a plain-http registry: `direct` (trustgate's pooled
     * reader, src/registry/direct-reader.ts: blob bodies relayed with 1 MiB reads and no copy,
     * manifests and signatures read whole) or `node` (Node's http client; http-proxy-3 for
     * blobs). An https upstream always uses `node`.
     */
    reads: restartOnly(z.enum(['direct', 'node']).default('direct'), UPSTREAM),
  }),
  auth: z
    .strictObject({
      service: reloadable(
        z.string().min(1).default('trustgate'),
        'challenges, the token endpoint and new tokens use the new service; tokens for the old one stop verifying',
      ),
      issuer: reloadable(
        z.string().min(1).default('trustgate'),
        'new tokens carry the new issuer; tokens of the old one stop verifying',
      ),
      tokenTtlSeconds: reloadable(
        z.number().int().min(60).max(86_400).default(300),
        'new tokens get the new lifetime; a lower one also ends older tokens sooner',
      ),
      refreshTtlSeconds: reloadable(
        z
          .number()
          .int()
          .min(60)
          .default(7 * 86_400),
        'new refresh tokens get the new lifetime; a lower one also ends older ones sooner',
      ),
      /** Directory holding the token signing keys (created on first start). */
      tokenKeyDir: restartOnly(
        z.string().default('keys/token'),
        'token keys are loaded at start (docs/operating.md, token-signing key rotation)',
      ),
      /** The kid (RFC 7638 thumbprint) of the token key that signs; default: the newest file. */
      signingKid: restartOnly(
        z
          .string()
          .regex(/^[A-Za-z0-9_-]{43}$/, 'a kid is the 43-character base64url RFC 7638 thumbprint')
          .optional(),
        'token keys are loaded at start (docs/operating.md, token-signing key rotation)',
      ),
      htpasswd: reloadable(z.string().optional(), CREDENTIALS),
      /** Robot accounts: name -> bcrypt hash of the secret. */
      robotsFile: reloadable(z.string().optional(), CREDENTIALS),
      /** mTLS: which certificate subject field names the identity. */
      mtlsIdentity: restartOnly(
        z.enum(['CN', 'subject']).default('CN'),
        'the authenticator is built at start',
      ),
      /** Failed logins per account before 429, and the window. */
      maxFailures: reloadable(z.number().int().min(1).default(5), CREDENTIALS),
      failureWindowSeconds: reloadable(z.number().int().min(1).default(300), CREDENTIALS),
      /** Failed logins from one client address (socket address; IPv6 by /64) before 429; default 4 x maxFailures. */
      maxFailuresPerAddress: reloadable(z.number().int().min(1).optional(), CREDENTIALS),
    })
    .prefault({}),
  policy: z
    .strictObject({
      admins: reloadable(z.array(principal).default([]), POLICY),
      groups: reloadable(z.record(z.string(), z.array(z.string())).default({}), POLICY),
      access: reloadable(z.array(accessRuleSchema).default([]), POLICY),
    })
    .prefault({}),
  trust: z
    .strictObject({
      keysDir: reloadable(
        z.string().default('keys/trusted'),
        'the keyring reads and watches the new directory (a new trust epoch when the keys differ)',
      ),
      rules: reloadable(
        z.array(trustRuleSchema).default([]),
        'new verifications use the new rules (a new trust epoch)',
      ),
      /**
       * Shorthand for one file source: `trustedRoot: F` is `sigstore: [{trustedRoot: F}]` (it is put
       * first in the list). A Sigstore trusted_root.json: the Rekor keys (and, for keyless, Fulcio
       * CAs, CT logs, timestamp authorities) signatures are verified with.
       */
      trustedRoot: restartOnly(z.string().min(1).optional(), 'the trusted root is read at start'),
      /** Sigstore trusted roots (issue 15): files and TUF repositories; all are trusted. */
      sigstore: restartOnly(
        z.array(sigstoreSourceSchema).default([]),
        'files are read and TUF repositories are first checked at start (a SIGHUP refreshes the TUF sources already configured)',
      ),
      /** Attestation gates per repository pattern (first match applies). */
      attestations: reloadable(
        z.array(attestationRuleSchema).default([]),
        'new pulls use the new attestation rules (a new trust epoch)',
      ),
      /** Vulnerability exceptions granted through the admin API (a JSON file trustgate writes). */
      exceptionsFile: restartOnly(
        z.string().default('keys/exceptions.json'),
        'the exceptions file is opened and watched at start',
      ),
    })
    .superRefine((t, ctx) => {
      const names = new Map<string, number>();
      t.sigstore.forEach((s, i) => {
        const { name } = withDefaults(s);
        const first = names.get(name);
        if (first !== undefined) {
          ctx.addIssue({
            code: 'custom',
            message: `source name ${name} is also the name of trust.sigstore[${first}]; give each source its own name`,
            path: ['sigstore', i, 'name'],
          });
        } else names.set(name, i);
      });
      // Policy: each TUF source has its own cache folder. Two sharing one would read and write the
      // same metadata (one mirror's newer versions fail the other's refresh as a rollback, two
      // refreshes race on the files) and, with one pin and target, load each other's last good root.
      const cacheDirs = new Map<string, number>();
      t.sigstore.forEach((s, i) => {
        const { tuf } = withDefaults(s);
        if (!tuf) return;
        const dir = path.normalize(tuf.cacheDir);
        const key = dir.length > 1 ? dir.replace(/[\\/]+$/, '') : dir;
        const first = cacheDirs.get(key);
        if (first !== undefined) {
          ctx.addIssue({
            code: 'custom',
            message: `${s.tuf?.cacheDir ?? key} is also the cache directory of trust.sigstore[${first}]; give each TUF source its own cacheDir`,
            path: ['sigstore', i, 'tuf', 'cacheDir'],
          });
        } else cacheDirs.set(key, i);
      });
      if (t.trustedRoot !== undefined || t.sigstore.length > 0) return;
      const needsRoot = (what: string, at: (string | number)[]): void =>
        ctx.addIssue({
          code: 'custom',
          message: `${what} needs a Sigstore trusted root: configure trust.sigstore (or trust.trustedRoot)`,
          path: at,
        });
      t.rules.forEach((r, i) => {
        if (r.tlog === 'required') needsRoot('a trust rule with tlog: required', ['rules', i, 'tlog']);
      });
      // Policy: a keyless identity can only be verified against a trusted root (Fulcio CAs, CT and
      // Rekor logs); a rule naming identities without one would refuse every keyless signature.
      if (t.attestations.some((r) => r.identities.length > 0)) {
        needsRoot('an attestation rule with identities', ['sigstore']);
      }
      if (t.rules.some((r) => r.identities.length > 0)) {
        needsRoot('a trust rule with identities', ['sigstore']);
      }
    })
    // Names and cache folders filled in, in the same shape (the parsed config parses again: a
    // SIGHUP validates the effective config); load.ts resolves the paths against the config folder.
    .transform((t) => ({
      ...t,
      sigstore: t.sigstore.map(withDefaults),
    }))
    .prefault({}),
  cache: z
    .strictObject({
      redisUrl: restartOnly(z.string().optional(), CACHE),
      /** HMAC secret for values in Redis; required with redisUrl. */
      hmacSecret: restartOnly(z.string().min(32).optional(), CACHE),
      positiveTtlSeconds: restartOnly(z.number().int().min(1).default(3600), CACHE),
      negativeTtlSeconds: restartOnly(z.number().int().min(1).default(5), CACHE),
      localEntries: restartOnly(z.number().int().min(16).default(10_000), CACHE),
      redisTimeoutMs: restartOnly(z.number().int().min(10).default(250), CACHE),
      /**
       * The authoritative tag index (docs/security-model.md, "Tag index"): warm pulls by tag are
       * answered without asking the registry. Off by default: a tag moved in registry:2 behind
       * trustgate's back is served stale for up to maxAgeSeconds.
       */
      tagIndex: z
        .strictObject({
          enabled: reloadable(
            z.boolean().default(false),
            'pulls by tag use the index, or stop using it, at once; every reload flushes the index',
          ),
          /** The oldest an entry may be when it answers (from when its registry read or write was sent). */
          maxAgeSeconds: reloadable(
            z.number().int().min(1).max(3600).default(60),
            'every entry is judged against the new bound at its next use',
          ),
        })
        .prefault({}),
    })
    .prefault({})
    .refine((c) => !c.redisUrl || c.hmacSecret, {
      message: 'cache.hmacSecret (at least 32 characters) is required when cache.redisUrl is set',
      path: ['hmacSecret'],
    }),
  manifests: z
    .strictObject({
      /**
       * Layer URLs (foreign / non-distributable layers) a pushed manifest may carry: regular
       * expressions matched anywhere in the URL (anchor them), like registry:2's
       * validation.manifests.urls. Empty `allow` (the default) refuses every URL.
       */
      layerUrls: z
        .strictObject({
          allow: reloadable(z.array(regexSource).default([]), 'new pushes are checked against the new list'),
          deny: reloadable(z.array(regexSource).default([]), 'new pushes are checked against the new list'),
        })
        .prefault({}),
    })
    .prefault({}),
  /** Prometheus metrics on a plain-HTTP listener of their own; off when unset. */
  metrics: z
    .strictObject({
      host: restartOnly(z.string().default('127.0.0.1'), 'the metrics listener is bound at start'),
      port: restartOnly(z.number().int().min(0).max(65535), 'the metrics listener is bound at start'),
    })
    .optional(),
  /**
   * Bounds that keep slow or stalled clients from holding trustgate's connections to the registry
   * (issue 12, item 4: upstream pool starvation). See docs/operating.md, "Slow clients".
   */
  limits: z
    .strictObject({
      /** A client connection with response bytes waiting that accepts none for this long is closed. */
      writeIdleSeconds: restartOnly(z.number().int().min(1).max(3600).default(30), LIMITS),
      /**
       * Blob downloads relayed at once by this process; below upstream.maxSockets. Default: half
       * of upstream.maxSockets (128 of 256).
       */
      blobRelays: restartOnly(z.number().int().min(1).optional(), LIMITS),
      /** Blob downloads at once for one authenticated identity (beyond: 429). */
      blobRelaysPerIdentity: restartOnly(z.number().int().min(1).default(32), LIMITS),
      /** Blob downloads at once from one client address (socket address; IPv6 by /64; beyond: 429). */
      blobRelaysPerAddress: restartOnly(z.number().int().min(1).default(32), LIMITS),
    })
    .prefault({}),
  /** SIGTERM: stop accepting, let in-flight transfers finish for this long, then close. */
  shutdownGraceSeconds: reloadable(
    z.number().int().min(0).max(3600).default(30),
    'the next SIGTERM drains for the new period',
  ),
  log: z
    .strictObject({
      level: reloadable(
        z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
        'the log level changes at once (every component logger follows it)',
      ),
      auditFile: restartOnly(z.string().optional(), 'the audit file is opened at start'),
    })
    .prefault({}),
});

export const configSchema = configObject
  .refine((c) => c.limits.blobRelays === undefined || c.limits.blobRelays < c.upstream.maxSockets, {
    message:
      'limits.blobRelays must be below upstream.maxSockets: the difference is what tag lists, uploads and manifest pushes keep when blob downloads are at their limit',
    path: ['limits', 'blobRelays'],
  })
  // Policy: blob relays get at most `limits.blobRelays` of the upstream.maxSockets connections to the
  // registry and the control plane (manifests, tag lists, uploads, catalog, signatures) keeps the
  // rest, so blobs can never take every upstream socket. By default each gets half: uploads are
  // long streams too, and a rollout's blob downloads past the bound get a prompt 503 to retry.
  .transform((c) => ({
    ...c,
    limits: { ...c.limits, blobRelays: c.limits.blobRelays ?? Math.floor(c.upstream.maxSockets / 2) },
  }));

export type Config = z.infer<typeof configSchema>;
export type AccessRule = z.infer<typeof accessRuleSchema>;
export type TrustRule = z.infer<typeof trustRuleSchema>;
export type AttestationRule = z.infer<typeof attestationRuleSchema>;
