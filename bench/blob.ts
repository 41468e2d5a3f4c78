/**
 * Blob GET throughput: one random blob (BLOB_MIB, default 256 MiB) pushed to registry:2 with a
 * monolithic upload (POST, then a single PUT ?digest= carrying the body; registry 2.8 answers a
 * POST ?digest= with a body by opening an upload session instead), then downloaded RUNS times (default 5) from each target, alternating:
 *   direct       registry:2 over plain http
 *   nginx        nginx TLS proxy, distribution recipe + proxy_buffering off
 *   nginx-tuned  nginx TLS proxy, 256k buffers, upstream keep-alive
 *   trustgate    startTrustgate() from src/server/main.ts (skipped while it does not load)
 *   ceiling      a raw TLS stream between two Node processes (no HTTP, no proxy)
 * The client streams into a counter (node http/https, nothing buffered); each target's first,
 * untimed download is checked against the digest.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/blob.js
 */
import { createHash, randomFillSync } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import path from 'node:path';
import { startRegistry } from '../test/helpers/stack.js';
import { readCeiling, startCeilingServer } from './lib/ceiling.js';
import { withCpu } from './lib/cpu.js';
import { startNginx } from './lib/nginx.js';
import { RegistryClient, type Transfer } from './lib/registry-client.js';
import { benchEnv, runMain, withCleanup } from './lib/setup.js';
import { alternate, envInt, fmt, median, MiB, ratio, table, type Target } from './lib/stats.js';
import { benchReads, loadTrustgate, startTrustgateChild, writeTrustgateConfig } from './lib/trustgate.js';

async function writeRandomFile(file: string, bytes: number): Promise<string> {
  const hash = createHash('sha256');
  const out = createWriteStream(file);
  const chunk = Buffer.allocUnsafe(4 * MiB);
  for (let left = bytes; left > 0;) {
    const n = Math.min(left, chunk.length);
    randomFillSync(chunk, 0, n);
    const piece = Buffer.from(chunk.subarray(0, n));
    hash.update(piece);
    if (!out.write(piece)) await new Promise<void>((r) => out.once('drain', () => r()));
    left -= n;
  }
  await new Promise<void>((resolve, reject) =>
    out.end((err?: Error | null) => (err ? reject(err) : resolve())),
  );
  return `sha256:${hash.digest('hex')}`;
}

