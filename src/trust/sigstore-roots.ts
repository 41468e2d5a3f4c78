/**
 * The supply of Sigstore trusted roots (issue 15): `trust.sigstore` sources, each a
 * `trusted_root.json` file (air-gapped) or a TUF repository (an http(s) mirror or a directory)
 * updated with tuf-js from a pinned, offline-signed TUF root. Verification reads `current()`; a
 * root accepted through the TUF chain replaces the old one, and the version change retires cached
 * verdicts (TrustService.epoch).
 *
 * Why tuf-js and not @sigstore/tuf: @sigstore/tuf fetches over HTTP only and seeds from its own
 * embedded roots keyed by mirror URL; a directory mirror (air-gapped), a cache directory per pin and
 * several private instances need the Updater itself (a fetcher of our own reads directories).
 */
import { createHash } from 'node:crypto';
import {
  constants as fsConstants,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Metadata, MetadataKind } from '@tufjs/models';
import { BaseFetcher, Updater } from 'tuf-js';
import { DownloadHTTPError, DownloadLengthMismatchError } from 'tuf-js/dist/error.js';
import { isMirrorUrl, type SigstoreSource } from '../config/schema.js';
import { loadTrustedRoot, type SigstoreTrustedRoot } from '../core/evidence/trusted-root.js';

type TufSource = Extract<SigstoreSource, { kind: 'tuf' }>;

/** The logging the supply needs (a pino logger fits). */
export interface RootsLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export type RefreshOutcome = 'updated' | 'unchanged' | 'failed';

export interface RefreshEvent {
  source: string;
  outcome: RefreshOutcome;
  /** Whether the source has a valid root after this refresh (the last good one on failure). */
  hasRoot: boolean;
  /** When the source last verified a root through TUF (or loaded its file). */
  lastSuccess?: Date;
  error?: string;
}

/** What an operator sees of one source (readiness, admin, tests). */
export interface SourceStatus {
  name: string;
  kind: SigstoreSource['kind'];
  /** A valid root is in force for this source. */
  ok: boolean;
  /** sha256 of the trusted_root.json bytes in force. */
  sha256?: string;
  /** The TUF root version the chain reached (tuf sources). */
  tufRootVersion?: number;
  lastSuccess?: Date;
  lastAttempt?: Date;
  lastError?: string;
}

export class SigstoreRootsError extends Error {
  override readonly name = 'SigstoreRootsError';
}

interface SourceState {
  source: SigstoreSource;
  root?: { trusted: SigstoreTrustedRoot; sha256: string };
  tufRootVersion?: number;
  lastSuccess?: Date;
  lastAttempt?: Date;
  lastError?: string;
  running?: Promise<RefreshOutcome>;
  timer?: NodeJS.Timeout;
}

export interface SigstoreRootsOptions {
  log: RootsLog;
  /** Told the outcome of every TUF refresh (metrics). */
  observe?: (event: RefreshEvent) => void;
}

/** The trusted roots of every configured source, kept current. */
export class SigstoreRoots {
  private readonly states: SourceState[];
  private readonly listeners = new Set<(roots: readonly SigstoreTrustedRoot[]) => void>();
  private roots: readonly SigstoreTrustedRoot[] = [];
  private versionValue: string;
  private stopped = false;

  constructor(
    sources: readonly SigstoreSource[],
    private readonly o: SigstoreRootsOptions,
  ) {
    this.states = sources.map((source) => ({ source }));
    this.versionValue = sources.length === 0 ? '' : 'none';
  }

