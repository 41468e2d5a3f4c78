/**
 * Issue 12 item 6, "Secrets in logs": a bearer token in the query string (`?access_token=`) and
 * upload `_state` values were written in clear in the JSON log's `path`; a YAML error on start or
 * SIGHUP printed the yaml library's code frame, `hmacSecret` value included.
 *
 * Treated as a class, against a real trustgate and registry:2 with the log captured at debug
 * level: query secrets on /v2, on the admin API and at /token; upload `_state`; Authorization
 * headers (Bearer, Basic); passwords and robot secrets; a token pasted as a scope; config errors
 * on start (the CLI) and on SIGHUP, YAML and schema; the logger itself; and the CLI's error lines.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { keysCommand } from '../../src/cli/admin.js';
import { generateDevCertificates } from '../../src/cli/certs.js';
import { ConfigError, loadConfigFile } from '../../src/config/load.js';
import { redactText, redactUrl } from '../../src/core/redact.js';
import { createAuditLogger, createLogger } from '../../src/server/log.js';
import { Audit } from '../../src/server/audit.js';
import { startTrustgate, type Trustgate } from '../../src/server/main.js';
import { bearer, getToken, request } from '../helpers/http.js';
import { pushRandomImage } from '../helpers/registry-direct.js';
import { makeTempDir, removeTempDir, startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';
import { memoryIo } from '../cli/support.js';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');
const users = { alice: 'alice-password-secret-1', admin: 'admin-password-secret-2' };
const HMAC = 'hmac-secret-value-0123456789abcdefghijklmnop';

/** A writable that keeps every JSON log line. */
class Sink extends Writable {
  lines: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    cb();
  }
  get text(): string {
    return this.lines.join('\n');
  }
  parsed(): Array<Record<string, unknown>> {
    return this.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  }
}

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 150));

