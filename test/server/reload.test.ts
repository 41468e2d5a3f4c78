/**
 * Issue 17, part 2: a SIGHUP used to ignore auth.tokenTtlSeconds, auth.issuer, auth.service,
 * trust.keysDir, publicUrl, metrics and log settings without a word. Each reloadable key now takes
 * effect (one case per key, observed from outside: tokens, challenges, pulls, log lines), and a
 * restart-only change is named in a warning while the rest of the file applies.
 * trustgate runs in-process (startTestGate) from a config file, in front of a real registry:2;
 * `tg.reload()` is what SIGHUP calls (src/cli/serve.ts).
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { generateKeyPair } from '../../src/core/signature/sign.js';
import { createLogger } from '../../src/server/log.js';
import { freePort } from '../helpers/ports.js';
import { bearer, getToken, request, type Reply } from '../helpers/http.js';
import { pushRandomImage } from '../helpers/registry-direct.js';
import { signDirect } from '../helpers/sign.js';
import { startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';

const OCI = 'application/vnd.oci.image.manifest.v1+json';

class Sink extends Writable {
  lines: Array<Record<string, unknown>> = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    for (const l of chunk.toString('utf8').split('\n').filter(Boolean)) {
      this.lines.push(JSON.parse(l) as Record<string, unknown>);
    }
    cb();
  }
}

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 100));
const claims = (jwt: string): Record<string, unknown> =>
  JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;

describe(
  'SIGHUP: reloadable keys take effect, restart-only ones are named (issue 17)',
  { timeout: 180_000 },
  () => {
    let registry: RegistryHandle;
    let gate: TestGate;
    const sink = new Sink();
    const release = generateKeyPair('ecdsa-p256');
    const password = 'ops-password-1';

    before(async () => {
      registry = await startRegistry();
      gate = await startTestGate({
        registryUrl: registry.url,
        users: { ops: password },
        configFile: true,
        policy: { access: [{ repos: ['**'], pull: ['ops'], push: [], delete: [] }] },
        // No key file in the start directory: moved/** trusts nothing until trust.keysDir moves.
        trustRules: [{ repos: ['moved/**'], keys: ['release'] }],
        extra: { log: { level: 'info' } },
        logger: createLogger('info', sink),
      });
    });
    after(async () => {
      await gate?.close();
      await registry?.stop();
    });

    /** Rewrites the config file through `change` and reloads; the reload must be accepted. */
    async function reloadWith(change: (raw: Record<string, Record<string, unknown>>) => void): Promise<void> {
      gate.rewriteConfig((raw) => change(raw as Record<string, Record<string, unknown>>));
      assert.equal(await gate.tg.reload(), true, 'the reload was refused');
    }

    const tokenReply = async (service: string, query = ''): Promise<Reply> =>
      request(gate.url, gate.ca, {
        path: `/token?service=${encodeURIComponent(service)}&scope=repository:moved/app:pull${query}`,
        headers: { authorization: `Basic ${Buffer.from(`ops:${password}`).toString('base64')}` },
      });
    const challenge = async (): Promise<string> => {
      const r = await request(gate.url, gate.ca, { path: '/v2/' });
      assert.equal(r.status, 401);
      return String(r.headers['www-authenticate']);
    };
    const ping = async (token: string): Promise<number> =>
      (await request(gate.url, gate.ca, { path: '/v2/', headers: bearer(token) })).status;

    it('auth.tokenTtlSeconds and auth.refreshTtlSeconds: new tokens get the new lifetimes', async () => {
      const before = (await tokenReply('trustgate', '&offline_token=true&client_id=t')).json() as {
        expires_in: number;
        refresh_token: string;
      };
      assert.equal(before.expires_in, 300);
      await reloadWith((raw) => {
        raw['auth']!['tokenTtlSeconds'] = 120;
        raw['auth']!['refreshTtlSeconds'] = 3600;
      });
      const after = (await tokenReply('trustgate', '&offline_token=true&client_id=t')).json() as {
        token: string;
        expires_in: number;
        refresh_token: string;
      };
      assert.equal(after.expires_in, 120);
      const access = claims(after.token);
      assert.equal(Number(access['exp']) - Number(access['iat']), 120);
      const refresh = claims(after.refresh_token);
      assert.equal(Number(refresh['exp']) - Number(refresh['iat']), 3600);
    });

    it('auth.issuer: new tokens carry the new issuer; a token of the old one no longer verifies', async () => {
      const old = await getToken(gate.url, gate.ca, 'ops', password, []);
      assert.equal(claims(old)['iss'], 'trustgate');
      assert.equal(await ping(old), 200);
      await reloadWith((raw) => (raw['auth']!['issuer'] = 'gate-b'));
      const fresh = await getToken(gate.url, gate.ca, 'ops', password, []);
      assert.equal(claims(fresh)['iss'], 'gate-b');
      assert.equal(await ping(fresh), 200);
      assert.equal(await ping(old), 401, 'a token of the old issuer still verifies');
    });

    it('auth.service: challenges, the token endpoint and the audience follow the new service', async () => {
      assert.match(await challenge(), /service="trustgate"/);
      const old = await getToken(gate.url, gate.ca, 'ops', password, []);
      await reloadWith((raw) => (raw['auth']!['service'] = 'registry.example'));
      assert.match(await challenge(), /service="registry\.example"/);
      assert.equal((await tokenReply('trustgate')).status, 400, 'the old service is still accepted');
      const fresh = await getToken(gate.url, gate.ca, 'ops', password, [], 'registry.example');
      assert.equal(claims(fresh)['aud'], 'registry.example');
      assert.equal(await ping(fresh), 200);
      assert.equal(await ping(old), 401, 'a token for the old service still verifies');
    });

    it('publicUrl: challenges name the new token realm', async () => {
      assert.match(await challenge(), /realm="https:\/\/127\.0\.0\.1:\d+\/token"/);
      await reloadWith((raw) => {
        (raw as Record<string, unknown>)['publicUrl'] = 'https://registry.example:8443';
      });
      assert.match(await challenge(), /realm="https:\/\/registry\.example:8443\/token"/);
    });

    it('trust.keysDir: the keyring reads the new directory, and pulls are decided with its keys', async () => {
      const repo = 'moved/app';
      const img = await pushRandomImage(registry.url, repo, 'v1');
      await signDirect(registry.url, repo, img.digest, release.pkcs8Der);
      const pull = async (): Promise<number> => {
        const t = await getToken(
          gate.url,
          gate.ca,
          'ops',
          password,
          [`repository:${repo}:pull`],
          'registry.example',
        );
        return (
          await request(gate.url, gate.ca, {
            path: `/v2/${repo}/manifests/v1`,
            headers: { ...bearer(t), accept: OCI },
          })
        ).status;
      };
      assert.equal(await pull(), 403, 'signed by a key not in the start directory');
      const moved = path.join(gate.dir, 'keys', 'moved');
      mkdirSync(moved, { recursive: true });
      writeFileSync(path.join(moved, 'release.pub'), release.publicKeyPem);
      await reloadWith((raw) => (raw['trust']!['keysDir'] = moved));
      assert.equal(gate.tg.keyring.dir, moved);
      assert.equal(await pull(), 200, 'the key in the new directory is not used');
    });

    it('log.level: debug lines appear at once, from component loggers made before the reload too', async () => {
      const component = gate.tg.log.child({ component: 'probe' });
      component.debug('probe before');
      await reloadWith((raw) => (raw['log']!['level'] = 'debug'));
      component.debug('probe after');
      await settle();
      const msgs = sink.lines.map((l) => l['msg']);
      assert.ok(!msgs.includes('probe before'));
      assert.ok(msgs.includes('probe after'), 'a logger made before the reload kept the old level');
      await reloadWith((raw) => (raw['log']!['level'] = 'info'));
    });

    it('restart-only keys: each is named in a warning and keeps its running value; the rest of the file applies', async () => {
      const from = sink.lines.length;
      const metricsPort = await freePort();
      await reloadWith((raw) => {
        raw['upstream']!['timeoutMs'] = 20_000;
        raw['cache']!['positiveTtlSeconds'] = 60;
        raw['auth']!['tokenKeyDir'] = path.join(gate.dir, 'keys', 'other-token');
        raw['auth']!['tokenTtlSeconds'] = 180;
        (raw as Record<string, unknown>)['metrics'] = { host: '127.0.0.1', port: metricsPort };
        raw['log']!['auditFile'] = path.join(gate.dir, 'audit.log');
        (raw as Record<string, unknown>)['listen'] = { host: '127.0.0.1', port: 0, maxHeaders: 50 };
      });
      await settle();
      const named = sink.lines
        .slice(from)
        .filter((l) => l['level'] === 40 && String(l['msg']).includes('takes effect after a restart'))
        .map((l) => String(l['key']))
        .sort();
      assert.deepEqual(named, [
        'auth.tokenKeyDir',
        'cache.positiveTtlSeconds',
        'listen.maxHeaders',
        'log.auditFile',
        'metrics.host',
        'metrics.port',
        'upstream.timeoutMs',
      ]);
      for (const key of named) {
        const line = sink.lines.slice(from).find((l) => l['key'] === key)!;
        assert.match(String(line['msg']), new RegExp(`^config ${key.replace('.', '\\.')} changed`));
      }
      const done = sink.lines.slice(from).find((l) => String(l['msg']).startsWith('configuration reloaded'));
      assert.deepEqual(done?.['changed'], ['auth.tokenTtlSeconds']);
      // The running values stay: no metrics listener was opened, the old limit still holds.
      await assert.rejects(fetch(`http://127.0.0.1:${metricsPort}/metrics`));
      const heads: Record<string, string> = {};
      for (let i = 0; i < 60; i++) heads[`x-h${i}`] = 'v';
      assert.equal((await request(gate.url, gate.ca, { path: '/healthz', headers: heads })).status, 200);
      assert.equal(((await tokenReply('registry.example')).json() as { expires_in: number }).expires_in, 180);
    });

    it('refused: a file that needs a restart-only value it would not get (tlog: required, trusted root read at start)', async () => {
      const from = sink.lines.length;
      gate.rewriteConfig((raw) => {
        const trust = raw['trust'] as Record<string, unknown>;
        trust['trustedRoot'] = path.join(gate.dir, 'trusted_root.json');
        trust['rules'] = [{ repos: ['moved/**'], keys: ['release'], tlog: 'required' }];
        (raw['auth'] as Record<string, unknown>)['tokenTtlSeconds'] = 600;
      });
      assert.equal(await gate.tg.reload(), false);
      await settle();
      const refused = sink.lines.slice(from).find((l) => String(l['msg']).startsWith('reload refused'));
      assert.match(String(refused?.['err']), /trust\.trustedRoot/);
      assert.match(String(refused?.['err']), /restart/);
      // Nothing of the refused file applied.
      assert.equal(((await tokenReply('registry.example')).json() as { expires_in: number }).expires_in, 180);
    });
  },
);

