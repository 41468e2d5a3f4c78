/**
 * `trustgate keys|users|robots …` against a real trustgate (and registry:2): with an admin's
 * password the CLI gets an admin-scoped token (`registry:admin:*`) from /token by itself; with an
 * admin client certificate it needs none; a non-admin gets the server's 403; and the CLI's own
 * registry tokens of the same session never open the admin API.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { keysCommand, robotsCommand, usersCommand } from '../../src/cli/admin.js';
import { generateKeyPair } from '../../src/core/signature/sign.js';
import { RegistryClient } from '../../src/cli/registry-client.js';
import { startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';
import { memoryIo } from './support.js';

const ADMIN = { TRUSTGATE_USERNAME: 'admin', TRUSTGATE_PASSWORD: 'admin-password-1' };
const CONSUMER = { TRUSTGATE_USERNAME: 'consumer', TRUSTGATE_PASSWORD: 'consumer-password' };

describe('cli: keys, users and robots through the admin API', { timeout: 120_000 }, () => {
  let registry: RegistryHandle;
  let gate: TestGate;
  let pemFile: string;
  let certFile: string;
  let keyFile: string;

  before(async () => {
    registry = await startRegistry();
    gate = await startTestGate({
      registryUrl: registry.url,
      users: { admin: ADMIN.TRUSTGATE_PASSWORD, consumer: CONSUMER.TRUSTGATE_PASSWORD },
      policy: {
        admins: ['admin', 'mtls:CN=build-01'],
        access: [{ repos: ['**'], pull: ['consumer', 'admin'], push: [], delete: [] }],
      },
      mtls: true,
      robots: true,
    });
    pemFile = path.join(gate.dir, 'release.pub');
    writeFileSync(pemFile, generateKeyPair('ed25519').publicKeyPem);
    certFile = path.join(gate.dir, 'client.cert');
    keyFile = path.join(gate.dir, 'client.key');
    writeFileSync(certFile, gate.clientCert!.cert);
    writeFileSync(keyFile, gate.clientCert!.key);
  });
  after(async () => {
    await gate?.close();
    await registry?.stop();
  });

  const conn = (): string[] => ['--server', gate.host, '--ca-file', path.join(gate.certDir, 'ca.crt')];
  const run = async (
    cmd: typeof keysCommand,
    argv: string[],
    env: NodeJS.ProcessEnv,
    stdin?: string,
  ): Promise<{ code: number; out: string; err: string }> => {
    const m = memoryIo(env);
    if (stdin !== undefined) {
      m.type(stdin);
      (m.io.stdin as unknown as PassThrough).end();
    }
    const code = await cmd(argv, m.io);
    return { code, out: m.out(), err: m.err() };
  };

  it('with an admin password: keys add/list, users add/list/remove, robots add/remove', async () => {
    const add = await run(keysCommand, ['add', 'release', '--pem', pemFile, ...conn()], ADMIN);
    assert.equal(add.code, 0, add.err);
    assert.match(add.out, /^added release\s+active\s+ed25519/);
    const list = await run(keysCommand, ['list', '--json', ...conn()], ADMIN);
    assert.equal(list.code, 0, list.err);
    assert.deepEqual(
      (JSON.parse(list.out) as { keys: Array<{ name: string }> }).keys.map((k) => k.name),
      ['release'],
    );
    const user = await run(usersCommand, ['add', 'carol', ...conn()], ADMIN, 'carol-password-1\n');
    assert.equal(user.code, 0, user.err);
    const users = await run(usersCommand, ['list', ...conn()], ADMIN);
    assert.equal(users.code, 0, users.err);
    assert.match(users.out, /^carol$/m);
    const robot = await run(robotsCommand, ['add', 'ci', ...conn()], ADMIN);
    assert.equal(robot.code, 0, robot.err);
    assert.match(robot.out, /^login: {2}robot\$ci\nsecret: [A-Za-z0-9_-]{43}\n/);
    assert.equal((await run(robotsCommand, ['remove', 'ci', ...conn()], ADMIN)).code, 0);
    assert.equal((await run(usersCommand, ['remove', 'carol', ...conn()], ADMIN)).code, 0);
  });

  it('with an admin client certificate and no password', async () => {
    const r = await run(
      keysCommand,
      ['list', '--client-cert', certFile, '--client-key', keyFile, ...conn()],
      {},
    );
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^release\s+active/m);
  });

  it('a non-admin gets the server refusal (403), not a challenge loop', async () => {
    const r = await run(keysCommand, ['list', ...conn()], CONSUMER);
    assert.equal(r.code, 1);
    assert.match(r.err, /403 DENIED: consumer is not an admin/);
  });

  it('the client asks for registry:admin:* on its own and keeps it apart from its registry tokens', async () => {
    const client = new RegistryClient({
      baseUrl: gate.url,
      ca: [gate.ca],
      username: ADMIN.TRUSTGATE_USERNAME,
      password: ADMIN.TRUSTGATE_PASSWORD,
    });
    try {
      assert.ok(await client.ping(), 'a registry token first (docker login style, no scope)');
      const before = client.tokenRequests;
      const keys = (await client.adminRequest('GET', '/admin/v1/keys')) as { keys: unknown[] };
      assert.equal(keys.keys.length, 1);
      assert.equal(client.tokenRequests, before + 1, 'one token request, for the admin scope');
      await client.adminRequest('GET', '/admin/v1/users');
      assert.equal(client.tokenRequests, before + 1, 'the admin token is reused');
      assert.ok(await client.ping(), 'and the registry token still works on /v2');
    } finally {
      client.close();
    }
  });
});
