import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SignJWT, UnsecuredJWT, exportJWK, decodeJwt, decodeProtectedHeader, type JWTPayload } from 'jose';
import { GateError } from '../../src/core/errors.js';
import {
  loadOrCreateTokenKeys,
  loadTokenKeys,
  rotateTokenKey,
  type TokenKeySet,
} from '../../src/auth/token-keys.js';
import { TokenService, tokenAllows } from '../../src/auth/tokens.js';
import type { AccessClaim } from '../../src/core/scope.js';
import type { Identity } from '../../src/core/types.js';

const logs: string[] = [];
const log = {
  info: (_o: object, m: string) => void logs.push(m),
  warn: (_o: object, m: string) => void logs.push(`WARN ${m}`),
};
const alice: Identity = { subject: 'alice', kind: 'user', groups: [] };
const access: AccessClaim[] = [{ type: 'repository', name: 'team-a/app', actions: ['pull', 'push'] }];
const NOW = new Date('2026-05-01T12:00:00Z');
const T = Math.floor(NOW.getTime() / 1000);

function refused(p: Promise<unknown>, re: RegExp = /invalid token|expired/): Promise<void> {
  return assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof GateError, String(e));
    assert.equal(e.code, 'UNAUTHORIZED');
    assert.equal(e.status, 401);
    assert.match(e.message, re);
    // Client messages never carry jose internals.
    assert.doesNotMatch(e.message, /JWS|JWT|claim|signature|kid/i);
    return true;
  });
}

describe('token keys', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'tg-keys-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('generates one ES256 key on first start, mode 0600, named by its RFC 7638 thumbprint, and logs it', async () => {
    const keyDir = path.join(dir, 'k1');
    logs.length = 0;
    const set = await loadOrCreateTokenKeys(keyDir, log);
    const files = readdirSync(keyDir);
    assert.deepEqual(files, [`${set.signing.kid}.key`]);
    assert.equal(statSync(path.join(keyDir, files[0]!)).mode & 0o777, 0o600);
    assert.equal(statSync(keyDir).mode & 0o777, 0o700);
    assert.ok(
      logs.some((m) => m.includes('generated a new ES256 key') && m.includes(set.signing.kid)),
      logs.join('\n'),
    );
    // A second start reuses it.
    const again = await loadOrCreateTokenKeys(keyDir, log);
    assert.equal(again.signing.kid, set.signing.kid);
    assert.equal(readdirSync(keyDir).length, 1);
  });

  it('auth.signingKid picks the signing key whatever the file times; an absent kid stops the start', async () => {
    const keyDir = path.join(dir, 'kid');
    const first = await rotateTokenKey(keyDir);
    const second = await rotateTokenKey(keyDir);
    // As in a Kubernetes Secret volume: every file has the same mtime.
    for (const f of readdirSync(keyDir)) utimesSync(path.join(keyDir, f), 1_700_000_000, 1_700_000_000);
    for (const kid of [first, second]) {
      const set = await loadTokenKeys(keyDir, log, kid);
      assert.equal(set.signing.kid, kid);
      assert.equal(set.verifying.size, 2);
    }
    await assert.rejects(loadTokenKeys(keyDir, log, 'A'.repeat(43)), /auth.signingKid .* is not among/);
    // No key generated in an empty directory when a kid is configured: that key could not be it.
    await assert.rejects(loadOrCreateTokenKeys(path.join(dir, 'kid-empty'), log, first), /is not among/);
  });

  it('refuses a key whose file name is not its thumbprint, and non-P-256 keys', async () => {
    const keyDir = path.join(dir, 'k2');
    const kid = await rotateTokenKey(keyDir);
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    writeFileSync(
      path.join(keyDir, `${kid.replace(/^./, kid[0] === 'A' ? 'B' : 'A')}.key`),
      privateKey.export({ type: 'pkcs8', format: 'pem' }),
      { mode: 0o600 },
    );
    await assert.rejects(loadTokenKeys(keyDir, log), /does not match the key's RFC 7638 thumbprint/);
    const keyDir3 = path.join(dir, 'k3');
    await rotateTokenKey(keyDir3);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    writeFileSync(path.join(keyDir3, 'x.key'), rsa.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    await assert.rejects(loadTokenKeys(keyDir3, log), /must be ECDSA P-256/);
  });

  it('warns about a key readable by others', async () => {
    const keyDir = path.join(dir, 'k4');
    const kid = await rotateTokenKey(keyDir);
    const { chmodSync } = await import('node:fs');
    chmodSync(path.join(keyDir, `${kid}.key`), 0o644);
    logs.length = 0;
    await loadTokenKeys(keyDir, log);
    assert.ok(logs.some((m) => m.startsWith('WARN') && m.includes('chmod 600')));
  });
});