describe(
  'security: no secret reaches a log line (issue 12 item 6, secrets in logs)',
  { timeout: 120_000 },
  () => {
    let registry: RegistryHandle;
    let gate: TestGate;
    const sink = new Sink();

    before(async () => {
      registry = await startRegistry();
      gate = await startTestGate({
        registryUrl: registry.url,
        users,
        robots: true,
        policy: {
          admins: ['admin'],
          access: [{ repos: ['logs/**'], pull: ['alice'], push: ['alice'], delete: [] }],
        },
        trustRules: [{ repos: ['logs/**'], keys: [] }],
        logger: createLogger('debug', sink),
      });
      await pushRandomImage(registry.url, 'logs/app', 'v1');
    });
    after(async () => {
      await gate?.close();
      await registry?.stop();
    });

    const assertAbsent = (secret: string, what: string): void => {
      assert.ok(secret.length >= 8, `${what}: a meaningful secret`);
      assert.ok(!sink.text.includes(secret), `${what} leaked into the log`);
    };

    it('finding: a bearer token in the query string (?access_token=) on /v2 is not logged; the path still is', async () => {
      const t = await getToken(gate.url, gate.ca, 'alice', users.alice, ['repository:logs/app:pull']);
      for (const q of [`access_token=${t}`, `token=${t}`, `n=5&access_token=${t}`]) {
        const r = await request(gate.url, gate.ca, { path: `/v2/logs/app/tags/list?${q}` });
        assert.ok(r.status >= 400, `${q.split('=')[0]}: ${r.status}`);
      }
      await settle();
      assertAbsent(t, 'an access token in the query');
      assertAbsent(t.split('.')[2]!, 'a token signature in the query');
      const logged = sink.parsed().filter((l) => String(l['path']).startsWith('/v2/logs/app/tags/list?'));
      assert.ok(logged.length >= 3, 'the refused requests are logged with their path');
      assert.ok(logged.some((l) => l['path'] === '/v2/logs/app/tags/list?n=5&access_token=[redacted]'));
    });

    it('finding: upload _state values are not logged; harmless keys such as digest are', async () => {
      const t = await getToken(gate.url, gate.ca, 'alice', users.alice, ['repository:logs/app:pull,push']);
      const start = await request(gate.url, gate.ca, {
        method: 'POST',
        path: '/v2/logs/app/blobs/uploads/',
        headers: bearer(t),
      });
      assert.equal(start.status, 202, start.body.toString());
      const loc = new URL(String(start.headers.location), gate.url);
      const state = loc.searchParams.get('_state');
      assert.ok(state, `no _state in ${loc.href}`);
      const rawState = /[?&]_state=([^&]+)/.exec(loc.search)![1]!;
      const digest = `sha256:${'0'.repeat(64)}`;
      // Without the token (401), and with a bad digest (400): both are logged with their path.
      await request(gate.url, gate.ca, {
        method: 'PUT',
        path: `${loc.pathname}${loc.search}&digest=${digest}`,
      });
      await request(gate.url, gate.ca, {
        method: 'PUT',
        path: `${loc.pathname}${loc.search}&digest=sha256:zz`,
        headers: bearer(t),
      });
      await request(gate.url, gate.ca, { method: 'PATCH', path: `${loc.pathname}${loc.search}`, body: 'x' });
      await settle();
      for (const s of [state, rawState, state.slice(0, 24), rawState.slice(-24)]) assertAbsent(s, '_state');
      const logged = sink.parsed().filter((l) => String(l['path']).startsWith(loc.pathname));
      assert.ok(logged.length >= 2, 'the refused upload requests are logged');
      assert.ok(logged.some((l) => String(l['path']).includes(`_state=[redacted]&digest=${digest}`)));
    });

    it('query secrets on the admin API and at /token are not logged', async () => {
      const secrets = ['admin-query-secret-1', 'token-query-secret-2', 'client-secret-value-3'];
      await request(gate.url, gate.ca, {
        path: `/admin/v1/explain?ref=logs/app:v1&access_token=${secrets[0]}`,
      });
      await request(gate.url, gate.ca, {
        path: `/admin/v1/no-such-thing?password=${secrets[1]}`,
        headers: bearer('eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLWJ5dGVz'),
      });
      await request(gate.url, gate.ca, {
        path: `/token?service=trustgate&client_secret=${secrets[2]}&password=${secrets[1]}`,
        headers: { authorization: `Basic ${Buffer.from(`alice:${users.alice}-wrong`).toString('base64')}` },
      });
      await settle();
      for (const s of secrets) assertAbsent(s, 'a query secret');
      assertAbsent('c2lnbmF0dXJlLWJ5dGVz', 'a bearer token on the admin API');
      assert.ok(
        sink.parsed().some((l) => l['path'] === '/admin/v1/explain?ref=logs/app:v1&access_token=[redacted]'),
        'the admin API path is logged, redacted',
      );
    });

    it('a token pasted as a scope, Authorization headers, passwords and robot secrets are not logged', async () => {
      const t = await getToken(gate.url, gate.ca, 'alice', users.alice, ['repository:logs/app:pull']);
      await request(gate.url, gate.ca, { path: `/token?service=trustgate&scope=${t}` });
      const basic = Buffer.from(`alice:${users.alice}`).toString('base64');
      await request(gate.url, gate.ca, {
        path: '/v2/logs/app/tags/list',
        headers: { authorization: `Basic ${basic}` },
      });
      await request(gate.url, gate.ca, { path: '/v2/logs/app/tags/list', headers: bearer(`${t}x`) });
      await request(gate.url, gate.ca, {
        method: 'POST',
        path: '/token',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          grant_type: 'refresh_token',
          refresh_token: `${t}`,
          service: 'trustgate',
          client_id: 'logs',
        }).toString(),
      });
      const adminToken = await getToken(gate.url, gate.ca, 'admin', users.admin, ['registry:admin:*']);
      const robot = await request(gate.url, gate.ca, {
        method: 'POST',
        path: '/admin/v1/robots',
        headers: { ...bearer(adminToken), 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'ci' }),
      });
      assert.equal(robot.status, 201, robot.body.toString());
      const secret = (robot.json() as { secret: string }).secret;
      await getToken(gate.url, gate.ca, 'robot$ci', secret, ['repository:logs/app:pull']);
      await request(gate.url, gate.ca, {
        method: 'POST',
        path: '/admin/v1/users',
        headers: { ...bearer(adminToken), 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'carol', password: 'carol-password-secret-9' }),
      });
      await settle();
      assertAbsent(t.slice(0, 40), 'a token pasted as a scope');
      assertAbsent(basic, 'a Basic header');
      assertAbsent(users.alice, 'a password');
      assertAbsent(users.admin, 'the admin password');
      assertAbsent(secret, 'a robot secret');
      assertAbsent('carol-password-secret-9', 'a new user password');
      assertAbsent(adminToken.split('.')[2]!, 'an admin token');
    });
  },
);

