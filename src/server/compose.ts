/**
 * The composition root's parts: each builder takes the configuration at start (for what is
 * restart-only) and the one holder of live values (for what a SIGHUP changes), and returns parts
 * wired together. src/server/main.ts starts them, reloads and closes them.
 */
import { readFileSync } from 'node:fs';
import https from 'node:https';
import type http from 'node:http';
import type net from 'node:net';
import type { TLSSocket } from 'node:tls';
import express from 'express';
import { pino } from 'pino';
import { sigstoreSourcesOf, type Config } from '../config/schema.js';
import { GateError } from '../core/errors.js';
import { RelayLimiter } from '../core/relay-limits.js';
import { createSharedState, type ReplicaBus, type VerdictCache } from '../cache/index.js';
import { ManifestCache } from '../cache/manifest-cache.js';
import { TagIndex } from '../cache/tag-index.js';
import { Keyring } from '../keys/keyring.js';
import { ExceptionStore } from '../keys/exceptions.js';
import { Upstream } from '../registry/upstream.js';
import { upstreamFallbackChannel, type UpstreamFallbackEvent } from '../registry/events.js';
import { TrustService } from '../trust/service.js';
import { TokenService, type TokenSettings } from '../auth/tokens.js';
import { loadOrCreateTokenKeys } from '../auth/token-keys.js';
import { ClientCaAnchors } from '../auth/mtls.js';
import { createTokenRouter } from '../auth/token-endpoint.js';
import { ReferrersStore, upstreamEvidenceReader } from '../trust/referrers.js';
import { SigstoreRoots } from '../trust/sigstore-roots.js';
import { createAdminRouter } from './admin.js';
import { Audit } from './audit.js';
import { Authenticator } from './authenticate.js';
import { StreamForwarder } from './forward.js';
import { createAuditLogger, type Logger } from './log.js';
import { Metrics } from './metrics.js';
import { subscribeFrom } from './observe.js';
import { isClosing, lingeringClose } from './body.js';
import { sendError, writeRawError } from './respond.js';
import { answerPlainHttp } from './plain-http.js';
import { createV2Handler } from './v2.js';
import { WriteIdleWatch } from './write-idle.js';
import type { LiveSettings } from './live.js';

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

