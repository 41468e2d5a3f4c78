/**
 * `trustgate sigstore refresh`: one TUF update from a pinned TUF root, writing the TUF root the
 * chain reached and the verified `trusted_root.json` into a folder. It refreshes the public-good
 * data shipped in config/sigstore/public-good, and makes the file an air-gapped gate reads
 * (`trust.sigstore: [{trustedRoot: …}]`) on a machine that can reach the mirror.
 */
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMirrorUrl } from '../config/schema.js';
import { loadTrustedRoot } from '../core/evidence/trusted-root.js';
import { fetchTrustedRootThroughTuf } from '../trust/sigstore-roots.js';
import { defaultIo, parseArgs, runCommand, UsageError, type CliIo } from './registry-opts.js';

export const PUBLIC_GOOD_MIRROR = 'https://tuf-repo-cdn.sigstore.dev';
/** The public-good TUF root shipped with trustgate (config/sigstore/public-good/root.json). */
export const SHIPPED_PUBLIC_GOOD_ROOT = fileURLToPath(
  new URL('../../../config/sigstore/public-good/root.json', import.meta.url),
);

export const SIGSTORE_USAGE = `usage: trustgate sigstore refresh --out DIR [--mirror URL|DIR] [--root FILE] [--target NAME]

Runs one TUF update (every root rotation, timestamp, snapshot, targets; signatures, thresholds,
versions and expiry checked) from the pinned TUF root FILE against the mirror, and writes into DIR:
  root.json           the TUF root the chain reached (pin it next time)
  trusted_root.json   the target NAME, verified through that chain
Defaults: --mirror ${PUBLIC_GOOD_MIRROR} (Sigstore public good), --root the public-good
TUF root shipped with trustgate, --target trusted_root.json. A directory mirror is read like the
HTTP one (N.root.json, timestamp.json, N.snapshot.json, N.targets.json, targets/<sha256>.NAME).
Nothing is written unless the whole chain verifies.
`;

export async function sigstoreCommand(argv: string[], io: CliIo = defaultIo()): Promise<number> {
  return runCommand(io, SIGSTORE_USAGE, async () => {
    const { values, positionals } = parseArgs(argv, {
      out: { type: 'string' },
      mirror: { type: 'string' },
      root: { type: 'string' },
      target: { type: 'string' },
      help: { type: 'boolean' },
    });
    if (values.help === true) {
      io.stdout.write(SIGSTORE_USAGE);
      return 0;
    }
    const [sub, ...extra] = positionals;
    if (sub !== 'refresh')
      throw new UsageError(sub ? `unknown subcommand ${sub}` : 'a subcommand is required');
    if (extra.length > 0) throw new UsageError(`unexpected argument ${extra[0]}`);
    const out = values.out as string | undefined;
    if (out === undefined || out === '') throw new UsageError('--out DIR is required');
    const mirrorArg = (values.mirror as string | undefined) ?? PUBLIC_GOOD_MIRROR;
    const mirror = isMirrorUrl(mirrorArg) ? mirrorArg : path.resolve(mirrorArg);
    const root = path.resolve((values.root as string | undefined) ?? SHIPPED_PUBLIC_GOOD_ROOT);
    const target = (values.target as string | undefined) ?? 'trusted_root.json';

    // A fresh cache: the update starts from the pin given, never from an earlier run's metadata.
    const cacheDir = mkdtempSync(path.join(os.tmpdir(), 'trustgate-tuf-'));
    try {
      const got = await fetchTrustedRootThroughTuf({
        name: 'refresh',
        mirror,
        root,
        cacheDir,
        target,
        timeoutSeconds: 30,
      });
      // Policy: the target must also be a trusted root trustgate accepts before anything is written.
      const trusted = loadTrustedRoot(got.bytes);
      mkdirSync(out, { recursive: true });
      // Each file replaced whole (write then rename), so a reader never sees half of one.
      for (const [name, bytes] of [
        ['root.json', got.tufRoot],
        ['trusted_root.json', got.bytes],
      ] as const) {
        const tmp = path.join(out, `.${name}.tmp`);
        // Policy: --out may be a shared folder; a symlink planted at the temporary name is
        // removed, and 'wx' creates a new file (never writes through a link someone put back).
        rmSync(tmp, { force: true });
        writeFileSync(tmp, bytes, { flag: 'wx' });
        renameSync(tmp, path.join(out, name));
      }
      const sha = createHash('sha256').update(got.bytes).digest('hex');
      io.stdout.write(
        `TUF root version ${got.tufRootVersion} (from ${mirrorArg})\n` +
          `${path.join(out, 'root.json')}\n` +
          `${path.join(out, 'trusted_root.json')} sha256:${sha} (${trusted.tlogCount} transparency log(s))\n`,
      );
      return 0;
    } finally {
      rmSync(cacheDir, { recursive: true, force: true });
    }
  });
}
