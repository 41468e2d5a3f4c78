/**
 * Image pull: a multi-layer OCI image (PULL_MIB, default 200 MiB, in PULL_LAYERS layers, default
 * 8) pushed to registry:2 with skopeo, then pulled RUNS times (default 5) with
 * `skopeo copy docker://… dir:…` from each target, alternating:
 *   direct       registry:2 over plain http
 *   nginx        nginx TLS proxy (distribution recipe + proxy_buffering off)
 *   nginx-tuned  nginx TLS proxy, 256k buffers, upstream keep-alive
 *   trustgate    startTrustgate() (skipped while src/server/main.ts does not load)
 * Wall time of the whole skopeo process (start-up, token, manifest, all blobs, digest checks).
 * The first, untimed pull of each target is compared byte for byte with the source image.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/pull.js
 */
import { rmSync } from 'node:fs';
import path from 'node:path';
import { assertSameImage, imageBytes, makeOciImage, readDiskImage } from '../test/helpers/images.js';
import { createSkopeoContext, makeCertDir, type Endpoint } from '../test/helpers/skopeo.js';
import { startRegistry } from '../test/helpers/stack.js';
import { startNginx } from './lib/nginx.js';
import { benchEnv, runMain, withCleanup } from './lib/setup.js';
import { alternate, envInt, fmt, median, MiB, ratio, table, type Target } from './lib/stats.js';
import { loadTrustgate, startTrustgateChild, writeTrustgateConfig } from './lib/trustgate.js';

async function main(): Promise<void> {
  const totalMiB = envInt('PULL_MIB', 200, 1, 4096);
  const layers = envInt('PULL_LAYERS', 8, 1, 128);
  const runs = envInt('RUNS', 5, 1, 100);

  await withCleanup(async (defer) => {
    const env = await benchEnv('pull');
    defer(env.cleanup);
    const sk = createSkopeoContext();
    defer(() => sk.close());
    const registry = await startRegistry();
    defer(() => registry.stop());

    const img = await makeOciImage(path.join(env.dir, 'image'), {
      layers,
      layerBytes: Math.ceil((totalMiB * MiB) / layers),
    });
    const bytes = imageBytes(img);
    const regHost = `127.0.0.1:${registry.port}`;
    await sk.copyOk(img.ref, `docker://${regHost}/bench/pull:v1`, { dest: { tlsVerify: false } });
    console.log(`pushed ${fmt(bytes / MiB)} MiB image (${layers} layers) ${img.manifestDigest}`);

    const { serverCert: cert, serverKey: key } = env.certs;
    const certDir = makeCertDir(path.join(env.dir, 'skopeo-certs'), { ca: env.ca });
    const nginx = await startNginx({ upstream: registry.url, cert, key, variant: 'recipe' });
    defer(() => nginx.stop());
    const tuned = await startNginx({ upstream: registry.url, cert, key, variant: 'tuned' });
    defer(() => tuned.stop());

    // The same storage served by a second registry:2 with TLS: how clients pull without a proxy.
    const registryTls = await startRegistry({ dataDir: registry.dataDir, tls: { cert, key } });
    defer(() => registryTls.stop());
    const endpoints: Array<{ name: string; host: string; src: Endpoint }> = [
      { name: 'direct', host: regHost, src: { tlsVerify: false } },
      { name: 'direct-tls', host: `127.0.0.1:${registryTls.port}`, src: { certDir } },
      { name: 'nginx', host: `127.0.0.1:${nginx.port}`, src: { certDir } },
      { name: 'nginx-tuned', host: `127.0.0.1:${tuned.port}`, src: { certDir } },
    ];
    const lib = await loadTrustgate();
    if (lib.ok) {
      const files = await writeTrustgateConfig(path.join(env.dir, 'trustgate'), {
        registryUrl: registry.url,
        cert,
        key,
      });
      // Its own process, like nginx: sharing this event loop with the client would halve it.
      const tg = await startTrustgateChild(files);
      defer(() => tg.close());
      endpoints.push({
        name: 'trustgate',
        host: `127.0.0.1:${tg.port}`,
        src: { certDir, creds: files.creds },
      });
    } else {
      console.log(`SKIP trustgate: ${lib.reason}`);
    }

    const out = path.join(env.dir, 'out');
    const pull = async (e: (typeof endpoints)[number]): Promise<number> => {
      rmSync(out, { recursive: true, force: true });
      const t0 = process.hrtime.bigint();
      await sk.copyOk(`docker://${e.host}/bench/pull:v1`, `dir:${out}`, { src: e.src, timeoutMs: 600_000 });
      return Number(process.hrtime.bigint() - t0) / 1e9;
    };
    for (const e of endpoints) {
      await pull(e);
      await assertSameImage(img, readDiskImage(`dir:${out}`));
    }
    const targets: Target<number>[] = endpoints.map((e) => ({ name: e.name, run: () => pull(e) }));
    const results = await alternate(targets, runs, (name, i, s) =>
      console.log(`  run ${i + 1} ${name.padEnd(12)} ${fmt(s, 3)} s  ${fmt(bytes / MiB / s)} MiB/s`),
    );
    const med = (n: string): number => median(results.get(n) ?? []);
    console.log(
      `\nskopeo copy docker://… dir:…, ${fmt(bytes / MiB)} MiB in ${layers} layers, ${runs} runs each`,
    );
    console.log(
      table([
        ['target', 'median s', 'min s', 'max s', 'MiB/s'],
        ...[...results].map(([n, xs]) => [
          n,
          fmt(median(xs), 3),
          fmt(Math.min(...xs), 3),
          fmt(Math.max(...xs), 3),
          fmt(bytes / MiB / median(xs)),
        ]),
      ]),
    );
    console.log('\nratios of median times (higher = slower)');
    console.log(
      table([
        ['nginx/direct', ratio(med('nginx'), med('direct'))],
        ['nginx-tuned/direct', ratio(med('nginx-tuned'), med('direct'))],
        ['trustgate/nginx-tuned', ratio(med('trustgate'), med('nginx-tuned'))],
        ['trustgate/direct', ratio(med('trustgate'), med('direct'))],
        ['direct-tls/direct', ratio(med('direct-tls'), med('direct'))],
        ['trustgate/direct-tls', ratio(med('trustgate'), med('direct-tls'))],
      ]),
    );
  });
}

runMain(main);