/** The TLS context for a config (files read now; a reload builds a new one). */
export function tlsOptions(config: Config): https.ServerOptions {
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

/** The parts behind the listener. */
export interface Parts {
  metrics: Metrics;
  audit: Audit;
  upstream: Upstream;
  forwarder: StreamForwarder;
  keyring: Keyring;
  /** Vulnerability exceptions of the attestation gates (trust.exceptionsFile). */
  exceptions: ExceptionStore;
  cache: VerdictCache;
  bus: ReplicaBus;
  manifests: ManifestCache;
  /** The authoritative tag index (cache.tagIndex; off by default). */
  tagIndex: TagIndex;
  referrers: ReferrersStore;
  trust: TrustService;
  /** The Sigstore trusted roots in force (trust.sigstore, trust.trustedRoot). */
  sigstoreRoots: SigstoreRoots;
  tokens: TokenService;
  auth: Authenticator;
  /** The client CA certificates in force; a reload replaces them (tls.clientCa's contents). */
  clientCa: ClientCaAnchors;
  /** Blob relays at once, per identity and per address (limits.*). */
  relays: RelayLimiter;
  /** Ends the parts' event subscriptions (metrics, the upstream's fallback log). */
  unobserve(): void;
}

/** Builds the request-independent parts: upstream, keys, cache, trust and token services. */
export async function buildParts(
  config: Config,
  live: LiveSettings,
  log: Logger,
  now: () => Date,
): Promise<Parts> {
  const metrics = new Metrics();
  const auditLog = createAuditLogger(
    config.log.auditFile
      ? { file: pino.destination({ dest: config.log.auditFile, mkdir: true, sync: false }) }
      : // Policy: audit records never depend on log.level (a SIGHUP to `warn` must not silence
        // them), so they get a logger of their own at info, writing to the main log's own stream: a
        // child would follow the parent's level (pino passes level changes on to children).
        { mainLogStream: (log as unknown as Record<symbol, pino.DestinationStream>)[pino.symbols.streamSym] },
  );
  const audit = new Audit(auditLog, metrics);

  const upstreamLog = log.child({ component: 'upstream' });
  // Issue 12, item 4 (upstream pool starvation): blob relays have their own share of the upstream
  // pool and bounds per identity, per address and in all; the control plane keeps the rest.
  const { limits } = config;
  const upstream = new Upstream({ ...config.upstream, blobSockets: limits.blobRelays });
  const observers = [
    metrics.watchUpstream(upstream),
    subscribeFrom<UpstreamFallbackEvent>(upstreamFallbackChannel, upstream, ({ why }) =>
      upstreamLog.debug({ why }, 'registry answer handed to the general path'),
    ),
  ];
  const relays = new RelayLimiter({
    global: limits.blobRelays,
    perIdentity: limits.blobRelaysPerIdentity,
    perAddress: limits.blobRelaysPerAddress,
  });
  const forwarder = new StreamForwarder(upstream, log, metrics, relays);

  const keyring = new Keyring(config.trust.keysDir, log.child({ component: 'keyring' }));
  keyring.start();
  const { cache, bus } = createSharedState(config.cache, log.child({ component: 'cache' }));
  metrics.watchCache(cache);
  const manifests = new ManifestCache(64 * 1024 * 1024, Math.min(config.cache.positiveTtlSeconds, 300));
  const tagIndex = new TagIndex({
    settings: () => live.config.cache.tagIndex,
    bus,
    manifests,
    log: log.child({ component: 'tag-index' }),
    onLookup: (result) => metrics.tagIndexLookups.inc({ result }),
    onFlush: (reason) => metrics.tagIndexFlushes.inc({ reason }),
  });
  void tagIndex.start(); // never rejects; with Redis down it listens once Redis is up
  if (config.cache.tagIndex.enabled && !bus.replicated) {
    log.warn(
      {},
      'cache.tagIndex is on without cache.redisUrl: correct only while this is the one trustgate replica in front of the registry',
    );
  }
  const referrers = new ReferrersStore(upstream, manifests);
  // Opened at start like the key directory (a new path takes a restart); re-read every second.
  const exceptions = new ExceptionStore(
    config.trust.exceptionsFile,
    log.child({ component: 'exceptions' }),
    now,
  );
  exceptions.start();
  const sigstoreRoots = await startSigstoreRoots(config, metrics, log);
  const trust = new TrustService({
    evidence: upstreamEvidenceReader(upstream, referrers),
    trustedRoots: () => sigstoreRoots.current(),
    // A new root changes the version, part of the trust epoch: verdicts made under the old root
    // are not read again.
    trustedRootsVersion: () => sigstoreRoots.version(),
    keyring,
    cache,
    ruleFor: (repo) => live.ruleFor(repo),
    policyHash: () => live.policyHash,
    positiveTtlSeconds: config.cache.positiveTtlSeconds,
    negativeTtlSeconds: config.cache.negativeTtlSeconds,
    now,
    attestationRuleFor: (repo) => live.attestationRuleFor(repo),
    exceptions: () => exceptions.current(),
  });
  observers.push(metrics.watchTrust(trust));

  const tokenKeys = await loadOrCreateTokenKeys(
    config.auth.tokenKeyDir,
    log.child({ component: 'token-keys' }),
    config.auth.signingKid,
  );
  const tokens = new TokenService({ keys: tokenKeys, ...tokenSettings(config) });
  const clientCa = new ClientCaAnchors();
  clientCa.replace(config.tls.clientCa ? readFileSync(config.tls.clientCa) : undefined);
  const auth = new Authenticator({
    tokens,
    policy: () => live.policy,
    mtlsIdentity: config.auth.mtlsIdentity,
    clientCa,
    now,
  });
  return {
    metrics,
    audit,
    upstream,
    forwarder,
    keyring,
    exceptions,
    cache,
    bus,
    manifests,
    tagIndex,
    referrers,
    trust,
    sigstoreRoots,
    tokens,
    auth,
    clientCa,
    relays,
    unobserve: () => {
      for (const unsubscribe of observers.splice(0)) unsubscribe();
    },
  };
}

/**
 * Sigstore trusted roots (issue 15): files read now, TUF repositories checked once now and then in
 * the background (src/trust/sigstore-roots.ts), with their metrics.
 */
async function startSigstoreRoots(config: Config, metrics: Metrics, log: Logger): Promise<SigstoreRoots> {
  const rootsLog = log.child({ component: 'sigstore-roots' });
  const roots = new SigstoreRoots(sigstoreSourcesOf(config.trust), {
    log: rootsLog,
    observe: (e) => {
      metrics.sigstoreRootRefreshes.inc({ source: e.source, outcome: e.outcome });
      metrics.sigstoreRootValid.set({ source: e.source }, e.hasRoot ? 1 : 0);
      if (e.lastSuccess)
        metrics.sigstoreRootVerified.set({ source: e.source }, e.lastSuccess.getTime() / 1000);
    },
  });
  await roots.start();
  for (const s of roots.status()) {
    metrics.sigstoreRootValid.set({ source: s.name }, s.ok ? 1 : 0);
    // File sources have no freshness to watch (they are read once); TUF sources do.
    if (s.kind === 'tuf' && s.lastSuccess) {
      metrics.sigstoreRootVerified.set({ source: s.name }, s.lastSuccess.getTime() / 1000);
    }
  }
  roots.onChange((r) =>
    rootsLog.info({ roots: r.length }, 'Sigstore trusted roots changed: cached verdicts retired'),
  );
  return roots;
}

/** The token service's reloadable settings in a config. */
export function tokenSettings(config: Config): TokenSettings {
  const { issuer, service, tokenTtlSeconds, refreshTtlSeconds } = config.auth;
  return { issuer, service, ttlSeconds: tokenTtlSeconds, refreshTtlSeconds };
}

/**
 * Hints between replicas over the bus; returns what the /v2 pipeline calls after a manifest
 * DELETE. Without Redis the bus has nobody on it.
 */
export function connectReplicas(
  p: Pick<Parts, 'bus' | 'keyring' | 'manifests' | 'tagIndex'>,
): (repo: string, digest: string) => void {
  const { bus, keyring, manifests, tagIndex } = p;
  // Replicas share keys/ (a volume); the nudge makes a change seen at once, not at the next poll.
  // Policy: the message is only a hint to re-read the directory; it carries nothing trusted.
  void bus.subscribe(KEYS_CHANNEL, () => keyring.reload());
  keyring.onChange(() => void bus.publish(KEYS_CHANNEL, String(Date.now())));
  // A manifest deleted through one replica leaves the others' manifest caches at once.
  // Policy: a hint can only drop a cached copy (the next pull asks the registry), never add one.
  // registry:2 removes the tags of a deleted manifest: the tag index drops every entry naming it.
  void bus.subscribe(MANIFEST_DELETED_CHANNEL, (message) => {
    const at = message.lastIndexOf('@');
    if (at > 0 && message.length < 1024) {
      manifests.delete(message.slice(0, at), message.slice(at + 1));
      tagIndex.forgetDigest(message.slice(0, at), message.slice(at + 1));
    }
  });
  // Sent again while it fails, for as long as a tag index entry could live (TagIndex.announce).
  return (repo, digest) => void tagIndex.announce(MANIFEST_DELETED_CHANNEL, `${repo}@${digest}`);
}

/** What the HTTP handlers need besides the parts. */
export interface HandlerContext {
  parts: Parts;
  live: LiveSettings;
  log: Logger;
  now: () => Date;
  /** True once SIGTERM started the drain (readiness answers 503). */
  draining: () => boolean;
}

/** The /v2 pipeline, and express for /token, /admin/v1, health and readiness. */
export function buildHandlers(c: HandlerContext): {
  v2: (req: http.IncomingMessage, res: http.ServerResponse) => void;
  app: express.Express;
} {
  const { parts: p, live, log, now } = c;
  const onManifestDeleted = connectReplicas(p);
  // The token service's own name (a reload reconfigures it): challenges name what tokens carry.
  const service = (): string => p.tokens.service;
  const realm = (): string | undefined => live.realm;
  const v2 = createV2Handler({
    upstream: p.upstream,
    forwarder: p.forwarder,
    auth: p.auth,
    trust: p.trust,
    referrers: p.referrers,
    audit: p.audit,
    log,
    metrics: p.metrics,
    manifests: p.manifests,
    tagIndex: p.tagIndex,
    onManifestDeleted,
    service,
    realm,
    isAdmin: (principal) => live.policy.isAdmin(principal.identity),
    layerUrls: () => live.layerUrls,
  });

  const app = express();
  app.disable('x-powered-by');
  // Policy: never trust X-Forwarded-For; the socket address is the client address.
  app.set('trust proxy', false);
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    const checks = await readiness(p, c.draining());
    p.metrics.upstreamUp.set(checks.upstream === 'ok' ? 1 : 0);
    res.status(checks.ready ? 200 : 503).json(checks);
  });
  app.use(
    createTokenRouter({
      tokens: p.tokens,
      credentials: {
        verify: (...a) => live.credentials.verify(...a),
        accountVersion: (...a) => live.credentials.accountVersion(...a),
      },
      // Restart-only (tls.clientCa, auth.mtlsIdentity): read from the config in force, which
      // keeps their start values.
      mtlsIdentity: live.config.tls.clientCa ? live.config.auth.mtlsIdentity : undefined,
      clientCa: p.clientCa,
      policy: () => live.policy,
      now,
      logger: log.child({ component: 'token' }),
      sendError: (res, err) => sendError(res, err, log),
    }),
  );
  app.use(
    '/admin/v1',
    createAdminRouter({
      auth: p.auth,
      policy: () => live.policy,
      config: () => live.config,
      trust: p.trust,
      keyring: p.keyring,
      exceptions: p.exceptions,
      cache: p.cache,
      upstream: p.upstream,
      audit: p.audit,
      log: log.child({ component: 'admin' }),
      service,
      realm,
      // After the admin API changed a credential file: re-read it (the token router reads live),
      // keeping the failure counters, so adding a user never lifts a lockout.
      reloadCredentials: () => live.reloadCredentials(),
      now,
    }),
  );
  app.use((req, res) => {
    sendError(res, new GateError('NO_SUCH_ENDPOINT', `no such endpoint: ${req.method} ${req.path}`), log);
  });
  return { v2, app };
}