  /**
   * Loads the file sources and each TUF source's last verified root from its cache, then checks
   * every TUF repository once and starts the background refreshes. Throws (a configuration
   * error: the process must not start) when a file source or a pinned TUF root is unusable; a TUF
   * repository that cannot be reached is not an error here (its source has no root until it can).
   */
  async start(): Promise<void> {
    for (const state of this.states) {
      const s = state.source;
      if (s.kind === 'file') {
        let bytes: Buffer;
        try {
          bytes = readFileSync(s.trustedRoot);
          state.root = { trusted: loadTrustedRoot(bytes), sha256: sha256Hex(bytes) };
        } catch (err) {
          throw new SigstoreRootsError(
            `trust.sigstore source ${s.name}: trusted root ${s.trustedRoot} is unusable: ${(err as Error).message}`,
            { cause: err },
          );
        }
        state.lastSuccess = new Date();
        continue;
      }
      readPinnedRoot(s);
      this.loadCachedTarget(state, s);
    }
    this.publish();
    // Policy: the start waits for the first check at most one download timeout (the longest of
    // the sources'); a slower mirror finishes in the background, and until then its source has
    // the root loaded from the cache, or none (rules that need one deny meanwhile).
    const waitMs =
      Math.max(0, ...this.states.map((st) => (st.source.kind === 'tuf' ? st.source.timeoutSeconds : 0))) *
      1000;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.refresh(),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, waitMs);
        timer.unref();
      }),
    ]);
    clearTimeout(timer);
    for (const state of this.states) {
      if (state.source.kind !== 'tuf' || this.stopped) continue;
      state.timer = setInterval(() => void this.refreshOne(state), state.source.refreshSeconds * 1000);
      state.timer.unref();
    }
  }

  /** The trusted roots in force, one per source that has a valid one (empty: none). */
  current(): readonly SigstoreTrustedRoot[] {
    return this.roots;
  }

  /** Changes whenever current() does; '' when no source is configured. */
  version(): string {
    return this.versionValue;
  }

  /** Called with the new roots whenever a source's root changes. */
  onChange(listener: (roots: readonly SigstoreTrustedRoot[]) => void): void {
    this.listeners.add(listener);
  }

  status(): SourceStatus[] {
    return this.states.map((st) => ({
      name: st.source.name,
      kind: st.source.kind,
      ok: st.root !== undefined,
      ...(st.root ? { sha256: st.root.sha256 } : {}),
      ...(st.tufRootVersion !== undefined ? { tufRootVersion: st.tufRootVersion } : {}),
      ...(st.lastSuccess ? { lastSuccess: st.lastSuccess } : {}),
      ...(st.lastAttempt ? { lastAttempt: st.lastAttempt } : {}),
      ...(st.lastError ? { lastError: st.lastError } : {}),
    }));
  }

  /** Checks the TUF repositories now (all, or the one named); resolves when done. */
  async refresh(name?: string): Promise<RefreshOutcome[]> {
    // Policy: nothing after stop() (a SIGHUP during shutdown): no update of a cache folder a
    // successor process may already use, no change published to a closed service.
    if (this.stopped) return [];
    const chosen = this.states.filter(
      (s) => s.source.kind === 'tuf' && (name === undefined || s.source.name === name),
    );
    return Promise.all(chosen.map((s) => this.refreshOne(s)));
  }

  /** Stops the background refreshes and waits for one under way. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const s of this.states) clearInterval(s.timer);
    await Promise.all(this.states.map((s) => s.running?.catch(() => undefined)));
  }

  /** One refresh per source at a time (they share its cache directory). */
  private refreshOne(state: SourceState): Promise<RefreshOutcome> {
    state.running ??= this.doRefresh(state).finally(() => {
      state.running = undefined;
    });
    return state.running;
  }

  private async doRefresh(state: SourceState): Promise<RefreshOutcome> {
    const s = state.source as TufSource;
    state.lastAttempt = new Date();
    let outcome: RefreshOutcome;
    try {
      const got = await fetchTrustedRootThroughTuf(s);
      state.tufRootVersion = got.tufRootVersion;
      const sha = sha256Hex(got.bytes);
      if (state.root?.sha256 === sha) {
        outcome = 'unchanged';
      } else {
        // Policy: a target the TUF chain vouches for must still be a usable trusted root; one that
        // is not (loadTrustedRoot's checks) is refused like a tampered one, the last good stays.
        state.root = { trusted: loadTrustedRoot(got.bytes), sha256: sha };
        outcome = 'updated';
        try {
          saveLastGood(s, got.bytes);
        } catch (err) {
          // The root is in force; only a restart with the mirror down would miss it.
          this.o.log.warn(
            { source: s.name, err: describe(err) },
            'could not keep a copy of the trusted root',
          );
        }
      }
      state.lastSuccess = new Date();
      state.lastError = undefined;
      if (outcome === 'updated') {
        this.o.log.info(
          { source: s.name, sha256: sha, tufRootVersion: got.tufRootVersion },
          'Sigstore trusted root updated through TUF',
        );
        this.publish();
      }
    } catch (err) {
      outcome = 'failed';
      state.lastError = describe(err);
      // Policy: a failed refresh (mirror down, bad signature, expired or rolled-back metadata, a
      // target that does not match) never removes a root that verified before: the last good one
      // stays in force (its own validFor windows still bound every key in it), and the failure is
      // logged and counted so an operator sees a source that stopped updating.
      if (state.root) {
        this.o.log.warn(
          { source: s.name, err: state.lastError, lastSuccess: state.lastSuccess?.toISOString() },
          'Sigstore TUF refresh failed: the last good trusted root stays in force',
        );
      } else {
        this.o.log.error(
          { source: s.name, err: state.lastError },
          'Sigstore TUF refresh failed and this source has no valid trusted root: rules that need one deny',
        );
      }
    }
    this.o.observe?.({
      source: s.name,
      outcome,
      hasRoot: state.root !== undefined,
      ...(state.lastSuccess ? { lastSuccess: state.lastSuccess } : {}),
      ...(state.lastError ? { error: state.lastError } : {}),
    });
    return outcome;
  }

  /**
   * The target the last successful refresh verified, kept in the cache directory, so a restart
   * while the mirror is down keeps the last good root. Policy: the cache directory is as trusted as
   * the configuration (it also holds the TUF root the chain continues from); a cached file that is
   * not a usable trusted root is ignored.
   */
  private loadCachedTarget(state: SourceState, s: TufSource): void {
    const file = lastGoodFile(s);
    if (!existsSync(file)) return;
    try {
      const bytes = readFileSync(file);
      state.root = { trusted: loadTrustedRoot(bytes), sha256: sha256Hex(bytes) };
      state.lastSuccess = statSync(file).mtime;
      this.o.log.info(
        { source: s.name, verifiedAt: state.lastSuccess.toISOString() },
        'Sigstore trusted root loaded from the TUF cache (the last one verified)',
      );
    } catch (err) {
      this.o.log.warn({ source: s.name, err: describe(err) }, 'cached Sigstore trusted root ignored');
    }
  }

  private publish(): void {
    const withRoot = this.states.filter((s) => s.root !== undefined);
    this.roots = withRoot.map((s) => s.root!.trusted);
    const h = createHash('sha256');
    for (const s of withRoot) h.update(`${s.source.name}\0${s.root!.sha256}\0`);
    const next =
      this.states.length === 0 ? '' : withRoot.length === 0 ? 'none' : h.digest('hex').slice(0, 32);
    if (next === this.versionValue) return;
    this.versionValue = next;
    for (const l of this.listeners) l(this.roots);
  }
}