describe(
  'security: config errors name the key, line and column, never the value (issue 12 item 6)',
  { timeout: 60_000 },
  () => {
    let registry: RegistryHandle;
    let dir: string;
    let tg: Trustgate | undefined;
    const sink = new Sink();
    let configFile: string;
    let good: string;

    before(async () => {
      registry = await startRegistry();
      dir = makeTempDir('log-redaction');
      const certs = await generateDevCertificates({
        dir: path.join(dir, 'certs'),
        hosts: ['127.0.0.1'],
        clientNames: [],
      });
      good = [
        'listen: {host: 127.0.0.1, port: 0}',
        `tls: {cert: ${certs.serverCert}, key: ${certs.serverKey}}`,
        `upstream: {url: "${registry.url}"}`,
        `auth: {tokenKeyDir: ${path.join(dir, 'token')}}`,
        `trust: {keysDir: ${path.join(dir, 'trusted')}}`,
        '',
      ].join('\n');
      configFile = path.join(dir, 'trustgate.yaml');
      writeFileSync(configFile, good);
      tg = await startTrustgate(loadConfigFile(configFile, {}), {
        configPath: configFile,
        logger: createLogger('debug', sink),
      });
    });
    after(async () => {
      await tg?.close();
      await registry?.stop();
      if (dir) removeTempDir(dir);
    });

    /** The good config plus a cache section whose `hmacSecret` line (line 8) is `hmacLine`. */
    const withCache = (hmacLine: string, extra = ''): string =>
      `${good}cache:\n  redisUrl: "redis://:redis-password-77@127.0.0.1:6379"\n${hmacLine}\n${extra}`;

    const yamlBroken = (): string => withCache(`  hmacSecret: "${HMAC.slice(0, 10)}\\q${HMAC.slice(10)}"`);
    const schemaBroken = (): string => withCache(`  hmacSecret: [${HMAC}]`, 'shutdownGraceSeconds: "x"\n');

    it('finding: a YAML error on SIGHUP is logged by line, column and key path, without the code frame', async () => {
      writeFileSync(configFile, yamlBroken());
      assert.equal(await tg!.reload(), false);
      await settle();
      const refused = sink.parsed().find((l) => String(l['msg']).startsWith('reload refused'));
      assert.ok(refused, 'the refusal is logged');
      assert.ok(!sink.text.includes(HMAC.slice(10, 30)), 'the hmacSecret value leaked into the log');
      assert.ok(!sink.text.includes('redis-password-77'), 'the redis password leaked into the log');
      assert.match(String(refused['err']), /line 8, column \d+ \(in cache\.hmacSecret\)/);
      assert.match(String(refused['err']), /BAD_DQ_ESCAPE/);
    });

    it('a schema error on SIGHUP names the keys and their lines, and echoes no value', async () => {
      writeFileSync(configFile, schemaBroken());
      assert.equal(await tg!.reload(), false);
      await settle();
      assert.ok(!sink.text.includes(HMAC.slice(10, 30)), 'the hmacSecret value leaked into the log');
      const refused = sink.parsed().filter((l) => String(l['msg']).startsWith('reload refused'));
      const err = String(refused[refused.length - 1]!['err']);
      assert.match(err, /cache\.hmacSecret \(line 8, column \d+\)/);
      assert.match(err, /shutdownGraceSeconds \(line 9, column \d+\)/);
      writeFileSync(configFile, good);
      assert.equal(await tg!.reload(), true, 'control: a good file reloads');
    });

    it('loadConfigFile errors (as on start) quote no source text', () => {
      for (const text of [
        yamlBroken(),
        schemaBroken(),
        `${good}cache:\n  hmacSecret: ${HMAC}\n  hmacSecret: ${HMAC}x\n`,
      ]) {
        writeFileSync(configFile, text);
        const err = (() => {
          try {
            loadConfigFile(configFile, {});
          } catch (e) {
            return e;
          }
          return undefined;
        })();
        assert.ok(err instanceof ConfigError, String(err));
        assert.ok(!err.message.includes(HMAC.slice(10, 30)), `quoted the secret: ${err.message}`);
        assert.ok(!err.message.includes('redis-password-77'), `quoted the redis password: ${err.message}`);
        assert.match(err.message, /line \d+, column \d+/);
      }
      writeFileSync(configFile, good);
    });

    it('finding: `trustgate serve` with a broken YAML file prints no secret', async () => {
      writeFileSync(configFile, yamlBroken());
      const r = await new Promise<{ code: number; stderr: string }>((resolve) => {
        execFile(
          process.execPath,
          [CLI, 'serve', '--config', configFile],
          { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' }, timeout: 30_000 },
          (e, _out, stderr) => resolve({ code: e ? (typeof e.code === 'number' ? e.code : 1) : 0, stderr }),
        );
      });
      writeFileSync(configFile, good);
      assert.equal(r.code, 1, r.stderr);
      assert.ok(!r.stderr.includes(HMAC.slice(10, 30)), `printed the secret: ${r.stderr}`);
      assert.match(r.stderr, /line 8, column \d+ \(in cache\.hmacSecret\)/);
    });

    it('TRUSTGATE_LISTEN_PORT with a bad value is named, not echoed', () => {
      assert.equal(readFileSync(configFile, 'utf8'), good);
      assert.throws(
        () => loadConfigFile(configFile, { TRUSTGATE_LISTEN_PORT: 'hunter2-secret' }),
        (e: unknown) =>
          e instanceof ConfigError &&
          /TRUSTGATE_LISTEN_PORT/.test(e.message) &&
          !e.message.includes('hunter2'),
      );
    });
  },
);

describe('security: the logger and the CLI redact whatever reaches them (issue 12 item 6)', () => {
  const jwt = 'eyJhbGciOiJFUzI1NiIsImtpZCI6IngifQ.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ';

  it('every path and query field, headers, secret fields and tokens in messages, at any depth', () => {
    const sink = new Sink();
    const log = createLogger('debug', sink).child({ component: 'test' });
    log.info({ path: '/v2/a/blobs/uploads/u?_state=STATE-SECRET-1&digest=sha256:abc&n=10' }, 'upload');
    log.info({ url: '/token?service=s&scope=repository:a:pull&password=PW-SECRET-2&sig' }, 'token');
    log.info({ headers: { authorization: 'Basic QUJDREVGR0g6c2VjcmV0', 'proxy-authorization': 'x' } }, 'h');
    log.info({ detail: { request: { originalUrl: '/admin/v1/keys?token=TOKEN-SECRET-3' } } }, 'nested');
    log.warn({ err: new Error(`GET /v2/x?access_token=${jwt} failed`) }, `Bearer ${jwt}`);
    log.error(new Error('redis://:REDIS-SECRET-4@10.0.0.1:6379 refused'), 'cache');
    log.info(
      { hmacSecret: 'HMAC-SECRET-5', robot: { secret: 'ROBOT-SECRET-6' }, password: 'PW-SECRET-7' },
      'f',
    );
    log.info({ list: [{ refresh_token: 'RT-SECRET-8' }, 'x?client_secret=CS-SECRET-9'] }, 'array');
    log.info('%s', '-----BEGIN PRIVATE KEY-----\nPRIVATE-SECRET-10\n-----END PRIVATE KEY-----');
    for (const s of [
      'STATE-SECRET-1',
      'PW-SECRET-2',
      'QUJDREVGR0g6c2VjcmV0',
      'TOKEN-SECRET-3',
      'c2lnbmF0dXJlLXNpZ25hdHVyZQ',
      'REDIS-SECRET-4',
      'HMAC-SECRET-5',
      'ROBOT-SECRET-6',
      'PW-SECRET-7',
      'RT-SECRET-8',
      'CS-SECRET-9',
      'PRIVATE-SECRET-10',
    ]) {
      assert.ok(!sink.text.includes(s), `${s} leaked: ${sink.text}`);
    }
    const lines = sink.parsed();
    assert.equal(lines[0]!['path'], '/v2/a/blobs/uploads/u?_state=[redacted]&digest=sha256:abc&n=10');
    assert.equal(lines[1]!['url'], '/token?service=s&scope=repository:a:pull&password=[redacted]&[redacted]');
    assert.equal(lines[0]!['component'], 'test');
  });

  it("fixed (issue 18): a child logger's bindings are redacted at any depth, like a log call's object", () => {
    // Before, bindings were covered only by pino's redact paths (top-level and one-level names):
    // `detail.authorization` and `request.url`'s query passed through.
    const sink = new Sink();
    const log = createLogger('info', sink).child({
      component: 'test',
      detail: {
        authorization: 'Basic QklORElORy1TRUNSRVQtMQ==',
        request: { url: '/x?sig=BINDING-SECRET-2' },
      },
      token: 'BINDING-SECRET-3',
    });
    log.info({ path: '/v2/' }, 'bound');
    for (const s of ['QklORElORy1TRUNSRVQtMQ==', 'BINDING-SECRET-2', 'BINDING-SECRET-3']) {
      assert.ok(!sink.text.includes(s), `${s} leaked: ${sink.text}`);
    }
    const [line] = sink.parsed();
    assert.equal(line!['component'], 'test');
    assert.equal(line!['svc'], 'trustgate');
  });

  it('audit records are redacted by Audit itself, field by field (the audit logger has no hook)', () => {
    const sink = new Sink();
    const audit = new Audit(createAuditLogger({ mainLogStream: sink }));
    audit.decision({
      requestId: 'r1',
      identity: `robot ${jwt}`,
      client: '127.0.0.1',
      action: 'pull',
      method: 'GET',
      route: 'manifest',
      repo: 'logs/app',
      reference: 'v1?access_token=AUDIT-SECRET-1',
      verdict: 'deny',
      reason: 'Bearer AUDIT-SECRET-2x9',
      keys: ['release', 'x?sig=AUDIT-SECRET-3'],
      status: 403,
      latencyMs: 1.5,
    });
    audit.adminChange({
      requestId: 'r2',
      identity: 'admin',
      change: 'robot-created',
      target: 'ci',
      detail: { robot: { secret: 'AUDIT-SECRET-4' }, url: '/admin?token=AUDIT-SECRET-5' },
    });
    for (const s of [
      'c2lnbmF0dXJlLXNpZ25hdHVyZQ',
      'AUDIT-SECRET-1',
      'AUDIT-SECRET-2x9',
      'AUDIT-SECRET-3',
      'AUDIT-SECRET-4',
      'AUDIT-SECRET-5',
    ]) {
      assert.ok(!sink.text.includes(s), `${s} leaked: ${sink.text}`);
    }
    const [decision, admin] = sink.parsed();
    assert.equal(decision!['stream'], 'audit');
    assert.equal(decision!['audit'], 'decision');
    assert.equal(decision!['repo'], 'logs/app');
    assert.deepEqual(decision!['keys'], ['release', 'x?sig=[redacted]']);
    assert.equal(decision!['status'], 403);
    assert.equal(admin!['audit'], 'admin');
    assert.equal(admin!['target'], 'ci');
  });

  it('prose is left alone', () => {
    for (const s of [
      'authentication required: use a bearer token from the token endpoint',
      'Basic credentials are accepted at /token only',
      'denied: prod/app@sha256:0123 has no valid signature (trusted: release-2026)',
      'this is a registry token: the admin API takes a token for scope registry:admin:*',
    ]) {
      assert.equal(redactText(s), s);
    }
    assert.equal(redactUrl('/v2/a/manifests/v1'), '/v2/a/manifests/v1');
    assert.equal(redactUrl('/v2/_catalog?n=10&last=a%2Fb'), '/v2/_catalog?n=10&last=a%2Fb');
  });

  it('CLI error lines echo no value that may be a password', async () => {
    const cases: Array<[string[], string]> = [
      [['list', '--server', 'admin:cli-secret-1@localhost:5443'], 'cli-secret-1'],
      [['list', '--server', 'localhost:1', '--password-stdin=cli-secret-2'], 'cli-secret-2'],
      [['list', '-pcli-secret-3', '--server', 'localhost:1'], 'cli-secret-3'],
      [
        ['list', '--server', 'localhost:1', '--ca-file', '/nonexistent/https://u:cli-secret-4@x'],
        'cli-secret-4',
      ],
    ];
    for (const [argv, secret] of cases) {
      const m = memoryIo({});
      const code = await keysCommand(argv, m.io);
      assert.notEqual(code, 0, argv.join(' '));
      assert.ok(!m.err().includes(secret), `${argv.join(' ')}: ${m.err()}`);
    }
  });
});