async function readiness(
  p: Pick<Parts, 'upstream' | 'keyring' | 'cache'>,
  draining: boolean,
): Promise<{
  ready: boolean;
  draining: boolean;
  upstream: string;
  keys: number;
  keyErrors: number;
  cache: unknown;
}> {
  const upstreamState = await p.upstream.probe();
  const snap = p.keyring.snapshot;
  return {
    ready: upstreamState === 'ok' && !draining,
    draining,
    upstream: upstreamState,
    keys: snap.keys.size,
    keyErrors: snap.errors.length,
    cache: p.cache.stats(),
  };
}

/** The HTTPS listener (not yet listening) and what closes its stragglers. */
export interface Listener {
  server: https.Server;
  plainHttp: ReturnType<typeof answerPlainHttp>;
  writeIdle: WriteIdleWatch;
}

/**
 * The TLS server in front of the handlers: request head limits (listen.*), client errors answered
 * in OCI form, plain HTTP answered with a 400, idle writers closed (limits.writeIdleSeconds).
 */
export function buildListener(
  config: Config,
  handlers: ReturnType<typeof buildHandlers>,
  metrics: Metrics,
  log: Logger,
  draining: () => boolean,
): Listener {
  const { v2, app } = handlers;
  const writeIdle = new WriteIdleWatch(config.limits.writeIdleSeconds * 1000, (socket) => {
    metrics.writeIdleClosed.inc();
    log.debug(
      { client: socket.remoteAddress, queued: socket.writableLength },
      'client accepted no response bytes within limits.writeIdleSeconds: connection closed',
    );
  });
  // Request head limits (README: listen.maxHeaderBytes, listen.maxHeaders). Node's parser refuses
  // a head over maxHeaderSize itself (clientError below); it keeps at most maxHeadersCount header
  // lines and silently drops the rest, so it keeps one more than the limit and the handler refuses
  // a request that has it.
  const { maxHeaderBytes, maxHeaders } = config.listen;
  const headTooLarge = (what: string): GateError =>
    new GateError(
      'HEADERS_TOO_LARGE',
      `request header section too large: ${what} (at most ${maxHeaderBytes} bytes and ${maxHeaders} header lines)`,
      { headers: { connection: 'close' } },
    );
  const server = https.createServer(
    {
      ...tlsOptions(config),
      // Larger socket buffers than the 16 KiB default: fewer pause/resume turns per blob.
      highWaterMark: 256 * 1024,
      maxHeaderSize: maxHeaderBytes,
    },
    (req: http.IncomingMessage, res: http.ServerResponse) => {
      if (draining()) res.setHeader('connection', 'close');
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
          ? new GateError('REQUEST_TIMEOUT', 'the request head did not arrive in time')
          : err.code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW'
            ? new GateError('BODY_TOO_LARGE', 'chunk extensions too large')
            : new GateError('BAD_REQUEST', 'malformed HTTP request', { logDetail: err.code });
    writeRawError(socket, e, log, { client: socket.remoteAddress });
    lingeringClose(socket);
  });
  server.on('tlsClientError', (err) => log.debug({ err: String(err) }, 'TLS handshake failed'));
  // Plain HTTP on this port gets `400 HTTP request to an HTTPS server`, not a closed connection.
  const plainHttp = answerPlainHttp(server, { log, firstByteTimeoutMs: 120_000 });
  server.on('secureConnection', (socket: TLSSocket) => writeIdle.watch(socket));
  return { server, plainHttp, writeIdle };
}
