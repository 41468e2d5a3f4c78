/**
 * Token service throughput: tokens issued per second and access-token validations per second
 * (ES256, jose), median of 5 runs. Each run is bounded both in count and in time.
 * Run: npx tsc -p tsconfig.json && node dist/bench/token.js
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadOrCreateTokenKeys } from '../src/auth/token-keys.js';
import { TokenService } from '../src/auth/tokens.js';
import type { AccessClaim } from '../src/core/scope.js';
import { median } from './lib/stats.js';

const RUNS = 5;
const MAX_OPS = 20_000;
const MAX_MS = 2_000;

async function run(op: (i: number) => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  let n = 0;
  while (n < MAX_OPS && performance.now() - t0 < MAX_MS) {
    await op(n);
    n++;
  }
  return n / ((performance.now() - t0) / 1000);
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tg-bench-'));
  try {
    const quiet = { info: () => {}, warn: () => {} };
    const svc = new TokenService({
      keys: await loadOrCreateTokenKeys(dir, quiet),
      issuer: 'trustgate',
      service: 'trustgate',
      ttlSeconds: 300,
      refreshTtlSeconds: 3600,
    });
    const id = { subject: 'alice', kind: 'user' as const, groups: [] };
    const access: AccessClaim[] = [{ type: 'repository', name: 'team-a/app', actions: ['pull', 'push'] }];
    const now = new Date();
    const tokens = await Promise.all(Array.from({ length: 64 }, () => svc.issue(id, access, now)));
    await run((i) => svc.verifyAccessToken(tokens[i % 64]!.token, now)); // warm-up
    const issue: number[] = [];
    const verify: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      issue.push(await run(() => svc.issue(id, access, now)));
      verify.push(await run((i) => svc.verifyAccessToken(tokens[i % 64]!.token, now)));
    }
    const fmt = (xs: number[]) =>
      `${Math.round(median(xs))}/s (runs: ${xs.map((x) => Math.round(x)).join(', ')})`;
    console.log(`node ${process.version}, ES256 via jose, single thread, sequential awaits`);
    console.log(`tokens issued:     ${fmt(issue)}`);
    console.log(`tokens validated:  ${fmt(verify)}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
