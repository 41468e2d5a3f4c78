/**
 * The admin API against a real registry:2 and two trustgate instances sharing one key directory
 * (replicas): auth, key add/list/revoke/rotate, every bad-key refusal, atomic files, propagation
 * to the other replica, explain, policy, users/robots and audit events.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pemEncode } from '../../src/core/signature/keys.js';
import { generateKeyPair } from '../../src/core/signature/sign.js';
import { createLogger } from '../../src/server/log.js';
import { assertBlobNotAdmitted, bearer, getToken, request, type Reply } from '../helpers/http.js';
import { pushRandomImage } from '../helpers/registry-direct.js';
import { signDirect } from '../helpers/sign.js';
import { startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';

const ADMIN = { user: 'admin', password: 'admin-password-1' };
/** The admin API takes only tokens for this scope (test/security/admin-token-scope.test.ts). */
const ADMIN_SCOPE = 'registry:admin:*';
const CONSUMER = { user: 'consumer', password: 'consumer-password' };

/** Collects the JSON log lines of a gate. */
class LogSink extends Writable {
  lines: Array<Record<string, unknown>> = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    for (const l of chunk.toString('utf8').split('\n')) {
      if (l.trim() !== '') this.lines.push(JSON.parse(l) as Record<string, unknown>);
    }
    cb();
  }
}

