#!/usr/bin/env node
import { loadConfigFile, ConfigError } from '../config/load.js';
import { redactText } from '../core/redact.js';

const USAGE = `usage: trustgate <command> [options]

commands:
  serve [--config FILE]        run the proxy (default config: config/trustgate.yaml)
  certs --dir DIR [--host H]…  make a development CA, server and client certificates
  keygen --out NAME [--type ecdsa-p256|ed25519]
                               make a cosign-format key pair NAME.key / NAME.pub
  sign REF --key NAME.key [--tag T] [--recursive]
                               sign an image (cosign .sig format) through the registry API
  attest REF --predicate FILE --type TYPE --key NAME.key [--format legacy|bundle]
                               sign an attestation (scan, SBOM, provenance, VEX) of an image
  verify REF --key FILE.pub [--key …] [--json]
                               check an image's signatures as trustgate would, and explain
  verify --offline --manifest FILE --signature FILE --key FILE.pub --repo REPO
                               the same for containers/image "dir" signature files
  copy SRC DST                 copy an image or index between repositories of one registry
  keys list|add|revoke|rotate  manage trusted keys through the admin API (--server HOST:PORT)
  exceptions list|add|remove   manage vulnerability exceptions of attestation gates (admin API)
  users list|add|remove        manage users through the admin API
  robots add|remove            manage robot accounts through the admin API
  sigstore refresh --out DIR [--mirror URL|DIR] [--root FILE]
                               fetch a Sigstore trusted root through TUF from a pinned root
  help                         this text
Run \`trustgate <command> --help\` for the options of sign, verify and copy.
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
  keygen: async (argv) => {
    const { keygenCommand } = await import('./keygen.js');
    return keygenCommand(argv);
  },
  sign: async (argv) => {
    const { signCommand } = await import('./sign.js');
    return signCommand(argv);
  },
  attest: async (argv) => {
    const { attestCommand } = await import('./attest.js');
    return attestCommand(argv);
  },
  exceptions: async (argv) => {
    const { exceptionsCommand } = await import('./admin.js');
    return exceptionsCommand(argv);
  },
  verify: async (argv) => {
    const { verifyCommand } = await import('./verify.js');
    return verifyCommand(argv);
  },
  copy: async (argv) => {
    const { copyCommand } = await import('./copy.js');
    return copyCommand(argv);
  },
  keys: async (argv) => {
    const { keysCommand } = await import('./admin.js');
    return keysCommand(argv);
  },
  users: async (argv) => {
    const { usersCommand } = await import('./admin.js');
    return usersCommand(argv);
  },
  robots: async (argv) => {
    const { robotsCommand } = await import('./admin.js');
    return robotsCommand(argv);
  },
  sigstore: async (argv) => {
    const { sigstoreCommand } = await import('./sigstore.js');
    return sigstoreCommand(argv);
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
    else process.stderr.write(`trustgate: ${redactText((err as Error)?.stack ?? String(err))}\n`);
    process.exitCode = 1;
  },
);

export { loadConfigFile };
