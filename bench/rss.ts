/**
 * Peak memory of the trustgate process while a large blob (RSS_MIB, default 1024 MiB) is pushed
 * through it (POST, one streamed PATCH, PUT ?digest=) and pulled back (GET, hashed). trustgate
 * runs in its own Node process (bench/lib/trustgate-child.ts); /proc/<pid>/status is sampled
 * every 50 ms for VmRSS, and VmHWM (the kernel's high-water mark) is read at each phase end.
 * A streaming proxy stays near its idle RSS; one that buffers grows by about the blob size.
 * Each of `RUNS` runs starts a fresh gate; `BENCH_BASELINE=/path/to/other/dist` measures another
 * build in the same alternating runs.
 *
 *   npx tsc -p tsconfig.json && RUNS=3 node dist/bench/rss.js
 */
import { randomFillSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { startRegistry } from '../test/helpers/stack.js';
import { RegistryClient } from './lib/registry-client.js';
import { benchEnv, runMain, withCleanup } from './lib/setup.js';
import { cpuSeconds } from './lib/cpu.js';
import { alternate, envInt, fmt, median, MiB, table } from './lib/stats.js';
import { loadTrustgate, startTrustgateChild, writeTrustgateConfig } from './lib/trustgate.js';

function memOf(pid: number): { rss: number; hwm: number } | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k: string): number =>
      Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN) * 1024;
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return undefined;
  }
}

class Sampler {
  peak = 0;
  private timer: NodeJS.Timeout | undefined;
  constructor(private readonly pid: number) {}
  start(): void {
    this.peak = memOf(this.pid)?.rss ?? 0;
    this.timer = setInterval(() => {
      const m = memOf(this.pid);
      if (m && m.rss > this.peak) this.peak = m.rss;
    }, 50);
  }
  stop(): number {
    clearInterval(this.timer);
    return this.peak;
  }
}

/**
 * The blob's bytes: 16 random 1 MiB blocks, cycled. The same content every run, so registry:2
 * keeps one copy of the blob however many runs push it (each push still streams every byte
 * through trustgate: an upload session, its PATCH, then the PUT).
 */
function blobSource(blocks: Buffer[], bytes: number): AsyncGenerator<Buffer> {
  return (async function* () {
    for (let i = 0, left = bytes; left > 0; i++) {
      const block = blocks[i % blocks.length]!;
      const n = Math.min(left, block.length);
      yield n === block.length ? block : block.subarray(0, n);
      left -= n;
    }
  })();
}

interface RunResult {
  idle: number;
  pushPeak: number;
  hwmAfterPush: number;
  pullPeak: number;
  hwm: number;
  pushMiBs: number;
  pullMiBs: number;
  /** CPU milliseconds of the gate per MiB pushed and pulled. */
  pushCpu: number;
  pullCpu: number;
}