const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const edPem = (raw: Buffer): string => pemEncode('PUBLIC KEY', Buffer.concat([ED25519_SPKI_PREFIX, raw]));

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('admin API', { timeout: 180_000 }, () => {
  let registry: RegistryHandle;
  let gate: TestGate;
  let replica: TestGate;
  const sink = new LogSink();
  let adminToken: string;
  let replicaToken: string;
  const release = generateKeyPair('ecdsa-p256');

  const gateOpts = (registryUrl: string) => ({
    registryUrl,
    users: { admin: ADMIN.password, consumer: CONSUMER.password },
    policy: {
      admins: ['admin'],
      access: [{ repos: ['**'], pull: ['consumer'], push: [], delete: [] }],
    },
    trustRules: [{ repos: ['prod/**'], keys: ['release'] }],
    robots: true,
  });

  before(async () => {
    registry = await startRegistry();
    gate = await startTestGate({ ...gateOpts(registry.url), logger: createLogger('info', sink) });
    replica = await startTestGate({ ...gateOpts(registry.url), keysDir: gate.keysDir });
    adminToken = await getToken(gate.url, gate.ca, ADMIN.user, ADMIN.password, [ADMIN_SCOPE]);
    replicaToken = await getToken(replica.url, replica.ca, ADMIN.user, ADMIN.password, [ADMIN_SCOPE]);
  });

  after(async () => {
    await replica?.close();
    await gate?.close();
    await registry?.stop();
  });

  function api(
    method: string,
    p: string,
    body?: unknown,
    o: { token?: string | null; on?: TestGate; headers?: Record<string, string> } = {},
  ): Promise<Reply> {
    const g = o.on ?? gate;
    const token = o.token === undefined ? (g === gate ? adminToken : replicaToken) : o.token;
    return request(g.url, g.ca, {
      method,
      path: `/admin/v1${p}`,
      headers: {
        ...(token !== null ? bearer(token) : {}),
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...o.headers,
      },
      ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
    });
  }
  const errorOf = (r: Reply): { code: string; message: string } =>
    (r.json() as { errors: Array<{ code: string; message: string }> }).errors[0]!;
  const explain = async (ref: string, on = gate) =>
    (await api('GET', `/explain?ref=${encodeURIComponent(ref)}`, undefined, { on })).json() as {
      decision: string;
      reason: string;
      signers: string[];
      message: string;
      digest: string;
    };

  it('refuses callers without credentials (401 + Bearer challenge) and non-admins (403 DENIED)', async () => {
    const none = await api('GET', '/keys', undefined, { token: null });
    assert.equal(none.status, 401);
    assert.match(
      String(none.headers['www-authenticate']),
      /^Bearer realm="https:\/\/[^"]+\/token",service="trustgate",scope="registry:admin:\*"$/,
    );
    assert.equal(errorOf(none).code, 'UNAUTHORIZED');
    const basic = await api('GET', '/keys', undefined, {
      token: null,
      headers: { authorization: `Basic ${Buffer.from('admin:admin-password-1').toString('base64')}` },
    });
    assert.equal(basic.status, 401, 'Basic credentials are for /token only');
    const forged = await api('GET', '/keys', undefined, { token: 'eyJhbGciOiJub25lIn0.e30.' });
    assert.equal(forged.status, 401);
    const consumerToken = await getToken(gate.url, gate.ca, CONSUMER.user, CONSUMER.password, [ADMIN_SCOPE]);
    const denied = await api(
      'POST',
      '/keys',
      { name: 'x', pem: release.publicKeyPem },
      { token: consumerToken },
    );
    assert.equal(denied.status, 403);
    assert.equal(errorOf(denied).code, 'DENIED');
    assert.match(errorOf(denied).message, /consumer is not an admin/);
    assert.equal((await api('GET', '/keys')).status, 200);
    // The admin's registry token (docker login asks no scope) is no admin credential.
    const loginToken = await getToken(gate.url, gate.ca, ADMIN.user, ADMIN.password, []);
    const registryToken = await api('GET', '/keys', undefined, { token: loginToken });
    assert.equal(registryToken.status, 401);
    assert.match(String(registryToken.headers['www-authenticate']), /error="insufficient_scope"/);
    // A token from the other replica's token keys is not accepted here.
    assert.equal((await api('GET', '/keys', undefined, { token: replicaToken })).status, 401);
  });

  it('serves its OpenAPI 3.1 document as JSON', async () => {
    const r = await api('GET', '/openapi.json');
    assert.equal(r.status, 200);
    const doc = r.json() as { openapi: string; paths: Record<string, unknown> };
    assert.equal(doc.openapi, '3.1.0');
    for (const p of [
      '/keys',
      '/keys/{name}/revoke',
      '/keys/{name}/rotate',
      '/policy',
      '/explain',
      '/users',
      '/robots',
    ])
      assert.ok(doc.paths[p], p);
  });

  it('adds and lists a key; the files are written whole, with no temp file left; an audit event names the admin', async () => {
    const r = await api('POST', '/keys', { name: 'release', pem: release.publicKeyPem, comment: 'CI key' });
    assert.equal(r.status, 201, r.body.toString());
    const k = r.json() as { name: string; status: string; fingerprint: string; alg: string };
    assert.equal(k.name, 'release');
    assert.equal(k.status, 'active');
    assert.equal(k.alg, 'ecdsa-p256');
    assert.match(k.fingerprint, /^sha256:[0-9a-f]{64}$/);
    const list = (await api('GET', '/keys')).json() as { keys: Array<{ name: string }> };
    assert.deepEqual(
      list.keys.map((x) => x.name),
      ['release'],
    );
    const files = readdirSync(gate.keysDir).sort();
    assert.deepEqual(files, ['release.meta.json', 'release.pub']);
    assert.equal(readFileSync(path.join(gate.keysDir, 'release.pub'), 'utf8'), release.publicKeyPem);
    const meta = JSON.parse(readFileSync(path.join(gate.keysDir, 'release.meta.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    assert.equal(meta['addedBy'], 'admin');
    const ev = sink.lines.find(
      (l) => l['audit'] === 'admin' && l['change'] === 'key.add' && l['target'] === 'release',
    );
    assert.ok(ev, 'audit event');
    assert.equal(ev['identity'], 'admin');
    assert.match(String(ev['requestId']), /^[0-9a-f-]{36}$/);
  });

  it('refuses every bad key with 400 and the reason', async () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({
      format: 'pem',
      type: 'spki',
    });
    const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).publicKey.export({
      format: 'pem',
      type: 'spki',
    });
    const identity = Buffer.alloc(32);
    identity[0] = 1; // y = 1: the identity point, order 1
    const nonCanonical = Buffer.alloc(32, 0xff);
    nonCanonical[0] = 0xed;
    nonCanonical[31] = 0x7f; // y = p, not reduced
    const other = generateKeyPair('ed25519');
    const cases: Array<[string, Record<string, unknown>, RegExp]> = [
      ['malformed PEM', { name: 'bad1', pem: 'not a key' }, /expected exactly one PEM block/],
      [
        'garbage in the PEM body',
        { name: 'bad2', pem: '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n' },
        /not a valid SubjectPublicKeyInfo/,
      ],
      [
        'a private key',
        { name: 'bad3', pem: '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n' },
        /PEM type "PRIVATE KEY" is not supported/,
      ],
      [
        'RSA (at any size)',
        { name: 'bad4', pem: rsa },
        /rsa keys are not supported; use Ed25519 or ECDSA P-256/,
      ],
      ['P-384', { name: 'bad5', pem: p384 }, /curve secp384r1 is not supported/],
      ['small-order Ed25519', { name: 'bad6', pem: edPem(identity) }, /small-order Ed25519 key/],
      [
        'non-canonical Ed25519',
        { name: 'bad7', pem: edPem(nonCanonical) },
        /not a canonical Ed25519 point encoding/,
      ],
      ['duplicate name', { name: 'release', pem: other.publicKeyPem }, /a key named release already exists/],
      [
        'duplicate fingerprint',
        { name: 'release-copy', pem: release.publicKeyPem },
        /already trusted as release/,
      ],
      ['name with ..', { name: '../x', pem: other.publicKeyPem }, /key name "\.\.\/x" is invalid/],
      ['name with a slash', { name: 'a/b', pem: other.publicKeyPem }, /key name "a\/b" is invalid/],
      ['hidden name', { name: '.hidden', pem: other.publicKeyPem }, /is invalid/],
      ['upper case', { name: 'Release', pem: other.publicKeyPem }, /is invalid/],
      [
        'bad glob',
        { name: 'okname', pem: other.publicKeyPem, repos: ['prod/**x'] },
        /`\*\*` must be a whole path segment/,
      ],
      [
        'bad date',
        { name: 'okname', pem: other.publicKeyPem, notAfter: 'tomorrow' },
        /notAfter must be an ISO 8601/,
      ],
      [
        'date without zone',
        { name: 'okname', pem: other.publicKeyPem, notAfter: '2030-01-01T00:00:00' },
        /time zone/,
      ],
      [
        'unknown field',
        { name: 'okname', pem: other.publicKeyPem, trustEverything: true },
        /invalid request body/,
      ],
      ['missing pem', { name: 'okname' }, /invalid request body: pem/],
    ];
    for (const [what, body, reason] of cases) {
      const r = await api('POST', '/keys', body);
      assert.equal(r.status, 400, `${what}: ${r.body.toString()}`);
      assert.match(errorOf(r).message, reason, what);
    }
    // Not JSON, wrong type, too large.
    const notJson = await api('POST', '/keys', '{"name":', {});
    assert.equal(notJson.status, 400);
    const form = await api('POST', '/keys', undefined, {
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    assert.equal(form.status, 400);
    const big = await api('POST', '/keys', { name: 'big', pem: 'x'.repeat(70_000) });
    assert.equal(big.status, 413);
    // Path names are checked the same way.
    for (const p of ['/keys/..%2Fx/revoke', '/keys/.hidden/revoke', '/keys/a%2Fb/revoke']) {
      const r = await api('POST', p, {});
      assert.equal(r.status, 400, p);
    }
    assert.deepEqual(readdirSync(gate.keysDir).sort(), ['release.meta.json', 'release.pub']);
  });

  it('a change on one replica is seen by the other within 2 s (add and revoke), and explain tells signed from unsigned', async () => {
    const shared = generateKeyPair('ed25519');
    const img = await pushRandomImage(registry.url, 'team/app', 'v1');
    await signDirect(registry.url, 'team/app', img.digest, shared.pkcs8Der, {
      dockerReference: `${gate.host}/team/app`,
    });
    const unsigned = await pushRandomImage(registry.url, 'team/app', 'unsigned');
    assert.equal((await explain('team/app:v1', replica)).decision, 'deny');

    const t0 = Date.now();
    const r = await api('POST', '/keys', { name: 'team', pem: shared.publicKeyPem, repos: ['team/**'] });
    assert.equal(r.status, 201, r.body.toString());
    const seen = await waitFor(
      'key on the replica',
      async () => {
        const v = await explain('team/app:v1', replica);
        return v.decision === 'allow' ? v : undefined;
      },
      2000,
    );
    assert.ok(Date.now() - t0 < 2000);
    assert.deepEqual(seen.signers, ['team']);
    assert.equal(seen.digest, img.digest);
    // The meta repos limit the key: not trusted for another repository (signature copied there).
    const other = await pushRandomImage(registry.url, 'other/app', 'v1');
    await signDirect(registry.url, 'other/app', other.digest, shared.pkcs8Der, {
      dockerReference: `${gate.host}/other/app`,
    });
    const o = await explain('other/app:v1');
    assert.equal(o.decision, 'deny');
    assert.equal(o.reason, 'untrusted-key');
    const u = await explain('team/app:unsigned');
    assert.equal(u.decision, 'deny');
    assert.equal(u.reason, 'no-signature');
    assert.match(u.message, new RegExp(`team/app@${unsigned.digest}`));
    assert.equal((await explain(`team/app@${img.digest}`)).decision, 'allow');
    assert.equal((await api('GET', '/explain?ref=team/app:nope')).status, 404);
    assert.equal((await api('GET', '/explain?ref=Team/App:v1')).status, 400);
    assert.equal((await api('GET', '/explain?ref=team/app:v1&ref=team/app:v2')).status, 400);

    // Explain admits nothing: a consumer still cannot fetch the image's blobs directly.
    const ct = await getToken(gate.url, gate.ca, CONSUMER.user, CONSUMER.password, [
      'repository:team/app:pull',
    ]);
    const blob = await request(gate.url, gate.ca, {
      path: `/v2/team/app/blobs/${img.blobs[0]}`,
      headers: bearer(ct),
    });
    assertBlobNotAdmitted(blob);

    const t1 = Date.now();
    const rv = await api('POST', '/keys/team/revoke', { reason: 'laptop lost' });
    assert.equal(rv.status, 200, rv.body.toString());
    assert.equal((rv.json() as { key: { status: string } }).key.status, 'revoked');
    const denied = await waitFor(
      'revocation on the replica',
      async () => {
        const v = await explain('team/app:v1', replica);
        return v.decision === 'deny' ? v : undefined;
      },
      2000,
    );
    assert.ok(Date.now() - t1 < 2000);
    assert.equal(denied.reason, 'revoked-key');
    // Idempotent; the .pub stays for audit; the revoked key's fingerprint cannot come back.
    const again = await api('POST', '/keys/team/revoke');
    assert.equal((again.json() as { changed: boolean }).changed, false);
    assert.ok(readdirSync(gate.keysDir).includes('team.pub'));
    const back = await api('POST', '/keys', { name: 'team-again', pem: shared.publicKeyPem });
    assert.equal(back.status, 400);
    assert.match(errorOf(back).message, /revoked/);
    const ev = sink.lines.find(
      (l) => l['audit'] === 'admin' && l['change'] === 'key.revoke' && l['target'] === 'team',
    );
    assert.equal(ev?.['identity'], 'admin');
    assert.equal((await api('POST', '/keys/nosuchkey/revoke')).status, 404);
  });

  it('rotates a key: the new one is trusted wherever the old one was, the old one expires after the grace', async () => {
    const next = generateKeyPair('ed25519');
    const img = await pushRandomImage(registry.url, 'prod/app', 'v1');
    await signDirect(registry.url, 'prod/app', img.digest, release.pkcs8Der, {
      dockerReference: `${gate.host}/prod/app`,
    });
    assert.equal((await explain('prod/app:v1')).decision, 'allow');
    const img2 = await pushRandomImage(registry.url, 'prod/app', 'v2');
    await signDirect(registry.url, 'prod/app', img2.digest, next.pkcs8Der, {
      dockerReference: `${gate.host}/prod/app`,
    });
    assert.equal((await explain('prod/app:v2')).decision, 'deny');

    const before = Date.now();
    const r = await api('POST', '/keys/release/rotate', { pem: next.publicKeyPem, graceSeconds: 3600 });
    assert.equal(r.status, 200, r.body.toString());
    const out = r.json() as {
      old: { notAfter: string; status: string };
      new: { name: string; trustedAs: string[] };
    };
    assert.equal(out.new.name, 'release-2');
    assert.deepEqual(out.new.trustedAs, ['release']);
    const na = Date.parse(out.old.notAfter);
    assert.ok(na >= before + 3600_000 - 1000 && na <= Date.now() + 3600_000 + 1000);
    assert.equal(out.old.status, 'active');
    // The trust rule names only `release`; the rotated key is trusted through it.
    const v2 = await explain('prod/app:v2');
    assert.equal(v2.decision, 'allow', v2.message);
    assert.deepEqual(v2.signers, ['release-2']);
    assert.equal((await explain('prod/app:v1')).decision, 'allow');
    // Rotating again with no grace: release-3, and release-2 is no longer valid.
    const third = generateKeyPair('ecdsa-p256');
    const r3 = await api('POST', '/keys/release-2/rotate', { pem: third.publicKeyPem, graceSeconds: 0 });
    assert.equal(r3.status, 200, r3.body.toString());
    const o3 = r3.json() as { new: { name: string; trustedAs: string[] } };
    assert.equal(o3.new.name, 'release-3');
    assert.deepEqual(o3.new.trustedAs.sort(), ['release', 'release-2']);
    await new Promise((res) => setTimeout(res, 20));
    const after2 = await explain('prod/app:v2');
    assert.equal(after2.decision, 'deny');
    assert.equal(after2.reason, 'expired-key');
    // Policy view: the rule's effective keys include the rotated ones.
    const pol = (await api('GET', '/policy?repo=prod/app')).json() as {
      repo: { rule: string; trustedKeys: Array<{ name: string; status: string }> };
      trust: { rules: Array<{ effectiveKeys: Array<{ name: string }> }> };
    };
    assert.equal(pol.repo.rule, 'prod/**');
    assert.deepEqual(pol.repo.trustedKeys.map((k) => `${k.name}:${k.status}`).sort(), [
      'release-2:expired',
      'release-3:active',
      'release:active',
    ]);
    assert.equal(pol.trust.rules[0]!.effectiveKeys.length, 3);
    const ev = sink.lines.find(
      (l) => l['audit'] === 'admin' && l['change'] === 'key.rotate' && l['target'] === 'release',
    );
    assert.ok(ev);
    assert.equal(
      (await api('POST', '/keys/team/rotate', { pem: generateKeyPair('ed25519').publicKeyPem })).status,
      400,
    );
    assert.ok(!readdirSync(gate.keysDir).some((f) => f.startsWith('.') || f.endsWith('.tmp')));
  });

  it('keys survive a restart: a new instance on the same directory sees the same keys and states', async () => {
    const fresh = await startTestGate({ ...gateOpts(registry.url), keysDir: gate.keysDir });
    try {
      const t = await getToken(fresh.url, fresh.ca, ADMIN.user, ADMIN.password, [ADMIN_SCOPE]);
      const r = await request(fresh.url, fresh.ca, { path: '/admin/v1/keys', headers: bearer(t) });
      const keys = (r.json() as { keys: Array<{ name: string; status: string }> }).keys;
      assert.deepEqual(
        keys.map((k) => `${k.name}:${k.status}`),
        ['release:active', 'release-2:expired', 'release-3:active', 'team:revoked'],
      );
    } finally {
      await fresh.close();
    }
  });

  it('manages users and robots: the files are rewritten atomically and take effect at once', async () => {
    const add = await api('POST', '/users', { name: 'carol', password: 'carol-password-1' });
    assert.equal(add.status, 201, add.body.toString());
    await getToken(gate.url, gate.ca, 'carol', 'carol-password-1', []);
    assert.equal((await api('POST', '/users', { name: 'carol', password: 'another-password' })).status, 400);
    assert.equal((await api('POST', '/users', { name: 'dave', password: 'short' })).status, 400);
    assert.equal((await api('POST', '/users', { name: 'x:y', password: 'long-enough-pass' })).status, 400);
    assert.equal(
      (await api('POST', '/users', { name: 'evil\nroot', password: 'long-enough-pass' })).status,
      400,
    );
    assert.equal(
      (await api('POST', '/users', { name: 'anonymous', password: 'long-enough-pass' })).status,
      400,
    );
    assert.equal((await api('POST', '/users', { name: 'long', password: 'x'.repeat(73) })).status, 400);
    const robot = await api('POST', '/robots', { name: 'ci' });
    assert.equal(robot.status, 201, robot.body.toString());
    const rb = robot.json() as { login: string; secret: string };
    assert.equal(rb.login, 'robot$ci');
    assert.match(rb.secret, /^[A-Za-z0-9_-]{43}$/);
    await getToken(gate.url, gate.ca, 'robot$ci', rb.secret, []);
    const list = (await api('GET', '/users')).json() as { users: string[]; robots: string[] };
    assert.deepEqual(list, { users: ['admin', 'carol', 'consumer'], robots: ['ci'] });
    assert.equal((await api('DELETE', '/users/carol')).status, 200);
    await assert.rejects(getToken(gate.url, gate.ca, 'carol', 'carol-password-1', []), /401/);
    assert.equal((await api('DELETE', '/users/carol')).status, 404);
    assert.equal((await api('DELETE', '/robots/ci')).status, 200);
    // The secret is never logged.
    assert.ok(!sink.lines.some((l) => JSON.stringify(l).includes(rb.secret)));
    const ev = sink.lines.filter(
      (l) => l['audit'] === 'admin' && String(l['change']).match(/^(user|robot)\./),
    );
    assert.deepEqual(
      ev.map((l) => `${String(l['change'])} ${String(l['target'])} by ${String(l['identity'])}`),
      [
        'user.add carol by admin',
        'robot.add ci by admin',
        'user.remove carol by admin',
        'robot.remove ci by admin',
      ],
    );
    assert.ok(!readdirSync(gate.dir).some((f) => f.endsWith('.tmp')));
  });

  it('a user added or removed through one replica is seen by another sharing the files within 2 s', async () => {
    const other = await startTestGate({
      ...gateOpts(registry.url),
      extra: {
        auth: {
          htpasswd: path.join(gate.dir, 'htpasswd'),
          robotsFile: path.join(gate.dir, 'robots'),
          tokenKeyDir: path.join(gate.dir, 'keys', 'token'),
        },
      },
    });
    try {
      const loads = (): number => sink.lines.filter((l) => l['msg'] === 'credentials loaded').length;
      const loads0 = loads();
      const add = await api('POST', '/users', { name: 'erin', password: 'erin-password-1' });
      assert.equal(add.status, 201, add.body.toString());
      // One attempt after the 1 s check (repeated failures would trip the login limiter).
      await new Promise((r) => setTimeout(r, 1500));
      await getToken(other.url, other.ca, 'erin', 'erin-password-1', []);
      assert.equal(
        loads() - loads0,
        1,
        'the writing replica re-read its files once, not again on its own check',
      );
      assert.equal((await api('DELETE', '/users/erin')).status, 200);
      await new Promise((r) => setTimeout(r, 1500));
      await assert.rejects(getToken(other.url, other.ca, 'erin', 'erin-password-1', []), /401/);
    } finally {
      await other.close();
    }
  });

  it('an admin client certificate works without a token; a non-admin certificate is refused', async () => {
    const m = await startTestGate({
      registryUrl: registry.url,
      mtls: true,
      policy: { admins: ['mtls:CN=build-01'] },
    });
    try {
      const cert = m.clientCert!;
      const ok = await request(m.url, m.ca, { path: '/admin/v1/keys', cert: cert.cert, key: cert.key });
      assert.equal(ok.status, 200, ok.body.toString());
      const none = await request(m.url, m.ca, { path: '/admin/v1/keys' });
      assert.equal(none.status, 401);
      const other = await startTestGate({
        registryUrl: registry.url,
        mtls: true,
        policy: { admins: ['admin'] },
      });
      try {
        const c2 = other.clientCert!;
        const denied = await request(other.url, other.ca, {
          path: '/admin/v1/keys',
          cert: c2.cert,
          key: c2.key,
        });
        assert.equal(denied.status, 403);
      } finally {
        await other.close();
      }
    } finally {
      await m.close();
    }
  });

  it('reports cache and health figures', async () => {
    const c = await api('GET', '/cache');
    assert.equal(c.status, 200);
    const cache = c.json() as { stats: { hits: number }; epoch: string; signatureFetches: number };
    assert.equal(typeof cache.stats.hits, 'number');
    assert.match(cache.epoch, /^[0-9a-f]{32}$/);
    assert.ok(cache.signatureFetches > 0);
    const h = await api('GET', '/health');
    assert.equal(h.status, 200);
    const health = h.json() as { status: string; upstream: string; keys: { loaded: number } };
    assert.equal(health.upstream, 'ok');
    assert.equal(health.keys.loaded, 4);
    assert.equal((await api('GET', '/nope')).status, 404);
  });
});