/** Reads and checks a pinned TUF root: a root role signed by its own threshold of keys. */
export function readPinnedRoot(s: Pick<TufSource, 'name' | 'root'>): Buffer {
  try {
    const bytes = readFileSync(s.root);
    const md = Metadata.fromJSON(MetadataKind.Root, JSON.parse(bytes.toString('utf8')));
    md.verifyDelegate(MetadataKind.Root, md);
    return bytes;
  } catch (err) {
    throw new SigstoreRootsError(
      `trust.sigstore source ${s.name}: pinned TUF root ${s.root} is unusable: ${describe(err)}`,
      { cause: err },
    );
  }
}

/**
 * The cache of one source: a folder per pinned root (sha256 of its bytes), so pinning another root
 * starts from it rather than from metadata cached under the old pin.
 */
function tufCacheDir(s: Pick<TufSource, 'cacheDir'>, pinned: Buffer): string {
  return path.join(s.cacheDir, sha256Hex(pinned).slice(0, 16));
}

/**
 * Where the last trusted root accepted from a source is kept: its own copy, written only after
 * loadTrustedRoot accepted it (tuf-js's copy of the target is written before that check).
 */
function lastGoodFile(s: Pick<TufSource, 'cacheDir' | 'root' | 'target'>): string {
  return path.join(tufCacheDir(s, readFileSync(s.root)), `last-good.${encodeURIComponent(s.target)}`);
}

function saveLastGood(s: TufSource, bytes: Buffer): void {
  const file = lastGoodFile(s);
  const tmp = `${file}.${process.pid}.tmp`;
  // Replaced whole (write then rename): a crash never leaves half a root to load at start.
  writeFileSync(tmp, bytes, { mode: 0o600 });
  renameSync(tmp, file);
}

export interface TufFetchResult {
  /** The target's bytes, verified through the TUF chain (length and hashes from targets metadata). */
  bytes: Buffer;
  /** The root metadata the chain ended at (JSON bytes) and its version. */
  tufRoot: Buffer;
  tufRootVersion: number;
}

/**
 * One TUF client update (the TUF 1.0 client workflow, by tuf-js): root rotations from the cached
 * root (first the pin), then timestamp, snapshot and targets, each checked for signatures,
 * thresholds, versions (no rollback) and expiry; then the target, checked against the length and
 * hashes the targets metadata gives. Throws when any step fails.
 */
