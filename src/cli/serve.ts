import { parseArgs } from 'node:util';
import { loadConfigFile } from '../config/load.js';
import { startTrustgate } from '../server/main.js';

/**
 * `trustgate serve`: runs until SIGTERM/SIGINT (graceful drain, then exit 0); SIGHUP reloads
 * certificates, policy, trust rules, credentials and keys without dropping connections.
 */
export async function serveCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { config: { type: 'string', short: 'c', default: 'config/trustgate.yaml' } },
    strict: true,
  });
  const configPath = values.config!;
  const config = loadConfigFile(configPath);
  const tg = await startTrustgate(config, { configPath });
  // Policy: one bad request must never take the gate down; log it and keep serving.
  process.on('uncaughtException', (err) =>
    tg.log.fatal({ err: err.stack ?? String(err) }, 'uncaught exception'),
  );
  process.on('unhandledRejection', (err) => tg.log.error({ err: String(err) }, 'unhandled rejection'));
  process.on('SIGHUP', () => void tg.reload());
  return new Promise<number>((resolve) => {
    const stop = (signal: string): void => {
      tg.log.info(
        { signal, graceSeconds: config.shutdownGraceSeconds },
        'draining: no new connections, finishing in-flight requests',
      );
      void tg.close().then(() => {
        tg.log.info({}, 'stopped');
        // Flushes stdout, then leaves even if a client library still holds a handle.
        setTimeout(() => process.exit(0), 200).unref();
        resolve(0);
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
