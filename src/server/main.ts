import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import type http from 'node:http';
import type net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import express from 'express';
import { pino } from 'pino';
import { loadConfigFile } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { GateError } from '../core/errors.js';
import { RelayLimiter } from '../core/relay-limits.js';
import { compilePolicy, type Policy } from '../core/policy.js';
import { compileTrustRules, type EffectiveTrustRule } from '../core/trust-policy.js';
import { compileLayerUrlPolicy, type LayerUrlPolicy } from '../core/layer-urls.js';
import { createVerdictCache, TieredVerdictCache, type VerdictCache } from '../cache/index.js';
import { ManifestCache } from '../cache/manifest-cache.js';
import { Keyring } from '../keys/keyring.js';
import { Upstream } from '../registry/upstream.js';
import { TrustService } from '../trust/service.js';
import { CredentialStore } from '../auth/credentials.js';
import { TokenService } from '../auth/tokens.js';
import { loadOrCreateTokenKeys } from '../auth/token-keys.js';
import { createTokenRouter } from '../auth/token-endpoint.js';
import { createAdminRouter } from './admin.js';
import { Audit } from './audit.js';
import { Authenticator } from './authenticate.js';
import { StreamForwarder } from './forward.js';
import { createLogger, loggerOptions, type Logger } from './log.js';
import { Metrics } from './metrics.js';
import { isClosing, lingeringClose } from './body.js';
import { sendError, writeRawError } from './respond.js';
import { answerPlainHttp } from './plain-http.js';
import { createV2Handler } from './v2.js';
import { ReferrersStore, upstreamEvidenceReader } from '../trust/referrers.js';
import { SigstoreRoots } from '../trust/sigstore-roots.js';
import { WriteIdleWatch } from './write-idle.js';

export interface Trustgate {
  port: number;
  url: string;
  server: https.Server;
  log: Logger;
  trust: TrustService;
  keyring: Keyring;
  /** The Sigstore trusted roots in force (trust.sigstore). */
  sigstoreRoots: SigstoreRoots;
  cache: VerdictCache;
  metrics: Metrics;
  metricsPort?: number;
  /** Re-reads the config file (SIGHUP). An invalid file is refused and the old config stays. */
  reload(): Promise<boolean>;
  /** Stops accepting, lets in-flight requests finish up to the grace period, then closes all. */
  close(graceMs?: number): Promise<void>;
}

export interface StartOptions {
  logger?: Logger;
  configPath?: string;
  now?: () => Date;
}

const KEYS_CHANNEL = 'tg:keys';
const MANIFEST_DELETED_CHANNEL = 'tg:manifest-deleted';

/** Policy: TLS 1.2 minimum with ECDHE and AEAD suites only (TLS 1.3 suites are all AEAD). */
const TLS_CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

function tlsOptions(config: Config): https.ServerOptions {
  return {
    cert: readFileSync(config.tls.cert),
    key: readFileSync(config.tls.key),
    minVersion: config.tls.minVersion,
    ciphers: TLS_CIPHERS,
    honorCipherOrder: true,
    ...(config.tls.clientCa
      ? // Policy: client certificates are requested, not required; an unverified one is ignored
        // (socket.authorized false) and the caller falls back to token authentication.
        { ca: readFileSync(config.tls.clientCa), requestCert: true, rejectUnauthorized: false }
      : {}),
  };
}

/** What a SIGHUP may change without a restart, derived from one config. */
interface Live {
  config: Config;
  policy: Policy;
  ruleFor: (repo: string) => EffectiveTrustRule;
  policyHash: string;
  credentials: CredentialStore;
  layerUrls: LayerUrlPolicy;
}

