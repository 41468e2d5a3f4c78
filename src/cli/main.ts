#!/usr/bin/env node
import { loadConfigFile, ConfigError } from '../config/load.js';

const USAGE = `usage: trustgate <command> [options]

commands:
  serve [--config FILE]        run the proxy (default config: config/trustgate.yaml)
  certs --dir DIR [--host H]…  make a development CA, server and client certificates
  help                         this text
`;

type Command = (argv: string[]) => Promise<number>;

const commands: Record<string, Command> = {
  serve: async (argv) => {
    const { serveCommand } = await import('./serve.js');
    return serveCommand(argv);
  },
  certs: async (argv) => {
    const { runCertsCommand } = await import('./certs.js');
    return (await runCertsCommand(argv)) ?? 0;
  },
  help: async () => {
    process.stdout.write(USAGE);
    return 0;
  },
};

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  const cmd = commands[name ?? 'help'];
  if (!cmd) {
    process.stderr.write(`trustgate: unknown command ${JSON.stringify(name)}\n${USAGE}`);
    return 2;
  }
  return cmd(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== 0) process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof ConfigError) process.stderr.write(`trustgate: ${err.message}\n`);
    else process.stderr.write(`trustgate: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);

export { loadConfigFile };
