/**
 * Issue 12 item 11, "Admin tokens": the admin API accepted any bearer token of an admin identity,
 * so a CI job's short-lived pull token for an admin account was a full admin credential.
 *
 * Now the admin API takes only a token whose grant names it (`registry:admin:*`, audience
 * `<service>#admin`) or an admin client certificate; a registry token on /admin and an admin
 * token on /v2 are refused with 401 and a challenge naming the scope to ask for. Against a real
 * registry:2 and trustgate: pull, catalog and scope-less tokens of an admin on /admin; the admin
 * token on /v2/, a manifest and the catalog; the admin scope asked by a non-admin; mixed scope
 * requests; refresh tokens (no escalation either way); mTLS; and tokens forged with our own key
 * for the wrong audience or grant.
 */
import assert from 'node:assert/strict';
import { createPrivateKey, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bearer, getToken, request, type Reply } from '../helpers/http.js';
import { pushRandomImage } from '../helpers/registry-direct.js';
import { startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';

const OCI = 'application/vnd.oci.image.manifest.v1+json';
const ADMIN_SCOPE = 'registry:admin:*';
const users = { root: 'root-password-4444', alice: 'alice-password-1' };

const b64u = (s: string | Buffer): string => Buffer.from(s).toString('base64url');
const claimsOf = (t: string): Record<string, unknown> =>
  JSON.parse(Buffer.from(t.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
const codeOf = (r: Reply): string => (r.json() as { errors: Array<{ code: string }> }).errors[0]!.code;

describe('security: admin API tokens (issue 12 item 11, admin tokens)', { timeout: 180_000 }, () => {
  let registry: RegistryHandle;
  let gate: TestGate;
  let key: KeyObject;
  let kid: string;

  before(async () => {
    registry = await startRegistry();
    gate = await startTestGate({
      registryUrl: registry.url,
      users,
      mtls: true,
      policy: {
        admins: ['root', 'mtls:CN=build-01'],
        access: [{ repos: ['app/**'], pull: ['root', 'alice'], push: ['root'], delete: [] }],
      },
      trustRules: [{ repos: ['**'], mode: 'off' }],
    });
    await pushRandomImage(registry.url, 'app/web', 'v1');
    const dir = path.join(gate.dir, 'keys', 'token');
    const f = readdirSync(dir).find((x) => x.endsWith('.key'))!;
    key = createPrivateKey(readFileSync(path.join(dir, f)));
    kid = f.replace(/\.key$/, '');
  });
  after(async () => {
    await gate?.close();
    await registry?.stop();
  });

  const tok = (user: keyof typeof users, scopes: string[]): Promise<string> =>
    getToken(gate.url, gate.ca, user, users[user], scopes);
  const admin = (token: string | undefined, p = '/keys', o: { cert?: boolean } = {}): Promise<Reply> =>
    request(gate.url, gate.ca, {
      path: `/admin/v1${p}`,
      headers: token !== undefined ? bearer(token) : {},
      ...(o.cert ? gate.clientCert : {}),
    });
  const v2 = (token: string, p: string): Promise<Reply> =>
    request(gate.url, gate.ca, { path: p, headers: { ...bearer(token), accept: OCI } });
  const form = (o: Record<string, string>): Promise<Reply> =>
    request(gate.url, gate.ca, {
      method: 'POST',
      path: '/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ service: 'trustgate', client_id: 'test', ...o }).toString(),
    });
  /** 401, OCI UNAUTHORIZED, and a Bearer challenge that names the admin scope. */
  const assertAdminChallenge = (r: Reply, what: string, insufficient = true): void => {
    assert.equal(r.status, 401, `${what}: ${r.status} ${r.body.toString()}`);
    assert.equal(codeOf(r), 'UNAUTHORIZED', what);
    const ch = String(r.headers['www-authenticate']);
    assert.match(ch, /^Bearer realm="https:\/\/[^"]+\/token",service="trustgate"/, what);
    assert.match(ch, /scope="registry:admin:\*"/, `${what}: challenge ${ch}`);
    if (insufficient) assert.match(ch, /error="insufficient_scope"/, `${what}: challenge ${ch}`);
  };

  it('finding: a pull-scope token of an admin is refused on /admin with 401 and a challenge for registry:admin:*', async () => {
    const pull = await tok('root', ['repository:app/web:pull']);
    assert.equal((await v2(pull, '/v2/app/web/manifests/v1')).status, 200, 'control: the pull token pulls');
    for (const p of ['/keys', '/users', '/policy', '/openapi.json']) {
      assertAdminChallenge(await admin(pull, p), `pull token on ${p}`);
    }
    const post = await request(gate.url, gate.ca, {
      method: 'POST',
      path: '/admin/v1/users',
      headers: { ...bearer(pull), 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'mallory', password: 'mallory-password' }),
    });
    assertAdminChallenge(post, 'pull token adding a user');
  });

  it('a catalog-scope token and a scope-less (docker login) token of an admin are refused on /admin', async () => {
    assertAdminChallenge(await admin(await tok('root', ['registry:catalog:*'])), 'catalog token');
    assertAdminChallenge(await admin(await tok('root', [])), 'scope-less token');
    const push = await tok('root', ['repository:app/web:pull,push', 'registry:catalog:*']);
    assertAdminChallenge(await admin(push), 'push + catalog token');
  });

  it('an admin-scope token of an admin works on /admin; its grant and audience are its own', async () => {
    const t = await tok('root', [ADMIN_SCOPE]);
    const c = claimsOf(t);
    assert.deepEqual(c['access'], [{ type: 'registry', name: 'admin', actions: ['*'] }]);
    assert.equal(c['aud'], 'trustgate#admin');
    assert.equal(c['sub'], 'root');
    const r = await admin(t);
    assert.equal(r.status, 200, r.body.toString());
    // The served OpenAPI document says how to get one.
    const doc = (await admin(t, '/openapi.json')).json() as {
      components: { securitySchemes: { bearer: { description: string } } };
    };
    assert.match(doc.components.securitySchemes.bearer.description, /registry:admin:\*/);
    // The OAuth2 form grants it too, and says so in `scope`.
    const f = await form({
      grant_type: 'password',
      username: 'root',
      password: users.root,
      scope: ADMIN_SCOPE,
    });
    assert.equal(f.status, 200, f.body.toString());
    const body = f.json() as { access_token: string; scope: string };
    assert.equal(body.scope, ADMIN_SCOPE);
    assert.equal((await admin(body.access_token)).status, 200);
  });

  it('an admin token is refused on /v2/, on a manifest and on /v2/_catalog (401 + the registry challenge)', async () => {
    const t = await tok('root', [ADMIN_SCOPE]);
    for (const p of ['/v2/', '/v2/app/web/manifests/v1', '/v2/app/web/tags/list', '/v2/_catalog']) {
      const r = await v2(t, p);
      assert.equal(r.status, 401, `admin token on ${p}: ${r.status} ${r.body.toString()}`);
      assert.equal(codeOf(r), 'UNAUTHORIZED', p);
      assert.doesNotMatch(r.body.toString(), /schemaVersion|repositories|tags/, p);
      const ch = String(r.headers['www-authenticate']);
      assert.match(ch, /^Bearer realm="[^"]+",service="trustgate"/, p);
      assert.doesNotMatch(
        ch,
        /registry:admin/,
        `${p}: the registry challenge never asks for the admin scope`,
      );
    }
    const manifest = await v2(t, '/v2/app/web/manifests/v1');
    assert.match(String(manifest.headers['www-authenticate']), /scope="repository:app\/web:pull"/);
    assert.match((manifest.json() as { errors: Array<{ message: string }> }).errors[0]!.message, /admin API/);
  });

  it('the admin scope asked by a non-admin grants nothing: no admin token is issued, and /admin answers 403', async () => {
    const t = await tok('alice', [ADMIN_SCOPE]);
    const c = claimsOf(t);
    assert.deepEqual(c['access'], [], 'nothing granted');
    assert.equal(c['aud'], 'trustgate', 'an ordinary registry token, not an admin one');
    const r = await admin(t);
    assert.equal(r.status, 403, r.body.toString());
    assert.equal(codeOf(r), 'DENIED');
    assert.match(r.body.toString(), /alice is not an admin/);
    const f = await form({
      grant_type: 'password',
      username: 'alice',
      password: users.alice,
      scope: ADMIN_SCOPE,
    });
    assert.equal(f.status, 200);
    assert.equal((f.json() as { scope: string }).scope, '');
    assert.equal(claimsOf((f.json() as { access_token: string }).access_token)['aud'], 'trustgate');
    // A non-admin's registry token on /admin: 403 (asking again would not help), not a challenge loop.
    const pull = await tok('alice', ['repository:app/web:pull']);
    assert.equal((await admin(pull)).status, 403);
  });

  it('the admin scope mixed with repository or catalog scopes in one request is refused (400)', async () => {
    for (const scopes of [
      [ADMIN_SCOPE, 'repository:app/web:pull'],
      ['repository:app/web:pull', ADMIN_SCOPE],
      [ADMIN_SCOPE, 'registry:catalog:*'],
      [`${ADMIN_SCOPE} repository:app/web:pull`],
    ]) {
      const q = new URLSearchParams({ service: 'trustgate' });
      for (const s of scopes) q.append('scope', s);
      const r = await request(gate.url, gate.ca, {
        path: `/token?${q.toString()}`,
        headers: { authorization: `Basic ${Buffer.from(`root:${users.root}`).toString('base64')}` },
      });
      assert.equal(r.status, 400, `${scopes.join(' + ')}: ${r.status} ${r.body.toString()}`);
      assert.match(r.body.toString(), /registry:admin:\*/);
      const f = await form({
        grant_type: 'password',
        username: 'root',
        password: users.root,
        scope: scopes.join(' '),
      });
      assert.equal(f.status, 400, `form ${scopes.join(' + ')}: ${f.status}`);
      assert.equal((f.json() as { error: string }).error, 'invalid_scope');
    }
  });

  it('refresh tokens do not escalate: a registry refresh token never mints an admin token, an admin one only admin tokens', async () => {
    const login = await form({
      grant_type: 'password',
      username: 'root',
      password: users.root,
      scope: 'repository:app/web:pull',
      access_type: 'offline',
    });
    assert.equal(login.status, 200, login.body.toString());
    const registryRt = (login.json() as { refresh_token: string }).refresh_token;
    const control = await form({
      grant_type: 'refresh_token',
      refresh_token: registryRt,
      scope: 'repository:app/web:pull',
    });
    assert.equal(control.status, 200, 'control: the registry refresh token works for registry scopes');
    const escalate = await form({
      grant_type: 'refresh_token',
      refresh_token: registryRt,
      scope: ADMIN_SCOPE,
    });
    assert.equal(escalate.status, 400, escalate.body.toString());
    assert.equal((escalate.json() as { error: string }).error, 'invalid_scope');

    const adminLogin = await form({
      grant_type: 'password',
      username: 'root',
      password: users.root,
      scope: ADMIN_SCOPE,
      access_type: 'offline',
    });
    const adminRt = (adminLogin.json() as { refresh_token: string }).refresh_token;
    assert.ok(adminRt, 'an admin login with access_type=offline gets a refresh token');
    assert.equal(claimsOf(adminRt)['aud'], 'trustgate#admin-refresh');
    const ok = await form({ grant_type: 'refresh_token', refresh_token: adminRt, scope: ADMIN_SCOPE });
    assert.equal(ok.status, 200, ok.body.toString());
    assert.equal((await admin((ok.json() as { access_token: string }).access_token)).status, 200);
    for (const scope of ['repository:app/web:pull', 'registry:catalog:*', '']) {
      const r = await form({ grant_type: 'refresh_token', refresh_token: adminRt, scope });
      assert.equal(r.status, 400, `admin refresh token for ${JSON.stringify(scope)}: ${r.status}`);
      assert.equal((r.json() as { error: string }).error, 'invalid_scope');
    }
    // A non-admin's refresh token asking the admin scope: refused the same way.
    const aliceLogin = await form({
      grant_type: 'password',
      username: 'alice',
      password: users.alice,
      access_type: 'offline',
    });
    const aliceRt = (aliceLogin.json() as { refresh_token: string }).refresh_token;
    const r = await form({ grant_type: 'refresh_token', refresh_token: aliceRt, scope: ADMIN_SCOPE });
    assert.equal(r.status, 400);
  });

  it('an admin client certificate still works on /admin, and gets an admin token from /token', async () => {
    assert.ok(gate.clientCert);
    const r = await admin(undefined, '/keys', { cert: true });
    assert.equal(r.status, 200, r.body.toString());
    // Without the certificate: the challenge, naming the admin scope.
    assertAdminChallenge(await admin(undefined), 'no credentials', false);
    const t = await request(gate.url, gate.ca, {
      path: `/token?service=trustgate&scope=${encodeURIComponent(ADMIN_SCOPE)}`,
      ...gate.clientCert,
    });
    assert.equal(t.status, 200, t.body.toString());
    const token = (t.json() as { token: string }).token;
    assert.equal(claimsOf(token)['sub'], 'mtls:CN=build-01');
    assert.equal((await admin(token)).status, 200);
    // A registry token sent with the admin certificate is judged as the token it is.
    const pull = await tok('root', ['repository:app/web:pull']);
    assertAdminChallenge(await admin(pull, '/keys', { cert: true }), 'pull token over an admin certificate');
  });

  describe('tokens forged with our own signing key', () => {
    const forge = (payload: object, typ = 'JWT'): string => {
      const h = b64u(JSON.stringify({ alg: 'ES256', kid, typ }));
      const p = b64u(JSON.stringify(payload));
      const sig = cryptoSign('sha256', Buffer.from(`${h}.${p}`), { key, dsaEncoding: 'ieee-p1363' });
      return `${h}.${p}.${b64u(sig)}`;
    };
    const claims = (o: Record<string, unknown>): Record<string, unknown> => {
      const now = Math.floor(Date.now() / 1000);
      return {
        access: [{ type: 'registry', name: 'admin', actions: ['*'] }],
        kind: 'user',
        iss: 'trustgate',
        aud: 'trustgate#admin',
        sub: 'root',
        iat: now,
        nbf: now,
        exp: now + 120,
        jti: 'forged',
        ...o,
      };
    };

    it('control: the right audience and grant pass (so the refusals below are meaningful)', async () => {
      assert.equal((await admin(forge(claims({})))).status, 200);
    });

    it('the admin grant under the registry audience, or a registry grant under the admin audience, is refused', async () => {
      const cases: Array<[string, string]> = [
        ['admin grant, registry audience', forge(claims({ aud: 'trustgate' }))],
        ['admin grant, both audiences', forge(claims({ aud: ['trustgate', 'trustgate#admin'] }))],
        ['admin grant, refresh audience', forge(claims({ aud: 'trustgate#refresh' }))],
        ['admin grant, admin refresh audience', forge(claims({ aud: 'trustgate#admin-refresh' }))],
        ['admin grant, no audience', forge(claims({ aud: undefined }))],
        ['admin grant, other service', forge(claims({ aud: 'other#admin' }))],
        [
          'repository grant, admin audience',
          forge(claims({ access: [{ type: 'repository', name: 'app/web', actions: ['pull'] }] })),
        ],
        ['empty grant, admin audience', forge(claims({ access: [] }))],
        [
          'admin grant plus a repository, admin audience',
          forge(
            claims({
              access: [
                { type: 'registry', name: 'admin', actions: ['*'] },
                { type: 'repository', name: 'app/web', actions: ['pull'] },
              ],
            }),
          ),
        ],
        [
          'admin grant with other actions',
          forge(claims({ access: [{ type: 'registry', name: 'admin', actions: ['pull'] }] })),
        ],
        ['admin grant, refresh typ', forge(claims({}), 'trustgate-refresh+jwt')],
      ];
      for (const [what, t] of cases) {
        const r = await admin(t);
        assert.equal(r.status, 401, `${what} on /admin: ${r.status} ${r.body.toString()}`);
        const onV2 = await v2(t, '/v2/app/web/manifests/v1');
        assert.equal(onV2.status, 401, `${what} on /v2: ${onV2.status}`);
        const ping = await v2(t, '/v2/');
        assert.equal(ping.status, 401, `${what} on /v2/: ${ping.status}`);
      }
    });

    it('a genuine admin grant for a non-admin subject is refused (403): the role is policy, re-read per request', async () => {
      const r = await admin(forge(claims({ sub: 'alice' })));
      assert.equal(r.status, 403, r.body.toString());
      assert.equal(codeOf(r), 'DENIED');
    });
  });
});
