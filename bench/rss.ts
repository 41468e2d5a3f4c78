/**
 * Peak memory of the trustgate process while a large blob (RSS_MIB, default 1024 MiB) is pushed
 * through it (POST, one streamed PATCH, PUT ?digest=) and pulled back (GET, hashed). trustgate
 * runs in its own Node process (bench/lib/trustgate-child.ts); /proc/<pid>/status is sampled
 * every 50 ms for VmRSS, and VmHWM (the kernel's high-water mark) is read at each phase end.
 * A streaming proxy stays near its idle RSS; one that buffers grows by about the blob size.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/rss.js
 */
import { randomFillSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { startRegistry } from '../test/helpers/stack.js';
import { RegistryClient } from './lib/registry-client.js';
import { benchEnv, runMain, withCleanup } from './lib/setup.js';
import { envInt, fmt, MiB, table } from './lib/stats.js';
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

async function* randomChunks(bytes: number): AsyncGenerator<Buffer> {
  for (let left = bytes; left > 0;) {
    const n = Math.min(left, MiB);
    yield randomFillSync(Buffer.allocUnsafe(n));
    left -= n;
  }
}

async function main(): Promise<void> {
  const sizeMiB = envInt('RSS_MIB', 1024, 1, 16_384);
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
    const files = await writeTrustgateConfig(path.join(env.dir, 'trustgate'), {
      registryUrl: registry.url,
      cert: env.certs.serverCert,
      key: env.certs.serverKey,
    });
    const tg = await startTrustgateChild(files);
    defer(() => tg.close());
    await new Promise((r) => setTimeout(r, 500));
    const idle = memOf(tg.pid);
    console.log(`trustgate child pid ${tg.pid}, idle RSS ${fmt((idle?.rss ?? NaN) / MiB)} MiB`);

    const client = new RegistryClient(tg.url, { ca: env.ca, creds: files.creds });
    await client.login([`repository:${repo}:pull,push`]);
    const sampler = new Sampler(tg.pid);
    sampler.start();
    const push = await client.pushBlobStream(repo, randomChunks(size), size);
    const pushPeak = sampler.stop();
    const hwmAfterPush = memOf(tg.pid)?.hwm ?? NaN;
    console.log(`push ${sizeMiB} MiB: ${fmt(push.seconds, 2)} s, ${fmt(size / MiB / push.seconds)} MiB/s`);

    await client.login([`repository:${repo}:pull`]);
    sampler.start();
    const pull = await client.getBlob(repo, push.digest ?? '', true);
    const pullPeak = sampler.stop();
    const hwm = memOf(tg.pid)?.hwm ?? NaN;
    if (pull.bytes !== size) throw new Error(`pull: ${pull.bytes} of ${size} bytes`);
    console.log(
      `pull ${sizeMiB} MiB: ${fmt(pull.seconds, 2)} s, ${fmt(size / MiB / pull.seconds)} MiB/s (digest ok)`,
    );

    console.log(`\ntrustgate memory, ${sizeMiB} MiB blob (MiB)`);
    console.log(
      table([
        ['idle RSS', fmt((idle?.rss ?? NaN) / MiB)],
        ['peak RSS during push (sampled)', fmt(pushPeak / MiB)],
        ['VmHWM after push', fmt(hwmAfterPush / MiB)],
        ['peak RSS during pull (sampled)', fmt(pullPeak / MiB)],
        ['VmHWM after pull', fmt(hwm / MiB)],
        ['VmHWM - idle RSS', fmt((hwm - (idle?.rss ?? NaN)) / MiB)],
      ]),
    );
  });
}

runMain(main);
