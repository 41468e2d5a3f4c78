/**
 * `trustgate keygen --out NAME [--type ecdsa-p256|ed25519]`: a cosign-format key pair,
 * NAME.key (encrypted, mode 0600) and NAME.pub (PEM SPKI).
 */
import { closeSync, existsSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { encryptCosignKey } from '../core/signature/keyfile.js';
import { parsePublicKeyPem, publicKeyFingerprint } from '../core/signature/keys.js';
import { generateKeyPair, type KeyType } from '../core/signature/sign.js';
import { readPassphrase } from './passphrase.js';
import { defaultIo, parseArgs, runCommand, UsageError, type CliIo } from './registry-opts.js';

export const KEYGEN_USAGE = `usage: trustgate keygen --out NAME [--type ecdsa-p256|ed25519]

Writes NAME.key (cosign encrypted private key, mode 0600) and NAME.pub (PEM public key).
The default type is ecdsa-p256, what cosign generates. Passphrase: TRUSTGATE_KEY_PASSPHRASE or
COSIGN_PASSWORD, else typed twice on the terminal. Existing files are never overwritten.
`;

/** Creates a file that must not exist yet (O_EXCL), with `mode`. */
function writeNew(file: string, text: string, mode: number): void {
  const fd = openSync(file, 'wx', mode);
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
}

export async function keygenCommand(argv: string[], io: CliIo = defaultIo()): Promise<number> {
  return runCommand(io, KEYGEN_USAGE, async () => {
    const { values, positionals } = parseArgs(argv, {
      out: { type: 'string' },
      type: { type: 'string' },
      help: { type: 'boolean' },
    });
    if (values.help === true) {
      io.stdout.write(KEYGEN_USAGE);
      return 0;
    }
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]}`);
    const out = values.out as string | undefined;
    if (out === undefined || out === '') throw new UsageError('--out NAME is required');
    const type = (values.type as string | undefined) ?? 'ecdsa-p256';
    if (type !== 'ecdsa-p256' && type !== 'ed25519')
      throw new UsageError(`--type must be ecdsa-p256 or ed25519`);
    const keyFile = `${out}.key`;
    const pubFile = `${out}.pub`;
    // Policy: never overwrite a key; checked before asking for the passphrase, and again by O_EXCL.
    for (const f of [keyFile, pubFile])
      if (existsSync(f)) throw new Error(`${f} already exists; not overwriting it`);

    const passphrase = await readPassphrase(io, { confirm: true, keyFile });
    const { pkcs8Der, publicKeyPem } = generateKeyPair(type as KeyType);
    const pem = encryptCosignKey(pkcs8Der, passphrase);
    pkcs8Der.fill(0);
    // Policy: the private key file is readable by its owner only.
    writeNew(keyFile, pem, 0o600);
    try {
      writeNew(pubFile, publicKeyPem, 0o644);
    } catch (err) {
      unlinkSync(keyFile);
      throw err;
    }
    const fp = publicKeyFingerprint(parsePublicKeyPem(publicKeyPem));
    io.stdout.write(`wrote ${keyFile} and ${pubFile} (${type}, ${fp})\n`);
    return 0;
  });
}
