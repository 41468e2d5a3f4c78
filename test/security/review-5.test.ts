/**
 * Review 5: adversarial tests of the composition root and SIGHUP reload (issue 17 §2, merge
 * 77ba6f5): LiveSettings prepare-then-swap, reload declarations per key, token settings, issuer,
 * service and trust.keysDir following SIGHUP. HELD tests pass when the defence held; `fixed` tests
 * failed on main at 77ba6f5 (findings, with severity) and pass with the fixes.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import bcrypt from 'bcryptjs';
import { generateKeyPair } from '../../src/core/signature/sign.js';
import { generateDevCertificates } from '../../src/cli/certs.js';
import { parseConfig } from '../../src/config/load.js';
import { LiveSettings } from '../../src/server/live.js';
import { createLogger } from '../../src/server/log.js';
import { Writable } from 'node:stream';
import { bearer, getToken, request, type Reply } from '../helpers/http.js';
import { pushRandomImage } from '../helpers/registry-direct.js';
import { signDirect } from '../helpers/sign.js';
import { startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate, type TestGateOptions } from '../helpers/trustgate.js';

const OCI = 'application/vnd.oci.image.manifest.v1+json';
const PASSWORD = 'ops-password-1';
const claims = (jwt: string): Record<string, unknown> =>
  JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;
type Raw = Record<string, Record<string, unknown>>;

describe('security: review 5 (SIGHUP reload, composition root)', { timeout: 300_000 }, () => {
  let registry: RegistryHandle;
  const gates: TestGate[] = [];
  before(async () => {
    registry = await startRegistry();
  });
  after(async () => {
    for (const g of gates) await g.close();
    await registry?.stop();
  });

  /** A gate started from a config file (so `rewriteConfig` + `tg.reload()` is a SIGHUP). */
  async function gateWith(o: Partial<TestGateOptions> = {}): Promise<TestGate> {
    const g = await startTestGate({
      registryUrl: registry.url,
      users: { ops: PASSWORD },
      configFile: true,
      policy: { access: [{ repos: ['**'], pull: ['ops'], push: [], delete: [] }] },
      ...o,
    });
    gates.push(g);
    return g;
  }
  const reloadWith = async (g: TestGate, change: (raw: Raw) => void): Promise<boolean> => {
    g.rewriteConfig((raw) => change(raw as Raw));
    return g.tg.reload();
  };
  /** The status of `ops` pulling `repo`:v1 through `g` with a fresh pull token. */
  const pullStatus = async (g: TestGate, repo: string): Promise<number> => {
    const t = await getToken(g.url, g.ca, 'ops', PASSWORD, [`repository:${repo}:pull`]);
    return (
      await request(g.url, g.ca, {
        path: `/v2/${repo}/manifests/v1`,
        headers: { ...bearer(t), accept: OCI },
      })
    ).status;
  };
  const ping = async (g: TestGate, token: string): Promise<number> =>
    (await request(g.url, g.ca, { path: '/v2/', headers: bearer(token) })).status;
  const basic = (user: string, password: string): string =>
    `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

  it("fixed (medium, review 5): a token whose verification is in flight when SIGHUP changes auth.issuer is remembered after the reload forgot the verified tokens, so the old issuer's token keeps working (up to a minute)", async () => {
    const g = await gateWith();
    const old = await getToken(g.url, g.ca, 'ops', PASSWORD, []);
    assert.equal(claims(old)['iss'], 'trustgate');
    g.rewriteConfig((raw) => ((raw as Raw)['auth']!['issuer'] = 'gate-b'));
    // The SIGHUP lands while the request's signature check (WebCrypto, off the event loop) is in
    // flight: the server's own handler runs first and reaches jwtVerify synchronously, this
    // listener runs next, in the same turn.
    let reloaded: Promise<boolean> | undefined;
    g.tg.server.once('request', () => {
      reloaded = g.tg.reload();
    });
    // The request in flight at the reload may finish under the settings it started with.
    const inFlight = await ping(g, old);
    assert.ok(reloaded, 'the reload did not run during the request');
    assert.equal(await reloaded, true);
    assert.ok([200, 401].includes(inFlight));
    // Every later request is judged under the new issuer.
    assert.equal(await ping(g, old), 401, 'a token of the old issuer still verifies after the reload');
    const fresh = await getToken(g.url, g.ca, 'ops', PASSWORD, []);
    assert.equal(claims(fresh)['iss'], 'gate-b');
    assert.equal(await ping(g, fresh), 200);
  });

  it('fixed (medium, review 5): auth.maxFailures lowered by SIGHUP (declared reloadable, logged as applied) is ignored: the failure limiter keeps the start limits', async () => {
    const g = await gateWith(); // auth.maxFailures: 5 (the default)
    const token = (password: string): Promise<Reply> =>
      request(g.url, g.ca, {
        path: '/token?service=trustgate&scope=repository:lim/app:pull',
        headers: { authorization: basic('ops', password) },
      });
    assert.equal((await token(PASSWORD)).status, 200, 'control: the account logs in');
    // During a guessing attack the operator tightens the limit to one failure and sends SIGHUP.
    assert.equal(
      await reloadWith(g, (raw) => {
        raw['auth']!['maxFailures'] = 1;
      }),
      true,
    );
    assert.equal((await token('wrong-guess')).status, 401);
    // One failure reached the new limit: the account is locked, even with the right password.
    assert.equal((await token(PASSWORD)).status, 429, 'the start limit (5 failures) still applies');
  });

  it('fixed (low, review 5): a SIGHUP whose TLS key does not match its certificate is not refused cleanly: reload() rejects (logged as an unhandled rejection) instead of answering false', async () => {
    const g = await gateWith();
    const other = await generateDevCertificates({
      dir: path.join(g.dir, 'other-certs'),
      hosts: ['127.0.0.1'],
    });
    let outcome: boolean | Error;
    try {
      outcome = await reloadWith(g, (raw) => {
        raw['tls']!['key'] = other.serverKey; // the key of another certificate
        raw['auth']!['issuer'] = 'gate-b';
      });
    } catch (err) {
      outcome = err as Error;
    }
    assert.equal(outcome, false, `the reload did not answer false: ${String(outcome)}`);
    // Nothing of the refused file applied: old certificate still served, old issuer still used.
    const t = await getToken(g.url, g.ca, 'ops', PASSWORD, []);
    assert.equal(claims(t)['iss'], 'trustgate');
    assert.equal(await ping(g, t), 200);
  });

  it('fixed (low, review 5): a credential file changed between a reload reading it and the swap is never re-read (the file hash is taken after the read), so a removed account keeps logging in', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'review5-live-'));
    try {
      const htpasswd = path.join(dir, 'htpasswd');
      const line = (u: string): string => `${u}:${bcrypt.hashSync(PASSWORD, 4).replace(/^\$2b\$/, '$2y$')}\n`;
      writeFileSync(htpasswd, line('ops') + line('leaver'));
      const raw = () => ({
        tls: { cert: 'c.pem', key: 'k.pem' },
        upstream: { url: 'http://127.0.0.1:1' },
        auth: { htpasswd, maxFailures: 7 },
      });
      const log = createLogger('silent');
      const live = new LiveSettings(parseConfig(raw(), {}, dir), log);
      assert.ok(live.credentials.exists('leaver', 'user'));
      // A SIGHUP prepares (reads the file), then another replica's admin API removes `leaver`
      // before the swap (the window is short, but another process writes at any time).
      const commit = live.prepare(parseConfig({ ...raw(), auth: { htpasswd, maxFailures: 8 } }, {}, dir));
      writeFileSync(htpasswd, line('ops'));
      commit();
      // The 1 s timer must see the change and re-read, as it would for any other write.
      assert.equal(
        live.credentialFilesChanged(),
        true,
        'the change made during the reload is never picked up',
      );
      live.reloadCredentials();
      assert.equal(live.credentials.exists('leaver', 'user'), false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('fixed (medium, review 5): a client CA taken out of tls.clientCa by SIGHUP still authenticated its certificates on connections opened before the reload (new handshakes were refused); now each connection is checked against the CA set in force', async () => {
    const g = await gateWith({
      mtls: true,
      policy: { access: [{ repos: ['**'], pull: ['mtls:CN=build-01'], push: [], delete: [] }] },
    });
    const client = g.clientCert!;
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: g.ca, ...client });
    const u = new URL(g.url);
    const getPath = (
      a: https.Agent | false,
      p: string,
    ): Promise<{ status: number; port: number | undefined; body: string }> =>
      new Promise((resolve, reject) => {
        const req = https.request(
          { host: u.hostname, port: u.port, path: p, agent: a, ca: g.ca, ...client },
          (res) => {
            const port = res.socket.localPort;
            let body = '';
            res.setEncoding('utf8').on('data', (c: string) => (body += c));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, port, body }));
          },
        );
        req.on('error', reject).end();
      });
    const get = (a: https.Agent | false): ReturnType<typeof getPath> => getPath(a, '/v2/');
    try {
      const first = await get(agent);
      assert.equal(first.status, 200, 'control: the client certificate authenticates');
      // The operator replaces the client CA bundle (the old CA is compromised) and sends SIGHUP.
      let caFile = '';
      g.rewriteConfig((raw) => (caFile = String((raw as Raw)['tls']!['clientCa'])));
      const other = await generateDevCertificates({
        dir: path.join(g.dir, 'new-ca'),
        hosts: ['127.0.0.1'],
      });
      writeFileSync(caFile, readFileSync(other.caCert));
      assert.equal(await g.tg.reload(), true);
      assert.equal((await get(false)).status, 401, 'a new handshake still trusts the old CA');
      const again = await get(agent);
      assert.equal(again.port, first.port, 'the same connection was not reused');
      assert.equal(
        again.status,
        401,
        'the old CA still authenticates on a connection opened before the reload',
      );
      // The token endpoint on the same connection: the certificate names nobody now, so the
      // token is anonymous and carries no pull grant.
      const issued = await getPath(agent, '/token?service=trustgate&scope=repository:dev/app:pull');
      assert.equal(issued.port, first.port, 'the same connection was not reused');
      const token = (JSON.parse(issued.body) as { token: string }).token;
      const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as {
        sub: string;
        access: unknown[];
      };
      assert.notEqual(claims.sub, 'mtls:CN=build-01', 'the token endpoint still names the old client');
      assert.deepEqual(claims.access, []);
    } finally {
      agent.destroy();
    }
  });

  it('fixed (low, review 5): log.level raised to warn by SIGHUP silenced the audit records (decisions, admin changes) when log.auditFile was unset: the audit logger was a child of the main one and followed its level; now it is its own info logger on the same stream', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString('utf8').split('\n').filter(Boolean))
          lines.push(JSON.parse(l) as Record<string, unknown>);
        cb();
      },
    });
    const g = await gateWith({ extra: { log: { level: 'info' } }, logger: createLogger('info', sink) });
    const t = await getToken(g.url, g.ca, 'ops', PASSWORD, []);
    const audited = async (): Promise<number> => {
      const from = lines.length;
      assert.equal(await ping(g, t), 200);
      await new Promise((r) => setTimeout(r, 100)); // the audit line is written at response close
      return lines.slice(from).filter((l) => l['audit'] === 'decision').length;
    };
    assert.equal(await audited(), 1, 'control: a request leaves one audit record');
    assert.equal(await reloadWith(g, (raw) => (raw['log']!['level'] = 'warn')), true);
    assert.equal(await audited(), 1, 'the request left no audit record');
  });

  it('HELD: trust.keysDir moved by SIGHUP to a directory where the key is revoked (or absent) gets a new epoch: the verdict cached under the old keys is not served; moving back serves again', async () => {
    const release = generateKeyPair('ecdsa-p256');
    const g = await gateWith({
      trustRules: [{ repos: ['kd/**'], keys: ['release'] }],
      trustedKeys: { release: release.publicKeyPem },
    });
    const repo = 'kd/app';
    const img = await pushRandomImage(registry.url, repo, 'v1');
    await signDirect(registry.url, repo, img.digest, release.pkcs8Der);
    const pull = (): Promise<number> => pullStatus(g, repo);
    assert.equal(await pull(), 200, 'control: signed by the trusted key');
    const epochA = g.tg.trust.epoch();
    const revoked = path.join(g.dir, 'keys', 'revoked');
    mkdirSync(revoked, { recursive: true });
    writeFileSync(path.join(revoked, 'release.pub'), release.publicKeyPem);
    writeFileSync(path.join(revoked, 'release.meta.json'), JSON.stringify({ revoked: true }));
    assert.equal(await reloadWith(g, (raw) => (raw['trust']!['keysDir'] = revoked)), true);
    assert.notEqual(g.tg.trust.epoch(), epochA);
    assert.equal(await pull(), 403, 'the verdict made with the unrevoked key was served');
    const empty = path.join(g.dir, 'keys', 'empty');
    assert.equal(await reloadWith(g, (raw) => (raw['trust']!['keysDir'] = empty)), true);
    assert.equal(await pull(), 403, 'a directory that does not exist trusts no key');
    assert.equal(await reloadWith(g, (raw) => (raw['trust']!['keysDir'] = g.keysDir)), true);
    assert.equal(g.tg.trust.epoch(), epochA);
    assert.equal(await pull(), 200);
  });

  it('fixed (low, review 5): trust.keysDir moved to a directory with a different key set but the same content hash (file boundaries written with NULs) is taken for unchanged: the keyring keeps the keys (and epoch) of the old directory and serves images signed by keys the new directory does not hold', async () => {
    const first = generateKeyPair('ecdsa-p256');
    const second = generateKeyPair('ecdsa-p256');
    const g = await gateWith({
      trustRules: [{ repos: ['nul/**'], keys: ['b'] }],
      trustedKeys: { a: first.publicKeyPem, b: second.publicKeyPem },
    });
    const repo = 'nul/app';
    const img = await pushRandomImage(registry.url, repo, 'v1');
    await signDirect(registry.url, repo, img.digest, second.pkcs8Der);
    const pull = (): Promise<number> => pullStatus(g, repo);
    assert.equal(await pull(), 200, 'control: signed by b, which the rule names');
    // One file, a.pub, whose bytes are a.pub's PEM, the separators, the name b.pub and b's PEM:
    // not a PEM block, so no key loads from this directory at all.
    const spliced = path.join(g.dir, 'keys', 'spliced');
    mkdirSync(spliced, { recursive: true });
    writeFileSync(path.join(spliced, 'a.pub'), `${first.publicKeyPem}\0\0b.pub\0${second.publicKeyPem}`);
    assert.equal(await reloadWith(g, (raw) => (raw['trust']!['keysDir'] = spliced)), true);
    assert.equal(g.tg.keyring.snapshot.keys.size, 0, 'the keyring still holds keys the directory does not');
    assert.equal(
      await pull(),
      403,
      'an image signed by b is served by a gate whose key directory holds no key',
    );
  });

  it("HELD: after SIGHUP changes auth.service, the old service's refresh token and admin token are refused (/token, /admin/v1)", async () => {
    const g = await gateWith({
      policy: { admins: ['ops'], access: [{ repos: ['**'], pull: ['ops'], push: [], delete: [] }] },
    });
    const login = await request(g.url, g.ca, {
      path: '/token?service=trustgate&scope=repository:svc/app:pull&offline_token=true&client_id=t',
      headers: { authorization: basic('ops', PASSWORD) },
    });
    assert.equal(login.status, 200);
    const refresh = (login.json() as { refresh_token: string }).refresh_token;
    const admin = await getToken(g.url, g.ca, 'ops', PASSWORD, ['registry:admin:*']);
    const adminCall = async (t: string): Promise<number> =>
      (await request(g.url, g.ca, { path: '/admin/v1/policy', headers: bearer(t) })).status;
    assert.equal(await adminCall(admin), 200, 'control');
    assert.equal(await reloadWith(g, (raw) => (raw['auth']!['service'] = 'registry.example')), true);
    assert.equal(await adminCall(admin), 401, 'an admin token of the old service still works');
    for (const service of ['registry.example', 'trustgate']) {
      const r = await request(g.url, g.ca, {
        method: 'POST',
        path: '/token',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          grant_type: 'refresh_token',
          refresh_token: refresh,
          service,
          client_id: 't',
          scope: 'repository:svc/app:pull',
        }).toString(),
      });
      assert.ok([400, 401].includes(r.status), `old refresh token redeemed for ${service}: ${r.status}`);
    }
  });

  it('HELD: a refused SIGHUP (one credential file missing) changes nothing: not the issuer, not the key directory, not the policy', async () => {
    const g = await gateWith();
    const t = await getToken(g.url, g.ca, 'ops', PASSWORD, []);
    const moved = path.join(g.dir, 'keys', 'elsewhere');
    assert.equal(
      await reloadWith(g, (raw) => {
        raw['auth']!['issuer'] = 'gate-b';
        raw['auth']!['robotsFile'] = path.join(g.dir, 'no-such-robots');
        raw['trust']!['keysDir'] = moved;
        raw['policy']!['access'] = [];
      }),
      false,
    );
    assert.equal(g.tg.keyring.dir, g.keysDir);
    assert.equal(await ping(g, t), 200);
    assert.equal(claims(await getToken(g.url, g.ca, 'ops', PASSWORD, []))['iss'], 'trustgate');
  });

  it('HELD: two SIGHUPs back to back apply whole and in order (the second file is what is in force)', async () => {
    const g = await gateWith();
    g.rewriteConfig((raw) => ((raw as Raw)['auth']!['issuer'] = 'first'));
    const first = g.tg.reload();
    g.rewriteConfig((raw) => {
      (raw as Raw)['auth']!['issuer'] = 'second';
      (raw as Raw)['policy']!['access'] = [];
    });
    const second = g.tg.reload();
    assert.deepEqual(await Promise.all([first, second]), [true, true]);
    const t = await getToken(g.url, g.ca, 'ops', PASSWORD, ['repository:x/y:pull']);
    assert.equal(claims(t)['iss'], 'second');
    assert.deepEqual(claims(t)['access'], [], "the first file's policy is still in force");
  });
});
