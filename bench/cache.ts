/**
 * Verdict cache get latency: local-tier hits vs Redis hits, against a real redis-server on a free
 * loopback port. Not a test. Run: npx tsc -p tsconfig.json && node dist/bench/cache.js
 *
 * Each run does WARMUP + N sequential gets per case (one at a time: latency, not throughput) and
 * records p50/p99; the figures printed are the median over RUNS runs. Every run is bounded by
 * RUN_BUDGET_MS: a case that exceeds it stops early and says so.
 */
import { runMain } from './lib/setup.js';
import { RedisVerdictCache } from '../src/cache/redis-cache.js';
import { TieredVerdictCache } from '../src/cache/tiered-cache.js';
import { startRedis } from '../test/helpers/stack.js';

const RUNS = 5;
const N = Number(process.env['BENCH_N'] ?? 5000);
const WARMUP = 500;
const RUN_BUDGET_MS = 15_000;
const KEYS = 1000;

const silent = { info: () => undefined, warn: console.warn, error: console.error };
const verdict = {
  ok: true,
  reason: 'signed',
  message: 'signed by release-2026',
  signers: ['release-2026'],
  boundTags: ['v1.2.3'],
};

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

async function measure(
  get: (i: number) => Promise<unknown>,
): Promise<{ p50: number; p99: number; n: number; truncated: boolean }> {
  for (let i = 0; i < WARMUP; i++) await get(i);
  const lat: number[] = [];
  const deadline = performance.now() + RUN_BUDGET_MS;
  for (let i = 0; i < N; i++) {
    const t0 = performance.now();
    const v = await get(i);
    lat.push((performance.now() - t0) * 1000);
    if (v === undefined) throw new Error(`unexpected miss at ${i}`);
    if (t0 > deadline) break;
  }
  lat.sort((a, b) => a - b);
  return { p50: quantile(lat, 0.5), p99: quantile(lat, 0.99), n: lat.length, truncated: lat.length < N };
}

async function main(): Promise<void> {
  const redis = await startRedis();
  const secret = 'bench-secret-0123456789abcdef-0123456789';
  const mk = (): RedisVerdictCache =>
    new RedisVerdictCache({ url: redis.url, hmacSecret: secret, logger: silent, timeoutMs: 250 });
  const writer = new TieredVerdictCache(mk(), 10_000);
  const reader = mk();
  const tiered = new TieredVerdictCache(mk(), 10_000);
  try {
    await Promise.all([writer.connect(), reader.connect(), tiered.connect()]);
    const key = (i: number): string =>
      `v:0123456789abcdef0123456789abcdef:prod/app:sha256:${(i % KEYS).toString(16).padStart(64, '0')}`;
    for (let i = 0; i < KEYS; i++) await writer.set(key(i), verdict, 3600);
    for (let i = 0; i < KEYS; i++) await tiered.get(key(i)); // fill the local tier

    const cases: Array<[string, (i: number) => Promise<unknown>]> = [
      ['local-tier hit (TieredVerdictCache.get)', (i) => tiered.get(key(i))],
      ['Redis hit (RedisVerdictCache.get: GET + HMAC + parse)', (i) => reader.get(key(i))],
      ['Redis hit, tiered fill path (getEntry: MULTI GET+PTTL)', (i) => reader.getEntry(key(i))],
    ];
    console.log(
      `redis-server ${redis.url}; ${RUNS} runs x ${N} sequential gets per case; median of runs (µs)`,
    );
    for (const [name, get] of cases) {
      const runs = [];
      for (let r = 0; r < RUNS; r++) runs.push(await measure(get));
      const trunc = runs.some((r) => r.truncated) ? ' (some runs truncated by the time budget)' : '';
      console.log(
        `${name.padEnd(56)} p50 ${median(runs.map((r) => r.p50))
          .toFixed(1)
          .padStart(7)}  p99 ${median(runs.map((r) => r.p99))
          .toFixed(1)
          .padStart(7)}${trunc}`,
      );
    }
    const s = tiered.stats();
    if (s.redis.forged !== 0 || s.degraded) throw new Error(`unexpected state ${JSON.stringify(s)}`);
  } finally {
    await Promise.all([writer.close(), reader.close(), tiered.close()]);
    await redis.stop();
  }
}

runMain(main);
