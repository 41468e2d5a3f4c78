/**
 * Upstream pool starvation (issue 12, item 4): what a well-behaved client gets while other clients
 * hold blob downloads they never read. trustgate runs in its own process with its default
 * `limits`; the bench user (pull+push on bench/**) measures, from 127.0.0.1:
 *   - control-plane latency: manifest GET by tag, tag list, upload start (POST; the session is
 *     then cancelled, untimed) and manifest PUT, ROUNDS of each, each bounded by REQ_TIMEOUT_MS
 *     (a kind that times out 3 times in a scenario is marked hung and skipped);
 *   - blob throughput: the faster of two GETs of the BLOB_MIB blob (each bounded by
 *     BLOB_TIMEOUT_MS; a refusal or a timeout is reported instead).
 * Scenarios, alternating within each of RUNS runs:
 *   none    no stalled client
 *   one     STALL_CLIENTS TLS connections (default 280, the finding's figure) of ONE identity
 *           from one address (127.0.0.10), each asking for the blob and never reading past the
 *           response head (the receive window closes)
 *   spread  the same number spread over STALL_IDENTITIES identities (default 10), each from its
 *           own loopback address (127.0.0.10, .11, …)
 * A stalled connection that trustgate closes (write-idle deadline) is opened again, up to 3 x
 * STALL_CLIENTS opens per scenario: the attacker keeps trying. A refused one (429/503) is not.
 * Prints per run, then medians over the runs of each scenario's median and p95 per kind, the blob
 * MiB/s and how the stalled requests were answered.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/starvation.js
 *   (RUNS=3 STALL_CLIENTS=280 STALL_IDENTITIES=10 ROUNDS=20 BLOB_MIB=64 REQ_TIMEOUT_MS=5000)
 */
import { randomBytes } from 'node:crypto';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { pushBlob, pushRandomImage } from '../test/helpers/registry-direct.js';
import { startRegistry } from '../test/helpers/stack.js';
import { benchEnv, runMain, withCleanup } from './lib/setup.js';
import { envInt, fmt, median, MiB, table } from './lib/stats.js';
import { startTrustgateChild, writeTrustgateConfig } from './lib/trustgate.js';

const OCI = 'application/vnd.oci.image.manifest.v1+json';
const KINDS = ['manifest GET', 'tag list', 'upload start', 'manifest PUT'] as const;
type Kind = (typeof KINDS)[number];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function p95(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(0.95 * s.length) - 1)] ?? NaN;
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  bytes: number;
  ms: number;
}

/** One request over `agent`, bounded by `timeoutMs` (status 0: no answer in time). */
function send(
  base: string,
  ca: string,
  agent: https.Agent | false,
  method: string,
  urlPath: string,
  headers: Record<string, string>,
  timeoutMs: number,
  body?: Buffer,
): Promise<Reply> {
  const u = new URL(urlPath, base);
  const t0 = performance.now();
  return new Promise((resolve) => {
    let settled = false;
    const done = (r: Omit<Reply, 'ms'>): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ ...r, ms: performance.now() - t0 });
    };
    const req = https.request(
      u,
      {
        method,
        ca,
        agent,
        servername: 'localhost',
        headers: { ...headers, ...(body ? { 'content-length': String(body.length) } : {}) },
      },
      (res) => {
        let bytes = 0;
        res.on('data', (c: Buffer) => (bytes += c.length));
        res.on('end', () => done({ status: res.statusCode ?? 0, headers: res.headers, bytes }));
        res.on('error', () => done({ status: 0, headers: {}, bytes }));
      },
    );
    const timer = setTimeout(() => {
      req.destroy();
      done({ status: 0, headers: {}, bytes: 0 });
    }, timeoutMs);
    req.on('error', () => done({ status: 0, headers: {}, bytes: 0 }));
    req.end(body);
  });
}

