import { readFileSync } from 'node:fs';
import https from 'node:https';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash } from 'node:crypto';
import express from 'express';
import type { Config } from '../config/schema.js';
import { compilePolicy, type Policy } from '../core/policy.js';
import { compileTrustRules } from '../core/trust-policy.js';
import { MemoryVerdictCache, type VerdictCache } from '../cache/verdict-cache.js';
import { Keyring } from '../keys/keyring.js';
import { Upstream } from '../registry/upstream.js';
import { TrustService } from '../trust/service.js';
import { CredentialStore } from '../auth/credentials.js';
import { TokenService } from '../auth/tokens.js';
import { loadOrCreateTokenKeys } from '../auth/token-keys.js';
import { createTokenRouter } from '../auth/token-endpoint.js';
import { Audit } from './audit.js';
import { Authenticator } from './authenticate.js';
import { StreamForwarder } from './forward.js';
import { createLogger, type Logger } from './log.js';
import { sendError, sendJson } from './respond.js';
import { createV2Handler } from './v2.js';
import { GateError } from '../core/errors.js';

export interface Trustgate {
  port: number;
  url: string;
  server: https.Server;
  log: Logger;
  trust: TrustService;
  keyring: Keyring;
  cache: VerdictCache;
  close(): Promise<void>;
}

export interface StartOptions {
  logger?: Logger;
  configPath?: string;
  now?: () => Date;
}

/**
 * Policy: TLS 1.2 minimum with AEAD, forward-secret suites only (TLS 1.3 suites are all AEAD).
 */
const TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

export async function startTrustgate(config: Config, opts: StartOptions = {}): Promise<Trustgate> {
  const log = opts.logger ?? createLogger(config.log.level);
  const audit = new Audit(log.child({ stream: 'audit' }));
  const now = opts.now ?? (() => new Date());

  const upstream = new Upstream(config.upstream);
  const forwarder = new StreamForwarder(upstream, log);

  const policy: Policy = compilePolicy(config.policy);
  const policyRef = { current: policy };
  const ruleFor = compileTrustRules(config.trust.rules);
  const policyHash = createHash('sha256').update(JSON.stringify(config.trust.rules)).digest('hex');

  const keyring = new Keyring(config.trust.keysDir, log.child({ component: 'keyring' }));
  keyring.start();
  const cache: VerdictCache = new MemoryVerdictCache(config.cache.localEntries);
  const trust = new TrustService({
    upstream,
    keyring,
    cache,
    ruleFor,
    policyHash: () => policyHash,
    positiveTtlSeconds: config.cache.positiveTtlSeconds,
    negativeTtlSeconds: config.cache.negativeTtlSeconds,
    now,
  });

  const tokenKeys = await loadOrCreateTokenKeys(
    config.auth.tokenKeyDir,
    log.child({ component: 'token-keys' }),
  );
  const tokens = new TokenService({
    keys: tokenKeys,
    issuer: config.auth.issuer,
    service: config.auth.service,
    ttlSeconds: config.auth.tokenTtlSeconds,
    refreshTtlSeconds: config.auth.refreshTtlSeconds,
  });
  const credentials = CredentialStore.load(config.auth, log.child({ component: 'credentials' }));
  const auth = new Authenticator({
    tokens,
    policy: () => policyRef.current,
    mtlsIdentity: config.auth.mtlsIdentity,
    now,
  });

  const v2 = createV2Handler({
    upstream,
    forwarder,
    auth,
    trust,
    audit,
    log,
    service: config.auth.service,
    realm: config.publicUrl ? new URL('/token', config.publicUrl).toString() : undefined,
    isAdmin: (p) => policyRef.current.isAdmin(p.identity),
  });

  const app = express();
  app.disable('x-powered-by');
  // Policy: never trust X-Forwarded-For; the socket address is the client address.
  app.set('trust proxy', false);
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    const checks = await readiness(upstream, keyring, cache);
    res.status(checks.ready ? 200 : 503).json(checks);
  });
  app.use(
    createTokenRouter({
      tokens,
      credentials,
      policy: () => policyRef.current,
      service: config.auth.service,
      now,
      logger: log.child({ component: 'token' }),
      sendError: (res, err) => sendError(res, err, log),
    }),
  );
  app.use((req, res) => {
    sendError(
      res,
      new GateError('UNSUPPORTED', `no such endpoint: ${req.method} ${req.path}`, { status: 404 }),
      log,
    );
  });

  const server = https.createServer(
    {
      cert: readFileSync(config.tls.cert),
      key: readFileSync(config.tls.key),
      minVersion: config.tls.minVersion,
      ciphers: TLS12_CIPHERS,
      honorCipherOrder: true,
      // Larger socket buffers than the 16 KiB default: fewer pause/resume turns per blob.
      highWaterMark: 64 * 1024,
      ...(config.tls.clientCa
        ? // Policy: client certificates are requested, not required; an unverified one is ignored
          // (socket.authorized false) and the caller falls back to token authentication.
          { ca: readFileSync(config.tls.clientCa), requestCert: true, rejectUnauthorized: false }
        : {}),
    },
    (req: http.IncomingMessage, res: http.ServerResponse) => {
      const url = req.url ?? '';
      if (url === '/v2' || url.startsWith('/v2/') || url.startsWith('/v2?')) v2(req, res);
      else app(req, res);
    },
  );
  // Long blob transfers must not be cut by Node's default 5-minute request timeout; slow
  // header senders still are.
  server.requestTimeout = 0;
  server.headersTimeout = 30_000;
  server.keepAliveTimeout = 65_000;
  server.on('clientError', (err, socket) => {
    log.debug({ err: String(err) }, 'client error');
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });
  server.on('tlsClientError', (err) => log.debug({ err: String(err) }, 'TLS handshake failed'));

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.listen.port, config.listen.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const hostForUrl = config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host;
  const url = `https://${hostForUrl}:${port}`;
  log.info({ url, upstream: config.upstream.url }, 'trustgate listening');

  return {
    port,
    url,
    server,
    log,
    trust,
    keyring,
    cache,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
      keyring.stop();
      forwarder.close();
      upstream.close();
      await cache.close();
    },
  };
}

async function readiness(
  upstream: Upstream,
  keyring: Keyring,
  cache: VerdictCache,
): Promise<{ ready: boolean; upstream: string; keys: number; keyErrors: number; cache: unknown }> {
  let upstreamState = 'ok';
  try {
    const r = await upstream.request({ method: 'GET', path: '/v2/', maxBytes: 4096 });
    if (r.status !== 200 && r.status !== 401) upstreamState = `status ${r.status}`;
  } catch (err) {
    upstreamState = `unreachable: ${(err as Error).message}`;
  }
  const snap = keyring.snapshot;
  return {
    ready: upstreamState === 'ok',
    upstream: upstreamState,
    keys: snap.keys.size,
    keyErrors: snap.errors.length,
    cache: cache.stats(),
  };
}

export { sendJson };
