import { mkdtempSync, mkdirSync, writeFileSync, rmSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import bcrypt from 'bcryptjs';
import { parseConfig } from '../../src/config/load.js';
import type { Config, TrustRule } from '../../src/config/schema.js';
import { startTrustgate, type Trustgate } from '../../src/server/main.js';
import { createLogger, type Logger } from '../../src/server/log.js';
import { generateDevCertificates } from '../../src/cli/certs.js';

export interface TestGateOptions {
  registryUrl: string;
  /** user -> password; written as an htpasswd file with bcrypt ($2y$, like `htpasswd -B`). */
  users?: Record<string, string>;
  policy?: Partial<Config['policy']>;
  trustRules?: Array<Partial<TrustRule> & { repos: string[] }>;
  /** trust.attestations (attestation gates). */
  attestations?: unknown[];
  /** name -> PEM public key, written to the trusted keys directory. */
  trustedKeys?: Record<string, string>;
  /** A Sigstore trusted_root.json (its JSON value), written to a file named by trust.trustedRoot. */
  trustedRoot?: unknown;
  /** Request client certificates signed by the test CA. */
  mtls?: boolean;
  /** More names for the server certificate (besides localhost and 127.0.0.1). */
  certHosts?: string[];
  redisUrl?: string;
  /** cache.tagIndex (off unless given, or unless TRUSTGATE_TEST_TAG_INDEX=1 forces it on). */
  tagIndex?: { enabled?: boolean; maxAgeSeconds?: number };
  /** Share a trusted-keys directory between gates (replicas); default: a fresh one. */
  keysDir?: string;
  /** Share the token signing keys between gates (replicas); default: a fresh one. */
  tokenKeyDir?: string;
  extra?: Record<string, unknown>;
  /** trust.sigstore sources (Sigstore trusted roots: files, TUF repositories). */
  sigstore?: unknown[];
  /** Use this logger (e.g. to capture audit events); default: silent unless TRUSTGATE_TEST_LOG. */
  logger?: Logger;
  /** Configure an (empty) robots file, so robots can be added through the admin API. */
  robots?: boolean;
  /** Write the config to a file and start from it, so `rewriteConfig` + `tg.reload()` work (SIGHUP). */
  configFile?: boolean;
}

export interface TestGate {
  tg: Trustgate;
  url: string;
  host: string;
  dir: string;
  /** A skopeo/containers cert dir holding ca.crt (and a client pair when mtls). */
  certDir: string;
  ca: string;
  keysDir: string;
  clientCert?: { cert: string; key: string };
  /** With `configFile`: rewrites the config file through `change` (then call `tg.reload()`). */
  rewriteConfig(change: (raw: Record<string, unknown>) => void): void;
  close(): Promise<void>;
}

const testLogLevel = process.env['TRUSTGATE_TEST_LOG'] ?? 'silent';

export async function startTestGate(o: TestGateOptions): Promise<TestGate> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'trustgate-test-'));
  const certs = await generateDevCertificates({
    dir: path.join(dir, 'certs'),
    hosts: ['localhost', '127.0.0.1', ...(o.certHosts ?? [])],
    clientNames: o.mtls ? ['build-01'] : [],
  });
  const certDir = path.join(dir, 'skopeo-certs');
  mkdirSync(certDir);
  writeFileSync(path.join(certDir, 'ca.crt'), readFileSync(certs.caCert));
  let clientCert: { cert: string; key: string } | undefined;
  const client = certs.clients['build-01'];
  if (client) {
    clientCert = { cert: readFileSync(client.cert, 'utf8'), key: readFileSync(client.key, 'utf8') };
  }
  const htpasswd = path.join(dir, 'htpasswd');
  writeFileSync(
    htpasswd,
    Object.entries(o.users ?? {})
      .map(([u, p]) => `${u}:${bcrypt.hashSync(p, 4).replace(/^\$2b\$/, '$2y$')}\n`)
      .join(''),
  );
  const keysDir = o.keysDir ?? path.join(dir, 'keys', 'trusted');
  mkdirSync(keysDir, { recursive: true });
  for (const [name, pem] of Object.entries(o.trustedKeys ?? {}))
    writeFileSync(path.join(keysDir, `${name}.pub`), pem);
  const raw = {
    listen: { host: '127.0.0.1', port: 0 },
    tls: { cert: certs.serverCert, key: certs.serverKey, ...(o.mtls ? { clientCa: certs.caCert } : {}) },
    upstream: { url: o.registryUrl, timeoutMs: 10_000 },
    auth: {
      htpasswd,
      tokenKeyDir: o.tokenKeyDir ?? path.join(dir, 'keys', 'token'),
      ...(o.robots ? { robotsFile: robotsFileFor(dir) } : {}),
    },
    policy: { admins: [], groups: {}, access: [], ...o.policy },
    trust: {
      keysDir,
      rules: o.trustRules ?? [],
      ...(o.attestations ? { attestations: o.attestations } : {}),
      ...(o.sigstore ? { sigstore: o.sigstore } : {}),
      ...(o.trustedRoot !== undefined ? { trustedRoot: trustedRootFile(dir, o.trustedRoot) } : {}),
    },
    cache: {
      negativeTtlSeconds: 1,
      ...(o.redisUrl ? { redisUrl: o.redisUrl, hmacSecret: 'x'.repeat(32) } : {}),
      ...(o.tagIndex ? { tagIndex: o.tagIndex } : {}),
    },
    log: { level: testLogLevel },
    ...o.extra,
  };
  if (process.env['TRUSTGATE_TEST_TAG_INDEX'] === '1') forceTagIndex(raw);
  const config = parseConfig(raw, {}, dir);
  const configPath = path.join(dir, 'trustgate.yaml');
  // JSON is YAML: the file holds exactly the raw object the config was parsed from.
  if (o.configFile) writeFileSync(configPath, JSON.stringify(raw));
  const tg = await startTrustgate(config, {
    logger: o.logger ?? createLogger(testLogLevel),
    ...(o.configFile ? { configPath } : {}),
  });
  return {
    tg,
    url: tg.url,
    host: `127.0.0.1:${tg.port}`,
    dir,
    certDir,
    ca: readFileSync(certs.caCert, 'utf8'),
    keysDir,
    clientCert,
    rewriteConfig(change) {
      if (!o.configFile) throw new Error('startTestGate: rewriteConfig needs configFile: true');
      const next = JSON.parse(readFileSync(configPath, 'utf8')) as Record<string, unknown>;
      change(next);
      writeFileSync(configPath, JSON.stringify(next));
    },
    async close() {
      await tg.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * TRUSTGATE_TEST_TAG_INDEX=1: every gate a test starts runs with the tag index on (a test run, never
 * a default), to see which tests change outcome with it (docs/security-model.md, "Tag index").
 */
function forceTagIndex(raw: { cache?: unknown }): void {
  const cache = (raw.cache ?? {}) as { tagIndex?: object };
  raw.cache = { ...cache, tagIndex: { ...cache.tagIndex, enabled: true } };
}

function trustedRootFile(dir: string, root: unknown): string {
  const f = path.join(dir, 'trusted_root.json');
  writeFileSync(f, JSON.stringify(root));
  return f;
}

function robotsFileFor(dir: string): string {
  const f = path.join(dir, 'robots');
  writeFileSync(f, '');
  return f;
}
