import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { compilePolicy } from '../../src/core/policy.js';
import { GateError } from '../../src/core/errors.js';
import {
  accessAllows,
  ADMIN_SCOPE,
  adminAccess,
  checkRefreshUse,
  formatChallengeScope,
  grantScopes,
  grantUse,
  isAdminGrant,
  MAX_SCOPES,
  parseScope,
  parseScopes,
  tokenRequestUse,
} from '../../src/core/scope.js';
import type { Identity } from '../../src/core/types.js';

const policy = compilePolicy({
  admins: ['root'],
  groups: { devs: ['alice'] },
  access: [
    { repos: ['team-a/**'], pull: ['group:devs', 'bob'], push: ['alice'], delete: [] },
    { repos: ['public/*'], pull: ['anonymous', '*'], push: [], delete: [] },
  ],
});
const alice = policy.identityFor('alice', 'user');
const bob = policy.identityFor('bob', 'user');
const anon: Identity = { subject: 'anonymous', kind: 'anonymous', groups: [] };
const grant = (scopes: string[], id: Identity) => grantScopes(parseScopes(scopes), id, policy);

describe('parseScope', () => {
  it('reads repository and registry scopes; `*` is pull,push,delete; unknown actions dropped', () => {
    assert.deepEqual(parseScope('repository:team-a/app:pull,push'), {
      type: 'repository',
      name: 'team-a/app',
      actions: ['pull', 'push'],
    });
    assert.deepEqual(parseScope('repository:a:*')?.actions, ['delete', 'pull', 'push']);
    assert.deepEqual(parseScope('repository:a:pull,frobnicate,,pull')?.actions, ['pull']);
    assert.equal(parseScope('repository:a:frobnicate'), null);
    assert.equal(parseScope('repository:a:'), null);
    assert.deepEqual(parseScope('registry:catalog:*'), { type: 'registry', name: 'catalog', actions: ['*'] });
    assert.equal(parseScope('registry:catalog:pull'), null);
    assert.equal(parseScope('registry:other:*'), null);
    assert.deepEqual(parseScope(ADMIN_SCOPE), { type: 'registry', name: 'admin', actions: ['*'] });
    assert.equal(parseScope('registry:admin:pull'), null);
    assert.equal(
      parseScope('repository:admin:*')?.type,
      'repository',
      'a repository named admin is a repository',
    );
  });

  it('drops resource classes and types we do not serve', () => {
    assert.equal(parseScope('repository(plugin):a:pull'), null);
    assert.equal(parseScope('blob:a:pull'), null);
  });

  it('refuses names that are not repository names instead of reading them loosely', () => {
    for (const s of [
      'repository:team-a/*:pull',
      'repository:team-a/**:pull',
      'repository:*:pull',
      'repository:a:pull:push', // extra colon ends up in the name
      'repository:localhost:5000/a:pull',
      'repository:../a:pull',
      'repository:a/../b:pull',
      'repository:A:pull',
      'repository::pull',
      `repository:${'a'.repeat(256)}:pull`,
    ]) {
      assert.throws(
        () => parseScope(s),
        (e: unknown) => e instanceof GateError && e.status === 400,
        s,
      );
    }
  });

  it('refuses malformed scopes: NUL, spaces, no colons, bad action syntax, overlong', () => {
    for (const s of [
      'repository:a\u0000b:pull',
      'repository:a:pull\u0000',
      'repository',
      'repository:a',
      ':a:pull',
      'repository:a:PULL',
      'repository:a:pull;push',
      'repository:a:pu*ll',
      `repository:a:${'pull,'.repeat(200)}pull`,
    ]) {
      assert.throws(() => parseScope(s), GateError, JSON.stringify(s));
    }
  });

  it('parseScopes splits space-separated lists and refuses too many scopes', () => {
    assert.equal(parseScopes(['repository:a:pull repository:b:push', '']).length, 2);
    assert.throws(
      () => parseScopes(Array.from({ length: MAX_SCOPES + 1 }, (_, i) => `repository:a${i}:pull`)),
      /too many scopes/,
    );
  });
});

describe('grantScopes (intersection)', () => {
  it('asking for more gets only what policy allows', () => {
    assert.deepEqual(grant(['repository:team-a/app:pull,push,delete'], bob), [
      { type: 'repository', name: 'team-a/app', actions: ['pull'] },
    ]);
    assert.deepEqual(grant(['repository:team-a/app:*'], alice), [
      { type: 'repository', name: 'team-a/app', actions: ['pull', 'push'] },
    ]);
  });

  it('widening attempts grant nothing extra', () => {
    assert.deepEqual(grant(['repository:team-b/x:pull'], alice), []);
    assert.deepEqual(grant(['repository:team-a:pull'], alice), []); // team-a/** is not team-a
    assert.deepEqual(grant(['repository(plugin):team-a/app:push'], bob), []);
    assert.throws(() => grant(['repository:team-a/*:push'], bob), GateError);
  });

  it('merges repeated scopes for one repository', () => {
    assert.deepEqual(grant(['repository:team-a/app:pull', 'repository:team-a/app:push'], alice), [
      { type: 'repository', name: 'team-a/app', actions: ['pull', 'push'] },
    ]);
  });

  it('anonymous: only what anonymous may pull, never the catalog', () => {
    assert.deepEqual(
      grant(['repository:public/x:pull,push', 'repository:team-a/app:pull', 'registry:catalog:*'], anon),
      [{ type: 'repository', name: 'public/x', actions: ['pull'] }],
    );
    assert.deepEqual(grant(['registry:catalog:*'], bob), [
      { type: 'registry', name: 'catalog', actions: ['*'] },
    ]);
  });

  it('property: the grant never exceeds the request nor the policy', () => {
    const repo = fc.constantFrom('team-a/app', 'team-a/x/y', 'team-a', 'public/p', 'public/p/q', 'other');
    const acts = fc.subarray(['pull', 'push', 'delete', '*', 'bogus'], { minLength: 1 });
    const id = fc.constantFrom(alice, bob, anon, policy.identityFor('mallory', 'user'));
    fc.assert(
      fc.property(fc.array(fc.tuple(repo, acts), { maxLength: 6 }), id, (req, who) => {
        const scopes = req.map(([r, a]) => `repository:${r}:${a.join(',')}`);
        const granted = grant(scopes, who);
        for (const g of granted) {
          const allowed = policy.allowedActions(who, g.name);
          for (const a of g.actions) {
            assert.ok(allowed.has(a as 'pull'), `${who.subject} ${a} ${g.name}`);
            assert.ok(
              req.some(([r, as]) => r === g.name && (as.includes(a) || as.includes('*'))),
              `not requested: ${a} ${g.name}`,
            );
          }
        }
      }),
    );
  });
});

