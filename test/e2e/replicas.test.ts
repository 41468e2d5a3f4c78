/**
 * Scale-out: two trustgate replicas as child processes (`node dist/src/cli/main.js serve`), each on
 * its own loopback port, sharing one registry:2, one Redis, one trusted-keys dir and one token-key
 * dir (so a token issued by one replica verifies on the other), behind a round-robin TCP balancer
 * written here (node:net; it alternates backends per connection and skips a backend that refuses).
 * Three skopeo clients push distinct images concurrently and pull each back; mid-run replica A gets
 * SIGTERM (graceful drain) and is started again on the same port. Every image must come back byte
 * for byte, and no skopeo operation may fail (skopeo's own `--retry-times 3` is allowed).
 *
 * Printed: wall time, HTTP requests (from the replicas' trustgate_requests_total, scraped from
 * each process before it exits), requests/s, balancer connections and failovers, errors, and how
 * long the drain took.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import bcrypt from 'bcryptjs';
import YAML from 'yaml';
import { generateDevCertificates } from '../../src/cli/certs.js';
import { rotateTokenKey } from '../../src/auth/token-keys.js';
import { repoRoot } from '../helpers/fixtures.js';
import { request } from '../helpers/http.js';
import { assertSameImage, makeOciImage, readDiskImage, type DiskImage } from '../helpers/images.js';
import { freePort } from '../helpers/ports.js';
import { createSkopeoContext, type SkopeoContext } from '../helpers/skopeo.js';
import {
  makeTempDir,
  removeTempDir,
  spawnManaged,
  startRedis,
  startRegistry,
  type Managed,
  type RedisHandle,
  type RegistryHandle,
} from '../helpers/stack.js';

const CLIENTS = 3;
const IMAGES_PER_CLIENT = 4;
const DEADLINE_MS = 90_000;
const GRACE_SECONDS = 10;

// ---------------------------------------------------------------------------------------------
// The balancer
// ---------------------------------------------------------------------------------------------

interface Balancer {
  port: number;
  connections: number;
  /** Connections that went to the other backend because the first choice refused. */
  failovers: number;
  /** Connections no backend accepted. */
  refused: number;
  perBackend: number[];
  close(): Promise<void>;
}

/** Round robin per connection over `backends`; a refused connect tries the next backend. */
async function startBalancer(backends: number[]): Promise<Balancer> {
  const sockets = new Set<net.Socket>();
  const b: Balancer = {
    port: 0,
    connections: 0,
    failovers: 0,
    refused: 0,
    perBackend: backends.map(() => 0),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  let next = 0;
  const connect = (port: number): Promise<net.Socket | undefined> =>
    new Promise((resolve) => {
      const up = net.connect({ host: '127.0.0.1', port });
      up.once('connect', () => resolve(up));
      up.once('error', () => resolve(undefined));
    });
  const server = net.createServer({ pauseOnConnect: true }, (client) => {
    b.connections++;
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => client.destroy());
    const first = next++ % backends.length;
    void (async () => {
      for (let i = 0; i < backends.length; i++) {
        const idx = (first + i) % backends.length;
        const up = await connect(backends[idx]!);
        if (!up) continue;
        if (i > 0) b.failovers++;
        b.perBackend[idx]!++;
        sockets.add(up);
        up.on('close', () => {
          sockets.delete(up);
          client.destroy();
        });
        up.on('error', () => up.destroy());
        client.on('close', () => up.destroy());
        client.pipe(up);
        up.pipe(client);
        client.resume();
        return;
      }
      b.refused++;
      client.destroy();
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  b.port = (server.address() as net.AddressInfo).port;
  return b;
}

// ---------------------------------------------------------------------------------------------
// Replicas
// ---------------------------------------------------------------------------------------------

interface Replica {
  name: string;
  port: number;
  metricsPort: number;
  configPath: string;
  proc?: Managed;
  /** trustgate_requests_total summed over the processes that already exited. */
  requestsBefore: number;
}

function scrapeRequests(metricsPort: number): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get(
      { host: '127.0.0.1', port: metricsPort, path: '/metrics', agent: false, timeout: 2000 },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          let n = 0;
          for (const line of text.split('\n'))
            if (line.startsWith('trustgate_requests_total{'))
              n += Number(line.slice(line.lastIndexOf(' ') + 1)) || 0;
          resolve(n);
        });
      },
    );
    req.once('timeout', () => req.destroy());
    req.once('error', () => resolve(0));
  });
}

