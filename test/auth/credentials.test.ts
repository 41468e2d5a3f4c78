import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import bcrypt from 'bcryptjs';
import {
  addressKey,
  CredentialStore,
  generateRobotSecret,
  parseHtpasswd,
  robotsFileLine,
} from '../../src/auth/credentials.js';
import { GateError } from '../../src/core/errors.js';

/** A line as `htpasswd -B -C 4` writes it ($2y$). */
const htpasswdLine = (user: string, pw: string) =>
  `${user}:${bcrypt.hashSync(pw, 4).replace(/^\$2b\$/, '$2y$')}`;

const warnings: string[] = [];
const log = { info: () => {}, warn: (_o: object, m: string) => void warnings.push(m) };

describe('htpasswd parsing', () => {
  it('accepts $2y$, $2b$, $2a$ bcrypt; refuses MD5, SHA-1, crypt, plain text, reserved and bad names', () => {
    warnings.length = 0;
    const h = bcrypt.hashSync('pw', 4).slice(4);
    const text = [
      `y:$2y$${h}`,
      `b:$2b$${h}`,
      `a:$2a$${h}`,
      '# comment',
      '',
      'md5:$apr1$abcdefgh$0123456789abcdefghijkl',
      'sha:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=',
      'des:abJnggxhB/yWI',
      'plain:password',
      `anonymous:$2y$${h}`,
      `robot$x:$2y$${h}`,
      `y:$2y$${h}`,
      'nocolon',
      `cost:$2y$03$${h.slice(3)}`,
      `crlf:$2y$${h}\r`,
    ].join('\n');
    const users = parseHtpasswd(text, 'f', log);
    assert.deepEqual([...users.keys()].sort(), ['a', 'b', 'crlf', 'y']);
    assert.ok(warnings.some((w) => w.includes('MD5')));
    assert.ok(warnings.some((w) => w.includes('SHA-1')));
    assert.ok(warnings.some((w) => w.includes('DES crypt')));
    assert.ok(warnings.some((w) => w.includes('plain text')));
    assert.ok(warnings.some((w) => w.includes('reserved')));
    assert.ok(warnings.some((w) => w.includes('duplicate')));
    assert.ok(warnings.some((w) => w.includes('robot$')));
    // warnings never contain the hash
    assert.ok(warnings.every((w) => !w.includes('$apr1$') && !w.includes(h)));
  });
});

