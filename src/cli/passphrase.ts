/**
 * Key passphrases for keygen and sign: from the environment (TRUSTGATE_KEY_PASSPHRASE, or cosign's
 * COSIGN_PASSWORD so scripts written for cosign work), else typed on a terminal without echo.
 */
import type { CliIo } from './registry-opts.js';

export const PASSPHRASE_ENV = ['TRUSTGATE_KEY_PASSPHRASE', 'COSIGN_PASSWORD'] as const;

export class PassphraseError extends Error {
  override name = 'PassphraseError';
}

/** Reads one line from a TTY in raw mode, echoing nothing. */
export function promptHidden(io: CliIo, prompt: string): Promise<string> {
  const stdin = io.stdin;
  return new Promise((resolve, reject) => {
    io.stderr.write(prompt);
    let buf: string[] = [];
    const done = (err: Error | null): void => {
      stdin.removeListener('data', onData);
      stdin.setRawMode?.(false);
      stdin.pause();
      io.stderr.write('\n');
      if (err !== null) reject(err);
      else resolve(buf.join(''));
      buf = [];
    };
    const onData = (chunk: Buffer | string): void => {
      const chars = Array.from(typeof chunk === 'string' ? chunk : chunk.toString('utf8'));
      for (let i = 0; i < chars.length; i++) {
        const ch = chars[i] as string;
        if (ch === '\r' || ch === '\n') {
          // Pasted input can hold the next answer too: give back what follows this line.
          const rest = chars.slice(ch === '\r' && chars[i + 1] === '\n' ? i + 2 : i + 1).join('');
          done(null);
          // After done(): the listener is gone and the stream paused, so this is kept for the next read.
          if (rest !== '') stdin.unshift(Buffer.from(rest, 'utf8'));
          return;
        }
        if (ch === '\u0003') return done(new PassphraseError('cancelled'));
        if (ch === '\u0004' && buf.length === 0) return done(new PassphraseError('cancelled'));
        if (ch === '\u007f' || ch === '\b') buf.pop();
        else if (ch >= ' ') buf.push(ch);
      }
    };
    stdin.setRawMode?.(true);
    stdin.on('data', onData);
    stdin.resume();
  });
}

/**
 * The passphrase for a key file.
 * @param confirm keygen: ask twice on a terminal, and refuse an empty passphrase from anywhere.
 */
export async function readPassphrase(
  io: CliIo,
  opts: { confirm: boolean; keyFile: string },
): Promise<string> {
  for (const name of PASSPHRASE_ENV) {
    const v = io.env[name];
    if (v === undefined) continue;
    // Policy: a new key is never written with an empty passphrase (it would be stored in the clear).
    if (opts.confirm && v === '')
      throw new PassphraseError(`${name} is empty; an empty passphrase is not allowed`);
    return v;
  }
  if (io.stdin.isTTY !== true || typeof io.stdin.setRawMode !== 'function') {
    throw new PassphraseError(
      `no passphrase for ${opts.keyFile}: set TRUSTGATE_KEY_PASSPHRASE (or COSIGN_PASSWORD), ` +
        'or run on a terminal to type it',
    );
  }
  const first = await promptHidden(io, `Passphrase for ${opts.keyFile}: `);
  if (!opts.confirm) return first;
  if (first === '') throw new PassphraseError('an empty passphrase is not allowed');
  const second = await promptHidden(io, 'Repeat the passphrase: ');
  if (first !== second) throw new PassphraseError('the passphrases do not match');
  return first;
}
