/**
 * Token attacks through the real pipeline (trustgate + registry:2), beyond test/server/access.test.ts
 * (alg=none, HS256 key confusion, embedded jwk, unknown kid/iss/aud, exp/nbf, flipped signature
 * byte): claims edited after signing (RFC 7515 §5.2), kid path/injection strings, `crit`
 * (RFC 7515 §4.1.11), duplicate JSON members (RFC 7519 §4: "MUST either reject … or use a JSON
 * parser that returns only the lexically last"), `typ` confusion (RFC 8725 §3.11), cross-service
 * audience (RFC 8725 §3.9), tokens in the query (RFC 6750 §5.3), repeated and odd Authorization
 * headers, scope look-alikes (distribution scope.md), `account`, anonymous replay, refresh after a
 * password change, and login throttling keyed by the socket (never X-Forwarded-For).
 */
import assert from 'node:assert/strict';
import { createPrivateKey, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import bcrypt from 'bcryptjs';
import { makeTempDir, removeTempDir, startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';
import { bearer, getToken, request, type Reply } from '../helpers/http.js';
import { rawExchange } from '../helpers/raw.js';
import { pushRandomImage } from '../helpers/registry-direct.js';

const OCI = 'application/vnd.oci.image.manifest.v1+json';
const users = {
  alice: 'alice-password-1',
  bob: 'bob-password-22',
  root: 'root-password-4444',
};
const policy = {
  admins: ['root'],
  groups: {},
  access: [
    { repos: ['team-a/**'], pull: ['alice'], push: ['alice'], delete: [] },
    { repos: ['team-b/**'], pull: ['bob'], push: [], delete: [] },
    { repos: ['public/*'], pull: ['anonymous', '*'], push: [], delete: [] },
    // A repository literally named `catalog`: a registry:catalog:* grant must not reach it.
    { repos: ['catalog'], pull: ['alice'], push: [], delete: [] },
  ],
};

const b64u = (s: string | Buffer): string => Buffer.from(s).toString('base64url');
const claimsOf = (t: string): Record<string, unknown> =>
  JSON.parse(Buffer.from(t.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;

function ociCode(r: Reply): string {
  return (r.json() as { errors: Array<{ code: string }> }).errors[0]!.code;
}

describe('security: token attacks through the pipeline', { timeout: 180_000 }, () => {
  let registry: RegistryHandle;
  let gate: TestGate;
  let key: KeyObject;
  let kid: string;

  before(async () => {
    registry = await startRegistry();
    gate = await startTestGate({
      registryUrl: registry.url,
      users,
      policy,
      trustRules: [{ repos: ['**'], mode: 'off' }],
    });
    for (const repo of ['team-a/app', 'team-b/secret', 'public/hello', 'catalog'])
      await pushRandomImage(registry.url, repo, 'v1');
    const dir = path.join(gate.dir, 'keys', 'token');
    const f = readdirSync(dir).find((x) => x.endsWith('.key'))!;
    key = createPrivateKey(readFileSync(path.join(dir, f)));
    kid = f.replace(/\.key$/, '');
  });
  after(async () => {
    await gate?.close();
    await registry?.stop();
  });

  const tok = (user: keyof typeof users | undefined, scopes: string[]): Promise<string> =>
    getToken(gate.url, gate.ca, user, user ? users[user] : undefined, scopes);
  const pull = (repo: string, token?: string, headers: Record<string, string> = {}): Promise<Reply> =>
    request(gate.url, gate.ca, {
      path: `/v2/${repo}/manifests/v1`,
      headers: { accept: OCI, ...(token ? bearer(token) : {}), ...headers },
    });

  /** A compact JWS over exactly these header and payload texts, signed ES256 with OUR token key. */
  const forge = (header: string | object, payload: string | object, k: KeyObject = key): string => {
    const h = b64u(typeof header === 'string' ? header : JSON.stringify(header));
    const p = b64u(typeof payload === 'string' ? payload : JSON.stringify(payload));
    const sig = cryptoSign('sha256', Buffer.from(`${h}.${p}`), { key: k, dsaEncoding: 'ieee-p1363' });
    return `${h}.${p}.${b64u(sig)}`;
  };
  const claims = (o: Record<string, unknown> = {}): Record<string, unknown> => {
    const now = Math.floor(Date.now() / 1000);
    return {
      access: [{ type: 'repository', name: 'team-b/secret', actions: ['pull'] }],
      kind: 'user',
      iss: 'trustgate',
      aud: 'trustgate',
      sub: 'bob',
      iat: now,
      nbf: now,
      exp: now + 120,
      jti: 'forged',
      ...o,
    };
  };
  const header = (o: Record<string, unknown> = {}) => ({ alg: 'ES256', kid, typ: 'JWT', ...o });
  const expect401 = async (t: string, what: string, repo = 'team-b/secret'): Promise<void> => {
    const r = await pull(repo, t);
    assert.equal(r.status, 401, `${what}: ${r.status} ${r.body.toString()}`);
    assert.equal(ociCode(r), 'UNAUTHORIZED', what);
    assert.doesNotMatch(r.body.toString(), /schemaVersion/, what);
  };

  it('control: a hand-forged token with our key and the right claims pulls (so refusals below are meaningful)', async () => {
    const r = await pull('team-b/secret', forge(header(), claims()));
    assert.equal(r.status, 200, r.body.toString());
  });

  it('RFC 7515 §5.2: access widened after signing (payload edited, signature kept) is refused', async () => {
    const t = await tok('alice', ['repository:team-a/app:pull']);
    assert.equal((await pull('team-a/app', t)).status, 200);
    const [h, p, s] = t.split('.') as [string, string, string];
    const c = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
    for (const access of [
      [{ type: 'repository', name: 'team-b/secret', actions: ['pull'] }],
      [{ type: 'repository', name: 'team-a/app', actions: ['pull', 'push', 'delete'] }],
      [...(c['access'] as unknown[]), { type: 'repository', name: 'team-b/secret', actions: ['pull'] }],
    ]) {
      const edited = `${h}.${b64u(JSON.stringify({ ...c, access }))}.${s}`;
      await expect401(edited, `widened to ${JSON.stringify(access)}`);
    }
    // The same claims re-encoded with padding or standard base64 characters are other bytes too.
    await expect401(`${h}.${p}=.${s}`, 'padded payload segment', 'team-a/app');
  });

  it('kid path and injection strings, and a very long kid, name no key', async () => {
    for (const k of [
      '../../x',
      `../token/${kid}`,
      `${kid}.key`,
      `${kid}/../${kid}`,
      "x' OR '1'='1",
      '__proto__',
      'constructor',
      `${kid}\u0000`,
      kid.toUpperCase() === kid ? kid.toLowerCase() : kid.toUpperCase(),
      'k'.repeat(4000),
    ]) {
      await expect401(forge(header({ kid: k }), claims()), `kid ${JSON.stringify(k.slice(0, 40))}`);
    }
    await expect401(forge(header({ kid: 7 }), claims()), 'numeric kid');
    await expect401(forge(header({ kid: [kid] }), claims()), 'array kid');
    const huge = forge(header({ kid: 'k'.repeat(20_000) }), claims());
    const r = await pull('team-b/secret', huge);
    assert.ok(r.status === 401 || r.status === 431 || r.status === 400, `huge kid: ${r.status}`);
  });

  it('RFC 7515 §4.1.11: a crit header naming anything is refused', async () => {
    await expect401(forge(header({ crit: ['x-tg'], 'x-tg': true }), claims()), 'crit x-tg');
    await expect401(forge(header({ crit: ['exp'] }), claims()), 'crit naming a registered claim');
    await expect401(forge(header({ crit: ['b64'], b64: false }), claims()), 'crit b64=false (RFC 7797)');
    // (crit b64 with b64=true is RFC 7797's spelling of the default; jose accepts it, same bytes.)
    await expect401(forge(header({ crit: [] }), claims()), 'empty crit');
  });

  it('RFC 7519 §4: duplicate or case-variant members in the claims or header are refused, never read one way', async () => {
    const c = claims();
    const narrow = JSON.stringify([{ type: 'repository', name: 'team-a/app', actions: ['pull'] }]);
    const wide = JSON.stringify(c['access']);
    const rest = JSON.stringify({ ...c, access: undefined }).slice(1);
    // JSON.parse (jose) keeps the last `access`: a narrow-then-wide token would grant team-b.
    await expect401(forge(header(), `{"access":${narrow},"access":${wide},${rest}`), 'access twice');
    await expect401(
      forge(header(), `{"access":${wide},"access":${narrow},${rest}`),
      'access twice (reversed)',
    );
    // Go's encoding/json would read `Access` into the access field.
    await expect401(forge(header(), `{"Access":${wide},"access":${narrow},${rest}`), 'Access/access');
    await expect401(forge(header(), `{"access":${wide},"sub":"alice",${rest}`), 'sub twice');
    const h = JSON.stringify(header());
    await expect401(forge(`{"kid":"other",${h.slice(1)}`, c), 'kid twice in the header');
  });

  it('RFC 8725 §3.11: typ swapped between access and refresh tokens never passes for the other', async () => {
    const refreshAud = { aud: 'trustgate#refresh', ver: 'x' };
    // access claims with the refresh typ, on /v2
    await expect401(forge(header({ typ: 'trustgate-refresh+jwt' }), claims()), 'access claims, refresh typ');
    // refresh claims with the access typ, on /v2
    await expect401(forge(header(), claims(refreshAud)), 'refresh audience, access typ');
    // and both shapes redeemed as refresh tokens
    const redeem = (rt: string) =>
      request(gate.url, gate.ca, {
        method: 'POST',
        path: '/token',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          grant_type: 'refresh_token',
          refresh_token: rt,
          service: 'trustgate',
          client_id: 'test',
          scope: 'repository:team-b/secret:pull',
        }).toString(),
      });
    for (const [what, t] of [
      ['access claims, refresh typ', forge(header({ typ: 'trustgate-refresh+jwt' }), claims())],
      ['refresh claims, access typ', forge(header(), claims(refreshAud))],
      ['no typ', forge({ alg: 'ES256', kid }, claims(refreshAud))],
    ] as const) {
      const r = await redeem(t);
      assert.equal(r.status, 401, `${what}: ${r.status} ${r.body.toString()}`);
      assert.equal((r.json() as { error: string }).error, 'invalid_grant');
    }
    // control: the right typ and audience are redeemed (with a real account version)
    const login = await request(gate.url, gate.ca, {
      method: 'POST',
      path: '/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'password',
        username: 'bob',
        password: users.bob,
        service: 'trustgate',
        client_id: 'test',
        access_type: 'offline',
      }).toString(),
    });
    const rt = (login.json() as { refresh_token: string }).refresh_token;
    assert.equal((await redeem(rt)).status, 200);
  });

  it('RFC 8725 §3.9: a token for service A is refused by a trustgate for service B sharing its signing key', async () => {
    const shared = makeTempDir('svc');
    const mk = async (service: string): Promise<TestGate> => {
      const dir = path.join(shared, service);
      mkdirSync(dir);
      const htpasswd = path.join(dir, 'htpasswd');
      writeFileSync(htpasswd, `bob:${bcrypt.hashSync(users.bob, 4).replace(/^\$2b\$/, '$2y$')}\n`);
      return startTestGate({
        registryUrl: registry.url,
        policy,
        trustRules: [{ repos: ['**'], mode: 'off' }],
        extra: { auth: { service, htpasswd, tokenKeyDir: path.join(shared, 'token') } },
      });
    };
    const a = await mk('registry-a');
    const b = await mk('registry-b');
    try {
      const t = await getToken(
        a.url,
        a.ca,
        'bob',
        users.bob,
        ['repository:team-b/secret:pull'],
        'registry-a',
      );
      const onA = await request(a.url, a.ca, {
        path: '/v2/team-b/secret/manifests/v1',
        headers: { ...bearer(t), accept: OCI },
      });
      assert.equal(onA.status, 200, 'control: A accepts its own token');
      const onB = await request(b.url, b.ca, {
        path: '/v2/team-b/secret/manifests/v1',
        headers: { ...bearer(t), accept: OCI },
      });
      assert.equal(onB.status, 401, `B accepted A's token: ${onB.status}`);
      // nor one minted for both
      const tokenDir = path.join(shared, 'token');
      const keyFile = readdirSync(tokenDir).find((x) => x.endsWith('.key'))!;
      const both = forge(
        header({ kid: keyFile.replace(/\.key$/, '') }),
        claims({ aud: ['registry-a', 'registry-b'] }),
        createPrivateKey(readFileSync(path.join(tokenDir, keyFile))),
      );
      for (const g of [a, b]) {
        const r = await request(g.url, g.ca, {
          path: '/v2/team-b/secret/manifests/v1',
          headers: { ...bearer(both), accept: OCI },
        });
        assert.equal(r.status, 401, 'a token for two audiences');
      }
      // and B's token endpoint refuses to mint for A
      await assert.rejects(
        getToken(b.url, b.ca, 'bob', users.bob, ['repository:team-b/secret:pull'], 'registry-a'),
        /400/,
      );
    } finally {
      await a.close();
      await b.close();
      removeTempDir(shared);
    }
  });

  it('RFC 6750 §5.3: a token in the query string (access_token=) does not authenticate', async () => {
    const t = await tok('bob', ['repository:team-b/secret:pull']);
    for (const q of [`access_token=${t}`, `token=${t}`, `bearer=${t}`]) {
      const r = await request(gate.url, gate.ca, {
        path: `/v2/team-b/secret/manifests/v1?${q}`,
        headers: { accept: OCI },
      });
      assert.ok(r.status === 401 || r.status === 400, `${q.split('=')[0]}: ${r.status}`);
      assert.doesNotMatch(r.body.toString(), /schemaVersion/);
    }
    const ping = await request(gate.url, gate.ca, { path: `/v2/?access_token=${t}` });
    assert.ok(ping.status === 401 || ping.status === 400, `ping: ${ping.status}`);
  });

  it('two Authorization headers on /v2 are refused, whichever comes first', async () => {
    const good = await tok('bob', ['repository:team-b/secret:pull']);
    const other = await tok('alice', ['repository:team-a/app:pull']);
    const send = (auths: string[]) =>
      rawExchange(
        gate.tg.port,
        gate.ca,
        [
          'GET /v2/team-b/secret/manifests/v1 HTTP/1.1',
          `Host: ${gate.host}`,
          `Accept: ${OCI}`,
          ...auths.map((a) => `Authorization: ${a}`),
          'Connection: close',
          '',
          '',
        ].join('\r\n'),
        { idleMs: 1000, maxMs: 5000 },
      );
    const one = await send([`Bearer ${good}`]);
    assert.deepEqual(one.statuses, [200], 'control: one header');
    for (const [what, auths] of [
      ['valid then garbage', [`Bearer ${good}`, 'Bearer garbage']],
      ['garbage then valid', ['Bearer garbage', `Bearer ${good}`]],
      ['two valid tokens of two users', [`Bearer ${good}`, `Bearer ${other}`]],
      ['bearer then basic', [`Bearer ${good}`, `Basic ${b64u('bob:x')}`]],
    ] as const) {
      const r = await send([...auths]);
      assert.deepEqual(r.statuses, [401], `${what}: ${r.text.slice(0, 200)}`);
      assert.doesNotMatch(r.text, /schemaVersion/, what);
    }
  });

  it('scheme spellings other than `Bearer <token>` are refused, never read as anonymous', async () => {
    const t = await tok('bob', ['repository:team-b/secret:pull', 'repository:public/hello:pull']);
    // public/hello is open to anonymous callers: a malformed header must still not fall through.
    // (Node trims trailing whitespace from header values, so `Bearer <t> ` is the valid form.)
    for (const a of [`bearer ${t}`, `BEARER ${t}`, `Bearer  ${t}`, `Bearer\t${t}`, `Token ${t}`, 'Bearer']) {
      for (const repo of ['team-b/secret', 'public/hello']) {
        const r = await pull(repo, undefined, { authorization: a });
        assert.equal(r.status, 401, `${JSON.stringify(a.slice(0, 8))} on ${repo}: ${r.status}`);
        assert.match(String(r.headers['www-authenticate']), /^Bearer realm=/);
      }
    }
  });

  it('a registry:catalog:* grant is no grant on a repository named `catalog`, and forged registry claims are refused', async () => {
    const t = await tok('alice', ['registry:catalog:*']);
    assert.deepEqual(claimsOf(t)['access'], [{ type: 'registry', name: 'catalog', actions: ['*'] }]);
    const r = await pull('catalog', t);
    assert.equal(r.status, 401, 'insufficient scope, not a pull');
    assert.match(String(r.headers['www-authenticate']), /error="insufficient_scope"/);
    const cat = await request(gate.url, gate.ca, { path: '/v2/_catalog', headers: bearer(t) });
    assert.equal(cat.status, 200);
    assert.deepEqual((cat.json() as { repositories: string[] }).repositories.sort(), [
      'catalog',
      'public/hello',
      'team-a/app',
    ]);
    for (const access of [
      [{ type: 'registry', name: 'catalog', actions: ['pull'] }],
      [{ type: 'registry', name: 'team-b/secret', actions: ['*'] }],
      [{ type: 'repository', name: 'team-b/*', actions: ['pull'] }],
      [{ type: 'repository', name: 'team-b/secret', actions: 'pull' }],
      [{ type: 'Repository', name: 'team-b/secret', actions: ['pull'] }],
    ]) {
      const forged = forge(header(), claims({ access }));
      const got = await pull('team-b/secret', forged);
      assert.notEqual(got.status, 200, JSON.stringify(access));
    }
  });

  it('scope strings with look-alikes, case or trailing junk never widen the grant', async () => {
    const q = (scopes: string[], user: keyof typeof users = 'bob') => {
      const p = new URLSearchParams({ service: 'trustgate' });
      for (const s of scopes) p.append('scope', s);
      return request(gate.url, gate.ca, {
        path: `/token?${p.toString()}`,
        headers: { authorization: `Basic ${Buffer.from(`${user}:${users[user]}`).toString('base64')}` },
      });
    };
    // refused outright (400): non-ASCII look-alikes, invisible characters, uppercase, bad grammar
    for (const s of [
      'repository:team\u2010a/app:pull', // U+2010 hyphen
      'repository:team-a\u2215app:pull', // division slash
      'repository:team-a/app:pull\u200b',
      'repository:team-a/app\u0000:pull',
      'repository:Team-a/app:pull',
      'repository:team-a/APP:pull',
      'repository:team-a/app/:pull',
      'repository:team-a//app:pull',
      'repository:team-a/../team-b/secret:pull',
      'repository:team-a/app:pull:push',
      'repository:team-b/secret:pull;push',
      'repository:team-b/secret:PULL',
    ]) {
      const r = await q([s]);
      assert.equal(r.status, 400, `${JSON.stringify(s)}: ${r.status}`);
    }
    // accepted, but granting nothing bob may not do
    for (const s of [
      'repository:team-a/app:pull,push ',
      ' repository:team-a/app:pull',
      'repository:team-a/app:*',
      'repository:team-a/app:pull,,push',
      'repository(plugin):team-b/secret:pull',
      'repository:team-b/secret:pull,push,delete,*',
      'registry:catalog:pull',
    ]) {
      const r = await q([s]);
      assert.equal(r.status, 200, `${JSON.stringify(s)}: ${r.status}`);
      const access = claimsOf((r.json() as { token: string }).token)['access'] as Array<{
        type: string;
        name: string;
        actions: string[];
      }>;
      for (const a of access) {
        assert.equal(a.type, 'repository', JSON.stringify(s));
        assert.equal(a.name, 'team-b/secret', JSON.stringify(s));
        assert.deepEqual(a.actions, ['pull'], JSON.stringify(s));
      }
    }
    // the trailing-space form grants alice exactly what the clean form does
    const clean = await q(['repository:team-a/app:pull,push'], 'alice');
    const junk = await q(['repository:team-a/app:pull,push '], 'alice');
    assert.deepEqual(
      claimsOf((junk.json() as { token: string }).token)['access'],
      claimsOf((clean.json() as { token: string }).token)['access'],
    );
  });

  it('the account parameter must name the authenticated user; without credentials it names nobody', async () => {
    const get = (qs: string, auth?: string) =>
      request(gate.url, gate.ca, { path: `/token?${qs}`, headers: auth ? { authorization: auth } : {} });
    const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
    const scope = 'service=trustgate&scope=repository:team-b/secret:pull';
    const mismatch = await get(`${scope}&account=bob`, basic('alice', users.alice));
    assert.equal(mismatch.status, 401);
    const twice = await get(`${scope}&account=alice&account=bob`, basic('alice', users.alice));
    assert.equal(twice.status, 400);
    const anon = await get(`${scope}&account=bob`);
    assert.equal(anon.status, 200);
    const c = claimsOf((anon.json() as { token: string }).token);
    assert.equal(c['sub'], 'anonymous');
    assert.deepEqual(c['access'], []);
    const r = await pull('team-b/secret', (anon.json() as { token: string }).token);
    assert.ok(r.status === 401 || r.status === 403, `anonymous token on team-b: ${r.status}`);
  });

  it('an anonymous token replayed on a private repository is refused', async () => {
    const t = await tok(undefined, ['repository:public/hello:pull', 'repository:team-a/app:pull']);
    assert.deepEqual(claimsOf(t)['access'], [
      { type: 'repository', name: 'public/hello', actions: ['pull'] },
    ]);
    assert.equal((await pull('public/hello', t)).status, 200, 'control');
    for (const repo of ['team-a/app', 'team-b/secret', 'catalog']) {
      const r = await pull(repo, t);
      assert.ok(r.status === 401 || r.status === 403, `${repo}: ${r.status}`);
      assert.doesNotMatch(r.body.toString(), /schemaVersion/);
    }
  });

  it('a refresh token is revoked when the password changes (CredentialStore.accountVersion)', async () => {
    const form = (o: Record<string, string>) =>
      request(gate.url, gate.ca, {
        method: 'POST',
        path: '/token',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ service: 'trustgate', client_id: 'test', ...o }).toString(),
      });
    const admin = await tok('root', ['registry:admin:*']);
    const adminCall = (method: string, p: string, body?: object) =>
      request(gate.url, gate.ca, {
        method,
        path: `/admin/v1${p}`,
        headers: { ...bearer(admin), ...(body ? { 'content-type': 'application/json' } : {}) },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
    assert.equal(
      (await adminCall('POST', '/users', { name: 'dave', password: 'dave-password-1' })).status,
      201,
    );
    const login = await form({
      grant_type: 'password',
      username: 'dave',
      password: 'dave-password-1',
      access_type: 'offline',
    });
    assert.equal(login.status, 200, login.body.toString());
    const rt = (login.json() as { refresh_token: string }).refresh_token;
    assert.equal((await form({ grant_type: 'refresh_token', refresh_token: rt })).status, 200, 'control');
    // The password changes (remove and add again; even the same password gets a new salt).
    assert.equal((await adminCall('DELETE', '/users/dave')).status, 200);
    const gone = await form({ grant_type: 'refresh_token', refresh_token: rt });
    assert.equal(gone.status, 401, 'account removed');
    assert.equal(
      (await adminCall('POST', '/users', { name: 'dave', password: 'dave-password-2' })).status,
      201,
    );
    for (let i = 0; i < 2; i++) {
      const r = await form({ grant_type: 'refresh_token', refresh_token: rt });
      assert.equal(r.status, 401, `after the password change: ${r.status}`);
      assert.equal((r.json() as { error: string }).error, 'invalid_grant');
    }
    const relogin = await form({ grant_type: 'password', username: 'dave', password: 'dave-password-2' });
    assert.equal(relogin.status, 200, 'the new password works');
  });
});

