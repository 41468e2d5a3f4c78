import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import bcrypt from 'bcryptjs';
import express from 'express';
import request from 'supertest';
import { decodeJwt } from 'jose';
import { CredentialStore } from '../../src/auth/credentials.js';
import { createTokenRouter } from '../../src/auth/token-endpoint.js';
import { loadOrCreateTokenKeys } from '../../src/auth/token-keys.js';
import { TokenService } from '../../src/auth/tokens.js';
import { compilePolicy, type Policy } from '../../src/core/policy.js';

const quiet = { info: () => {}, warn: () => {} };
const basic = (s: string) => `Basic ${Buffer.from(s).toString('base64')}`;
const line = (u: string, pw: string) => `${u}:${bcrypt.hashSync(pw, 4).replace(/^\$2b\$/, '$2y$')}`;
/** Fixed, so rewriting the file keeps alice's credential (and her refresh tokens) unchanged. */
const aliceLine = line('alice', 'alice-pw');

describe('token endpoint', () => {
  let dir: string;
  let app: express.Express;
  let tokens: TokenService;
  let policy: Policy;
  let htpasswd: string;
  let credentials: CredentialStore;
  const clock = new Date('2026-05-01T12:00:00Z');

  const policyWith = (alicePush: boolean) =>
    compilePolicy({
      admins: ['root'],
      groups: { devs: ['alice', 'carol'] },
      access: [
        { repos: ['team-a/**'], pull: ['group:devs'], push: alicePush ? ['alice'] : [], delete: [] },
        { repos: ['public/*'], pull: ['anonymous', '*'], push: [], delete: [] },
      ],
    });

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'tg-ep-'));
    htpasswd = path.join(dir, 'htpasswd');
    writeFileSync(htpasswd, [aliceLine, line('carol', 'carol-pw'), line('lock', 'lock-pw')].join('\n'));
    credentials = CredentialStore.load({ htpasswd, maxFailures: 3, failureWindowSeconds: 60 }, quiet, {
      sleep: async () => {},
    });
    tokens = new TokenService({
      keys: await loadOrCreateTokenKeys(path.join(dir, 'keys'), quiet),
      issuer: 'trustgate',
      service: 'svc',
      ttlSeconds: 300,
      refreshTtlSeconds: 3600,
    });
    policy = policyWith(true);
    app = express();
    app.use(
      createTokenRouter({
        tokens,
        // a facade, so the test can swap in a reloaded store
        credentials: {
          verify: (...a) => credentials.verify(...a),
          accountVersion: (...a) => credentials.accountVersion(...a),
        },
        policy: () => policy,
        now: () => clock,
        logger: quiet,
      }),
    );
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const access = (token: string) => decodeJwt(token)['access'];

  describe('GET', () => {
    it('Basic credentials and repeated scope parameters: the grant is the intersection', async () => {
      const r = await request(app)
        .get(
          '/token?service=svc&scope=repository:team-a/app:pull,push&scope=repository:team-a/lib:pull,delete&scope=repository:other/x:pull',
        )
        .set('authorization', basic('carol:carol-pw'))
        .expect(200);
      assert.equal(r.headers['cache-control'], 'no-store');
      assert.equal(r.body.token, r.body.access_token);
      assert.equal(r.body.expires_in, 300);
      assert.equal(r.body.issued_at, '2026-05-01T12:00:00.000Z');
      assert.equal(r.body.refresh_token, undefined);
      assert.deepEqual(access(r.body.token), [
        { type: 'repository', name: 'team-a/app', actions: ['pull'] },
        { type: 'repository', name: 'team-a/lib', actions: ['pull'] },
      ]);
      const claims = decodeJwt(r.body.token);
      assert.equal(claims.sub, 'carol');
      assert.equal(claims.aud, 'svc');
      assert.equal(claims.iss, 'trustgate');
      assert.ok(claims.jti);
    });

    it('no credentials: anonymous, granted only what anonymous may pull', async () => {
      const r = await request(app)
        .get(
          '/token?service=svc&scope=repository:public/hello:pull,push&scope=repository:team-a/app:pull&scope=registry:catalog:*&offline_token=true',
        )
        .expect(200);
      assert.deepEqual(access(r.body.token), [
        { type: 'repository', name: 'public/hello', actions: ['pull'] },
      ]);
      assert.equal(decodeJwt(r.body.token).sub, 'anonymous');
      assert.equal(r.body.refresh_token, undefined);
    });

    it('offline_token=true returns a refresh token; account must match the credentials', async () => {
      const r = await request(app)
        .get('/token?service=svc&offline_token=true&account=alice')
        .set('authorization', basic('alice:alice-pw'))
        .expect(200);
      assert.ok(r.body.refresh_token);
      const bad = await request(app)
        .get('/token?service=svc&account=root')
        .set('authorization', basic('alice:alice-pw'))
        .expect(401);
      assert.equal(bad.body.errors[0].code, 'UNAUTHORIZED');
    });

    it('malformed Basic, long inputs, NUL bytes and wrong passwords: 401 UNAUTHORIZED with a Basic challenge', async () => {
      for (const [what, h] of [
        ['not base64', 'Basic !!!!'],
        ['no colon', basic('alice')],
        ['bearer', 'Bearer abc'],
        ['long user', basic(`${'a'.repeat(5000)}:x`)],
        ['257-char user', basic(`${'a'.repeat(257)}:x`)],
        ['long password', basic(`carol:${'x'.repeat(200)}`)],
        ['NUL in user', basic('car\u0000ol:carol-pw')],
        ['NUL in password', basic('carol:carol-pw\u0000')],
        ['unknown user', basic('mallory:x')],
      ] as const) {
        const r = await request(app)
          .get('/token?service=svc&scope=repository:team-a/app:pull')
          .set('authorization', h);
        assert.equal(r.status, 401, what);
        assert.equal(r.body.errors[0].code, 'UNAUTHORIZED', what);
        assert.match(r.headers['www-authenticate'] ?? '', /^Basic realm="svc"/, what);
        assert.equal(r.body.token, undefined);
      }
    });

    it('two Authorization headers are refused', async () => {
      // supertest folds repeated set() calls; send raw headers through node:http instead
      const server = app.listen(0, '127.0.0.1');
      await new Promise((r) => server.once('listening', r));
      try {
        const { port } = server.address() as { port: number };
        const net = await import('node:net');
        // A raw request: Node's client would not send two Authorization headers as given.
        const reply = await new Promise<string>((resolve, reject) => {
          const c = net.connect(port, '127.0.0.1', () =>
            c.end(
              `GET /token?service=svc HTTP/1.1\r\nHost: x\r\nAuthorization: ${basic('mallory:x')}\r\n` +
                `Authorization: ${basic('alice:alice-pw')}\r\nConnection: close\r\n\r\n`,
            ),
          );
          let b = '';
          c.on('data', (d) => (b += String(d)));
          c.on('end', () => resolve(b));
          c.on('error', reject);
        });
        const status = Number(reply.split(' ')[1]);
        assert.match(reply, /more than one Authorization header/);
        assert.equal(status, 401);
      } finally {
        server.close();
      }
    });

    it('bad scopes, a foreign or missing service, and repeated single parameters are 400', async () => {
      for (const q of [
        'service=other',
        '',
        'service=svc&service=svc',
        'service=svc&scope=repository:team-a/*:pull',
        'service=svc&scope=repository:a%00b:pull',
        `service=svc${'&scope=repository:a:pull'.repeat(65)}`,
      ]) {
        const r = await request(app).get(`/token?${q}`).set('authorization', basic('alice:alice-pw'));
        assert.equal(r.status, 400, `${q.slice(0, 60)}: ${r.status}`);
        assert.ok(Array.isArray(r.body.errors), q);
      }
    });

    it('X-Forwarded-For does not pick the throttling key: the socket address does', async () => {
      for (let i = 0; i < 3; i++) {
        await request(app)
          .get('/token?service=svc')
          .set('authorization', basic('lock:wrong'))
          .set('x-forwarded-for', `203.0.113.${i}`)
          .expect(401);
      }
      const r = await request(app)
        .get('/token?service=svc')
        .set('authorization', basic('lock:lock-pw'))
        .set('x-forwarded-for', '198.51.100.1');
      assert.equal(r.status, 429);
      assert.equal(r.body.errors[0].code, 'TOOMANYREQUESTS');
      assert.ok(Number(r.headers['retry-after']) > 0);
    });
  });

  describe('POST (OAuth2 form)', () => {
    const form = (o: Record<string, string>) =>
      request(app).post('/token').type('form').send(new URLSearchParams(o).toString());
    const pw = {
      grant_type: 'password',
      username: 'alice',
      password: 'alice-pw',
      service: 'svc',
      client_id: 'docker',
    };

    it('password grant with access_type=offline, then refresh_token grant re-checks policy', async () => {
      const r = await form({
        ...pw,
        scope: 'repository:team-a/app:pull,push repository:public/x:pull',
        access_type: 'offline',
      }).expect(200);
      assert.ok(r.body.refresh_token && r.body.access_token && r.body.expires_in >= 60 && r.body.issued_at);
      assert.equal(r.body.scope, 'repository:team-a/app:pull,push repository:public/x:pull');
      // policy changes: alice loses push; the refresh grant gets the new, smaller grant
      policy = policyWith(false);
      try {
        const r2 = await form({
          grant_type: 'refresh_token',
          refresh_token: r.body.refresh_token,
          service: 'svc',
          client_id: 'docker',
          scope: 'repository:team-a/app:pull,push',
        }).expect(200);
        assert.deepEqual(access(r2.body.access_token), [
          { type: 'repository', name: 'team-a/app', actions: ['pull'] },
        ]);
        assert.equal(r2.body.scope, 'repository:team-a/app:pull');
        assert.equal(r2.body.refresh_token, undefined);
        const r3 = await form({
          grant_type: 'refresh_token',
          refresh_token: r.body.refresh_token,
          service: 'svc',
          client_id: 'docker',
          access_type: 'offline',
        }).expect(200);
        assert.equal(r3.body.refresh_token, r.body.refresh_token);
      } finally {
        policy = policyWith(true);
      }
    });

    it('an access token is no refresh token; a refresh token of a changed or removed account is revoked', async () => {
      const r = await form({ ...pw, access_type: 'offline' }).expect(200);
      const asRefresh = await form({
        grant_type: 'refresh_token',
        refresh_token: r.body.access_token,
        service: 'svc',
        client_id: 'docker',
      });
      assert.equal(asRefresh.status, 401);
      assert.equal(asRefresh.body.error, 'invalid_grant');
      assert.doesNotMatch(asRefresh.body.error_description, /JWS|JWT|claim|audience/i);
      const carol = await form({
        ...pw,
        username: 'carol',
        password: 'carol-pw',
        access_type: 'offline',
      }).expect(200);
      const old = credentials;
      try {
        writeFileSync(htpasswd, [aliceLine, line('carol', 'new-carol-pw')].join('\n'));
        credentials = old.reload({ htpasswd, maxFailures: 3, failureWindowSeconds: 60 }, quiet);
        const changed = await form({
          grant_type: 'refresh_token',
          refresh_token: carol.body.refresh_token,
          service: 'svc',
          client_id: 'docker',
        });
        assert.equal(changed.status, 401);
        assert.match(changed.body.error_description, /revoked/);
        writeFileSync(htpasswd, aliceLine);
        credentials = old.reload({ htpasswd, maxFailures: 3, failureWindowSeconds: 60 }, quiet);
        const gone = await form({
          grant_type: 'refresh_token',
          refresh_token: carol.body.refresh_token,
          service: 'svc',
          client_id: 'docker',
        });
        assert.equal(gone.status, 401);
        // alice's refresh token is still good
        await form({
          grant_type: 'refresh_token',
          refresh_token: r.body.refresh_token,
          service: 'svc',
          client_id: 'docker',
        }).expect(200);
      } finally {
        writeFileSync(htpasswd, [aliceLine, line('carol', 'carol-pw'), line('lock', 'lock-pw')].join('\n'));
        credentials = old;
      }
    });

    it('bad requests answer the OAuth2 error form', async () => {
      const cases: Array<[Record<string, string>, number, string]> = [
        [{ ...pw, password: 'wrong' }, 401, 'invalid_grant'],
        [{ ...pw, username: 'ali\u0000ce' }, 401, 'invalid_grant'],
        [{ ...pw, password: 'x'.repeat(100) }, 401, 'invalid_grant'],
        [{ ...pw, grant_type: 'client_credentials' }, 400, 'unsupported_grant_type'],
        [{ ...pw, grant_type: '' }, 400, 'unsupported_grant_type'],
        [{ ...pw, client_id: '' }, 400, 'invalid_request'],
        [{ ...pw, service: 'other' }, 400, 'invalid_request'],
        [{ ...pw, scope: 'repository:a/**:pull' }, 400, 'invalid_scope'],
        [{ grant_type: 'password', service: 'svc', client_id: 'x' }, 400, 'invalid_request'],
        [
          { grant_type: 'refresh_token', service: 'svc', client_id: 'x', refresh_token: 'garbage' },
          401,
          'invalid_grant',
        ],
      ];
      for (const [body, status, error] of cases) {
        const r = await form(body);
        assert.equal(r.status, status, JSON.stringify(body).slice(0, 80));
        assert.equal(r.body.error, error, JSON.stringify(body).slice(0, 80));
        assert.equal(typeof r.body.error_description, 'string');
      }
      const dup = await request(app)
        .post('/token')
        .type('form')
        .send('grant_type=password&grant_type=refresh_token&service=svc&client_id=x');
      assert.equal(dup.status, 400);
      assert.equal(dup.body.error, 'invalid_request');
      const json = await request(app)
        .post('/token')
        .send({ ...pw });
      assert.equal(json.status, 400);
      assert.equal(json.body.error, 'invalid_request');
      const big = await request(app)
        .post('/token')
        .type('form')
        .send(`password=${'x'.repeat(20_000)}`);
      assert.equal(big.status, 413);
      assert.equal(big.body.error, 'invalid_request');
    });
  });
});