describe(
  'e2e: two replicas behind a round-robin balancer, one restarted mid-run',
  { timeout: 240_000 },
  () => {
    let registry: RegistryHandle;
    let redis: RedisHandle;
    let work: string;
    let ca: string;
    let certDir: string;
    const replicas: Replica[] = [];
    const clients: SkopeoContext[] = [];
    let balancer: Balancer | undefined;
    const creds = { username: 'tester', password: 'replica-test-password' };
    const mainJs = path.join(repoRoot(), 'dist', 'src', 'cli', 'main.js');

    async function launch(r: Replica): Promise<void> {
      const proc = spawnManaged(process.execPath, [mainJs, 'serve', '--config', r.configPath], { cwd: work });
      r.proc = proc;
      const deadline = Date.now() + 20_000;
      let exited = false;
      void proc.exited().then(() => (exited = true));
      for (let i = 0; i < 400; i++) {
        if (exited) throw new Error(`replica ${r.name} exited at start:\n${proc.output()}`);
        const ok = await request(`https://127.0.0.1:${r.port}`, ca, { path: '/readyz' }).then(
          (x) => x.status === 200,
          () => false,
        );
        if (ok) return;
        if (Date.now() > deadline) break;
        await new Promise((res) => setTimeout(res, 100));
      }
      throw new Error(`replica ${r.name} not ready in 20 s:\n${proc.output()}`);
    }

    before(async () => {
      registry = await startRegistry();
      redis = await startRedis();
      work = makeTempDir('replicas');
      const certs = await generateDevCertificates({
        dir: path.join(work, 'certs'),
        hosts: ['localhost', '127.0.0.1'],
      });
      ca = readFileSync(certs.caCert, 'utf8');
      certDir = path.join(work, 'skopeo-certs');
      mkdirSync(certDir);
      writeFileSync(path.join(certDir, 'ca.crt'), ca);
      writeFileSync(
        path.join(work, 'htpasswd'),
        `${creds.username}:${bcrypt.hashSync(creds.password, 4).replace(/^\$2b\$/, '$2y$')}\n`,
      );
      mkdirSync(path.join(work, 'keys', 'trusted'), { recursive: true });
      // One token key for both replicas, made before either starts (so neither generates its own).
      await rotateTokenKey(path.join(work, 'keys', 'token'));
      for (const name of ['a', 'b']) {
        const r: Replica = {
          name,
          port: await freePort(),
          metricsPort: await freePort(),
          configPath: path.join(work, `trustgate-${name}.yaml`),
          requestsBefore: 0,
        };
        const config = {
          listen: { host: '127.0.0.1', port: r.port },
          tls: { cert: certs.serverCert, key: certs.serverKey },
          upstream: { url: registry.url, timeoutMs: 10_000 },
          auth: { htpasswd: 'htpasswd', tokenKeyDir: 'keys/token' },
          policy: { access: [{ repos: ['rep/**'], pull: [creds.username], push: [creds.username] }] },
          trust: { keysDir: 'keys/trusted', rules: [{ repos: ['rep/**'], mode: 'off' }] },
          cache: { redisUrl: redis.url, hmacSecret: 'replica-test-hmac-secret-0123456789abcdef' },
          metrics: { host: '127.0.0.1', port: r.metricsPort },
          shutdownGraceSeconds: GRACE_SECONDS,
          log: { level: 'warn' },
        };
        writeFileSync(r.configPath, YAML.stringify(config));
        replicas.push(r);
      }
      await Promise.all(replicas.map((r) => launch(r)));
      balancer = await startBalancer(replicas.map((r) => r.port));
      for (let i = 0; i < CLIENTS; i++) clients.push(createSkopeoContext());
    });

    after(async () => {
      for (const c of clients) c.close();
      await balancer?.close();
      for (const r of replicas) await r.proc?.stop('SIGKILL');
      await redis?.stop();
      await registry?.stop();
      if (work) removeTempDir(work);
    });

    it('every image pushed through either replica pulls back byte-identical across a SIGTERM restart', async () => {
      const host = `127.0.0.1:${balancer!.port}`;
      const endpoint = { certDir, creds };
      const retry = ['--retry-times', '3'];

      // Images first, outside the timing.
      const images: DiskImage[][] = [];
      for (let c = 0; c < CLIENTS; c++) {
        images.push([]);
        for (let i = 0; i < IMAGES_PER_CLIENT; i++)
          images[c]!.push(
            await makeOciImage(path.join(work, 'src', `c${c}-i${i}`), {
              layers: 2,
              layerBytes: 256 * 1024,
              tag: 'v1',
            }),
          );
      }

      const errors: string[] = [];
      let opsDone = 0;
      let restartInfo = '';
      const started = Date.now();
      const totalOps = CLIENTS * IMAGES_PER_CLIENT * 2;

      // Mid-run: SIGTERM replica A once a third of the operations are done, wait for it to drain
      // and exit, then start it again on the same port.
      const restart = (async () => {
        for (let i = 0; i < 900 && opsDone < totalOps / 3; i++) await new Promise((r) => setTimeout(r, 100));
        const a = replicas[0]!;
        a.requestsBefore += await scrapeRequests(a.metricsPort);
        const atOp = opsDone;
        const t0 = Date.now();
        process.kill(a.proc!.pid, 'SIGTERM');
        const exited = await Promise.race([
          a.proc!.exited().then(() => true),
          new Promise<boolean>((r) => setTimeout(() => r(false), (GRACE_SECONDS + 5) * 1000)),
        ]);
        const drainMs = Date.now() - t0;
        const code = a.proc!.child.exitCode;
        if (!exited) {
          errors.push(`replica a did not exit within ${GRACE_SECONDS + 5} s of SIGTERM`);
          await a.proc!.stop('SIGKILL');
        }
        await launch(a);
        restartInfo = `replica a: SIGTERM at op ${atOp}/${totalOps}, exited in ${drainMs} ms (code ${code}), back after ${Date.now() - t0} ms`;
      })();

      const runClient = async (c: number): Promise<void> => {
        const sk = clients[c]!;
        for (let i = 0; i < IMAGES_PER_CLIENT; i++) {
          if (Date.now() - started > DEADLINE_MS) {
            errors.push(`client ${c}: deadline reached before image ${i}`);
            return;
          }
          const img = images[c]![i]!;
          const remote = `docker://${host}/rep/c${c}/img${i}:v1`;
          const push = await sk.copy(img.ref, remote, { dest: endpoint, extra: retry, timeoutMs: 60_000 });
          opsDone++;
          if (push.code !== 0) {
            errors.push(`client ${c} push ${i}: ${push.stderr.trim().split('\n').pop()}`);
            continue;
          }
          const out = path.join(work, 'back', `c${c}-i${i}`);
          mkdirSync(out, { recursive: true });
          const pull = await sk.copy(remote, `dir:${out}`, {
            src: endpoint,
            extra: retry,
            timeoutMs: 60_000,
          });
          opsDone++;
          if (pull.code !== 0) {
            errors.push(`client ${c} pull ${i}: ${pull.stderr.trim().split('\n').pop()}`);
            continue;
          }
          try {
            await assertSameImage(img, readDiskImage(`dir:${out}`));
          } catch (err) {
            errors.push(`client ${c} image ${i}: ${(err as Error).message}`);
          }
        }
      };
      await Promise.all([...Array.from({ length: CLIENTS }, (_, c) => runClient(c)), restart]);
      const seconds = (Date.now() - started) / 1000;

      let requests = 0;
      for (const r of replicas) requests += r.requestsBefore + (await scrapeRequests(r.metricsPort));
      const b = balancer!;
      console.log(
        [
          `replicas: ${CLIENTS} clients x ${IMAGES_PER_CLIENT} images (push + pull) in ${seconds.toFixed(1)} s`,
          `  HTTP requests ${requests} (trustgate_requests_total; requests in A's drain window not counted) = ${(requests / seconds).toFixed(1)} req/s`,
          `  balancer: ${b.connections} connections (a ${b.perBackend[0]}, b ${b.perBackend[1]}), ${b.failovers} failovers, ${b.refused} refused`,
          `  ${restartInfo}`,
          `  errors: ${errors.length}${errors.length ? '\n    ' + errors.join('\n    ') : ''}`,
        ].join('\n'),
      );
      assert.ok(restartInfo, 'the restart happened');
      assert.deepEqual(errors, []);
      assert.equal(b.refused, 0);
      assert.ok(b.perBackend[0]! > 0 && b.perBackend[1]! > 0, 'both replicas served');
      assert.ok(seconds * 1000 <= DEADLINE_MS + 30_000, `took ${seconds} s`);
    });
  },
);