describe('security: login throttling is keyed by the socket address', { timeout: 120_000 }, () => {
  let registry: RegistryHandle;
  let gate: TestGate;

  before(async () => {
    registry = await startRegistry();
    gate = await startTestGate({ registryUrl: registry.url, users, policy, trustRules: [] });
  });
  after(async () => {
    await gate?.close();
    await registry?.stop();
  });

  /** GET /token from a chosen loopback source address (127.0.0.0/8 all reach 127.0.0.1). */
  const tokenFrom = (localAddress: string, user: string, password: string, xff?: string) =>
    new Promise<number>((resolve, reject) => {
      const u = new URL(gate.url);
      const req = https.request(
        {
          host: u.hostname,
          port: u.port,
          path: '/token?service=trustgate',
          localAddress,
          ca: gate.ca,
          agent: false,
          headers: {
            authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`,
            ...(xff ? { 'x-forwarded-for': xff, 'x-real-ip': xff, forwarded: `for=${xff}` } : {}),
          },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.setTimeout(15_000, () => req.destroy(new Error('timeout')));
      req.on('error', reject);
      req.end();
    });

  it('20 bad logins for 20 accounts with rotating X-Forwarded-For lock the address; another address is unaffected', async () => {
    // Default limits: 5 failures per account, 20 per address. Each guess names a different
    // account and claims a different client, so only the socket address can tie them together.
    const statuses = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        tokenFrom('127.0.0.1', `guess${i}`, 'wrong', `203.0.113.${i + 1}`),
      ),
    );
    assert.ok(
      statuses.every((s) => s === 401),
      JSON.stringify(statuses),
    );
    for (const xff of ['198.51.100.7', '127.0.0.2', '::1']) {
      const s = await tokenFrom('127.0.0.1', 'alice', users.alice, xff);
      assert.equal(s, 429, `right password claiming ${xff}: ${s}`);
    }
    assert.equal(await tokenFrom('127.0.0.2', 'alice', users.alice), 200, 'another socket address logs in');
  });
});
