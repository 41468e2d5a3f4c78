/**
 * Sigstore trusted roots through TUF: the cost of a first update from the pinned root (empty
 * cache) and of a background refresh that finds nothing new, against a TEST TUF repository
 * (test/helpers/tuf-repo.ts, target: the public-good trusted_root.json) served on a loopback
 * port. Not a test. Run: npx tsc -p tsconfig.json && node dist/bench/sigstore-roots.js
 *
 * Medians over FIRST_RUNS fresh clients and REFRESH_RUNS refreshes of one client; bounded in count.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runMain } from './lib/setup.js';
import { SigstoreRoots } from '../src/trust/sigstore-roots.js';
import { TestTufRepository } from '../test/helpers/tuf-repo.js';
import { sharedDir } from '../test/helpers/fixtures.js';

const FIRST_RUNS = Number(process.env['FIRST_RUNS'] ?? 11);
const REFRESH_RUNS = Number(process.env['REFRESH_RUNS'] ?? 51);
const quiet = { info: () => undefined, warn: () => undefined, error: console.error };
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

runMain(async () => {
  const repo = new TestTufRepository();
  repo.setTarget(
    'trusted_root.json',
    readFileSync(path.join(sharedDir(), 'fixtures/sigstore-public-good/trusted_root.json')),
  );
  const server = await repo.serve();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'trustgate-bench-tuf-'));
  const pin = path.join(dir, 'root.json');
  writeFileSync(pin, repo.pinnedRoot);
  const source = (i: number) =>
    ({
      kind: 'tuf',
      name: 'bench',
      mirror: server.url,
      root: pin,
      cacheDir: path.join(dir, `cache-${i}`),
      target: 'trusted_root.json',
      refreshSeconds: 3600,
      timeoutSeconds: 5,
    }) as const;
  try {
    const first: number[] = [];
    let last: SigstoreRoots | undefined;
    for (let i = 0; i < FIRST_RUNS; i++) {
      await last?.stop();
      last = new SigstoreRoots([source(i)], { log: quiet });
      const t = performance.now();
      await last.start();
      first.push(performance.now() - t);
      if (last.current().length !== 1) throw new Error('the update did not verify');
    }
    const again: number[] = [];
    for (let i = 0; i < REFRESH_RUNS; i++) {
      const t = performance.now();
      const [outcome] = await last!.refresh();
      again.push(performance.now() - t);
      if (outcome !== 'unchanged') throw new Error(`refresh: ${outcome}`);
    }
    await last?.stop();
    console.log(
      `first TUF update from the pin (loopback HTTP, empty cache): p50 ${median(first).toFixed(1)} ms (n=${FIRST_RUNS})`,
    );
    console.log(
      `background refresh, nothing new:                    p50 ${median(again).toFixed(1)} ms (n=${REFRESH_RUNS})`,
    );
  } finally {
    await server.close();
    repo.remove();
    rmSync(dir, { recursive: true, force: true });
  }
});