async function token(
  base: string,
  ca: string,
  user: string,
  password: string,
  scope: string,
): Promise<string> {
  const q = new URLSearchParams({ service: 'trustgate', scope });
  const r = await new Promise<string>((resolve, reject) => {
    const req = https.get(
      `${base}/token?${q.toString()}`,
      {
        ca,
        agent: false,
        headers: { authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` },
      },
      (res) => {
        let b = '';
        res.on('data', (c: Buffer) => (b += c.toString()));
        res.on('end', () =>
          res.statusCode === 200 ? resolve(b) : reject(new Error(`token ${res.statusCode}: ${b}`)),
        );
      },
    );
    req.on('error', reject);
  });
  return (JSON.parse(r) as { token: string }).token;
}

/** Stalled blob downloads: opened, kept (re-opened when trustgate closes them), counted. */
class Stalls {
  readonly answers: Record<string, number> = {};
  private readonly open = new Set<tls.TLSSocket>();
  private opens = 0;
  private stopped = false;

  constructor(
    private readonly port: number,
    private readonly ca: string,
    private readonly blobPath: string,
    private readonly maxOpens: number,
  ) {}

  /** Opens one stalled download for (token, address); resolves when its head (or nothing, 15 s) came. */
  start(bearer: string, localAddress: string): Promise<void> {
    if (this.stopped || this.opens >= this.maxOpens) return Promise.resolve();
    this.opens++;
    return new Promise((resolve) => {
      const socket = tls.connect({
        socket: net.connect({ host: '127.0.0.1', port: this.port, localAddress }),
        ca: this.ca,
        servername: 'localhost',
      });
      this.open.add(socket);
      let text = '';
      let settled = false;
      const settle = (answer: string): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.answers[answer] = (this.answers[answer] ?? 0) + 1;
        resolve();
      };
      const timer = setTimeout(() => settle('no head in 15 s'), 15_000);
      socket.on('error', () => undefined);
      socket.once('secureConnect', () =>
        socket.write(
          `GET ${this.blobPath} HTTP/1.1\r\nHost: 127.0.0.1:${this.port}\r\nAuthorization: Bearer ${bearer}\r\n\r\n`,
        ),
      );
      socket.on('data', (b: Buffer) => {
        text += b.toString('latin1');
        const end = text.indexOf('\r\n\r\n');
        if (end < 0) return;
        const status = Number(text.slice(0, end).split(' ')[1]);
        socket.removeAllListeners('data');
        if (status === 200) {
          socket.pause(); // the abuse: the body is never read
          settle('200 (held)');
        } else {
          settle(String(status));
          socket.destroy();
        }
      });
      socket.once('close', () => {
        this.open.delete(socket);
        settle('closed before a head');
        // The attacker keeps trying: a held download that trustgate closed is opened again.
        if (/^HTTP\/1\.1 200 /.test(text) && !this.stopped) void this.start(bearer, localAddress);
      });
    });
  }

  get held(): number {
    return this.open.size;
  }

  stop(): void {
    this.stopped = true;
    for (const s of this.open) s.destroy();
    this.open.clear();
  }
}

async function main(): Promise<void> {
  const runs = envInt('RUNS', 3, 1, 20);
  const stallClients = envInt('STALL_CLIENTS', 280, 1, 2000);
  const identities = envInt('STALL_IDENTITIES', 10, 1, 200);
  const rounds = envInt('ROUNDS', 20, 1, 1000);
  const blobMiB = envInt('BLOB_MIB', 64, 8, 4096);
  const reqTimeout = envInt('REQ_TIMEOUT_MS', 5000, 100, 120_000);
  const blobTimeout = envInt('BLOB_TIMEOUT_MS', 30_000, 1000, 600_000);

  await withCleanup(async (defer) => {
    const env = await benchEnv('starvation');
    defer(env.cleanup);
    const registry = await startRegistry();
    defer(() => registry.stop());
    const blobDigest = await pushBlob(registry.url, 'bench/blob', randomBytes(blobMiB * MiB));
    const image = await pushRandomImage(registry.url, 'bench/app', 'v1', 1, 4096);
    const abusers = Array.from({ length: identities }, (_, i) => `abuser${i}`);
    const files = await writeTrustgateConfig(path.join(env.dir, 'trustgate'), {
      registryUrl: registry.url,
      cert: env.certs.serverCert,
      key: env.certs.serverKey,
      pullUsers: abusers,
    });
    const tg = await startTrustgateChild(files);
    defer(() => tg.close());
    console.log(`registry:2 ${registry.url} (pid ${registry.pid}), trustgate ${tg.url} (pid ${tg.pid})`);
    console.log(
      `blob ${blobMiB} MiB; ${stallClients} stalled clients (one: 1 identity; spread: ${identities} identities and addresses)`,
    );

    const ca = env.ca;
    // Fresh tokens per scenario: a scenario whose requests hang can outlast a token (300 s).
    const tokens = async (): Promise<{ good: string; goodBlob: string; abusers: string[] }> => {
      const { username, password } = files.creds;
      return {
        good: await token(tg.url, ca, username, password, 'repository:bench/app:pull,push'),
        goodBlob: await token(tg.url, ca, username, password, 'repository:bench/blob:pull'),
        abusers: await Promise.all(
          abusers.map((u) => token(tg.url, ca, u, files.pullUsers[u] ?? '', 'repository:bench/blob:pull')),
        ),
      };
    };
    const blobPath = `/v2/bench/blob/blobs/${blobDigest}`;

    interface RunResult {
      lat: Record<Kind, number[]>;
      hung: Kind[];
      blobMiBps: number;
      blobNote: string;
      answers: Record<string, number>;
    }
    const results = new Map<string, RunResult[]>();
    let pushes = 0;

    const measure = async (good: string, goodBlob: string): Promise<Omit<RunResult, 'answers'>> => {
      const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
      const lat = Object.fromEntries(KINDS.map((k) => [k, [] as number[]])) as Record<Kind, number[]>;
      const timeouts: Record<string, number> = {};
      const hung: Kind[] = [];
      const auth = { authorization: `Bearer ${good}` };
      const timed = async (kind: Kind, want: number, r: () => Promise<Reply>): Promise<Reply | undefined> => {
        if (hung.includes(kind)) return undefined;
        const a = await r();
        if (a.status === want) lat[kind].push(a.ms);
        else {
          timeouts[kind] = (timeouts[kind] ?? 0) + 1;
          if (a.status !== 0) throw new Error(`${kind}: ${a.status}, want ${want}`);
          if ((timeouts[kind] ?? 0) >= 3) hung.push(kind);
        }
        return a;
      };
      for (let i = 0; i < rounds; i++) {
        await timed('manifest GET', 200, () =>
          send(tg.url, ca, agent, 'GET', '/v2/bench/app/manifests/v1', { ...auth, accept: OCI }, reqTimeout),
        );
        await timed('tag list', 200, () =>
          send(tg.url, ca, agent, 'GET', '/v2/bench/app/tags/list', auth, reqTimeout),
        );
        const up = await timed('upload start', 202, () =>
          send(
            tg.url,
            ca,
            agent,
            'POST',
            '/v2/bench/app/blobs/uploads/',
            { ...auth, 'content-length': '0' },
            reqTimeout,
          ),
        );
        if (up?.status === 202) {
          const loc = new URL(String(up.headers.location), tg.url);
          await send(tg.url, ca, agent, 'DELETE', loc.pathname + loc.search, auth, reqTimeout);
        }
        await timed('manifest PUT', 201, () =>
          send(
            tg.url,
            ca,
            agent,
            'PUT',
            `/v2/bench/app/manifests/p${pushes++}`,
            { ...auth, 'content-type': OCI },
            reqTimeout,
            image.bytes,
          ),
        );
      }
      agent.destroy();
      // Two downloads; the faster counts (a 2-core machine shared by everything is noisy).
      const speeds: number[] = [];
      let blobNote = '';
      for (let i = 0; i < 2 && !blobNote; i++) {
        const auth = { authorization: `Bearer ${goodBlob}` };
        const b = await send(tg.url, ca, false, 'GET', blobPath, auth, blobTimeout);
        if (b.status === 200 && b.bytes === blobMiB * MiB) speeds.push(blobMiB / (b.ms / 1000));
        else blobNote = b.status === 0 ? `no answer in ${blobTimeout} ms` : `status ${b.status}`;
      }
      return { lat, hung, blobMiBps: blobNote ? NaN : Math.max(...speeds), blobNote };
    };

    const scenario = async (name: 'none' | 'one' | 'spread'): Promise<RunResult> => {
      const t = await tokens();
      const stalls = new Stalls(tg.port, ca, blobPath, 3 * stallClients);
      if (name !== 'none') {
        const opening: Array<Promise<void>> = [];
        for (let i = 0; i < stallClients; i++) {
          const who = name === 'one' ? 0 : i % identities;
          opening.push(stalls.start(t.abusers[who] ?? '', `127.0.0.${10 + who}`));
          if (opening.length % 32 === 0) await Promise.all(opening.slice(-32));
        }
        await Promise.all(opening);
      }
      // Settle: the held downloads have filled their socket buffers by now.
      await sleep(2000);
      try {
        const m = await measure(t.good, t.goodBlob);
        return { ...m, answers: { ...stalls.answers } };
      } finally {
        stalls.stop();
        await sleep(1500);
      }
    };

    for (let run = 0; run < runs; run++) {
      for (const name of ['none', 'one', 'spread'] as const) {
        const r = await scenario(name);
        results.set(name, [...(results.get(name) ?? []), r]);
        const lat = KINDS.map(
          (k) =>
            `${k} ${r.hung.includes(k) ? 'HUNG' : `${fmt(median(r.lat[k]), 1)}/${fmt(p95(r.lat[k]), 1)}`}`,
        ).join(', ');
        const answers = Object.entries(r.answers)
          .map(([k, v]) => `${k}: ${v}`)
          .join(', ');
        console.log(
          `  run ${run + 1} ${name.padEnd(6)} ms p50/p95: ${lat}; blob ${r.blobNote || `${fmt(r.blobMiBps)} MiB/s`}${answers ? `; stalled requests: ${answers}` : ''}`,
        );
      }
    }

    console.log(
      `\ncontrol-plane latency, ms (median over ${runs} runs of each run's median / p95 of ${rounds} requests per kind)`,
    );
    const cell = (name: string, k: Kind): string => {
      const rs = results.get(name) ?? [];
      const hungRuns = rs.filter((r) => r.hung.includes(k)).length;
      if (hungRuns > 0) return `hung in ${hungRuns}/${rs.length} runs`;
      return `${fmt(median(rs.map((r) => median(r.lat[k]))), 1)} / ${fmt(median(rs.map((r) => p95(r.lat[k]))), 1)}`;
    };
    console.log(
      table([
        ['scenario', ...KINDS],
        ...['none', 'one', 'spread'].map((n) => [n, ...KINDS.map((k) => cell(n, k))]),
      ]),
    );
    console.log(`\nwell-behaved client's blob GET, ${blobMiB} MiB (median MiB/s over ${runs} runs)`);
    console.log(
      table([
        ['scenario', 'MiB/s', 'ratio to none', 'failed runs'],
        ...['none', 'one', 'spread'].map((n) => {
          const rs = results.get(n) ?? [];
          const ok = rs.filter((r) => !r.blobNote).map((r) => r.blobMiBps);
          const none = median((results.get('none') ?? []).filter((r) => !r.blobNote).map((r) => r.blobMiBps));
          const failed = rs.filter((r) => r.blobNote).map((r) => r.blobNote);
          return [n, fmt(median(ok)), fmt(median(ok) / none, 3), failed.length ? failed.join('; ') : '0'];
        }),
      ]),
    );
  });
}

runMain(main);
