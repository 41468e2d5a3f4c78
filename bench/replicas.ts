/**
 * Scale-out: the deploy/kubernetes topology run locally with local binaries. One registry:2, one
 * redis-server, two trustgate replicas (each its own Node process) sharing Redis (verdicts,
 * admissions, replica notifications), the token signing keys and the trusted keys, behind a TCP
 * balancer (nginx `stream`, round robin per connection, TLS passing through to the replicas as
 * a Kubernetes Service does). Two balancers run side by side: `one` sends every connection to
 * replica A, `two` spreads them over A and B, so one and two replicas are measured in the same
 * invocation, alternating (one, two, one, two, …).
 *
 * Per round and balancer:
 * 1. the 64-tag workload of bench/manifest.ts (wrk, WRK_CONNECTIONS connections, a Lua script
 *    rotating over TAGS tags of one signed image): requests/s and CPU µs per request of each
 *    process;
 * 2. cold verifications: COLD_IMAGES freshly signed images (half legacy `.sig`, half cosign 3
 *    bundle referrers) pulled by digest once each, COLD_CONCURRENCY at a time: verifications/s
 *    and the median latency.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/replicas.js
 *   (RUNS=3 WRK_SECONDS=5 WRK_CONNECTIONS=32 TAGS=64 COLD_IMAGES=40 COLD_CONCURRENCY=8)
 *
 * Needs the nginx stream module (Debian: libnginx-mod-stream).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { generateKeyPair } from '../src/core/signature/sign.js';
import { buildCosignSignBundle, bundleSignerFor } from '../src/core/evidence/bundle-writer.js';
import { freePort, waitForPort } from '../test/helpers/ports.js';
import { pushManifest, pushRandomImage } from '../test/helpers/registry-direct.js';
import { signDirect } from '../test/helpers/sign.js';
import {
  makeTempDir,
  removeTempDir,
  spawnManaged,
  startRedis,
  startRegistry,
} from '../test/helpers/stack.js';
import { cpuSeconds } from './lib/cpu.js';
import { ACCEPT, fetchToken, get, pushBundleReferrer, wrk, type WrkResult } from './lib/manifest-load.js';
import { benchEnv, runMain, withCleanup } from './lib/setup.js';
import { envInt, fmt, median, ratio, table } from './lib/stats.js';
import { startTrustgateChild, writeTrustgateConfig, type GateFiles } from './lib/trustgate.js';

const STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so';

interface Balancer {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/** nginx as a TCP balancer (round robin per connection) over `ports`; one worker. */
async function startBalancer(name: string, ports: number[]): Promise<Balancer> {
  const prefix = makeTempDir(`bench-balancer-${name}`);
  mkdirSync(path.join(prefix, 'logs'), { recursive: true });
  const port = await freePort();
  const conf = path.join(prefix, 'nginx.conf');
  writeFileSync(
    conf,
    `load_module ${STREAM_MODULE};
worker_processes 1;
pid ${path.join(prefix, 'nginx.pid')};
error_log ${path.join(prefix, 'error.log')} warn;
events {
  worker_connections 1024;
}
stream {
  upstream replicas {
${ports.map((p) => `    server 127.0.0.1:${p};`).join('\n')}
  }
  server {
    listen 127.0.0.1:${port};
    proxy_pass replicas;
  }
}
`,
  );
  const proc = spawnManaged('nginx', [
    '-c',
    conf,
    '-p',
    prefix,
    '-e',
    path.join(prefix, 'error.log'),
    '-g',
    'daemon off;',
  ]);
  await waitForPort(port);
  return {
    url: `https://127.0.0.1:${port}`,
    pid: proc.pid,
    stop: async () => {
      await proc.stop('SIGQUIT', 5000);
      removeTempDir(prefix);
    },
  };
}

/** An nginx master and its worker processes (together, the balancer's CPU). */
function nginxPids(master: number): number[] {
  const file = `/proc/${master}/task/${master}/children`;
  const children = existsSync(file)
    ? readFileSync(file, 'utf8').split(/\s+/).filter(Boolean).map(Number)
    : [];
  return [master, ...children];
}