describe('accessAllows and formatChallengeScope', () => {
  it('exact names only', () => {
    const access = [{ type: 'repository' as const, name: 'team-a/app', actions: ['pull'] }];
    assert.equal(accessAllows(access, 'team-a/app', 'pull'), true);
    assert.equal(accessAllows(access, 'team-a/app', 'push'), false);
    assert.equal(accessAllows(access, 'team-a/app2', 'pull'), false);
    assert.equal(accessAllows(access, 'team-a', 'pull'), false);
    assert.equal(accessAllows(access, 'team-a/app', 'pull', 'registry'), false);
  });

  it('formats challenges in canonical order and refuses bad input', () => {
    assert.equal(formatChallengeScope('a/b', ['push', 'pull']), 'repository:a/b:pull,push');
    assert.equal(formatChallengeScope('a', new Set(['delete'] as const)), 'repository:a:delete');
    assert.throws(() => formatChallengeScope('A"', ['pull']), TypeError);
    assert.throws(() => formatChallengeScope('a', []), TypeError);
  });
});

describe('the admin scope', () => {
  const root = policy.identityFor('root', 'user');
  const ADMIN_GRANT = [{ type: 'registry', name: 'admin', actions: ['*'] }];

  it('is granted to admins only (intersection), never to anonymous', () => {
    assert.deepEqual(grant([ADMIN_SCOPE], root), ADMIN_GRANT);
    assert.deepEqual(grant([ADMIN_SCOPE, ADMIN_SCOPE], root), ADMIN_GRANT);
    for (const who of [alice, bob, anon, policy.identityFor('root', 'anonymous')]) {
      assert.deepEqual(grant([ADMIN_SCOPE], who), [], who.subject);
    }
    // An admin's registry scopes never include it.
    assert.deepEqual(grant(['registry:catalog:*', 'repository:team-a/app:*'], root), [
      { type: 'registry', name: 'catalog', actions: ['*'] },
    ]);
  });

  it('is asked for alone: mixed with registry scopes the request is refused (400)', () => {
    assert.equal(tokenRequestUse(parseScopes([ADMIN_SCOPE])), 'admin');
    assert.equal(tokenRequestUse(parseScopes([])), 'registry');
    assert.equal(tokenRequestUse(parseScopes(['repository:a:pull', 'registry:catalog:*'])), 'registry');
    // A look-alike the parser drops does not make the request an admin one.
    assert.equal(tokenRequestUse(parseScopes(['registry:admin:pull', 'repository:a:pull'])), 'registry');
    for (const mixed of [
      [ADMIN_SCOPE, 'repository:a:pull'],
      ['registry:catalog:*', ADMIN_SCOPE],
      [`repository:a:pull ${ADMIN_SCOPE}`],
    ]) {
      assert.throws(
        () => tokenRequestUse(parseScopes(mixed)),
        (e: unknown) => e instanceof GateError && e.status === 400 && /asked for alone/.test(e.message),
      );
    }
  });

  it('a grant is for one API; isAdminGrant is exact', () => {
    assert.equal(grantUse([]), 'registry');
    assert.equal(grantUse(grant(['repository:team-a/app:pull'], alice)), 'registry');
    assert.equal(grantUse(grant([ADMIN_SCOPE], root)), 'admin');
    assert.throws(
      () => grantUse([...grant([ADMIN_SCOPE], root), ...grant(['registry:catalog:*'], root)]),
      TypeError,
    );
    assert.equal(isAdminGrant(grant([ADMIN_SCOPE], root)), true);
    assert.equal(isAdminGrant([]), false);
    assert.equal(isAdminGrant([{ type: 'registry', name: 'admin', actions: ['*', '*'] }]), false);
    assert.equal(isAdminGrant([{ type: 'repository', name: 'admin', actions: ['*'] }]), false);
  });

  it('refresh tokens mint for their own API only', () => {
    checkRefreshUse('registry', 'registry');
    checkRefreshUse('admin', 'admin');
    assert.throws(() => checkRefreshUse('registry', 'admin'), /cannot mint an admin API token/);
    assert.throws(() => checkRefreshUse('admin', 'registry'), /issued for the admin API/);
  });

  it('admin API access: admin credential of an admin; a registry token is 401 insufficient scope; a non-admin 403', () => {
    assert.equal(adminAccess('admin-token', true), 'allow');
    assert.equal(adminAccess('mtls', true), 'allow');
    assert.equal(adminAccess('registry-token', true), 'insufficient-scope');
    for (const c of ['admin-token', 'mtls', 'registry-token'] as const)
      assert.equal(adminAccess(c, false), 'not-admin');
    assert.equal(adminAccess('none', false), 'unauthenticated');
    assert.equal(adminAccess('none', true), 'unauthenticated');
  });
});
