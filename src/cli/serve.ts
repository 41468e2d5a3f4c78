import { parseArgs } from 'node:util';
import { loadConfigFile } from '../config/load.js';
import { startTrustgate } from '../server/main.js';

export async function serveCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { config: { type: 'string', short: 'c', default: 'config/trustgate.yaml' } },
    strict: true,
  });
  const configPath = values.config!;
  const config = loadConfigFile(configPath);
  const tg = await startTrustgate(config, { configPath });
  const stop = (signal: string): void => {
    tg.log.info({ signal }, 'shutting down: no new connections, finishing in-flight requests');
    void tg.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  return new Promise<number>(() => {
    // runs until a signal
  });
}
