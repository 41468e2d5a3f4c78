/**
 * Crash-safe file writes for the files the admin API changes (trusted keys, htpasswd, robots).
 *
 * Policy: a reader (this process, another replica, a restart) sees either the old file or the new
 * one, never a partial one: the bytes go to a temp file in the SAME directory (so the rename does
 * not cross file systems), are fsynced, then renamed (or hard-linked, for create-only) over the
 * final name, and the directory is fsynced so the new name survives a power cut.
 */
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  openSync,
  promises as fs,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import { GateError } from '../core/errors.js';

/** Temp files are dot-files ending in `.tmp`: the keyring only reads `*.pub` / `*.meta.json`. */
export const TEMP_PREFIX = '.tg-';

async function fsyncDir(dir: string): Promise<void> {
  const h = await fs.open(dir, constants.O_RDONLY);
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

async function writeTemp(dir: string, data: string | Uint8Array, mode: number): Promise<string> {
  const tmp = path.join(dir, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}.tmp`);
  // O_EXCL: never write through a file (or symlink) someone planted under the temp name.
  const h = await fs.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  try {
    await h.writeFile(data);
    await h.sync();
  } catch (err) {
    await h.close().catch(() => undefined);
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await h.close();
  return tmp;
}

/**
 * Writes `file` atomically. With `exclusive`, fails with code EEXIST when the file exists (a
 * hard link is atomic and never replaces an existing name, so two writers cannot both win).
 */
export async function writeFileAtomic(
  file: string,
  data: string | Uint8Array,
  opts: { exclusive?: boolean; mode?: number } = {},
): Promise<void> {
  const dir = path.dirname(file);
  const tmp = await writeTemp(dir, data, opts.mode ?? 0o644);
  try {
    if (opts.exclusive === true) {
      await fs.link(tmp, file);
      await fs.rm(tmp, { force: true });
    } else {
      await fs.rename(tmp, file);
    }
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(dir);
}

/**
 * Removes temp files a crash left behind (older than `olderThanMs`, so a concurrent writer's temp
 * file is not taken from under it).
 */
export async function removeStaleTemps(dir: string, olderThanMs = 60_000): Promise<number> {
  let removed = 0;
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch {
    return 0;
  }
  const limit = Date.now() - olderThanMs;
  for (const n of names) {
    if (!n.startsWith(TEMP_PREFIX) || !n.endsWith('.tmp')) continue;
    const p = path.join(dir, n);
    try {
      const st = await fs.lstat(p);
      if (st.isFile() && st.mtimeMs < limit) {
        await fs.rm(p, { force: true });
        removed++;
      }
    } catch {
      /* gone already */
    }
  }
  return removed;
}

const LOCK_STALE_MS = 30_000;
const LOCK_WAIT_MS = 10_000;

/**
 * Runs `fn` holding `lockFile` (created with O_EXCL, removed after), so a read-modify-write of a
 * file shared by replicas (a volume) cannot lose another replica's change: a revocation undone by
 * a concurrent rotate, a removed user written back by a concurrent add. Works between processes
 * and within one. A lock older than 30 s is taken as left by a writer that died and is broken;
 * one not freed within 10 s is a 503 (nothing was changed).
 */
export async function withFileLock<T>(lockFile: string, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      const fd = openSync(lockFile, 'wx', 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    try {
      if (Date.now() - statSync(lockFile).mtimeMs > LOCK_STALE_MS) {
        unlinkSync(lockFile);
        continue;
      }
    } catch {
      continue; // freed meanwhile
    }
    if (Date.now() > deadline) {
      throw new GateError('UNAVAILABLE', 'another replica is changing the same files: try again', {
        logDetail: { lockFile },
      });
    }
    await new Promise((r) => setTimeout(r, 20 + Math.random() * 30));
  }
  try {
    return await fn();
  } finally {
    try {
      unlinkSync(lockFile);
    } catch {
      // already broken as stale by another writer; nothing to free
    }
  }
}
