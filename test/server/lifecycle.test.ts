/**
 * trustgate as an operator runs it: `trustgate serve --config FILE` in its own process, in front of
 * a real registry:2. Health and readiness, metrics, SIGHUP reload (a bad config is refused, a good
 * one applies), and SIGTERM draining an in-flight download before exit.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import bcrypt from 'bcryptjs';
import YAML from 'yaml';
import { generateDevCertificates } from '../../src/cli/certs.js';
import { freePort } from '../helpers/ports.js';
import { makeTempDir, removeTempDir, startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { bearer, getToken, request } from '../helpers/http.js';
import { pushBlob, pushRandomImage } from '../helpers/registry-direct.js';

describe('trustgate serve: health, metrics, reload, drain', { timeout: 120_000 }, () => {
  let registry: RegistryHandle;
  let dir: string;
  let child: ChildProcess;
  let output = '';
  let url: string;
  let ca: string;
  let metricsPort: number;
  let configFile: string;
  let config: Record<string, unknown>;
  const password = 'ops-password-1';

  before(async () => {
    registry = await startRegistry();
    dir = makeTempDir('lifecycle');
    const certs = await generateDevCertificates({
      dir: path.join(dir, 'certs'),
      hosts: ['127.0.0.1', 'localhost'],
    });
    ca = (await import('node:fs')).readFileSync(certs.caCert, 'utf8');
    writeFileSync(path.join(dir, 'htpasswd'), `ops:${bcrypt.hashSync(password, 4)}\n`);
    metricsPort = await freePort();
    config = {
      listen: { host: '127.0.0.1', port: await freePort() },
      tls: { cert: certs.serverCert, key: certs.serverKey },
      upstream: { url: registry.url },
      auth: { htpasswd: 'htpasswd' },
      policy: { access: [{ repos: ['ops/a'], pull: ['ops'], push: ['ops'] }] },
      trust: { rules: [{ repos: ['ops/**'], mode: 'off' }] },
      metrics: { host: '127.0.0.1', port: metricsPort },
      shutdownGraceSeconds: 20,
    };
    configFile = path.join(dir, 'trustgate.yaml');
    writeFileSync(configFile, YAML.stringify(config));
    child = spawn(process.execPath, ['dist/src/cli/main.js', 'serve', '--config', configFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (b: Buffer) => (output += b.toString()));
    child.stderr!.on('data', (b: Buffer) => (output += b.toString()));
    url = await waitFor(
      () => /"url":"(https:[^"]+)"/.exec(output)?.[1],
      15_000,
      () => output,
    );
    await pushRandomImage(registry.url, 'ops/a', 'v1');
    await pushRandomImage(registry.url, 'ops/b', 'v1');
  });

  after(async () => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    await registry?.stop();
    if (dir) removeTempDir(dir);
  });

  it('/healthz answers 200 and /readyz reports the upstream and keys', async () => {
    assert.equal((await request(url, ca, { path: '/healthz' })).status, 200);
    const r = await request(url, ca, { path: '/readyz' });
    assert.equal(r.status, 200, r.body.toString());
    const body = r.json() as { ready: boolean; upstream: string };
    assert.equal(body.ready, true);
    assert.equal(body.upstream, 'ok');
  });

  it('/metrics on its own listener counts requests and decisions', async () => {
    const t = await getToken(url, ca, 'ops', password, ['repository:ops/a:pull']);
    await request(url, ca, { path: '/v2/ops/a/manifests/v1', headers: bearer(t) });
    const text = await new Promise<string>((resolve, reject) => {
      const req = http.get(`http://127.0.0.1:${metricsPort}/metrics`, (res) => {
        let b = '';
        res.on('data', (c: Buffer) => (b += c.toString()));
        res.on('end', () => resolve(b));
      });
      req.on('error', reject);
    });
    assert.match(text, /trustgate_requests_total\{route="manifest",method="GET",status="200"\} [1-9]/);
    assert.match(text, /trustgate_decisions_total\{verdict="allow",reason="policy-off"\} [1-9]/);
    assert.match(text, /trustgate_upstream_duration_seconds_count\{kind="manifest"\} [1-9]/);
  });

  it('SIGHUP with an invalid config is refused and the old config stays in force', async () => {
    writeFileSync(configFile, 'listen: [this is not valid\n');
    child.kill('SIGHUP');
    await waitFor(
      () => (output.includes('reload refused') ? true : undefined),
      5000,
      () => output,
    );
    const t = await getToken(url, ca, 'ops', password, ['repository:ops/a:pull']);
    const r = await request(url, ca, { path: '/v2/ops/a/manifests/v1', headers: bearer(t) });
    assert.equal(r.status, 200);
  });

  it('SIGHUP with a valid config applies the new policy without a restart', async () => {
    const before = await getToken(url, ca, 'ops', password, ['repository:ops/b:pull']);
    assert.equal(
      (await request(url, ca, { path: '/v2/ops/b/tags/list', headers: bearer(before) })).status,
      403,
    );
    writeFileSync(
      configFile,
      YAML.stringify({ ...config, policy: { access: [{ repos: ['ops/*'], pull: ['ops'], push: ['ops'] }] } }),
    );
    child.kill('SIGHUP');
    await waitFor(
      () => (output.includes('configuration reloaded') ? true : undefined),
      5000,
      () => output,
    );
    const t = await getToken(url, ca, 'ops', password, ['repository:ops/b:pull']);
    assert.equal((await request(url, ca, { path: '/v2/ops/b/tags/list', headers: bearer(t) })).status, 200);
  });

  it('SIGHUP: a reloadable key applies (auth.tokenTtlSeconds) and a restart-only one is named (metrics.port)', async () => {
    const from = output.length;
    const newMetricsPort = await freePort();
    writeFileSync(
      configFile,
      YAML.stringify({
        ...config,
        policy: { access: [{ repos: ['ops/*'], pull: ['ops'], push: ['ops'] }] },
        auth: { htpasswd: 'htpasswd', tokenTtlSeconds: 120 },
        metrics: { host: '127.0.0.1', port: newMetricsPort },
      }),
    );
    child.kill('SIGHUP');
    await waitFor(
      () => (output.slice(from).includes('configuration reloaded') ? true : undefined),
      5000,
      () => output,
    );
    assert.match(
      output.slice(from),
      /"key":"metrics\.port".*config metrics\.port changed: takes effect after a restart/,
    );
    const t = await getToken(url, ca, 'ops', password, ['repository:ops/a:pull']);
    const c = JSON.parse(Buffer.from(t.split('.')[1]!, 'base64url').toString()) as {
      exp: number;
      iat: number;
    };
    assert.equal(c.exp - c.iat, 120);
    // The metrics listener stays where it was started.
    const metricsAnswer = await new Promise<number>((resolve, reject) =>
      http
        .get(`http://127.0.0.1:${metricsPort}/metrics`, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        })
        .on('error', reject),
    );
    assert.equal(metricsAnswer, 200);
  });

  it('SIGTERM drains: an in-flight download completes, new connections are refused, exit 0', async () => {
    const blob = randomBytes(32 * 1024 * 1024);
    const digest = await pushBlob(registry.url, 'ops/a', blob);
    const t = await getToken(url, ca, 'ops', password, ['repository:ops/a:pull,push']);
    const u = new URL(url);
    let received = 0;
    const download = new Promise<number>((resolve, reject) => {
      const req = https.get(
        {
          host: u.hostname,
          port: u.port,
          path: `/v2/ops/a/blobs/${digest}`,
          ca,
          headers: bearer(t),
          agent: false,
        },
        (res) => {
          res.on('data', (c: Buffer) => {
            received += c.length;
            // A slow reader: the transfer is still running when SIGTERM arrives.
            res.pause();
            setTimeout(() => res.resume(), 2);
          });
          res.on('end', () => resolve(received));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
    });
    await waitFor(
      () => (received > 1024 * 1024 ? true : undefined),
      10_000,
      () => `received ${received}`,
    );
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    await waitFor(
      () => (output.includes('draining') ? true : undefined),
      5000,
      () => output,
    );
    await assert.rejects(request(url, ca, { path: '/healthz' }), /ECONNREFUSED|ECONNRESET|socket hang up/);
    assert.equal(await download, blob.length, 'the in-flight download finished whole');
    assert.equal(await exited, 0);
  });
});

async function waitFor<T>(probe: () => T | undefined, ms: number, context: () => string): Promise<T> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const v = probe();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out after ${ms} ms:\n${context().slice(-3000)}`);
}
