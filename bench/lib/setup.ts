/** Shared set-up for the benchmarks: work dir, certificates, cleanup on signals. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { generateDevCertificates, type DevCertificates } from '../../src/cli/certs.js';
import { makeTempDir, removeTempDir } from '../../test/helpers/stack.js';

export interface BenchEnv {
  dir: string;
  certs: DevCertificates;
  ca: string;
  cleanup(): void;
}

export async function benchEnv(name: string): Promise<BenchEnv> {
  const dir = makeTempDir(`bench-${name}`);
  const certs = await generateDevCertificates({
    dir: path.join(dir, 'certs'),
    hosts: ['localhost', '127.0.0.1'],
  });
  return { dir, certs, ca: readFileSync(certs.caCert, 'utf8'), cleanup: () => removeTempDir(dir) };
}

/** Runs `fn`, then every cleanup in reverse order, also when `fn` throws. */
export async function withCleanup(
  fn: (defer: (f: () => Promise<void> | void) => void) => Promise<void>,
): Promise<void> {
  const stack: Array<() => Promise<void> | void> = [];
  try {
    await fn((f) => stack.push(f));
  } finally {
    for (const f of stack.reverse()) {
      try {
        await f();
      } catch (err) {
        console.error(`cleanup: ${(err as Error).message}`);
      }
    }
  }
}

/** Runs a benchmark's main and exits: 0 when it finished, 1 with the stack when it threw. */
export function runMain(main: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error((err as Error)?.stack ?? String(err));
      process.exit(1);
    },
  );
}
