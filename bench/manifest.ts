/**
 * Manifest GETs with a warm cache, and cold versus warm verification.
 *
 * 1. Throughput: `wrk` (2 threads, 32 connections, WRK_SECONDS each) GETs one signed image's
 *    manifest by tag and by digest through trustgate (enforce mode, Ed25519 key, token auth),
 *    through nginx (tuned variant, TLS) and from registry:2 directly (plain http); RUNS
 *    alternating rounds; medians of requests/s, p50 and p99.
 * 2. Verification latency: VERIFY_IMAGES freshly signed images per evidence format (a legacy
 *    `.sig` signature, or a cosign 3 bundle referrer listed in the referrers tag); the first GET of
 *    each (cold: evidence fetch plus verify) and the second (warm: cached verdict), sequential,
 *    keep-alive; medians.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/manifest.js
 */
import https from 'node:https';
import path from 'node:path';
import { generateKeyPair } from '../src/core/signature/sign.js';
import { startRegistry } from '../test/helpers/stack.js';
import { pushManifest, pushRandomImage } from '../test/helpers/registry-direct.js';
import { buildCosignSignBundle, bundleSignerFor } from '../src/core/evidence/bundle-writer.js';
import {
  fetchToken,
  get,
  pushBundleReferrer,
  signThrough,
  wrk,
  type WrkResult,
} from './lib/manifest-load.js';
import { writeFileSync } from 'node:fs';
import { signDirect } from '../test/helpers/sign.js';
import { TestSigstore, toPem } from '../test/helpers/keyless-ca.js';
import {
  COSIGN_BUNDLE_ANNOTATION,
  COSIGN_CERTIFICATE_ANNOTATION,
} from '../src/core/evidence/legacy-keyless.js';
import { cpuNanos } from './lib/cpu.js';
import { startNginx } from './lib/nginx.js';
import { benchEnv, runMain, withCleanup } from './lib/setup.js';
import { envInt, fmt, median, ratio, table } from './lib/stats.js';
import { benchReads, startTrustgateChild, writeTrustgateConfig } from './lib/trustgate.js';

const ACCEPT = 'application/vnd.oci.image.manifest.v1+json';
/** wrk connections (the figure is at 32). */
const CONNECTIONS = envInt('WRK_CONNECTIONS', 32, 2, 1000);
/** Distinct tags in the `by tags` runs. */
const TAGS = envInt('TAGS', 64, 2, 10_000);

const KEYLESS_ID = {
  issuer: 'https://token.actions.githubusercontent.com',
  subject: 'https://github.com/bench/app/.github/workflows/release.yml@refs/tags/v1',
};

