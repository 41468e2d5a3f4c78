/**
 * Identity and access through the real pipeline: trustgate in front of a real registry:2, with
 * tokens from its own endpoint, and hand-made hostile tokens. Each refusal is checked for its
 * status, OCI code and that nothing reached the registry where that matters.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SignJWT, exportJWK, base64url } from 'jose';
import { startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';
import { bearer, getToken, request, type Reply } from '../helpers/http.js';
import { direct, pushBlob, pushRandomImage } from '../helpers/registry-direct.js';

const users = {
  alice: 'alice-password-1',
  bob: 'bob-password-22',
  carol: 'carol-password-333',
  root: 'root-password-4444',
};

function ociError(r: Reply): { code: string; message: string } {
  const body = r.json() as { errors: Array<{ code: string; message: string }> };
  assert.ok(Array.isArray(body.errors) && body.errors.length === 1, r.body.toString());
  return body.errors[0]!;
}

describe('access control through trustgate', { timeout: 120_000 }, () => {
  let registry: RegistryHandle;
  let gate: TestGate;
  let teamBBlob: string;

  before(async () => {
    registry = await startRegistry();
    gate = await startTestGate({
      registryUrl: registry.url,
      users,
      policy: {
        admins: ['root'],
        groups: { 'team-a': ['alice', 'carol'] },
        access: [
          { repos: ['team-a/**'], pull: ['group:team-a'], push: ['alice'], delete: ['alice'] },
          { repos: ['team-b/**'], pull: ['bob'], push: ['bob'], delete: [] },
          { repos: ['public/*'], pull: ['anonymous', '*'], push: [], delete: [] },
        ],
      },
      trustRules: [{ repos: ['**'], mode: 'off' }],
    });
    await pushRandomImage(registry.url, 'team-a/app', 'v1');
    const b = await pushRandomImage(registry.url, 'team-b/secret', 'v1');
    teamBBlob = b.blobs[1]!;
    await pushRandomImage(registry.url, 'public/hello', 'v1');
  });

  after(async () => {
    await gate?.close();
    await registry?.stop();
  });

  const get = (p: string, token?: string, extra: Record<string, string> = {}): Promise<Reply> =>
    request(gate.url, gate.ca, { path: p, headers: { ...(token ? bearer(token) : {}), ...extra } });
  const tok = (user: keyof typeof users | undefined, scopes: string[]): Promise<string> =>
    getToken(gate.url, gate.ca, user, user ? users[user] : undefined, scopes);

  it('no token: 401 with a Bearer challenge naming realm, service and scope', async () => {
    const r = await get('/v2/team-a/app/manifests/v1');
    assert.equal(r.status, 401);
    assert.equal(ociError(r).code, 'UNAUTHORIZED');
    assert.equal(
      r.headers['www-authenticate'],
      `Bearer realm="https://${gate.host}/token",service="trustgate",scope="repository:team-a/app:pull"`,
    );
    const ping = await get('/v2/');
    assert.equal(ping.status, 401);
    assert.match(String(ping.headers['www-authenticate']), /^Bearer realm=/);
  });

  it('a member of team-a pulls team-a with a token; the ping answers 200', async () => {
    const t = await tok('carol', ['repository:team-a/app:pull']);
    assert.equal((await get('/v2/', t)).status, 200);
    const r = await get('/v2/team-a/app/manifests/v1', t, {
      accept: 'application/vnd.oci.image.manifest.v1+json',
    });
    assert.equal(r.status, 200, r.body.toString());
  });

  it('the grant is the intersection: asking for push as a pull-only user gets pull only', async () => {
    const t = await tok('carol', ['repository:team-a/app:pull,push,delete', 'repository:team-b/secret:*']);
    const claims = JSON.parse(Buffer.from(t.split('.')[1]!, 'base64url').toString()) as { access: unknown };
    assert.deepEqual(claims.access, [{ type: 'repository', name: 'team-a/app', actions: ['pull'] }]);
  });

  it('pull-only user pushing: 403 DENIED naming the action, repository and identity', async () => {
    const t = await tok('carol', ['repository:team-a/app:pull,push']);
    const r = await request(gate.url, gate.ca, {
      method: 'POST',
      path: '/v2/team-a/app/blobs/uploads/',
      headers: bearer(t),
    });
    assert.equal(r.status, 403);
    const e = ociError(r);
    assert.equal(e.code, 'DENIED');
    assert.match(e.message, /push access to team-a\/app is not allowed for carol/);
  });

  it('a user of team-a cannot read team-b (same answer whether or not the repository exists)', async () => {
    const t = await tok('alice', ['repository:team-b/secret:pull']);
    const real = await get('/v2/team-b/secret/manifests/v1', t);
    const t2 = await tok('alice', ['repository:team-b/nothing-here:pull']);
    const absent = await get('/v2/team-b/nothing-here/manifests/v1', t2);
    assert.equal(real.status, 403);
    assert.equal(absent.status, 403);
    assert.equal(
      ociError(real).message.replaceAll('secret', 'X'),
      ociError(absent).message.replaceAll('nothing-here', 'X'),
    );
    const blob = await get(`/v2/team-b/secret/blobs/${teamBBlob}`, t);
    assert.equal(blob.status, 403);
  });

  it('a token for one repository used on another is refused', async () => {
    const t = await tok('alice', ['repository:team-a/app:pull']);
    const r = await get('/v2/team-a/other/manifests/v1', t);
    // alice may pull team-a/other by policy, so the client is told to fetch a wider token.
    assert.equal(r.status, 401);
    assert.match(String(r.headers['www-authenticate']), /error="insufficient_scope"/);
    const r2 = await get('/v2/team-b/secret/manifests/v1', t);
    assert.equal(r2.status, 403);
  });

  it('blob mount from a repository the caller cannot pull is dropped: a plain upload starts, nothing mounts', async () => {
    const t = await tok('alice', ['repository:team-a/app:pull,push', 'repository:team-b/secret:pull']);
    const r = await request(gate.url, gate.ca, {
      method: 'POST',
      path: `/v2/team-a/app/blobs/uploads/?mount=${teamBBlob}&from=team-b/secret`,
      headers: bearer(t),
    });
    assert.equal(r.status, 202, r.body.toString());
    const head = await direct(registry.url, 'HEAD', `/v2/team-a/app/blobs/${teamBBlob}`);
    assert.equal(head.status, 404, 'the team-b blob must not be linked into team-a');
  });

  it('blob mount parameters in a form body are refused before the registry sees them', async () => {
    const t = await tok('alice', ['repository:team-a/app:pull,push']);
    const r = await request(gate.url, gate.ca, {
      method: 'POST',
      path: '/v2/team-a/app/blobs/uploads/',
      headers: { ...bearer(t), 'content-type': 'application/x-www-form-urlencoded' },
      body: `mount=${teamBBlob}&from=team-b/secret`,
    });
    assert.equal(r.status, 415);
    const head = await direct(registry.url, 'HEAD', `/v2/team-a/app/blobs/${teamBBlob}`);
    assert.equal(head.status, 404);
  });

  it('blob mount from a repository the caller can pull works', async () => {
    const digest = await pushBlob(registry.url, 'team-a/app', Buffer.from('shared layer'));
    const t = await tok('alice', ['repository:team-a/copy:pull,push', 'repository:team-a/app:pull']);
    const r = await request(gate.url, gate.ca, {
      method: 'POST',
      path: `/v2/team-a/copy/blobs/uploads/?mount=${digest}&from=team-a/app`,
      headers: bearer(t),
    });
    assert.equal(r.status, 201, r.body.toString());
  });

  it('the catalog lists only what the caller may pull; admins see everything', async () => {
    const t = await tok('carol', ['registry:catalog:*']);
    const r = await get('/v2/_catalog', t);
    assert.equal(r.status, 200);
    const repos = (r.json() as { repositories: string[] }).repositories;
    assert.ok(repos.includes('team-a/app'));
    assert.ok(repos.includes('public/hello'));
    assert.ok(!repos.includes('team-b/secret'));
    const admin = await get('/v2/_catalog', await tok('root', ['registry:catalog:*']));
    assert.ok((admin.json() as { repositories: string[] }).repositories.includes('team-b/secret'));
    assert.equal((await get('/v2/_catalog')).status, 401);
    const noGrant = await get('/v2/_catalog', await tok('carol', ['repository:team-a/app:pull']));
    assert.equal(noGrant.status, 401, 'a token without the catalog grant is told to ask for it');
    assert.match(
      String(noGrant.headers['www-authenticate']),
      /scope="registry:catalog:\*",error="insufficient_scope"/,
    );
  });

  it('anonymous pull where a rule allows it, and only there', async () => {
    const t = await tok(undefined, ['repository:public/hello:pull', 'repository:team-a/app:pull']);
    const claims = JSON.parse(Buffer.from(t.split('.')[1]!, 'base64url').toString()) as {
      access: unknown;
      sub: string;
    };
    assert.equal(claims.sub, 'anonymous');
    assert.deepEqual(claims.access, [{ type: 'repository', name: 'public/hello', actions: ['pull'] }]);
    assert.equal((await get('/v2/public/hello/tags/list', t)).status, 200);
    assert.equal((await get('/v2/team-a/app/tags/list', t)).status, 403);
  });

  it('path tricks with a valid token for another repository are refused and never forwarded', async () => {
    const t = await tok('alice', ['repository:team-a/app:pull']);
    for (const p of [
      '/v2/team-a/app/../../team-b/secret/manifests/v1',
      '/v2/team-a/app/%2e%2e/%2e%2e/team-b/secret/manifests/v1',
      '/v2/team-b%2fsecret/manifests/v1',
      '/v2/team-a/app/manifests/v1%00',
      '/v2/team-a//app/manifests/v1',
      '/v2/team-a/app/manifests/v1?x=1&x=2',
      '/v2/Team-A/app/manifests/v1',
    ]) {
      const r = await get(p, t);
      assert.ok(r.status === 400 || r.status === 404, `${p} answered ${r.status}`);
      assert.ok(ociError(r).code.length > 0);
    }
  });

  describe('hostile tokens', () => {
    const claimsFor = (sub: string, name: string) => ({
      access: [{ type: 'repository', name, actions: ['pull'] }],
      kind: 'user',
      sub,
    });
    const realKey = () => {
      const dir = path.join(gate.dir, 'keys', 'token');
      const f = readdirSync(dir).find((x) => x.endsWith('.key'))!;
      return createPrivateKey(readFileSync(path.join(dir, f)));
    };
    const kidOf = async (): Promise<string> => {
      const dir = path.join(gate.dir, 'keys', 'token');
      return readdirSync(dir)
        .find((x) => x.endsWith('.key'))!
        .replace(/\.key$/, '');
    };
    const sign = async (
      o: {
        iss?: string;
        aud?: string;
        exp?: number;
        nbf?: number;
        iat?: number;
        kid?: string;
        sub?: string;
      } = {},
    ): Promise<string> => {
      const now = Math.floor(Date.now() / 1000);
      const c = claimsFor(o.sub ?? 'bob', 'team-b/secret');
      return new SignJWT({ access: c.access, kind: c.kind })
        .setProtectedHeader({ alg: 'ES256', kid: o.kid ?? (await kidOf()), typ: 'JWT' })
        .setIssuer(o.iss ?? 'trustgate')
        .setAudience(o.aud ?? 'trustgate')
        .setSubject(c.sub)
        .setIssuedAt(o.iat ?? now)
        .setNotBefore(o.nbf ?? now)
        .setExpirationTime(o.exp ?? now + 300)
        .setJti('x')
        .sign(realKey());
    };
    const expect401 = async (t: string, what: string): Promise<void> => {
      const r = await get('/v2/team-b/secret/manifests/v1', t);
      assert.equal(r.status, 401, `${what}: ${r.status} ${r.body.toString()}`);
      assert.equal(ociError(r).code, 'UNAUTHORIZED', what);
    };

    it('a well-formed token signed with our key is accepted (the control case)', async () => {
      const r = await get('/v2/team-b/secret/manifests/v1', await sign(), {
        accept: 'application/vnd.oci.image.manifest.v1+json',
      });
      assert.equal(r.status, 200, r.body.toString());
    });

    it('alg=none is refused', async () => {
      const now = Math.floor(Date.now() / 1000);
      const h = base64url.encode(JSON.stringify({ alg: 'none', typ: 'JWT' }));
      const p = base64url.encode(
        JSON.stringify({
          ...claimsFor('bob', 'team-b/secret'),
          iss: 'trustgate',
          aud: 'trustgate',
          exp: now + 60,
          nbf: now,
          iat: now,
          jti: 'x',
        }),
      );
      await expect401(`${h}.${p}.`, 'alg none');
    });

    it('HS256 signed with the public key bytes is refused', async () => {
      const pub = (await exportJWK(realKey())) as { x: string };
      const secret = new TextEncoder().encode(pub.x);
      const now = Math.floor(Date.now() / 1000);
      const t = await new SignJWT({ ...claimsFor('bob', 'team-b/secret') })
        .setProtectedHeader({ alg: 'HS256', kid: await kidOf() })
        .setIssuer('trustgate')
        .setAudience('trustgate')
        .setIssuedAt(now)
        .setNotBefore(now)
        .setExpirationTime(now + 60)
        .setJti('x')
        .sign(secret);
      await expect401(t, 'HS256');
    });

    it('an embedded jwk header pointing at an attacker key is ignored', async () => {
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const now = Math.floor(Date.now() / 1000);
      const t = await new SignJWT({ ...claimsFor('bob', 'team-b/secret') })
        .setProtectedHeader({ alg: 'ES256', jwk: await exportJWK(publicKey), typ: 'JWT' })
        .setIssuer('trustgate')
        .setAudience('trustgate')
        .setIssuedAt(now)
        .setNotBefore(now)
        .setExpirationTime(now + 60)
        .setJti('x')
        .sign(privateKey);
      await expect401(t, 'embedded jwk');
    });

    it('unknown kid, wrong issuer, wrong audience are refused', async () => {
      await expect401(await sign({ kid: 'not-a-key' }), 'unknown kid');
      await expect401(await sign({ iss: 'someone-else' }), 'issuer');
      await expect401(await sign({ aud: 'another-service' }), 'audience');
    });

    it('expired and not-yet-valid tokens beyond the 30 s leeway are refused; within it they pass', async () => {
      const now = Math.floor(Date.now() / 1000);
      await expect401(await sign({ exp: now - 60, iat: now - 360, nbf: now - 360 }), 'expired');
      await expect401(await sign({ nbf: now + 120, iat: now }), 'nbf in the future');
      const r = await get(
        '/v2/team-b/secret/manifests/v1',
        await sign({ exp: now - 10, iat: now - 300, nbf: now - 300 }),
        {
          accept: 'application/vnd.oci.image.manifest.v1+json',
        },
      );
      assert.equal(r.status, 200, 'within the leeway');
    });

    it('a flipped signature byte is refused', async () => {
      const t = await sign();
      const [h, p, s] = t.split('.') as [string, string, string];
      const sig = Buffer.from(s, 'base64url');
      sig[5] = sig[5]! ^ 1;
      await expect401(`${h}.${p}.${sig.toString('base64url')}`, 'flipped');
    });
  });

  describe('token endpoint bad input', () => {
    const tokenReq = (auth: string | undefined, q = 'service=trustgate&scope=repository:team-a/app:pull') =>
      request(gate.url, gate.ca, { path: `/token?${q}`, headers: auth ? { authorization: auth } : {} });
    const basic = (s: string) => `Basic ${Buffer.from(s).toString('base64')}`;

    it('malformed Basic headers, long names and passwords, NUL bytes are refused with 401', async () => {
      for (const [what, h] of [
        ['not base64', 'Basic !!!!'],
        ['no colon', basic('alice')],
        ['bearer at token endpoint', 'Bearer abc'],
        ['long user', basic(`${'a'.repeat(5000)}:x`)],
        ['long password', basic(`alice:${'x'.repeat(200)}`)],
        ['NUL in user', basic('ali\u0000ce:alice-password-1')],
        ['NUL in password', basic('alice:alice-password-1\u0000')],
        ['wrong password', basic('alice:nope')],
        ['unknown user', basic('mallory:nope')],
      ] as const) {
        const r = await tokenReq(h);
        assert.equal(r.status, 401, `${what}: ${r.status}`);
        assert.equal(ociError(r).code, 'UNAUTHORIZED', what);
      }
    });

    it('a foreign service name is refused', async () => {
      const r = await tokenReq(
        basic('alice:alice-password-1'),
        'service=other&scope=repository:team-a/app:pull',
      );
      assert.equal(r.status, 400);
    });

    it('the OAuth2 POST form: password grant with offline access, then refresh_token grant', async () => {
      const form = (o: Record<string, string>) =>
        request(gate.url, gate.ca, {
          method: 'POST',
          path: '/token',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams(o).toString(),
        });
      const r = await form({
        grant_type: 'password',
        username: 'alice',
        password: users.alice,
        service: 'trustgate',
        scope: 'repository:team-a/app:pull,push',
        access_type: 'offline',
        client_id: 'test',
      });
      assert.equal(r.status, 200, r.body.toString());
      const j = r.json() as {
        access_token: string;
        refresh_token: string;
        expires_in: number;
        issued_at: string;
      };
      assert.ok(j.access_token && j.refresh_token && j.expires_in >= 60 && j.issued_at);
      const r2 = await form({
        grant_type: 'refresh_token',
        refresh_token: j.refresh_token,
        service: 'trustgate',
        scope: 'repository:team-a/app:pull',
        client_id: 'test',
      });
      assert.equal(r2.status, 200, r2.body.toString());
      // An access token is no refresh token.
      const r3 = await form({
        grant_type: 'refresh_token',
        refresh_token: j.access_token,
        service: 'trustgate',
        client_id: 'test',
      });
      assert.equal(r3.status, 401);
      assert.equal((r3.json() as { error: string }).error, 'invalid_grant');
      // A refresh token is no access token.
      const r4 = await get('/v2/team-a/app/manifests/v1', j.refresh_token);
      assert.equal(r4.status, 401);
    });

    it('repeated failures for one account are refused with 429 and Retry-After', async () => {
      let last: Reply | undefined;
      for (let i = 0; i < 6; i++) last = await tokenReq(basic('bob:wrong-password'));
      assert.equal(last!.status, 429);
      assert.ok(Number(last!.headers['retry-after']) > 0);
      assert.equal(ociError(last!).code, 'TOOMANYREQUESTS');
      // Even the right password is refused while locked.
      const r = await tokenReq(basic(`bob:${users.bob}`));
      assert.equal(r.status, 429);
    });
  });
});