async function main(): Promise<void> {
  const sizeMiB = envInt('BLOB_MIB', 256, 1, 8192);
  const runs = envInt('RUNS', 5, 1, 100);
  const size = sizeMiB * MiB;
  const repo = 'bench/blob';

  await withCleanup(async (defer) => {
    const env = await benchEnv('blob');
    defer(env.cleanup);
    const registry = await startRegistry();
    defer(() => registry.stop());
    console.log(`registry:2 ${registry.url} (pid ${registry.pid})`);

    const file = path.join(env.dir, 'blob.bin');
    const digest = await writeRandomFile(file, size);
    const direct = new RegistryClient(registry.url);
    await direct.pushBlobFile(repo, file, digest, size);
    console.log(`pushed ${sizeMiB} MiB blob ${digest} (monolithic: POST, then one PUT with the body)`);

    const { serverCert: cert, serverKey: key } = env.certs;
    const nginx = await startNginx({ upstream: registry.url, cert, key, variant: 'recipe' });
    defer(() => nginx.stop());
    const tuned = await startNginx({ upstream: registry.url, cert, key, variant: 'tuned' });
    defer(() => tuned.stop());
    // The same storage served by a second registry:2 with TLS: how clients read without a proxy.
    const registryTls = await startRegistry({ dataDir: registry.dataDir, tls: { cert, key } });
    defer(() => registryTls.stop());
    const ceiling = await startCeilingServer(cert, key);
    defer(() => ceiling.stop());

    // CPU seconds per run of the client (this process), the proxy and the registry.
    type Measured = Transfer & { cpu: Record<string, number> };
    const measured =
      (proxyPid: number | undefined, fn: () => Promise<Transfer>, registryPid = registry.pid) =>
      async (): Promise<Measured> => {
        const pids: Record<string, number> = { client: process.pid, registry: registryPid };
        if (proxyPid !== undefined) pids['proxy'] = proxyPid;
        const { result, cpu } = await withCpu(pids, fn);
        return { ...result, cpu };
      };
    const targets: Target<Measured>[] = [
      { name: 'direct', run: measured(undefined, () => direct.getBlob(repo, digest)) },
      {
        name: 'direct-tls',
        run: measured(
          undefined,
          () => new RegistryClient(registryTls.url, { ca: env.ca }).getBlob(repo, digest),
          registryTls.pid,
        ),
      },
      {
        name: 'nginx',
        run: measured(nginx.pid, () => new RegistryClient(nginx.url, { ca: env.ca }).getBlob(repo, digest)),
      },
      {
        name: 'nginx-tuned',
        run: measured(tuned.pid, () => new RegistryClient(tuned.url, { ca: env.ca }).getBlob(repo, digest)),
      },
    ];

    const lib = await loadTrustgate();
    if (lib.ok) {
      for (const variant of benchReads()) {
        const files = await writeTrustgateConfig(path.join(env.dir, variant.name), {
          registryUrl: registry.url,
          cert,
          key,
          ...(variant.reads ? { reads: variant.reads } : {}),
        });
        // Its own process, like nginx: sharing this event loop with the client would halve it.
        const tg = await startTrustgateChild(files, variant.dist);
        defer(() => tg.close());
        const client = new RegistryClient(tg.url, { ca: env.ca, creds: files.creds });
        targets.push({
          name: variant.name,
          run: async () => {
            await client.login([`repository:${repo}:pull`]); // untimed: a fresh token per run
            return measured(tg.pid, () => client.getBlob(repo, digest))();
          },
        });
        console.log(
          `${variant.name} ${tg.url} (pid ${tg.pid}, reads ${variant.reads ?? 'default'}${variant.dist ? `, build ${variant.dist}` : ''}, node ${tg.nodeFlags.join(' ') || '(no flags)'})`,
        );
      }
    } else {
      console.log(`SKIP trustgate: ${lib.reason}`);
    }
    targets.push({
      name: 'ceiling',
      run: measured(ceiling.pid, () => readCeiling(ceiling.port, env.ca, size)),
    });

    // BENCH_TARGETS=trustgate,ceiling narrows a run while iterating on one target.
    const only = process.env['BENCH_TARGETS']?.split(',');
    if (only) targets.splice(0, targets.length, ...targets.filter((t) => only.includes(t.name)));
    // Untimed warm-up that also checks content.
    for (const t of targets) {
      if (t.name === 'ceiling') await t.run();
      else if (t.name.startsWith('trustgate')) await t.run();
      else {
        const base =
          {
            direct: registry.url,
            'direct-tls': registryTls.url,
            nginx: nginx.url,
            'nginx-tuned': tuned.url,
          }[t.name] ?? registry.url;
        await new RegistryClient(base, { ca: env.ca }).getBlob(repo, digest, true);
      }
    }

    const results = await alternate(targets, runs, (name, i, r) => {
      if (r.bytes !== size) throw new Error(`${name}: got ${r.bytes} of ${size} bytes`);
      console.log(`  run ${i + 1} ${name.padEnd(12)} ${fmt(size / MiB / r.seconds)} MiB/s`);
    });

    const mibps = new Map<string, number[]>();
    for (const [name, rs] of results)
      mibps.set(
        name,
        rs.map((r) => size / MiB / r.seconds),
      );
    const med = (n: string): number => median(mibps.get(n) ?? []);
    console.log(`\nGET ${sizeMiB} MiB blob, ${runs} alternating runs each (MiB/s)`);
    console.log(
      table([
        ['target', 'median', 'min', 'max'],
        ...[...mibps].map(([n, xs]) => [n, fmt(median(xs)), fmt(Math.min(...xs)), fmt(Math.max(...xs))]),
      ]),
    );
    console.log(`\nCPU milliseconds per MiB (medians): where the 2 cores went`);
    const cpuPerMiB = (n: string, who: string): string => {
      const xs = (results.get(n) ?? []).map((r) => r.cpu[who]);
      return xs.every((x) => x !== undefined) ? fmt((median(xs as number[]) * 1000) / sizeMiB, 2) : '-';
    };
    console.log(
      table([
        ['target', 'client', 'proxy', 'registry'],
        ...[...results.keys()].map((n) => [
          n,
          cpuPerMiB(n, 'client'),
          cpuPerMiB(n, 'proxy'),
          cpuPerMiB(n, 'registry'),
        ]),
      ]),
    );
    console.log('\nratios of medians');
    console.log(
      table([
        ['nginx/ceiling', ratio(med('nginx'), med('ceiling'))],
        ['nginx-tuned/ceiling', ratio(med('nginx-tuned'), med('ceiling'))],
        ['trustgate/nginx-tuned', ratio(med('trustgate'), med('nginx-tuned'))],
        ['trustgate/ceiling', ratio(med('trustgate'), med('ceiling'))],
        ['trustgate/direct-tls', ratio(med('trustgate'), med('direct-tls'))],
        ...benchReads()
          .slice(1)
          .map((v) => [`${v.name}/trustgate`, ratio(med(v.name), med('trustgate'))]),
      ]),
    );
  });
}

runMain(main);