describe('SIGHUP: shutdownGraceSeconds applies to the next drain (issue 17)', { timeout: 120_000 }, () => {
  let registry: RegistryHandle;
  let gate: TestGate | undefined;
  const sink = new Sink();

  before(async () => {
    registry = await startRegistry();
    gate = await startTestGate({
      registryUrl: registry.url,
      configFile: true,
      extra: { log: { level: 'info' }, shutdownGraceSeconds: 600 },
      logger: createLogger('info', sink),
    });
  });
  after(async () => {
    await registry?.stop();
  });

  it('a drain after a reload to 0 s closes a request still in flight at once, not after the start value', async () => {
    const g = gate!;
    g.rewriteConfig((raw) => (raw['shutdownGraceSeconds'] = 0));
    assert.equal(await g.tg.reload(), true);
    // A request whose body never completes: in flight until the grace period ends.
    const u = new URL(g.url);
    const arrived = new Promise<void>((r) => g.tg.server.once('request', () => r()));
    const req = https.request({
      host: u.hostname,
      port: u.port,
      method: 'POST',
      path: '/token',
      ca: g.ca,
      agent: false,
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': '1000' },
    });
    const cut = new Promise<void>((r) => {
      req.on('error', () => r());
      req.on('response', (res) => res.on('close', () => r()).resume());
    });
    req.write('grant_type=');
    await arrived;
    // With the start value (600 s) this would wait ten minutes, past the test's timeout.
    await g.close();
    await cut;
    await settle();
    const over = sink.lines.find((l) => String(l['msg']).startsWith('grace period over'));
    assert.equal(over?.['graceMs'], 0);
  });
});