async function main(): Promise<void> {
  if (!existsSync(STREAM_MODULE))
    throw new Error(`${STREAM_MODULE} is missing: apt-get install libnginx-mod-stream`);
  const runs = envInt('RUNS', 3, 1, 20);
  const seconds = envInt('WRK_SECONDS', 5, 1, 60);
  const connections = envInt('WRK_CONNECTIONS', 32, 2, 1000);
  const tags = envInt('TAGS', 64, 2, 10_000);
  const coldImages = envInt('COLD_IMAGES', 40, 2, 1000);
  const coldConcurrency = envInt('COLD_CONCURRENCY', 8, 1, 64);
  await withCleanup(async (defer) => {
    const env = await benchEnv('replicas');
    defer(env.cleanup);
    const registry = await startRegistry();
    defer(() => registry.stop());
    const redis = await startRedis();
    defer(() => redis.stop());
    const key = generateKeyPair('ed25519');
    const img = await pushRandomImage(registry.url, 'bench/app', 'v1', 2, 4096);
    await signDirect(registry.url, 'bench/app', img.digest, key.pkcs8Der, {
      dockerReference: 'localhost/bench/app',
    });
    for (let i = 0; i < tags; i++) await pushManifest(registry.url, 'bench/app', `t${i}`, img.bytes, ACCEPT);

    // Replica A's files; replica B gets the same config but its own port (the shared token keys,
    // trusted keys and htpasswd directories are A's, as the Kubernetes manifests mount them).
    const { serverCert: cert, serverKey: certKey } = env.certs;
    const a = await writeTrustgateConfig(path.join(env.dir, 'a'), {
      registryUrl: registry.url,
      cert,
      key: certKey,
      trust: { rules: [{ repos: ['bench/**'], keys: ['release'] }], keys: { release: key.publicKeyPem } },
    });
    // REPLICAS_TAG_INDEX=1: both replicas answer warm pulls by tag from the tag index
    // (cache.tagIndex, off by default; docs/security-model.md), fed and kept fresh through Redis.
    const tagIndex = process.env['REPLICAS_TAG_INDEX'] === '1';
    const cache = {
      redisUrl: redis.url,
      hmacSecret: randomBytes(32).toString('hex'),
      ...(tagIndex ? { tagIndex: { enabled: true } } : {}),
    };
    const withRedis = (files: GateFiles, port: number): GateFiles => {
      const raw = { ...files.raw, listen: { host: '127.0.0.1', port }, cache };
      const configPath = path.join(path.dirname(files.configPath), `replica-${port}.yaml`);
      writeFileSync(configPath, JSON.stringify(raw, null, 2));
      return { ...files, raw, port, url: `https://127.0.0.1:${port}`, configPath };
    };
    const gateA = await startTrustgateChild(withRedis(a, a.port));
    defer(() => gateA.close());
    const gateB = await startTrustgateChild(withRedis(a, await freePort()));
    defer(() => gateB.close());
    const one = await startBalancer('one', [gateA.port]);
    defer(() => one.stop());
    const two = await startBalancer('two', [gateA.port, gateB.port]);
    defer(() => two.stop());
    const setups = [
      { name: 'one replica', balancer: one },
      { name: 'two replicas', balancer: two },
    ];

    const token = await fetchToken(two.url, env.ca, a.creds, 'bench/app');
    const coldToken = await fetchToken(two.url, env.ca, a.creds, 'bench/cold');
    const rotate = path.join(env.dir, 'rotate-tags.lua');
    writeFileSync(
      rotate,
      `local i = math.random(${tags})\nrequest = function()\n  i = i % ${tags} + 1\n  return wrk.format(nil, "/v2/bench/app/manifests/t" .. (i - 1))\nend\n`,
    );
    const bundleSigner = bundleSignerFor(key.pkcs8Der);
    /** Fresh signed images in bench/cold, half of each format, alternating. */
    const freshImages = async (n: number): Promise<string[]> => {
      const out: string[] = [];
      for (let i = 0; i < n; i++) {
        const im = await pushRandomImage(
          registry.url,
          'bench/cold',
          `c${randomBytes(6).toString('hex')}`,
          1,
          1024,
        );
        if (i % 2 === 0) {
          await signDirect(registry.url, 'bench/cold', im.digest, key.pkcs8Der, {
            dockerReference: 'localhost/bench/cold',
          });
        } else {
          await pushBundleReferrer(
            registry.url,
            'bench/cold',
            im,
            buildCosignSignBundle(im.digest, bundleSigner),
          );
        }
        out.push(im.digest);
      }
      return out;
    };

    const pidsOf = (b: Balancer): Record<string, number[]> => ({
      'replica A': [gateA.pid],
      'replica B': [gateB.pid],
      registry: [registry.pid],
      redis: [redis.pid],
      balancer: nginxPids(b.pid),
    });
    const cpuOf = (pids: Record<string, number[]>): Record<string, number> =>
      Object.fromEntries(
        Object.entries(pids).map(([k, ps]) => [k, ps.reduce((s, p) => s + cpuSeconds(p), 0)]),
      );

    interface Cold {
      perSecond: number;
      p50ms: number;
      errors: number;
      cpuMs: Record<string, number>;
    }
    const tagResults = new Map<string, WrkResult[]>();
    const coldResults = new Map<string, Cold[]>();
    for (let round = 0; round < runs; round++) {
      for (const s of setups) {
        // 1. The 64-tag workload.
        const pids = pidsOf(s.balancer);
        const before = cpuOf(pids);
        const r = wrk(
          connections,
          `${s.balancer.url}/v2/bench/app/manifests/t0`,
          { accept: ACCEPT, authorization: `Bearer ${token}` },
          seconds,
          {},
          rotate,
        );
        const after = cpuOf(pids);
        const requests = r.requests;
        r.cpuUs = Object.fromEntries(
          Object.keys(pids).map((k) => [k, ((after[k]! - before[k]!) * 1e6) / requests]),
        );
        tagResults.set(s.name, [...(tagResults.get(s.name) ?? []), r]);
        console.log(
          `  round ${round + 1} ${s.name.padEnd(13)} ${tagsLabel(tags)} ${fmt(r.rps, 0)} req/s  p50 ${fmt(r.p50ms, 2)} ms  errors ${r.errors}  CPU µs/req ${Object.entries(
            r.cpuUs,
          )
            .map(([k, v]) => `${k} ${fmt(v, 0)}`)
            .join(', ')}`,
        );

        // 2. Cold verifications, COLD_CONCURRENCY at a time.
        const digests = await freshImages(coldImages);
        const agent = new https.Agent({ keepAlive: true, maxSockets: coldConcurrency });
        const h = { accept: ACCEPT, authorization: `Bearer ${coldToken}` };
        const latencies: number[] = [];
        let errors = 0;
        let next = 0;
        const c0 = cpuOf(pids);
        const started = performance.now();
        await Promise.all(
          Array.from({ length: coldConcurrency }, async () => {
            while (next < digests.length) {
              const d = digests[next++]!;
              try {
                latencies.push(await get(`${s.balancer.url}/v2/bench/cold/manifests/${d}`, env.ca, h, agent));
              } catch {
                errors++;
              }
            }
          }),
        );
        const wall = (performance.now() - started) / 1000;
        const c1 = cpuOf(pids);
        agent.destroy();
        const cold: Cold = {
          perSecond: digests.length / wall,
          p50ms: median(latencies),
          errors,
          cpuMs: Object.fromEntries(
            Object.keys(pids).map((k) => [k, ((c1[k]! - c0[k]!) * 1000) / digests.length]),
          ),
        };
        coldResults.set(s.name, [...(coldResults.get(s.name) ?? []), cold]);
        console.log(
          `  round ${round + 1} ${s.name.padEnd(13)} cold      ${fmt(cold.perSecond, 1)} verifications/s  p50 ${fmt(cold.p50ms, 2)} ms  errors ${errors}  CPU ms/verification ${Object.entries(
            cold.cpuMs,
          )
            .map(([k, v]) => `${k} ${fmt(v, 2)}`)
            .join(', ')}`,
        );
      }
    }

    const procs = Object.keys(pidsOf(one));
    console.log(
      `\n${tagsLabel(tags)}, wrk -t2 -c${connections} -d${seconds}s through the balancer, medians of ${runs} rounds`,
    );
    console.log(
      table([
        ['setup', 'req/s', 'p50 ms', 'errors', ...procs.map((p) => `${p} µs/req`)],
        ...setups.map((s) => {
          const rs = tagResults.get(s.name) ?? [];
          return [
            s.name,
            fmt(median(rs.map((r) => r.rps)), 0),
            fmt(median(rs.map((r) => r.p50ms)), 2),
            String(rs.reduce((n, r) => n + r.errors, 0)),
            ...procs.map((p) => fmt(median(rs.map((r) => r.cpuUs[p] ?? NaN)), 0)),
          ];
        }),
      ]),
    );
    console.log(
      `\ncold verifications (${coldImages} fresh images per round, half .sig, half bundles), ${coldConcurrency} at a time, medians of ${runs} rounds`,
    );
    console.log(
      table([
        ['setup', 'verifications/s', 'p50 ms', 'errors', ...procs.map((p) => `${p} ms/verif.`)],
        ...setups.map((s) => {
          const cs = coldResults.get(s.name) ?? [];
          return [
            s.name,
            fmt(median(cs.map((c) => c.perSecond)), 1),
            fmt(median(cs.map((c) => c.p50ms)), 2),
            String(cs.reduce((n, c) => n + c.errors, 0)),
            ...procs.map((p) => fmt(median(cs.map((c) => c.cpuMs[p] ?? NaN)), 2)),
          ];
        }),
      ]),
    );
    const rpsOf = (n: string): number => median((tagResults.get(n) ?? []).map((r) => r.rps));
    const coldOf = (n: string): number => median((coldResults.get(n) ?? []).map((c) => c.perSecond));
    console.log('\nratios of medians (two replicas / one)');
    console.log(
      table([
        [`${tagsLabel(tags)} req/s`, ratio(rpsOf('two replicas'), rpsOf('one replica'))],
        ['cold verifications/s', ratio(coldOf('two replicas'), coldOf('one replica'))],
      ]),
    );
  });
}

function tagsLabel(tags: number): string {
  return `${tags} tags`;
}

runMain(main);
