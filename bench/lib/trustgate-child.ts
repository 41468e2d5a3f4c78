/**
 * `node dist/bench/lib/trustgate-child.js CONFIG`: starts trustgate from a config file in this
 * process, prints `TRUSTGATE_PORT=<port>` on stdout when listening, closes on SIGTERM/SIGINT.
 * Used by bench/rss.ts to sample the proxy's memory apart from the load generator.
 */
import { loadTrustgate } from './trustgate.js';

async function main(): Promise<number> {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: node trustgate-child.js CONFIG\n');
    return 2;
  }
  const lib = await loadTrustgate();
  if (!lib.ok) {
    process.stderr.write(`trustgate-child: ${lib.reason}\n`);
    return 3;
  }
  const tg = await lib.startTrustgate(lib.loadConfigFile(file, process.env));
  process.stdout.write(`TRUSTGATE_PORT=${tg.port}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  const timer = setTimeout(() => process.exit(1), 5000);
  timer.unref();
  await tg.close();
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`trustgate-child: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