describe('TokenService', () => {
  let dir: string;
  let keys: TokenKeySet;
  let svc: TokenService;
  const opts = { issuer: 'trustgate', service: 'registry.test', ttlSeconds: 300, refreshTtlSeconds: 3600 };

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'tg-tok-'));
    keys = await loadOrCreateTokenKeys(dir, log);
    svc = new TokenService({ keys, ...opts });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** A token signed with OUR key, with the claims and header given. */
  const ours = (
    claims: JWTPayload,
    header: Record<string, unknown> = {},
    key: KeyObject = keys.signing.privateKey,
  ) =>
    new SignJWT({ access, kind: 'user', ...claims })
      .setProtectedHeader({ alg: 'ES256', kid: keys.signing.kid, typ: 'JWT', ...header })
      .sign(key);
  const base: JWTPayload = {
    iss: 'trustgate',
    aud: 'registry.test',
    sub: 'alice',
    iat: T,
    nbf: T,
    exp: T + 300,
    jti: 'j1',
  };

  it('issues the token-spec response and verifies its own token', async () => {
    const r = await svc.issue(alice, access, NOW);
    assert.equal(r.token, r.access_token);
    assert.equal(r.expires_in, 300);
    assert.equal(r.issued_at, '2026-05-01T12:00:00.000Z');
    assert.equal(r.refresh_token, undefined);
    const h = decodeProtectedHeader(r.token);
    assert.deepEqual(h, { alg: 'ES256', kid: keys.signing.kid, typ: 'JWT' });
    const c = await svc.verifyAccessToken(r.token, NOW);
    assert.equal(c.subject, 'alice');
    assert.equal(c.kind, 'user');
    assert.deepEqual(c.access, access);
    assert.match(c.jti, /^[0-9a-f-]{36}$/);
    assert.equal(c.expiresAt.getTime(), NOW.getTime() + 300_000);
    const other = await svc.issue(alice, access, NOW);
    assert.notEqual((await svc.verifyAccessToken(other.token, NOW)).jti, c.jti);
  });

  it('the hand-made control token (our key, right claims) is accepted', async () => {
    const c = await svc.verifyAccessToken(await ours(base), NOW);
    assert.equal(c.subject, 'alice');
  });

  it('alg=none is refused', async () => {
    const t = new UnsecuredJWT({ ...base, access, kind: 'user' }).encode();
    await refused(svc.verifyAccessToken(t, NOW));
    // …also with our kid in the header
    const [, p] = t.split('.');
    const h = Buffer.from(JSON.stringify({ alg: 'none', kid: keys.signing.kid, typ: 'JWT' })).toString(
      'base64url',
    );
    await refused(svc.verifyAccessToken(`${h}.${p}.`, NOW));
  });

  it('HS256 signed with the public key bytes is refused', async () => {
    const pub = keys.verifying.get(keys.signing.kid)!;
    for (const secret of [
      Buffer.from(pub.export({ type: 'spki', format: 'pem' }) as string),
      pub.export({ type: 'spki', format: 'der' }),
    ]) {
      const t = await new SignJWT({ ...base, access, kind: 'user' })
        .setProtectedHeader({ alg: 'HS256', kid: keys.signing.kid, typ: 'JWT' })
        .sign(new Uint8Array(secret));
      await refused(svc.verifyAccessToken(t, NOW));
    }
  });

  it('an unknown kid and a missing kid are refused', async () => {
    const attacker = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    await refused(svc.verifyAccessToken(await ours(base, { kid: 'not-ours' }, attacker), NOW));
    await refused(svc.verifyAccessToken(await ours(base, { kid: 'not-ours' }), NOW));
    const noKid = await new SignJWT({ ...base, access, kind: 'user' })
      .setProtectedHeader({ alg: 'ES256', typ: 'JWT' })
      .sign(keys.signing.privateKey);
    await refused(svc.verifyAccessToken(noKid, NOW));
  });

  it('an embedded jwk / x5c / jku pointing at an attacker key is ignored', async () => {
    const attacker = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = await exportJWK(attacker.publicKey);
    for (const header of [
      { jwk },
      { jwk, kid: 'attacker' },
      { jku: 'https://attacker.example/jwks.json' },
      { x5c: ['MIIBAA=='] },
    ]) {
      await refused(svc.verifyAccessToken(await ours(base, header, attacker.privateKey), NOW));
    }
    // Ignored, not trusted: our own valid token stays valid with a decoy jwk header.
    assert.equal((await svc.verifyAccessToken(await ours(base, { jwk }), NOW)).subject, 'alice');
  });

  it('expired / not-yet-valid / issued-in-the-future beyond 30 s are refused; within the leeway they pass', async () => {
    await refused(
      svc.verifyAccessToken(await ours({ ...base, iat: T - 331, nbf: T - 331, exp: T - 31 }), NOW),
      /expired/,
    );
    await svc.verifyAccessToken(await ours({ ...base, iat: T - 300, nbf: T - 300, exp: T - 29 }), NOW);
    await refused(svc.verifyAccessToken(await ours({ ...base, nbf: T + 31 }), NOW));
    await svc.verifyAccessToken(await ours({ ...base, nbf: T + 29 }), NOW);
    await refused(svc.verifyAccessToken(await ours({ ...base, iat: T + 31, nbf: T }), NOW));
    // A far-future exp does not outlive the token TTL (max token age from iat).
    await refused(
      svc.verifyAccessToken(await ours({ ...base, iat: T - 400, nbf: T - 400, exp: T + 86_400 }), NOW),
      /expired/,
    );
  });

  it('wrong audience, wrong issuer, missing claims, wrong typ are refused', async () => {
    await refused(svc.verifyAccessToken(await ours({ ...base, aud: 'other' }), NOW), /not for the registry/);
    await refused(svc.verifyAccessToken(await ours({ ...base, aud: ['registry.test', 'other'] }), NOW));
    await refused(svc.verifyAccessToken(await ours({ ...base, iss: 'evil' }), NOW));
    for (const c of ['jti', 'sub', 'exp', 'nbf', 'iat', 'aud', 'iss'] as const) {
      const { [c]: _drop, ...rest } = base;
      await refused(svc.verifyAccessToken(await ours(rest), NOW));
    }
    await refused(svc.verifyAccessToken(await ours(base, { typ: 'trustgate-refresh+jwt' }), NOW));
    await refused(svc.verifyAccessToken(await ours({ ...base, kind: 'root' }), NOW));
  });

  it('malformed access claims are refused (patterns, bad actions, wrong types)', async () => {
    for (const bad of [
      [{ type: 'repository', name: 'team-a/*', actions: ['pull'] }],
      [{ type: 'repository', name: 'team-a/app', actions: ['*'] }],
      [{ type: 'repository', name: 'team-a/app', actions: 'pull' }],
      [{ type: 'registry', name: 'catalog', actions: ['pull'] }],
      { type: 'repository', name: 'a', actions: ['pull'] },
    ]) {
      await refused(svc.verifyAccessToken(await ours({ ...base, access: bad }), NOW));
    }
  });

  it('a token for one repository does not allow another (tokenAllows is exact)', async () => {
    const c = await svc.verifyAccessToken((await svc.issue(alice, access, NOW)).token, NOW);
    assert.equal(tokenAllows(c, 'team-a/app', 'pull'), true);
    assert.equal(tokenAllows(c, 'team-a/app', 'push'), true);
    assert.equal(tokenAllows(c, 'team-a/app', 'delete'), false);
    assert.equal(tokenAllows(c, 'team-a/other', 'pull'), false);
    assert.equal(tokenAllows(c, 'team-a/app/sub', 'pull'), false);
    assert.equal(tokenAllows(c, 'team-a', 'pull'), false);
    assert.equal(tokenAllows(c, 'catalog', '*', 'registry'), false);
  });

  it('a flipped signature bit is refused', async () => {
    const t = (await svc.issue(alice, access, NOW)).token;
    const [h, p, s] = t.split('.') as [string, string, string];
    const sig = Buffer.from(s, 'base64url');
    sig[5]! ^= 1;
    await refused(svc.verifyAccessToken(`${h}.${p}.${sig.toString('base64url')}`, NOW));
    await refused(svc.verifyAccessToken('', NOW));
    await refused(svc.verifyAccessToken('x'.repeat(20_000), NOW));
  });

  it('refresh tokens: separate typ and audience; neither passes for the other; anonymous gets none', async () => {
    const r = await svc.issue(alice, access, NOW, { refresh: true, accountVersion: 'v1' });
    assert.ok(r.refresh_token);
    const rc = await svc.verifyRefreshToken(r.refresh_token, NOW);
    assert.deepEqual({ s: rc.subject, k: rc.kind, v: rc.accountVersion }, { s: 'alice', k: 'user', v: 'v1' });
    await refused(svc.verifyAccessToken(r.refresh_token, NOW));
    await refused(svc.verifyRefreshToken(r.access_token, NOW));
    // lives for refreshTtlSeconds, not longer
    await svc.verifyRefreshToken(r.refresh_token, new Date(NOW.getTime() + 3000_000));
    await refused(svc.verifyRefreshToken(r.refresh_token, new Date(NOW.getTime() + 3700_000)), /expired/);
    const anon = await svc.issue({ subject: 'anonymous', kind: 'anonymous', groups: [] }, [], NOW, {
      refresh: true,
    });
    assert.equal(anon.refresh_token, undefined);
  });

  it('admin tokens: the admin grant gets the admin audience; neither kind passes for the other', async () => {
    const adminGrant = [{ type: 'registry' as const, name: 'admin', actions: ['*'] }];
    const r = await svc.issue(alice, adminGrant, NOW, { refresh: true, accountVersion: 'v1' });
    assert.equal(decodeJwt(r.token)['aud'], 'registry.test#admin');
    const c = await svc.verifyAccessToken(r.token, NOW, 'admin');
    assert.deepEqual(c.access, adminGrant);
    await refused(svc.verifyAccessToken(r.token, NOW), /not for the registry/);
    const reg = await svc.issue(alice, access, NOW, { refresh: true, accountVersion: 'v1' });
    await refused(svc.verifyAccessToken(reg.token, NOW, 'admin'), /not for the admin API/);
    // The refresh tokens say which API they mint for.
    assert.equal((await svc.verifyRefreshToken(r.refresh_token!, NOW)).use, 'admin');
    assert.equal((await svc.verifyRefreshToken(reg.refresh_token!, NOW)).use, 'registry');
    await refused(svc.verifyAccessToken(r.refresh_token!, NOW, 'admin'));
    // Never issued mixed; and a mixed or empty grant under the admin audience is refused.
    await assert.rejects(svc.issue(alice, [...adminGrant, ...access], NOW), TypeError);
    await refused(svc.verifyAccessToken(await ours({ ...base, aud: 'registry.test#admin' }), NOW, 'admin'));
    await refused(
      svc.verifyAccessToken(await ours({ ...base, aud: 'registry.test#admin', access: [] }), NOW, 'admin'),
    );
    await refused(svc.verifyAccessToken(await ours({ ...base, access: adminGrant }), NOW));
  });

  it('rotation: tokens signed with the old key still verify; new tokens use the new key', async () => {
    const old = await svc.issue(alice, access, NOW);
    const oldKid = keys.signing.kid;
    const newKid = await rotateTokenKey(dir);
    const rotated = await loadTokenKeys(dir, log);
    assert.equal(rotated.signing.kid, newKid);
    assert.ok(rotated.verifying.has(oldKid));
    svc.setKeys(rotated);
    assert.equal((await svc.verifyAccessToken(old.token, NOW)).subject, 'alice');
    const fresh = await svc.issue(alice, access, NOW);
    assert.equal(decodeProtectedHeader(fresh.token).kid, newKid);
    // A fresh service from the directory (a restart) agrees.
    const restarted = new TokenService({ keys: await loadTokenKeys(dir, log), ...opts });
    await restarted.verifyAccessToken(old.token, NOW);
    await restarted.verifyAccessToken(fresh.token, NOW);
    // Removing the old key (after the max TTL) retires its tokens.
    rmSync(path.join(dir, `${oldKid}.key`));
    const pruned = new TokenService({ keys: await loadTokenKeys(dir, log), ...opts });
    await refused(pruned.verifyAccessToken(old.token, NOW));
    await pruned.verifyAccessToken(fresh.token, NOW);
  });

  it('a token this service just issued is known at its first use under the same checks: API, times, settings, keys', async () => {
    // The issued-token memory (tokens.ts `issued`) answers these without verifying the signature
    // again; each must come out as full verification decides it.
    const s = new TokenService({ keys, ...opts });
    const t = (await s.issue(alice, access, NOW)).token;
    const c = await s.verifyAccessToken(t, NOW);
    assert.equal(c.subject, 'alice');
    assert.equal(c.kind, 'user');
    assert.deepEqual(c.access, access);
    assert.equal(c.jti, decodeJwt(t).jti);
    assert.equal(c.expiresAt.getTime(), (T + 300) * 1000);
    // Not for the other API, not before nbf (beyond the tolerance), not after exp (beyond it).
    await refused(s.verifyAccessToken(t, NOW, 'admin'), /not for the admin API/);
    await refused(s.verifyAccessToken(t, new Date(NOW.getTime() - 31_000)));
    await refused(s.verifyAccessToken(t, new Date(NOW.getTime() + 331_000)), /expired/);
    // A reload to another service ends it at once; back to this service, it verifies again.
    s.configure({ ...opts, service: 'other.test' });
    await refused(s.verifyAccessToken(t, NOW), /not for the registry/);
    s.configure(opts);
    assert.equal((await s.verifyAccessToken(t, NOW)).subject, 'alice');
    // A shorter lifetime applies to it too.
    const u = (await s.issue(alice, access, NOW)).token;
    s.configure({ ...opts, ttlSeconds: 60 });
    await refused(s.verifyAccessToken(u, new Date(NOW.getTime() + 120_000)));
    s.configure(opts);
    // Keys without the one that signed it: refused.
    const v = (await s.issue(alice, access, NOW)).token;
    const otherDir = mkdtempSync(path.join(tmpdir(), 'tg-tok-other-'));
    try {
      s.setKeys(await loadOrCreateTokenKeys(otherDir, log));
      await refused(s.verifyAccessToken(v, NOW));
    } finally {
      rmSync(otherDir, { recursive: true, force: true });
    }
    // A token differing in one character of its signature is another string: verified, refused.
    const w = (await s.issue(alice, access, NOW)).token;
    const flipped = w.slice(0, -2) + (w.at(-2) === 'A' ? 'B' : 'A') + w.at(-1)!;
    await refused(s.verifyAccessToken(flipped, NOW));
  });

  it('a token another replica signed is remembered once verified, under the same checks: API, times, settings, keys', async () => {
    // The one token memory (tokens.ts `issued`) also holds tokens verified in full (the /v2 hot
    // path); a remembered one must still come out as full verification decides it.
    const s = new TokenService({ keys, ...opts });
    const t = await ours(base);
    assert.equal((await s.verifyAccessToken(t, NOW)).subject, 'alice');
    assert.equal((await s.verifyAccessToken(t, NOW)).subject, 'alice');
    await refused(s.verifyAccessToken(t, NOW, 'admin'), /not for the admin API/);
    await refused(s.verifyAccessToken(t, new Date(NOW.getTime() + 331_000)), /expired/);
    // A reload to another issuer ends it at once.
    s.configure({ ...opts, issuer: 'gate-b' });
    await refused(s.verifyAccessToken(t, NOW));
    s.configure(opts);
    assert.equal((await s.verifyAccessToken(t, NOW)).subject, 'alice');
    // Keys without the one that signed it: refused, though it verified a moment ago.
    const otherDir = mkdtempSync(path.join(tmpdir(), 'tg-tok-other-'));
    try {
      s.setKeys(await loadOrCreateTokenKeys(otherDir, log));
      await refused(s.verifyAccessToken(t, NOW));
    } finally {
      rmSync(otherDir, { recursive: true, force: true });
    }
  });

  it('refuses a TTL under the token spec minimum of 60 s', () => {
    assert.throws(() => new TokenService({ keys, ...opts, ttlSeconds: 59 }), TypeError);
  });
});