export async function startTrustgate(config: Config, opts: StartOptions = {}): Promise<Trustgate> {
  const log = opts.logger ?? createLogger(config.log.level);
  const auditLog = config.log.auditFile
    ? // The audit file gets the same redaction as the main log.
      pino(loggerOptions('info'), pino.destination({ dest: config.log.auditFile, mkdir: true, sync: false }))
    : log.child({ stream: 'audit' });
  const metrics = new Metrics();
  const audit = new Audit(auditLog, metrics);
  const now = opts.now ?? (() => new Date());

  const credLog = log.child({ component: 'credentials' });
  const derive = (c: Config, previous?: CredentialStore): Live => ({
    config: c,
    policy: compilePolicy(c.policy),
    ruleFor: compileTrustRules(c.trust.rules),
    policyHash: createHash('sha256').update(JSON.stringify(c.trust.rules)).digest('hex'),
    // A reload keeps the failure counters: a lockout survives SIGHUP.
    credentials: previous ? previous.reload(c.auth, credLog) : CredentialStore.load(c.auth, credLog),
    layerUrls: compileLayerUrlPolicy(c.manifests.layerUrls),
  });
  let live = derive(config);

  const upstreamLog = log.child({ component: 'upstream' });
  // Issue 12, item 4 (upstream pool starvation): blob relays have their own share of the upstream
  // pool and bounds per identity, per address and in all; the control plane keeps the rest.
  const { limits } = config;
  const upstream = new Upstream(
    { ...config.upstream, blobSockets: limits.blobRelays },
    {
      observe: (kind, seconds) => metrics.upstreamDuration.observe({ kind }, seconds),
      onFallback: (why) => upstreamLog.debug({ why }, 'registry answer handed to the general path'),
    },
  );
  const relays = new RelayLimiter({
    global: limits.blobRelays,
    perIdentity: limits.blobRelaysPerIdentity,
    perAddress: limits.blobRelaysPerAddress,
  });
  const forwarder = new StreamForwarder(upstream, log, metrics, relays);
  const writeIdle = new WriteIdleWatch(limits.writeIdleSeconds * 1000, (socket) => {
    metrics.writeIdleClosed.inc();
    log.debug(
      { client: socket.remoteAddress, queued: socket.writableLength },
      'client accepted no response bytes within limits.writeIdleSeconds: connection closed',
    );
  });
  const keyring = new Keyring(config.trust.keysDir, log.child({ component: 'keyring' }));
  keyring.start();
  const cache: VerdictCache = createVerdictCache(config.cache, log.child({ component: 'cache' }));
  metrics.watchCache(cache);
  const manifests = new ManifestCache(64 * 1024 * 1024, Math.min(config.cache.positiveTtlSeconds, 300));
  let onManifestDeleted: ((repo: string, digest: string) => void) | undefined;
  if (cache instanceof TieredVerdictCache) {
    // Replicas share keys/ (a volume); the nudge makes a change seen at once, not at the next poll.
    // Policy: the message is only a hint to re-read the directory; it carries nothing trusted.
    void cache.subscribe(KEYS_CHANNEL, () => keyring.reload());
    keyring.onChange(() => void cache.publish(KEYS_CHANNEL, String(Date.now())));
    // A manifest deleted through one replica leaves the others' manifest caches at once.
    // Policy: a hint can only drop a cached copy (the next pull asks the registry), never add one.
    void cache.subscribe(MANIFEST_DELETED_CHANNEL, (message) => {
      const at = message.lastIndexOf('@');
      if (at > 0 && message.length < 1024) manifests.delete(message.slice(0, at), message.slice(at + 1));
    });
    onManifestDeleted = (repo, digest) => void cache.publish(MANIFEST_DELETED_CHANNEL, `${repo}@${digest}`);
  }
  const referrers = new ReferrersStore(upstream, manifests);
  // Sigstore trusted roots (issue 15): files read now, TUF repositories checked once now and then
  // in the background. Sources are read at start: changing them takes a restart.
  const sigstoreRoots = new SigstoreRoots(config.trust.sigstoreSources, {
    log: log.child({ component: 'sigstore-roots' }),
    observe: (e) => {
      metrics.sigstoreRootRefreshes.inc({ source: e.source, outcome: e.outcome });
      metrics.sigstoreRootValid.set({ source: e.source }, e.hasRoot ? 1 : 0);
      if (e.lastSuccess)
        metrics.sigstoreRootVerified.set({ source: e.source }, e.lastSuccess.getTime() / 1000);
    },
  });
  await sigstoreRoots.start();
  for (const s of sigstoreRoots.status()) {
    metrics.sigstoreRootValid.set({ source: s.name }, s.ok ? 1 : 0);
    if (s.lastSuccess) metrics.sigstoreRootVerified.set({ source: s.name }, s.lastSuccess.getTime() / 1000);
  }
  // A new root changes sigstoreRoots.version(), part of the trust epoch: verdicts made under the
  // old root are not read again.
  sigstoreRoots.onChange((roots) =>
    log.info({ roots: roots.length }, 'Sigstore trusted roots changed: cached verdicts retired'),
  );
  const trust = new TrustService({
    evidence: upstreamEvidenceReader(upstream, referrers),
    trustedRoots: () => sigstoreRoots.current(),
    trustedRootsVersion: () => sigstoreRoots.version(),
    keyring,
    cache,
    ruleFor: (repo) => live.ruleFor(repo),
    policyHash: () => live.policyHash,
    positiveTtlSeconds: config.cache.positiveTtlSeconds,
    negativeTtlSeconds: config.cache.negativeTtlSeconds,
    now,
    onVerify: (seconds) => metrics.verifyDuration.observe(seconds),
  });

  const tokenKeys = await loadOrCreateTokenKeys(
    config.auth.tokenKeyDir,
    log.child({ component: 'token-keys' }),
    config.auth.signingKid,
  );
  const tokens = new TokenService({
    keys: tokenKeys,
    issuer: config.auth.issuer,
    service: config.auth.service,
    ttlSeconds: config.auth.tokenTtlSeconds,
    refreshTtlSeconds: config.auth.refreshTtlSeconds,
  });
  const auth = new Authenticator({
    tokens,
    policy: () => live.policy,
    mtlsIdentity: config.auth.mtlsIdentity,
    now,
  });

  const v2 = createV2Handler({
    upstream,
    forwarder,
    auth,
    trust,
    referrers,
    audit,
    log,
    metrics,
    manifests,
    onManifestDeleted,
    service: config.auth.service,
    realm: config.publicUrl ? new URL('/token', config.publicUrl).toString() : undefined,
    isAdmin: (p) => live.policy.isAdmin(p.identity),
    layerUrls: () => live.layerUrls,
  });

  let draining = false;
  const app = express();
  app.disable('x-powered-by');
  // Policy: never trust X-Forwarded-For; the socket address is the client address.
  app.set('trust proxy', false);
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    const checks = await readiness(upstream, keyring, cache, draining);
    metrics.upstreamUp.set(checks.upstream === 'ok' ? 1 : 0);
    res.status(checks.ready ? 200 : 503).json(checks);
  });
  app.use(
    createTokenRouter({
      tokens,
      credentials: {
        verify: (...a: Parameters<CredentialStore['verify']>) => live.credentials.verify(...a),
        accountVersion: (...a: Parameters<CredentialStore['accountVersion']>) =>
          live.credentials.accountVersion(...a),
      },
      mtlsIdentity: config.tls.clientCa ? config.auth.mtlsIdentity : undefined,
      policy: () => live.policy,
      service: config.auth.service,
      now,
      logger: log.child({ component: 'token' }),
      sendError: (res, err) => sendError(res, err, log),
    }),
  );
  // Credential files shared by replicas (a volume): a change made through another replica's admin
  // API, or by hand, is picked up within a second, like the key directory.
  let credentialsHash = credentialFilesHash(live.config.auth);
  const reloadCredentials = (): void => {
    // Read once per change: the admin API calls this after its own writes, the timer after others'.
    credentialsHash = credentialFilesHash(live.config.auth);
    try {
      live = { ...live, credentials: live.credentials.reload(live.config.auth, credLog) };
    } catch (err) {
      // Policy: credential files that cannot be read accept nobody until they can again (logins
      // get 401; tokens already issued live to their expiry), never the accounts last seen, and
      // the process keeps running.
      credLog.error(
        { err: String(err) },
        'credential files unreadable: no password or robot login is accepted until they are back',
      );
      const none = { ...live.config.auth, htpasswd: undefined, robotsFile: undefined };
      live = { ...live, credentials: live.credentials.reload(none, credLog) };
    }
  };
  const credentialsTimer = setInterval(() => {
    if (credentialFilesHash(live.config.auth) !== credentialsHash) reloadCredentials();
  }, 1000);
  credentialsTimer.unref();
  app.use(
    '/admin/v1',
    createAdminRouter({
      auth,
      policy: () => live.policy,
      config: () => live.config,
      trust,
      keyring,
      cache,
      upstream,
      audit,
      log: log.child({ component: 'admin' }),
      service: config.auth.service,
      realm: config.publicUrl ? new URL('/token', config.publicUrl).toString() : undefined,
      // After the admin API changed a credential file: re-read it (the token router reads live),
      // keeping the failure counters, so adding a user never lifts a lockout.
      reloadCredentials,
      now,
    }),
  );
  app.use((req, res) => {
    sendError(
      res,
      new GateError('UNSUPPORTED', `no such endpoint: ${req.method} ${req.path}`, { status: 404 }),
      log,
    );
  });

  // Request head limits (README: listen.maxHeaderBytes, listen.maxHeaders). Node's parser refuses
  // a head over maxHeaderSize itself (clientError below); it keeps at most maxHeadersCount header
  // lines and silently drops the rest, so it keeps one more than the limit and the handler refuses
  // a request that has it.
  const { maxHeaderBytes, maxHeaders } = config.listen;
  const headTooLarge = (what: string): GateError =>
    new GateError(
      'UNSUPPORTED',
      `request header section too large: ${what} (at most ${maxHeaderBytes} bytes and ${maxHeaders} header lines)`,
      { status: 431, headers: { connection: 'close' } },
    );
  const server = https.createServer(
    {
      ...tlsOptions(config),
      // Larger socket buffers than the 16 KiB default: fewer pause/resume turns per blob.
      highWaterMark: 256 * 1024,
      maxHeaderSize: maxHeaderBytes,
    },
    (req: http.IncomingMessage, res: http.ServerResponse) => {
      if (draining) res.setHeader('connection', 'close');
      if (req.rawHeaders.length / 2 > maxHeaders) {
        sendError(res, headTooLarge(`more than ${maxHeaders} header lines`), log, { path: req.url });
        return;
      }
      const url = req.url ?? '';
      if (url === '/v2' || url.startsWith('/v2/') || url.startsWith('/v2?')) v2(req, res);
      else app(req, res);
    },
  );
  server.maxHeadersCount = maxHeaders + 1;
  // Long blob transfers must not be cut by Node's default 5-minute request timeout; slow
  // header senders still are.
  server.requestTimeout = 0;
  server.headersTimeout = 30_000;
  server.keepAliveTimeout = 65_000;
  // A request Node's parser refused (head too large, malformed, too slow): an OCI error written
  // raw (there is no response object), then a lingering close, so the client reads the answer
  // instead of a reset caused by the bytes it was still sending (server/body.ts).
  server.on('clientError', (err: NodeJS.ErrnoException, duplex) => {
    const socket = duplex as net.Socket;
    if (isClosing(socket) || !socket.writable || err.code === 'ECONNRESET' || err.code === 'EPIPE') {
      log.debug({ err: String(err) }, 'client error');
      socket.destroy();
      return;
    }
    const e =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? headTooLarge(`more than ${maxHeaderBytes} bytes`)
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? new GateError('UNSUPPORTED', 'the request head did not arrive in time', { status: 408 })
          : err.code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW'
            ? new GateError('UNSUPPORTED', 'chunk extensions too large', { status: 413 })
            : new GateError('UNSUPPORTED', 'malformed HTTP request', { status: 400, logDetail: err.code });
    writeRawError(socket, e, log, { client: socket.remoteAddress });
    lingeringClose(socket);
  });
  server.on('tlsClientError', (err) => log.debug({ err: String(err) }, 'TLS handshake failed'));
  // Plain HTTP on this port gets `400 HTTP request to an HTTPS server`, not a closed connection.
  const plainHttp = answerPlainHttp(server, { log, firstByteTimeoutMs: 120_000 });
  server.on('secureConnection', (socket: TLSSocket) => writeIdle.watch(socket));

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.listen.port, config.listen.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const hostForUrl = config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host;
  const url = `https://${hostForUrl}:${port}`;
  const metricsServer = config.metrics
    ? await metrics.listen(config.metrics.host, config.metrics.port)
    : undefined;
  log.info({ url, upstream: config.upstream.url, metricsPort: metricsServer?.port }, 'trustgate listening');

  return {
    port,
    url,
    server,
    log,
    trust,
    keyring,
    sigstoreRoots,
    cache,
    metrics,
    metricsPort: metricsServer?.port,
    async reload() {
      if (!opts.configPath) {
        log.warn({}, 'reload asked, but trustgate was started without a config file');
        return false;
      }
      let next: Live;
      let tls: https.ServerOptions;
      try {
        const c = loadConfigFile(opts.configPath);
        next = derive(c, live.credentials);
        tls = tlsOptions(c);
        for (const key of ['listen', 'upstream', 'cache', 'limits'] as const) {
          if (JSON.stringify(c[key]) !== JSON.stringify(live.config[key])) {
            log.warn({ key }, `config ${key} changed: takes effect after a restart, not a reload`);
          }
        }
        if (JSON.stringify(c.trust.sigstoreSources) !== JSON.stringify(config.trust.sigstoreSources)) {
          log.warn(
            { key: 'trust.sigstore' },
            'config trust.sigstore changed: takes effect after a restart, not a reload',
          );
        }
      } catch (err) {
        // Policy: a bad new config never replaces a good running one.
        log.error(
          { err: (err as Error).message },
          'reload refused: the new configuration is invalid; the old one stays in force',
        );
        return false;
      }
      server.setSecureContext(tls);
      live = next;
      keyring.reload();
      // SIGHUP also checks the TUF repositories now (an operator who updated a directory mirror
      // need not wait for refreshSeconds); a failure keeps the last good root, as always.
      void sigstoreRoots.refresh();
      log.info(
        { config: opts.configPath },
        'configuration reloaded (certificates, policy, trust rules, credentials, keys)',
      );
      return true;
    },
    async close(graceMs = config.shutdownGraceSeconds * 1000) {
      draining = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      plainHttp.destroyPending();
      const deadline = new Promise<'deadline'>((r) => setTimeout(() => r('deadline'), graceMs).unref());
      if ((await Promise.race([closed, deadline])) === 'deadline') {
        log.warn({ graceMs }, 'grace period over: closing the connections still open');
        server.closeAllConnections();
        await closed;
      }
      keyring.stop();
      await sigstoreRoots.stop();
      writeIdle.close();
      clearInterval(credentialsTimer);
      forwarder.close();
      upstream.close();
      await metricsServer?.close();
      await cache.close();
    },
  };
}

async function readiness(
  upstream: Upstream,
  keyring: Keyring,
  cache: VerdictCache,
  draining: boolean,
): Promise<{
  ready: boolean;
  draining: boolean;
  upstream: string;
  keys: number;
  keyErrors: number;
  cache: unknown;
}> {
  const upstreamState = await upstream.probe();
  const snap = keyring.snapshot;
  return {
    ready: upstreamState === 'ok' && !draining,
    draining,
    upstream: upstreamState,
    keys: snap.keys.size,
    keyErrors: snap.errors.length,
    cache: cache.stats(),
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