export async function fetchTrustedRootThroughTuf(
  s: Pick<TufSource, 'name' | 'mirror' | 'root' | 'cacheDir' | 'target' | 'timeoutSeconds'>,
): Promise<TufFetchResult> {
  const pinned = readPinnedRoot(s);
  const dir = tufCacheDir(s, pinned);
  const metadataDir = path.join(dir, 'metadata');
  const targetDir = path.join(dir, 'targets');
  mkdirSync(metadataDir, { recursive: true, mode: 0o700 });
  mkdirSync(targetDir, { recursive: true, mode: 0o700 });
  const rootFile = path.join(metadataDir, 'root.json');
  if (!existsSync(rootFile)) writeFileSync(rootFile, pinned);
  const isUrl = isMirrorUrl(s.mirror);
  const base = isUrl ? s.mirror.replace(/\/+$/, '') + '/' : pathToFileURL(path.resolve(s.mirror) + '/').href;
  const make = (): Updater =>
    new Updater({
      metadataDir,
      metadataBaseUrl: base,
      targetDir,
      targetBaseUrl: new URL('targets/', base).href,
      ...(isUrl ? {} : { fetcher: new DirectoryFetcher(path.resolve(s.mirror)) }),
      config: { fetchTimeout: s.timeoutSeconds * 1000, fetchRetries: 0, userAgent: 'trustgate' },
    });
  let updater: Updater;
  try {
    updater = make();
  } catch {
    // A cached root that no longer loads (a damaged file): start again from the pin, which is
    // always safe (it is the trust anchor).
    writeFileSync(rootFile, pinned);
    updater = make();
  }
  await updater.refresh();
  const info = await updater.getTargetInfo(s.target);
  if (!info) throw new SigstoreRootsError(`the TUF repository lists no target ${s.target}`);
  const file = (await updater.findCachedTarget(info)) ?? (await updater.downloadTarget(info));
  const tufRoot = readFileSync(rootFile);
  const version = (JSON.parse(tufRoot.toString('utf8')) as { signed: { version: number } }).signed.version;
  return { bytes: readFileSync(file), tufRoot, tufRootVersion: version };
}

/**
 * Reads a TUF repository laid out in a directory like its HTTP mirror (`N.root.json`,
 * `timestamp.json`, `N.snapshot.json`, `N.targets.json`, `targets/<sha256>.<name>`), for air-gapped
 * use. A missing file is a 404, as on the mirror (it ends the search for newer roots).
 */
const MAX_DIRECTORY_FILE_BYTES = 16 * 1024 * 1024;

class DirectoryFetcher extends BaseFetcher {
  constructor(private readonly dir: string) {
    super();
  }

  override async fetch(url: string): Promise<ReadableStream<Uint8Array<ArrayBuffer>>> {
    const file = fileURLToPath(url);
    const rel = path.relative(this.dir, file);
    if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) {
      throw new DownloadHTTPError(`${url} is outside the mirror directory`, 403);
    }
    try {
      // Read whole and closed at once (tuf-js stops reading past its length limit without
      // cancelling the stream): refused above MAX_DIRECTORY_FILE_BYTES.
      // Policy: only regular files are read (symlinks are followed, the signed hashes bound their
      // content). A FIFO or a device (a symlink to /dev/zero) would block open() or read without
      // end, and the refresh, the next ones (one at a time) and stop() would wait forever;
      // O_NONBLOCK keeps open() from blocking on a FIFO, the fstat refuses it.
      const handle = await open(file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
      try {
        const stat = await handle.stat();
        if (!stat.isFile()) {
          throw new DownloadHTTPError(`${rel} is not a regular file`, 403);
        }
        if (stat.size > MAX_DIRECTORY_FILE_BYTES) {
          throw new DownloadLengthMismatchError(`${rel} is larger than ${MAX_DIRECTORY_FILE_BYTES} bytes`);
        }
        const bytes = await handle.readFile();
        return new Blob([bytes]).stream() as ReadableStream<Uint8Array<ArrayBuffer>>;
      } finally {
        await handle.close();
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new DownloadHTTPError(`${rel} is not in the mirror directory`, 404);
      }
      throw err;
    }
  }
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** An error's message, with what tuf-js and fetch keep aside (HTTP status, the network cause). */
function describe(err: unknown): string {
  const e = err as Error & { statusCode?: number; cause?: { code?: string; message?: string } };
  const name = e?.name && e.name !== 'Error' ? `${e.name}: ` : '';
  const status = typeof e?.statusCode === 'number' ? ` (HTTP ${e.statusCode})` : '';
  const cause = e?.cause?.code ?? e?.cause?.message;
  return `${name}${e?.message ?? String(err)}${status}${cause ? ` (${cause})` : ''}`;
}
