/**
 * The Node/V8 flags trustgate's process is started with. V8 reads them only when the process
 * starts (`v8.setFlagsFromString` afterwards leaves the heap as it was), so they are written where
 * the service starts: the Dockerfile's ENTRYPOINT, the `trustgate` bin's shebang
 * (src/cli/main.ts), `npm start` and scripts/quickstart.sh; test/server/runtime-flags.test.ts
 * checks that each names exactly these, and bench/lib/trustgate.ts starts each measured build
 * with its own list.
 *
 * `--max-semi-space-size=2` (MiB; V8's default on Node 24 is 16 on a machine with a few GiB of
 * memory): every TLS record of an upload arrives in a fresh 16 KiB buffer that dies young, and V8
 * frees such buffers only when it collects. With 16 MiB semi-spaces the young generation rarely
 * fills on a relay (little JavaScript garbage per byte), so the dead buffers piled up to V8's
 * 64 MiB external-memory trigger before a full collection freed them: about 80 MiB of peak RSS
 * while streaming an upload, and 15 MiB of idle young generation. With 2 MiB a scavenge frees
 * them after a few MiB (bench/README.md, session 5 memory: figures for 1, 2, 4 and 16, and the
 * CPU per MiB and per request with and without).
 */
export const SERVE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2'];

/**
 * The flags of SERVE_NODE_FLAGS this process was started without, neither on the command line
 * nor in NODE_OPTIONS (compared by name: an operator's own value is theirs to choose).
 */
export function missingServeFlags(
  execArgv: readonly string[] = process.execArgv,
  nodeOptions: string | undefined = process.env['NODE_OPTIONS'],
): string[] {
  const given = [...execArgv, ...(nodeOptions ?? '').split(/\s+/)].map(flagName);
  return SERVE_NODE_FLAGS.filter((f) => !given.includes(flagName(f)));
}

/** `--max-semi-space-size` for `--max-semi-space-size=2`; V8 treats `_` and `-` alike. */
function flagName(arg: string): string {
  return arg.split('=')[0]!.replaceAll('_', '-');
}
