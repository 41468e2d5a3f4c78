import { z } from 'zod';

/**
 * The one configuration schema. `config/load.ts` reads YAML, applies environment overrides,
 * and validates with this; errors name the key path and the problem.
 */

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

export const trustRuleSchema = z.strictObject({
  repos: z.array(z.string().min(1)).min(1),
  /** Names of trusted keys (files `<name>.pub` in trust.keysDir). */
  keys: z.array(z.string().min(1)).default([]),
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
      host: z.string().default('127.0.0.1'),
      port: z.number().int().min(0).max(65535).default(5443),
      /** Request head limits: bytes (request line and header fields) and header lines; more is 431. */
      maxHeaderBytes: z
        .number()
        .int()
        .min(8 * 1024)
        .max(1024 * 1024)
        .default(32 * 1024),
      maxHeaders: z.number().int().min(32).max(1000).default(100),
    })
    .prefault({}),
  /** The URL clients use to reach trustgate (token realm); defaults to https://host:port. */
  publicUrl: z.url().optional(),
  tls: z.strictObject({
    cert: z.string().min(1),
    key: z.string().min(1),
    /** CA bundle for mTLS client certificates; when set, client certificates are requested (not required). */
    clientCa: z.string().min(1).optional(),
    minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
  }),
  upstream: z.strictObject({
    url: z.url(),
    /** Time allowed for the upstream to answer headers. */
    timeoutMs: z.number().int().min(100).default(30_000),
    /** Pooled connections to the registry: blob relays (limits.blobRelays) and the rest together. */
    maxSockets: z.number().int().min(2).default(256),
    /**
     * How GET/HEAD answers are read from a plain-http registry: `direct` (trustgate's pooled
     * reader, src/registry/direct-reader.ts: blob bodies relayed with 1 MiB reads and no copy,
     * manifests and signatures read whole) or `node` (Node's http client; http-proxy-3 for
     * blobs). An https upstream always uses `node`.
     */
    reads: z.enum(['direct', 'node']).default('direct'),
  }),
  auth: z
    .strictObject({
      service: z.string().min(1).default('trustgate'),
      issuer: z.string().min(1).default('trustgate'),
      tokenTtlSeconds: z.number().int().min(60).max(86_400).default(300),
      refreshTtlSeconds: z
        .number()
        .int()
        .min(60)
        .default(7 * 86_400),
      /** Directory holding the token signing keys (created on first start). */
      tokenKeyDir: z.string().default('keys/token'),
      /** The kid (RFC 7638 thumbprint) of the token key that signs; default: the newest file. */
      signingKid: z
        .string()
        .regex(/^[A-Za-z0-9_-]{43}$/, 'a kid is the 43-character base64url RFC 7638 thumbprint')
        .optional(),
      htpasswd: z.string().optional(),
      /** Robot accounts: name -> bcrypt hash of the secret. */
      robotsFile: z.string().optional(),
      /** mTLS: which certificate subject field names the identity. */
      mtlsIdentity: z.enum(['CN', 'subject']).default('CN'),
      /** Failed logins per account before 429, and the window. */
      maxFailures: z.number().int().min(1).default(5),
      failureWindowSeconds: z.number().int().min(1).default(300),
      /** Failed logins from one client address (socket address; IPv6 by /64) before 429; default 4 x maxFailures. */
      maxFailuresPerAddress: z.number().int().min(1).optional(),
    })
    .prefault({}),
  policy: z
    .strictObject({
      admins: z.array(principal).default([]),
      groups: z.record(z.string(), z.array(z.string())).default({}),
      access: z.array(accessRuleSchema).default([]),
    })
    .prefault({}),
  trust: z
    .strictObject({
      keysDir: z.string().default('keys/trusted'),
      rules: z.array(trustRuleSchema).default([]),
      /**
       * Shorthand for one file source: `trustedRoot: F` is `sigstore: [{trustedRoot: F}]` (it is put
       * first in the list). A Sigstore trusted_root.json: the Rekor keys (and, for keyless, Fulcio
       * CAs, CT logs, timestamp authorities) signatures are verified with.
       */
      trustedRoot: z.string().min(1).optional(),
      /** Sigstore trusted roots (issue 15): files and TUF repositories; all are trusted. */
      sigstore: z.array(sigstoreSourceSchema).default([]),
    })
    .superRefine((t, ctx) => {
      const names = new Map<string, number>();
      t.sigstore.forEach((s, i) => {
        const name = s.name ?? defaultSourceName(s);
        const first = names.get(name);
        if (first !== undefined) {
          ctx.addIssue({
            code: 'custom',
            message: `source name ${name} is also the name of trust.sigstore[${first}]; give each source its own name`,
            path: ['sigstore', i, 'name'],
          });
        } else names.set(name, i);
      });
      if (t.trustedRoot === undefined && t.sigstore.length === 0) {
        t.rules.forEach((r, i) => {
          if (r.tlog === 'required') {
            ctx.addIssue({
              code: 'custom',
              message:
                'a trust rule with tlog: required needs a Sigstore trusted root: configure trust.sigstore (or trust.trustedRoot)',
              path: ['rules', i, 'tlog'],
            });
          }
        });
      }
    })
    .transform((t) => ({
      ...t,
      // The supply reads one normalised list: the shorthand first, names filled in. Paths are
      // resolved against the config file's folder by load.ts.
      sigstoreSources: [
        ...(t.trustedRoot !== undefined
          ? [{ kind: 'file' as const, name: 'trustedRoot', trustedRoot: t.trustedRoot }]
          : []),
        ...t.sigstore.map((s): SigstoreSource => {
          const name = s.name ?? defaultSourceName(s);
          return s.tuf
            ? { kind: 'tuf', name, ...s.tuf, cacheDir: s.tuf.cacheDir ?? `tuf-cache/${name}` }
            : { kind: 'file', name, trustedRoot: s.trustedRoot! };
        }),
      ],
    }))
    .prefault({}),
  cache: z
    .strictObject({
      redisUrl: z.string().optional(),
      /** HMAC secret for values in Redis; required with redisUrl. */
      hmacSecret: z.string().min(32).optional(),
      positiveTtlSeconds: z.number().int().min(1).default(3600),
      negativeTtlSeconds: z.number().int().min(1).default(5),
      localEntries: z.number().int().min(16).default(10_000),
      redisTimeoutMs: z.number().int().min(10).default(250),
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
          allow: z.array(regexSource).default([]),
          deny: z.array(regexSource).default([]),
        })
        .prefault({}),
    })
    .prefault({}),
  /** Prometheus metrics on a plain-HTTP listener of their own; off when unset. */
  metrics: z
    .strictObject({
      host: z.string().default('127.0.0.1'),
      port: z.number().int().min(0).max(65535),
    })
    .optional(),
  /**
   * Bounds that keep slow or stalled clients from holding trustgate's connections to the registry
   * (issue 12, item 4: upstream pool starvation). See docs/operating.md, "Slow clients".
   */
  limits: z
    .strictObject({
      /** A client connection with response bytes waiting that accepts none for this long is closed. */
      writeIdleSeconds: z.number().int().min(1).max(3600).default(30),
      /**
       * Blob downloads relayed at once by this process; below upstream.maxSockets. Default: half
       * of upstream.maxSockets (128 of 256).
       */
      blobRelays: z.number().int().min(1).optional(),
      /** Blob downloads at once for one authenticated identity (beyond: 429). */
      blobRelaysPerIdentity: z.number().int().min(1).default(32),
      /** Blob downloads at once from one client address (socket address; IPv6 by /64; beyond: 429). */
      blobRelaysPerAddress: z.number().int().min(1).default(32),
    })
    .prefault({}),
  /** SIGTERM: stop accepting, let in-flight transfers finish for this long, then close. */
  shutdownGraceSeconds: z.number().int().min(0).max(3600).default(30),
  log: z
    .strictObject({
      level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
      auditFile: z.string().optional(),
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