describe('CredentialStore', () => {
  let dir: string;
  let clock = 1_000_000;
  const sleeps: number[] = [];
  const robotSecret = generateRobotSecret();
  let store: CredentialStore;

  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'tg-cred-'));
    writeFileSync(
      path.join(dir, 'htpasswd'),
      [
        htpasswdLine('alice', 'alice-pw'),
        htpasswdLine('bob', 'bob-pw'),
        htpasswdLine('carol', 'carol-pw'),
      ].join('\n'),
    );
    writeFileSync(path.join(dir, 'robots'), `${robotsFileLine('ci-main', robotSecret, 4)}\n`);
    store = CredentialStore.load(
      {
        htpasswd: path.join(dir, 'htpasswd'),
        robotsFile: path.join(dir, 'robots'),
        maxFailures: 3,
        failureWindowSeconds: 60,
        maxFailuresPerAddress: 6,
      },
      log,
      { now: () => clock, sleep: async (ms) => void sleeps.push(ms) },
    );
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const rejects = (p: Promise<unknown>, code: 'UNAUTHORIZED' | 'TOOMANYREQUESTS') =>
    assert.rejects(p, (e: unknown) => e instanceof GateError && e.code === code);

  it('verifies htpasswd -B users and robots; robot secrets are 256-bit base64url', async () => {
    assert.deepEqual(await store.verify('alice', 'alice-pw', '10.0.0.1'), {
      subject: 'alice',
      kind: 'user',
      groups: [],
    });
    assert.match(robotSecret, /^[A-Za-z0-9_-]{43}$/);
    assert.deepEqual(await store.verify('robot$ci-main', robotSecret, '10.0.0.1'), {
      subject: 'robot:ci-main',
      kind: 'robot',
      groups: [],
    });
    await rejects(store.verify('robot:ci-main', robotSecret, '10.0.0.1'), 'UNAUTHORIZED');
    await rejects(store.verify('ci-main', robotSecret, '10.0.0.1'), 'UNAUTHORIZED');
    assert.equal(store.exists('robot:ci-main', 'robot'), true);
    assert.equal(store.exists('alice', 'user'), true);
    assert.equal(store.exists('alice', 'robot'), false);
    assert.equal(store.exists('mallory', 'user'), false);
    assert.match(store.accountVersion('alice', 'user')!, /^[A-Za-z0-9_-]{22}$/);
  });

  it('wrong password and unknown user answer the same, and both run one bcrypt compare', async () => {
    const orig = bcrypt.compare;
    const seen: string[] = [];
    (bcrypt as { compare: typeof orig }).compare = (async (pw: string, hash: string) => {
      seen.push(hash);
      return orig(pw, hash);
    }) as typeof orig;
    try {
      const msgs: string[] = [];
      for (const u of ['alice', 'nobody-here']) {
        await assert.rejects(store.verify(u, 'wrong', `10.1.0.${msgs.length}`), (e: unknown) => {
          msgs.push((e as Error).message);
          return e instanceof GateError && e.status === 401;
        });
      }
      assert.equal(msgs[0], msgs[1]);
      assert.equal(seen.length, 2);
      // the unknown user's compare ran against a real bcrypt hash of the same cost as the accounts
      assert.match(seen[1]!, /^\$2[aby]\$04\$/);
    } finally {
      (bcrypt as { compare: typeof orig }).compare = orig;
    }
  });

  it('refuses NUL, control characters, long names and passwords over 72 bytes before hashing', async () => {
    for (const [u, p] of [
      ['ali\u0000ce', 'alice-pw'],
      ['alice', 'alice-pw\u0000'],
      ['a'.repeat(257), 'x'],
      ['alice', 'x'.repeat(73)],
      ['', 'x'],
    ] as const) {
      await rejects(store.verify(u, p, '10.2.0.1'), 'UNAUTHORIZED');
    }
    // A password that equals the real one in its first 72 bytes is not silently truncated into a match.
    const long = 'y'.repeat(72);
    const s2 = new CredentialStore(
      { users: new Map([['dan', bcrypt.hashSync(long, 4)]]), robots: new Map() },
      { maxFailures: 5, failureWindowSeconds: 60 },
    );
    assert.equal((await s2.verify('dan', long, '1.1.1.1')).subject, 'dan');
    await rejects(s2.verify('dan', `${long}z`, '1.1.1.1'), 'UNAUTHORIZED');
  });

  it('repeated failures for one account: growing delays, then 429 with Retry-After for the window, even with the right password', async () => {
    sleeps.length = 0;
    for (let i = 0; i < 3; i++) await rejects(store.verify('bob', 'nope', `10.3.0.${i}`), 'UNAUTHORIZED');
    assert.deepEqual(
      sleeps,
      [0, 250, 500].filter((x) => x > 0),
    );
    await assert.rejects(store.verify('bob', 'bob-pw', '10.3.0.99'), (e: unknown) => {
      assert.ok(e instanceof GateError);
      assert.equal(e.status, 429);
      assert.equal(e.headers['Retry-After'], '60');
      return true;
    });
    clock += 30_000;
    await rejects(store.verify('bob', 'bob-pw', '10.3.0.99'), 'TOOMANYREQUESTS');
    clock += 31_000; // window over
    assert.equal((await store.verify('bob', 'bob-pw', '10.3.0.99')).subject, 'bob');
  });

  it('unknown accounts lock the same way (no existence oracle)', async () => {
    for (let i = 0; i < 3; i++) await rejects(store.verify('ghost', 'nope', `10.4.0.${i}`), 'UNAUTHORIZED');
    await rejects(store.verify('ghost', 'nope', '10.4.0.9'), 'TOOMANYREQUESTS');
  });

  it('one client address spraying many accounts is refused after its own limit', async () => {
    clock += 120_000;
    for (let i = 0; i < 6; i++) await rejects(store.verify(`spray${i}`, 'nope', '192.0.2.7'), 'UNAUTHORIZED');
    await rejects(store.verify('carol', 'carol-pw', '192.0.2.7'), 'TOOMANYREQUESTS');
    // …while carol from elsewhere is fine (the IPv4-mapped form is the same address)
    await rejects(store.verify('carol', 'carol-pw', '::ffff:192.0.2.7'), 'TOOMANYREQUESTS');
    assert.equal((await store.verify('carol', 'carol-pw', '192.0.2.8')).subject, 'carol');
  });

  it('parallel guesses cannot slip past the limit while bcrypt runs', async () => {
    clock += 120_000;
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) => store.verify('alice', `guess-${i}`, `10.5.0.${i}`)),
    );
    const codes = results.map((r) => (r.status === 'rejected' ? (r.reason as GateError).code : 'OK'));
    assert.equal(codes.filter((c) => c === 'UNAUTHORIZED').length, 3, codes.join(','));
    assert.equal(codes.filter((c) => c === 'TOOMANYREQUESTS').length, 7);
  });

  it('IPv6 clients are keyed by /64', () => {
    assert.equal(addressKey('2001:db8:1:2:aaaa::1'), addressKey('2001:db8:1:2:bbbb:cccc:dddd:eeee'));
    assert.notEqual(addressKey('2001:db8:1:2::1'), addressKey('2001:db8:1:3::1'));
    assert.equal(addressKey('::ffff:10.0.0.1'), addressKey('10.0.0.1'));
    assert.equal(addressKey(undefined), 'a:unknown');
  });
});

describe('CredentialStore.reload', () => {
  it('picks up changed files and keeps lockouts', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tg-reload-'));
    try {
      const file = path.join(dir, 'htpasswd');
      writeFileSync(file, htpasswdLine('erin', 'old-pw'));
      const opts = { htpasswd: file, maxFailures: 2, failureWindowSeconds: 60 };
      const s1 = CredentialStore.load(opts, log, { sleep: async () => {} });
      const v1 = s1.accountVersion('erin', 'user');
      for (let i = 0; i < 2; i++) await assert.rejects(s1.verify('erin', 'bad', '10.9.0.1'), GateError);
      writeFileSync(file, htpasswdLine('erin', 'new-pw'));
      const s2 = s1.reload(opts, log);
      assert.notEqual(s2.accountVersion('erin', 'user'), v1);
      await assert.rejects(
        s2.verify('erin', 'new-pw', '10.9.0.2'),
        (e: unknown) => (e as GateError).code === 'TOOMANYREQUESTS',
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
