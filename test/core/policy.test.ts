import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { compileGlob, compilePolicy, PolicyError } from '../../src/core/policy.js';
import type { Config } from '../../src/config/schema.js';
import type { Identity } from '../../src/core/types.js';

const user = (subject: string, groups: string[] = []): Identity => ({ subject, kind: 'user', groups });
const anon: Identity = { subject: 'anonymous', kind: 'anonymous', groups: [] };

describe('compileGlob', () => {
  const table: Array<[string, string, boolean]> = [
    ['prod/**', 'prod/app', true],
    ['prod/**', 'prod/a/b/c', true],
    ['prod/**', 'prod', false], // Policy: ** is one or more segments
    ['prod/**', 'production/app', false],
    ['prod/**', 'pro/app', false],
    ['team-a/*', 'team-a/app', true],
    ['team-a/*', 'team-a/app/sub', false],
    ['team-a/*', 'team-a', false],
    ['team-a/*', 'team-b/app', false],
    ['*', 'app', true],
    ['*', 'a/b', false],
    ['**', 'a', true],
    ['**', 'a/b/c', true],
    ['**/app', 'x/app', true],
    ['**/app', 'x/y/app', true],
    ['**/app', 'app', false],
    ['**/app', 'x/app2', false],
    ['a/**/b', 'a/x/b', true],
    ['a/**/b', 'a/b', false],
    ['a/**/**', 'a/x', false],
    ['a/**/**', 'a/x/y', true],
    ['app-*', 'app-1', true],
    ['app-*', 'app-', false], // Policy: * matches one or more characters
    ['*-app', 'web-app', true],
    ['*-app', '-app', false],
    ['a*b*c', 'axbyc', true],
    ['a*b*c', 'abc', false],
    ['a*b*c', 'axbc', false],
    ['a*b*c', 'axxbbyyc', true],
    ['a*a', 'aaa', true],
    ['a*a', 'aa', false],
    ['prod/app', 'prod/app', true],
    ['prod/app', 'prod/app2', false],
    ['prod.x/app', 'prodyx/app', false], // `.` is literal, not "any char"
    ['prod/*', 'prod/', false],
    ['prod/*', '', false],
  ];
  for (const [pattern, name, want] of table) {
    it(`${pattern} ${want ? 'matches' : 'does not match'} ${JSON.stringify(name)}`, () => {
      assert.equal(compileGlob(pattern)(name), want);
    });
  }

  it('refuses patterns that would mean something else or never match, naming the pattern', () => {
    for (const bad of [
      '',
      'prod/',
      '/prod',
      'prod//x',
      'Prod/*',
      'prod/{a,b}',
      'prod/[ab]',
      'prod/?',
      'prod/!(x)',
      'prod/a**',
      'prod/***',
      '**x',
      'a b',
      'prod/a\u0000',
      'bad__-name',
      'x'.repeat(256),
    ]) {
      assert.throws(
        () => compileGlob(bad),
        (e: unknown) => e instanceof PolicyError && e.message.includes(JSON.stringify(bad)),
        bad,
      );
    }
  });

  const seg = fc.stringMatching(/^[a-z0-9]{1,6}$/);
  const name = fc.array(seg, { minLength: 1, maxLength: 6 }).map((s) => s.join('/'));

  it('property: a literal pattern matches exactly itself', () => {
    fc.assert(fc.property(name, name, (a, b) => compileGlob(a)(b) === (a === b)));
  });

  it('property: P/** matches exactly the names strictly below P', () => {
    fc.assert(
      fc.property(
        name,
        name,
        (p, n) => compileGlob(`${p}/**`)(n) === (n.startsWith(`${p}/`) && n.length > p.length + 1),
      ),
    );
  });

  it('property: P/* matches exactly the names one segment below P', () => {
    fc.assert(
      fc.property(name, name, (p, n) => {
        const want = n.startsWith(`${p}/`) && !n.slice(p.length + 1).includes('/') && n.length > p.length + 1;
        return compileGlob(`${p}/*`)(n) === want;
      }),
    );
  });

  it('property: agrees with a naive reference regex on random star patterns', () => {
    const piece = fc.stringMatching(/^[ab]{0,2}$/);
    const segPat = fc
      .array(piece, { minLength: 1, maxLength: 4 })
      .filter((ps) => ps.slice(1, -1).every((p) => p !== ''))
      .map((ps) => ps.join('*'))
      .filter((s) => s !== '');
    const nm = fc
      .array(fc.stringMatching(/^[ab]{1,5}$/), { minLength: 1, maxLength: 3 })
      .map((s) => s.join('/'));
    fc.assert(
      fc.property(
        fc.array(fc.oneof(segPat, fc.constant('**')), { minLength: 1, maxLength: 3 }),
        nm,
        (segs, n) => {
          const pattern = segs.join('/');
          let glob: (s: string) => boolean;
          try {
            glob = compileGlob(pattern);
          } catch {
            return true; // e.g. a literal that is not a valid name
          }
          const re = new RegExp(
            `^${segs.map((s) => (s === '**' ? '[^/]+(?:/[^/]+)*' : s.split('*').join('[^/]+'))).join('/')}$`,
          );
          return glob(n) === re.test(n);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('stays fast on hostile names and many stars', () => {
    const g = compileGlob('*a*a*a*a*a*a*a*a*b');
    const t0 = performance.now();
    assert.equal(g('a'.repeat(250)), false);
    const g2 = compileGlob('**/**/**/**/**/z');
    assert.equal(g2(Array(120).fill('a').join('/')), false);
    assert.ok(performance.now() - t0 < 50);
  });
});

function policy(p: Partial<Config['policy']>): ReturnType<typeof compilePolicy> {
  return compilePolicy({ admins: [], groups: {}, access: [], ...p });
}

describe('compilePolicy', () => {
  const p = policy({
    admins: ['root', 'group:ops'],
    groups: { 'team-a': ['alice', 'carol'], ops: ['olga'] },
    access: [
      { repos: ['team-a/**'], pull: ['group:team-a'], push: ['alice'], delete: ['alice'] },
      { repos: ['team-a/shared'], pull: ['bob'], push: [], delete: [] },
      { repos: ['public/*'], pull: ['anonymous', '*'], push: [], delete: [] },
      { repos: ['ci/*'], pull: ['robot:ci'], push: ['robot:ci', 'mtls:CN=build-01'], delete: [] },
    ],
  });
  const acts = (id: Identity, repo: string): string[] => [...p.allowedActions(id, repo)].sort();

  it('exact subjects, groups from policy, and the union of matching rules', () => {
    assert.deepEqual(acts(p.identityFor('alice', 'user'), 'team-a/app'), ['delete', 'pull', 'push']);
    assert.deepEqual(acts(p.identityFor('carol', 'user'), 'team-a/app'), ['pull']);
    assert.deepEqual(acts(p.identityFor('bob', 'user'), 'team-a/app'), []);
    assert.deepEqual(acts(p.identityFor('bob', 'user'), 'team-a/shared'), ['pull']);
    // group membership comes from the policy even if the identity carries no groups
    assert.deepEqual(acts(user('carol'), 'team-a/x'), ['pull']);
    assert.deepEqual(acts(p.identityFor('carol', 'user'), 'team-a'), []);
  });

  it('`anonymous` names only the anonymous identity; `*` names only authenticated ones', () => {
    assert.deepEqual(acts(anon, 'public/hello'), ['pull']);
    assert.deepEqual(acts(anon, 'team-a/app'), []);
    assert.deepEqual(acts(user('mallory'), 'public/hello'), ['pull']);
    // a user literally named "anonymous" is not the anonymous identity, and vice versa
    assert.deepEqual(acts(user('anonymous'), 'public/hello'), ['pull']);
    const onlyAnon = policy({ access: [{ repos: ['x'], pull: ['anonymous'], push: [], delete: [] }] });
    assert.equal(onlyAnon.allowedActions(user('anonymous'), 'x').size, 0);
    const onlyStar = policy({ access: [{ repos: ['x'], pull: ['*'], push: [], delete: [] }] });
    assert.equal(onlyStar.allowedActions(anon, 'x').size, 0);
    // an anonymous identity never gets groups or subject matches, even if forged
    assert.equal(
      p.allowedActions({ subject: 'alice', kind: 'anonymous', groups: ['team-a'] }, 'team-a/app').size,
      0,
    );
  });

  it('robots and mTLS identities are plain subjects', () => {
    assert.deepEqual(acts(p.identityFor('robot:ci', 'robot'), 'ci/app'), ['pull', 'push']);
    assert.deepEqual(acts(p.identityFor('mtls:CN=build-01', 'mtls'), 'ci/app'), ['push']);
    assert.deepEqual(acts(p.identityFor('mtls:CN=build-02', 'mtls'), 'ci/app'), []);
  });

  it('admins by subject or group; catalog is the admin action; never anonymous', () => {
    assert.equal(p.isAdmin(p.identityFor('root', 'user')), true);
    assert.equal(p.isAdmin(p.identityFor('olga', 'user')), true);
    assert.equal(p.canCatalog(p.identityFor('olga', 'user')), true);
    assert.equal(p.isAdmin(p.identityFor('alice', 'user')), false);
    assert.equal(p.canCatalog(p.identityFor('alice', 'user')), false);
    assert.equal(p.isAdmin({ subject: 'root', kind: 'anonymous', groups: [] }), false);
    assert.deepEqual(p.identityFor('root', 'anonymous').groups, []);
  });

  it('refuses policies that are typos or unsafe, with the offending entry named', () => {
    const cases: Array<[Partial<Config['policy']>, RegExp]> = [
      [
        { access: [{ repos: ['x'], pull: ['group:nope'], push: [], delete: [] }] },
        /access\[0\]\.pull: unknown group "nope"/,
      ],
      [
        { access: [{ repos: ['x'], pull: [], push: ['anonymous'], delete: [] }] },
        /access\[0\]\.push: `anonymous` is only allowed for pull/,
      ],
      [{ access: [{ repos: ['x'], pull: [], push: [], delete: ['anonymous'] }] }, /delete/],
      [{ access: [{ repos: ['prod/{a,b}'], pull: [], push: [], delete: [] }] }, /prod\/\{a,b\}/],
      [{ admins: ['*'] }, /policy\.admins/],
      [{ admins: ['anonymous'] }, /policy\.admins/],
      [{ groups: { g: ['group:h'] } }, /policy\.groups\.g/],
      [{ groups: { g: ['*'] } }, /policy\.groups\.g/],
    ];
    for (const [cfg, re] of cases)
      assert.throws(
        () => policy(cfg),
        (e: unknown) => e instanceof PolicyError && re.test(e.message),
      );
  });
});
