/**
 * The Authenticator's decisions, with a real token service and a policy that changes under it.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import type http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ClientCaAnchors } from '../../src/auth/mtls.js';
import { loadOrCreateTokenKeys } from '../../src/auth/token-keys.js';
import { TokenService } from '../../src/auth/tokens.js';
import { compilePolicy, type Policy } from '../../src/core/policy.js';
import { Authenticator } from '../../src/server/authenticate.js';

const quiet = { info: () => {}, warn: () => {} };
const withAccess = (pull: string[]) =>
  compilePolicy({ admins: [], groups: {}, access: [{ repos: ['team/*'], pull, push: [], delete: [] }] });

describe('Authenticator', () => {
  let dir: string;
  let tokens: TokenService;
  let policy: Policy;
  let auth: Authenticator;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'tg-authn-'));
    const keys = await loadOrCreateTokenKeys(path.join(dir, 'token'), quiet);
    tokens = new TokenService({
      keys,
      issuer: 'trustgate',
      service: 'trustgate',
      ttlSeconds: 300,
      refreshTtlSeconds: 600,
    });
    policy = withAccess(['alice']);
    auth = new Authenticator({
      tokens,
      policy: () => policy,
      mtlsIdentity: 'CN',
      clientCa: new ClientCaAnchors(),
    });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const request = (token: string): http.IncomingMessage =>
    ({
      headers: { authorization: `Bearer ${token}` },
      rawHeaders: ['Authorization', `Bearer ${token}`],
      socket: {},
    }) as unknown as http.IncomingMessage;

  it('a token stops granting what the current policy no longer allows (no wait for expiry)', async () => {
    policy = withAccess(['alice']);
    const alice = policy.identityFor('alice', 'user');
    const issued = await tokens.issue(
      alice,
      [{ type: 'repository', name: 'team/app', actions: ['pull'] }],
      new Date(),
    );
    const before = await auth.authenticate(request(issued.token));
    assert.equal(before.can('pull', 'team/app'), true);
    policy = withAccess(['bob']);
    const afterChange = await auth.authenticate(request(issued.token));
    assert.equal(afterChange.can('pull', 'team/app'), false, 'the grant is cut by the current policy');
    policy = withAccess(['alice']);
  });

  it('the catalog needs the registry:catalog:* grant in the token', async () => {
    const alice = policy.identityFor('alice', 'user');
    const plain = await tokens.issue(
      alice,
      [{ type: 'repository', name: 'team/app', actions: ['pull'] }],
      new Date(),
    );
    const catalog = await tokens.issue(
      alice,
      [{ type: 'registry', name: 'catalog', actions: ['*'] }],
      new Date(),
    );
    assert.equal((await auth.authenticate(request(plain.token))).canCatalog(), false);
    assert.equal((await auth.authenticate(request(catalog.token))).canCatalog(), true);
  });
});