async function main(): Promise<void> {
  const runs = envInt('RUNS', 3, 1, 20);
  const seconds = envInt('WRK_SECONDS', 5, 1, 60);
  const verifyImages = envInt('VERIFY_IMAGES', 30, 0, 500);
  await withCleanup(async (defer) => {
    const env = await benchEnv('manifest');
    defer(env.cleanup);
    const registry = await startRegistry();
    defer(() => registry.stop());
    const key = generateKeyPair('ed25519');
    // Keyless: a TEST Sigstore instance (generated CA, CT log and Rekor log; test/helpers/keyless-ca.ts).
    const sigstore = new TestSigstore();
    const img = await pushRandomImage(registry.url, 'bench/app', 'v1', 2, 4096);
    await signDirect(registry.url, 'bench/app', img.digest, key.pkcs8Der, {
      dockerReference: 'localhost/bench/app',
    });

    const { serverCert: cert, serverKey: certKey } = env.certs;
    const nginx = await startNginx({ upstream: registry.url, cert, key: certKey, variant: 'tuned' });
    defer(() => nginx.stop());
    const gates: Array<{
      name: string;
      url: string;
      pid: number;
      token: string;
      creds: { username: string; password: string };
    }> = [];
    let files: Awaited<ReturnType<typeof writeTrustgateConfig>> | undefined;
    const keyed = {
      rules: [{ repos: ['bench/**'], keys: ['release'] }],
      keys: { release: key.publicKeyPem },
    };
    for (const variant of benchReads()) {
      const f = await writeTrustgateConfig(path.join(env.dir, variant.name), {
        registryUrl: registry.url,
        cert,
        key: certKey,
        // Every gate also verifies keyless signatures (measured below): a BENCH_BASELINE build must
        // know keyless rules.
        trust: {
          ...keyed,
          rules: [
            {
              repos: ['bench/keyless/**'],
              identities: [{ issuer: KEYLESS_ID.issuer, subjectRegExp: 'https://github\\.com/bench/.*' }],
            },
            ...keyed.rules,
          ],
          trustedRoot: sigstore.trustedRoot(),
        },
        ...(variant.reads ? { reads: variant.reads } : {}),
      });
      const g = await startTrustgateChild(f, variant.dist);
      defer(() => g.close());
      files ??= f;
      gates.push({
        name: variant.name,
        url: g.url,
        pid: g.pid,
        token: await fetchToken(g.url, env.ca, f.creds, 'bench/app'),
        creds: f.creds,
      });
    }
    // `trustgate-index`: this build with the tag index on (cache.tagIndex, maxAgeSeconds 60; one
    // replica, no Redis), only when BENCH_TARGETS names it.
    const onlyTargets = process.env['BENCH_TARGETS']?.split(',');
    if (onlyTargets?.includes('trustgate-index')) {
      const f = await writeTrustgateConfig(path.join(env.dir, 'trustgate-index'), {
        registryUrl: registry.url,
        cert,
        key: certKey,
        trust: keyed,
        cache: { tagIndex: { enabled: true, maxAgeSeconds: 60 } },
      });
      const g = await startTrustgateChild(f);
      defer(() => g.close());
      gates.push({
        name: 'trustgate-index',
        url: g.url,
        pid: g.pid,
        token: await fetchToken(g.url, env.ca, f.creds, 'bench/app'),
        creds: f.creds,
      });
    }
    const [tg] = gates;
    if (!tg || !files) throw new Error('no trustgate started');
    // The gates whose verification latency is measured below: this build and the baseline (not
    // trustgate-index, this build again with keyed rules only, nor node-floor, which verifies nothing).
    const verifying = gates.filter((g) => g.name !== 'trustgate-index');
    // `node-floor` (only when BENCH_TARGETS names it): TLS listener + trustgate's upstream client,
    // nothing else (bench/lib/floor-child.ts): the part of trustgate's CPU per request that is Node.
    if (onlyTargets?.includes('node-floor')) {
      const floor = await startTrustgateChild(files, undefined, 'floor-child.js');
      defer(() => floor.close());
      gates.push({ name: 'node-floor', url: floor.url, pid: floor.pid, token: tg.token, creds: tg.creds });
    }

    const targets: Array<{ name: string; base: string; headers: Record<string, string>; pid?: number }> = [
      { name: 'registry', base: registry.url, headers: { accept: ACCEPT } },
      { name: 'nginx-tuned', base: nginx.url, headers: { accept: ACCEPT }, pid: nginx.pid },
      ...gates.map((g) => ({
        name: g.name,
        base: g.url,
        headers: { accept: ACCEPT, authorization: `Bearer ${g.token}` },
        pid: g.pid,
      })),
    ];
    // `tags`: each request names one of TAGS tags (all on the same signed image), so concurrent
    // pulls rarely share a tag: the figure without trustgate's sharing of tag answers.
    const tags = Array.from({ length: TAGS }, (_, i) => `t${i}`);
    for (const t of tags) await pushManifest(registry.url, 'bench/app', t, img.bytes, ACCEPT);
    const rotate = path.join(env.dir, 'rotate-tags.lua');
    writeFileSync(
      rotate,
      `local i = math.random(${TAGS})\nrequest = function()\n  i = i % ${TAGS} + 1\n  return wrk.format(nil, "/v2/bench/app/manifests/t" .. (i - 1))\nend\n`,
    );
    // BENCH_TARGETS=trustgate,nginx-tuned and BENCH_REFS=tags narrow a run while iterating.
    const onlyRefs = process.env['BENCH_REFS']?.split(',');
    const refs = Object.fromEntries(
      Object.entries({ tag: 'v1', tags: 't0', digest: img.digest }).filter(
        ([k]) => !onlyRefs || onlyRefs.includes(k),
      ),
    );
    const results = new Map<string, WrkResult[]>();
    for (let round = 0; round < runs; round++) {
      for (const [refName, ref] of Object.entries(refs)) {
        for (const t of targets) {
          if (onlyTargets && !onlyTargets.includes(t.name)) continue;
          const pids: Record<string, number> = { registry: registry.pid };
          if (t.pid !== undefined) pids['proxy'] = t.pid;
          const r = wrk(
            CONNECTIONS,
            `${t.base}/v2/bench/app/manifests/${ref}`,
            t.headers,
            seconds,
            pids,
            refName === 'tags' ? rotate : undefined,
          );
          const k = `${t.name} by ${refName}`;
          results.set(k, [...(results.get(k) ?? []), r]);
          console.log(
            `  round ${round + 1} ${k.padEnd(24)} ${fmt(r.rps, 0)} req/s  p50 ${fmt(r.p50ms, 2)} ms  p99 ${fmt(r.p99ms, 2)} ms  errors ${r.errors}  CPU µs/req proxy ${fmt(r.cpuUs['proxy'] ?? NaN, 0)} registry ${fmt(r.cpuUs['registry'] ?? NaN, 0)}`,
          );
        }
      }
    }
    const med = (k: string, f: (r: WrkResult) => number): number => median((results.get(k) ?? []).map(f));
    console.log(`\nmanifest GET, wrk -t2 -c${CONNECTIONS} -d${seconds}s, medians of ${runs} rounds`);
    console.log(
      table([
        ['target', 'req/s', 'p50 ms', 'p99 ms', 'errors', 'proxy CPU µs/req', 'registry CPU µs/req'],
        ...[...results.keys()].map((k) => [
          k,
          fmt(
            med(k, (r) => r.rps),
            0,
          ),
          fmt(
            med(k, (r) => r.p50ms),
            2,
          ),
          fmt(
            med(k, (r) => r.p99ms),
            2,
          ),
          String((results.get(k) ?? []).reduce((a, r) => a + r.errors, 0)),
          fmt(
            med(k, (r) => r.cpuUs['proxy'] ?? NaN),
            0,
          ),
          fmt(
            med(k, (r) => r.cpuUs['registry'] ?? NaN),
            0,
          ),
        ]),
      ]),
    );
    const rps = (k: string): number => med(k, (r) => r.rps);
    console.log('\nratios of medians (req/s)');
    console.log(
      table([
        ['trustgate/registry by digest', ratio(rps('trustgate by digest'), rps('registry by digest'))],
        ['trustgate/nginx-tuned by tag', ratio(rps('trustgate by tag'), rps('nginx-tuned by tag'))],
        [
          `trustgate/nginx-tuned by ${TAGS} tags`,
          ratio(rps('trustgate by tags'), rps('nginx-tuned by tags')),
        ],
        ['trustgate/nginx-tuned by digest', ratio(rps('trustgate by digest'), rps('nginx-tuned by digest'))],
        ...gates.slice(1).flatMap((g) =>
          ['tag', 'tags', 'digest'].flatMap((r) => [
            [`${g.name}/trustgate by ${r}`, ratio(rps(`${g.name} by ${r}`), rps(`trustgate by ${r}`))],
            [`${g.name}/nginx-tuned by ${r}`, ratio(rps(`${g.name} by ${r}`), rps(`nginx-tuned by ${r}`))],
          ]),
        ),
      ]),
    );

    // Cold versus warm verification: fresh signed images, first and second GET of each, in both
    // key-based evidence formats and keyless, alternating formats (legacy, bundle, keyless, …) and
    // gates (trustgate, trustgate-baseline, …) so drift is shared. Each gate gets its own images
    // (each in its own repository), so every first GET is cold for the registry too.
    const formats = ['legacy', 'bundle', 'keyless', 'legacy-through', 'bundle-through'] as const;
    const agents = new Map(
      verifying.map((g) => [g.name, new https.Agent({ keepAlive: true, maxSockets: 1 })]),
    );
    defer(() => agents.forEach((a) => a.destroy()));
    type Series = { cold: number[]; warm: number[]; gateCpu: number[]; registryCpu: number[] };
    const latency = new Map<string, Series>();
    const series = (gate: string, format: string): Series => {
      const k = `${gate} ${format}`;
      if (!latency.has(k)) latency.set(k, { cold: [], warm: [], gateCpu: [], registryCpu: [] });
      return latency.get(k)!;
    };
    const bundleSigner = bundleSignerFor(key.pkcs8Der);
    for (let i = 0; i < verifyImages; i++) {
      for (const format of formats) {
        for (const g of verifying) {
          const agent = agents.get(g.name)!;
          const suffix = g === tg ? '' : `-${g.name}`;
          const repo = format === 'keyless' ? `bench/keyless/v${i}${suffix}` : `bench/${format}${i}${suffix}`;
          const im = await pushRandomImage(registry.url, repo, 'v1', 1, 1024);
          if (format === 'legacy') {
            await signDirect(registry.url, repo, im.digest, key.pkcs8Der, {
              dockerReference: `localhost/${repo}`,
            });
          } else if (format === 'bundle') {
            await pushBundleReferrer(registry.url, repo, im, buildCosignSignBundle(im.digest, bundleSigner));
          } else if (format === 'legacy-through' || format === 'bundle-through') {
            const push = await fetchToken(g.url, env.ca, g.creds, repo, 'pull,push');
            await signThrough(
              { registryUrl: registry.url, gateUrl: g.url, ca: env.ca, token: push },
              repo,
              im,
              format === 'legacy-through' ? 'legacy' : 'bundle',
              key.pkcs8Der,
              () => buildCosignSignBundle(im.digest, bundleSigner),
            );
          } else {
            // cosign 2.x keyless .sig layers (Fulcio-like certificate with an SCT, Rekor v1 SET and
            // inclusion proof), verified against a trusted root.
            await signDirect(registry.url, repo, im.digest, new Uint8Array(), {
              dockerReference: `localhost/${repo}`,
              signWith: (payload) => {
                const sig = sigstore.sign(payload, KEYLESS_ID);
                return {
                  signature: sig.signature.toString('base64'),
                  annotations: {
                    [COSIGN_CERTIFICATE_ANNOTATION]: toPem(sig.certificate),
                    [COSIGN_BUNDLE_ANNOTATION]: sig.cosignBundle,
                  },
                };
              },
            });
          }
          const t = await fetchToken(g.url, env.ca, g.creds, repo);
          const h = { accept: ACCEPT, authorization: `Bearer ${t}` };
          const url = `${g.url}/v2/${repo}/manifests/${im.digest}`;
          // A warm request first, so the client's keep-alive connection is open and idle.
          await get(
            `${g.url}/v2/bench/app/manifests/v1`,
            env.ca,
            { ...h, authorization: `Bearer ${g.token}` },
            agent,
          );
          const cpu0 = [cpuNanos(g.pid), cpuNanos(registry.pid)];
          series(g.name, format).cold.push(await get(url, env.ca, h, agent));
          const cpu1 = [cpuNanos(g.pid), cpuNanos(registry.pid)];
          series(g.name, format).gateCpu.push((cpu1[0]! - cpu0[0]!) / 1e6);
          series(g.name, format).registryCpu.push((cpu1[1]! - cpu0[1]!) / 1e6);
          series(g.name, format).warm.push(await get(url, env.ca, h, agent));
        }
      }
    }
    console.log(
      `\nverification latency through trustgate, ${verifyImages} fresh signed images per format and gate (Ed25519 key, or keyless), ms`,
    );
    const what: Record<string, string> = {
      legacy: 'legacy (.sig + payload)',
      bundle: 'bundle (referrers tag + referrer + bundle)',
      keyless: 'keyless (.sig + payload, chain, SCT, SET, identity)',
      'legacy-through': 'legacy, signed through trustgate (first pull)',
      'bundle-through': 'bundle, signed through trustgate (first pull)',
    };
    const row = (name: string, xs: number[]): string[] => [
      name,
      fmt(median(xs), 2),
      fmt(Math.min(...xs), 2),
      fmt(Math.max(...xs), 2),
    ];
    const rows: string[][] = [['', 'median', 'min', 'max']];
    for (const phase of ['cold', 'warm'] as const) {
      for (const format of formats) {
        for (const g of verifying)
          rows.push(
            row(
              `${phase}, ${phase === 'cold' ? what[format] : format}, ${g.name}`,
              series(g.name, format)[phase],
            ),
          );
      }
    }
    console.log(table(rows));
    // CPU of the gate (all its threads) and of registry:2 during each cold GET (schedstat, ns):
    // less sensitive to the machine's load than wall time.
    console.log('\nCPU ms per cold verification (median; gate = all threads of the trustgate process)');
    console.log(
      table([
        ['', 'gate', 'registry'],
        ...formats.flatMap((format) =>
          verifying.map((g) => [
            `${format}, ${g.name}`,
            fmt(median(series(g.name, format).gateCpu), 2),
            fmt(median(series(g.name, format).registryCpu), 2),
          ]),
        ),
      ]),
    );
    const baseline = verifying.find((g) => g.name === 'trustgate-baseline');
    if (baseline) {
      console.log('\nratios of medians (trustgate / trustgate-baseline)');
      console.log(
        table(
          (['cold', 'warm'] as const).flatMap((phase) =>
            formats.map((format) => [
              `${phase}, ${format}`,
              ratio(median(series('trustgate', format)[phase]), median(series(baseline.name, format)[phase])),
            ]),
          ),
        ),
      );
    }
  });
}

runMain(main);