async function main(): Promise<void> {
  const sizeMiB = envInt('RSS_MIB', 1024, 1, 16_384);
  const runs = envInt('RUNS', 1, 1, 50);
  const size = sizeMiB * MiB;
  const repo = 'bench/rss';
  const lib = await loadTrustgate();
  if (!lib.ok) {
    console.log(`SKIP rss: ${lib.reason}`);
    return;
  }
  await withCleanup(async (defer) => {
    const env = await benchEnv('rss');
    defer(env.cleanup);
    const registry = await startRegistry();
    defer(() => registry.stop());
    const blocks = Array.from({ length: 16 }, () => randomFillSync(Buffer.allocUnsafe(MiB)));
    // BENCH_BASELINE=/path/to/other/dist adds `trustgate-baseline`, measured in alternation.
    const baseline = process.env['BENCH_BASELINE'];
    const variants: Array<{ name: string; dist?: string }> = [
      { name: 'trustgate' },
      ...(baseline ? [{ name: 'trustgate-baseline', dist: baseline }] : []),
    ];

    const runOnce = async (v: { name: string; dist?: string }): Promise<RunResult> => {
      const files = await writeTrustgateConfig(path.join(env.dir, v.name), {
        registryUrl: registry.url,
        cert: env.certs.serverCert,
        key: env.certs.serverKey,
        // RSS_READS=node measures downloads through the general forwarder (upstream.reads: node).
        ...(process.env['RSS_READS'] ? { reads: process.env['RSS_READS'] } : {}),
      });
      // A fresh process per run: VmHWM is the process's own peak.
      const tg = await startTrustgateChild(files, v.dist);
      try {
        await new Promise((r) => setTimeout(r, 500));
        const idle = memOf(tg.pid)?.rss ?? NaN;
        const client = new RegistryClient(tg.url, { ca: env.ca, creds: files.creds });
        await client.login([`repository:${repo}:pull,push`]);
        const sampler = new Sampler(tg.pid);
        sampler.start();
        const cpu0 = cpuSeconds(tg.pid);
        const push = await client.pushBlobStream(repo, blobSource(blocks, size), size);
        const cpu1 = cpuSeconds(tg.pid);
        const pushPeak = sampler.stop();
        const hwmAfterPush = memOf(tg.pid)?.hwm ?? NaN;
        await client.login([`repository:${repo}:pull`]);
        sampler.start();
        const cpu2 = cpuSeconds(tg.pid);
        const pull = await client.getBlob(repo, push.digest ?? '', true);
        const cpu3 = cpuSeconds(tg.pid);
        const pullPeak = sampler.stop();
        const hwm = memOf(tg.pid)?.hwm ?? NaN;
        if (pull.bytes !== size) throw new Error(`pull: ${pull.bytes} of ${size} bytes`);
        const r: RunResult = {
          idle,
          pushPeak,
          hwmAfterPush,
          pullPeak,
          hwm,
          pushMiBs: sizeMiB / push.seconds,
          pullMiBs: sizeMiB / pull.seconds,
          pushCpu: ((cpu1 - cpu0) * 1000) / sizeMiB,
          pullCpu: ((cpu3 - cpu2) * 1000) / sizeMiB,
        };
        console.log(
          `${v.name} (pid ${tg.pid}, node ${tg.nodeFlags.join(' ') || '(no flags)'}): idle ${fmt(idle / MiB)} MiB, ` +
            `push ${fmt(r.pushMiBs)} MiB/s (VmHWM ${fmt(hwmAfterPush / MiB)}), pull ${fmt(r.pullMiBs)} MiB/s ` +
            `(VmHWM ${fmt(hwm / MiB)}, digest ok); gate CPU ms/MiB push ${fmt(r.pushCpu, 2)}, pull ${fmt(r.pullCpu, 2)}`,
        );
        return r;
      } finally {
        await tg.close();
      }
    };

    const results = await alternate(
      variants.map((v) => ({ name: v.name, run: () => runOnce(v) })),
      runs,
    );

    const spread = (xs: number[], div = MiB, digits = 1): string =>
      runs === 1
        ? fmt(median(xs) / div, digits)
        : `${fmt(median(xs) / div, digits)} (${fmt(Math.min(...xs) / div, digits)}–${fmt(Math.max(...xs) / div, digits)})`;
    const col = (f: (r: RunResult) => number, div = MiB, digits = 1): string[] =>
      variants.map((v) => spread((results.get(v.name) ?? []).map(f), div, digits));
    console.log(
      `\ntrustgate memory, ${sizeMiB} MiB blob, MiB (median of ${runs} run${runs === 1 ? '' : 's'}, min–max)`,
    );
    console.log(
      table([
        ['', ...variants.map((v) => v.name)],
        ['idle RSS', ...col((r) => r.idle)],
        ['peak RSS during push (sampled)', ...col((r) => r.pushPeak)],
        ['VmHWM after push', ...col((r) => r.hwmAfterPush)],
        ['peak RSS during pull (sampled)', ...col((r) => r.pullPeak)],
        ['VmHWM after pull', ...col((r) => r.hwm)],
        ['VmHWM - idle RSS', ...col((r) => r.hwm - r.idle)],
        ['push MiB/s', ...col((r) => r.pushMiBs, 1)],
        ['pull MiB/s', ...col((r) => r.pullMiBs, 1)],
        ['gate CPU ms/MiB, push', ...col((r) => r.pushCpu, 1, 2)],
        ['gate CPU ms/MiB, pull', ...col((r) => r.pullCpu, 1, 2)],
      ]),
    );
  });
}

runMain(main);
