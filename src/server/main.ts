/**
 * The composition root: builds the parts from a config (server/compose.ts), keeps the values a
 * SIGHUP changes in one holder (server/live.ts), and starts, reloads and closes the whole.
 */
import type https from 'node:https';
import type { AddressInfo } from 'node:net';
import { loadConfigFile } from '../config/load.js';
import { planReload, type ReloadPlan } from '../config/reloads.js';
import { configSchema, type Config } from '../config/schema.js';
import type { VerdictCache } from '../cache/index.js';
import type { Keyring } from '../keys/keyring.js';
import type { TrustService } from '../trust/service.js';
import type { SigstoreRoots } from '../trust/sigstore-roots.js';
import {
  buildHandlers,
  buildListener,
  buildParts,
  tlsOptions,
  tokenSettings,
  type Listener,
  type Parts,
} from './compose.js';
import { LiveSettings } from './live.js';
import { createLogger, type Logger } from './log.js';
import type { Metrics } from './metrics.js';

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
  /**
   * Re-reads the config file (SIGHUP). An invalid file is refused and the old config stays;
   * restart-only keys keep their running values and are named in a warning (config/schema.ts).
   */
  reload(): Promise<boolean>;
  /** Stops accepting, lets in-flight requests finish up to the grace period, then closes all. */
  close(graceMs?: number): Promise<void>;
}

export interface StartOptions {
  logger?: Logger;
  configPath?: string;
  now?: () => Date;
}

export async function startTrustgate(config: Config, opts: StartOptions = {}): Promise<Trustgate> {
  const log = opts.logger ?? createLogger(config.log.level);
  const now = opts.now ?? (() => new Date());
  const live = new LiveSettings(config, log.child({ component: 'credentials' }));
  const parts = await buildParts(config, live, log, now);
  let draining = false;
  const handlers = buildHandlers({ parts, live, log, now, draining: () => draining });
  const listener = buildListener(config, handlers, parts.metrics, log, () => draining);
  // Credential files shared by replicas (a volume): a change made through another replica's admin
  // API, or by hand, is picked up within a second, like the key directory.
  const credentialsTimer = setInterval(() => {
    if (live.credentialFilesChanged()) live.reloadCredentials();
  }, 1000);
  credentialsTimer.unref();

  const { server } = listener;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.listen.port, config.listen.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const hostForUrl = config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host;
  const url = `https://${hostForUrl}:${port}`;
  const metricsServer = config.metrics
    ? await parts.metrics.listen(config.metrics.host, config.metrics.port)
    : undefined;
  log.info({ url, upstream: config.upstream.url, metricsPort: metricsServer?.port }, 'trustgate listening');

  return {
    port,
    url,
    server,
    log,
    trust: parts.trust,
    keyring: parts.keyring,
    sigstoreRoots: parts.sigstoreRoots,
    cache: parts.cache,
    metrics: parts.metrics,
    metricsPort: metricsServer?.port,
    async reload() {
      if (!opts.configPath) {
        log.warn({}, 'reload asked, but trustgate was started without a config file');
        return false;
      }
      return reload(opts.configPath, { live, parts, listener, log });
    },
    async close(graceMs = live.config.shutdownGraceSeconds * 1000) {
      draining = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      listener.plainHttp.destroyPending();
      const deadline = new Promise<'deadline'>((r) => setTimeout(() => r('deadline'), graceMs).unref());
      if ((await Promise.race([closed, deadline])) === 'deadline') {
        log.warn({ graceMs }, 'grace period over: closing the connections still open');
        server.closeAllConnections();
        await closed;
      }
      parts.keyring.stop();
      parts.exceptions.stop();
      await parts.sigstoreRoots.stop();
      listener.writeIdle.close();
      clearInterval(credentialsTimer);
      parts.forwarder.close();
      parts.upstream.close();
      parts.unobserve();
      await parts.tagIndex.close();
      await metricsServer?.close();
      await parts.cache.close();
    },
  };
}

interface Running {
  live: LiveSettings;
  parts: Pick<Parts, 'tokens' | 'keyring' | 'clientCa' | 'sigstoreRoots' | 'tagIndex'>;
  listener: Pick<Listener, 'server'>;
  log: Logger;
}

/**
 * SIGHUP. Everything the new file needs is read and checked first (the file, the TLS files, the
 * credential files); only then is anything changed, so a refused reload changes nothing.
 */
async function reload(configPath: string, r: Running): Promise<boolean> {
  const { live, log } = r;
  let plan: ReloadPlan<Config>;
  let commit: () => void;
  try {
    plan = planReload(configSchema, live.config, loadConfigFile(configPath));
    // Policy: the running values of restart-only keys must still fit the new file's other keys
    // (e.g. a new tlog: required rule with the trusted root read at start): if not, the reload is
    // refused, never applied in part.
    const checked = configSchema.safeParse(plan.effective);
    if (!checked.success) {
      const keys = [...new Set(checked.error.issues.map((i) => i.path.join('.')))].join(', ');
      throw new Error(
        `with the restart-only keys at their running values (${[...plan.needRestart, ...plan.undeclared].join(', ')}) the configuration does not validate (${keys}): restart to apply it`,
      );
    }
    const tls = tlsOptions(plan.effective);
    commit = live.prepare(plan.effective);
    // Last of the checks, and the first change: it throws (a key that does not match its
    // certificate, a file that is not PEM) before anything else changed, and changes nothing then.
    r.listener.server.setSecureContext(tls);
    // Connections opened under the old client CAs keep them; each is checked against these.
    r.parts.clientCa.replace(tls.ca as Buffer | undefined);
  } catch (err) {
    // Policy: a bad new config never replaces a good running one.
    log.error(
      { err: (err as Error).message },
      'reload refused: the new configuration is invalid; the old one stays in force',
    );
    // Policy: the tag index is flushed all the same (see below): an operator who changed
    // registry:2 by hand sends SIGHUP for that, and a typo in the file must not keep stale entries.
    r.parts.tagIndex.flush('reload');
    return false;
  }
  const previousLevel = live.config.log.level;
  const c = plan.effective;
  commit();
  r.parts.tokens.configure(tokenSettings(c));
  r.parts.keyring.moveTo(c.trust.keysDir);
  r.parts.keyring.reload();
  // SIGHUP also checks the TUF repositories now (an operator who updated a directory mirror need
  // not wait for refreshSeconds); a failure keeps the last good root, as always.
  void r.parts.sigstoreRoots.refresh();
  // Policy: every reload flushes the tag index (whatever changed): an operator who changed
  // registry:2 behind trustgate's back (a restore, a tag moved by hand) sends SIGHUP to every
  // replica and no pull by tag is answered from what the index held before.
  r.parts.tagIndex.flush('reload');
  // Component loggers are pino children: they follow the root logger's level.
  if (c.log.level !== previousLevel) log.level = c.log.level;
  for (const key of plan.needRestart) {
    log.warn(
      { key },
      `config ${key} changed: takes effect after a restart, not a reload (the running value stays)`,
    );
  }
  for (const key of plan.undeclared) {
    log.warn(
      { key },
      `config ${key} changed: it has no reload rule, so the running value stays until a restart`,
    );
  }
  log.info(
    { config: configPath, changed: plan.applied },
    'configuration reloaded (certificates, policy, trust rules, credentials, keys, tokens, log level)',
  );
  return true;
}
