/**
 * Two replicas changing the same shared files at once (the admin API on each, one volume): a
 * read-modify-write on one must not undo the other's change. These reproduce the lost updates
 * that a per-process queue allowed: a revocation undone by a concurrent rotate, a removed user
 * written back by a concurrent add.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { Keyring, type KeyringLogger } from '../../src/keys/keyring.js';
import { KeyStore } from '../../src/keys/store.js';
import { AccountFiles } from '../../src/server/accounts.js';

const silent: KeyringLogger = { info: () => undefined, warn: () => undefined, error: () => undefined };
const pem = (): string =>
  generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }).toString();

describe('admin changes from two replicas sharing files', () => {
  const dirs: string[] = [];
  const fresh = (p: string): string => {
    const d = mkdtempSync(path.join(tmpdir(), p));
    dirs.push(d);
    return d;
  };
  after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  it('a revocation on one replica survives a concurrent rotation on the other', async () => {
    for (let i = 0; i < 5; i++) {
      const dir = fresh('keys-race-');
      const [ringA, ringB] = [new Keyring(dir, silent), new Keyring(dir, silent)];
      const [a, b] = [new KeyStore(ringA), new KeyStore(ringB)];
      await a.add({ name: 'release', pem: pem() }, 'admin');
      ringB.reload();
      await Promise.all([
        a.rotate('release', { pem: pem() }, 'alice'),
        b.revoke('release', 'bob', 'compromised'),
      ]);
      const meta = JSON.parse(readFileSync(path.join(dir, 'release.meta.json'), 'utf8')) as {
        revoked?: boolean;
      };
      assert.equal(meta.revoked, true, `round ${i}: the revocation was lost`);
      ringA.reload();
      assert.equal(ringA.snapshot.keys.get('release')?.revoked, true);
    }
  });

  it('a user removed on one replica stays removed while another adds a user', async () => {
    for (let i = 0; i < 20; i++) {
      const file = path.join(fresh('accounts-race-'), 'htpasswd');
      writeFileSync(file, 'mallory:$2y$04$abcdefghijklmnopqrstuu5Jq1mP1Zb9QeA5Hkq7r3n0Qy6m9B2yG\n');
      const o = { htpasswd: () => file, robotsFile: () => undefined, cost: 4 };
      const [a, b] = [new AccountFiles(o), new AccountFiles(o)];
      await Promise.all([a.addUser(`carol${i}`, 'correct horse battery'), b.remove('user', 'mallory')]);
      const text = readFileSync(file, 'utf8');
      assert.doesNotMatch(text, /^mallory:/m, `round ${i}: mallory is back`);
      assert.match(text, new RegExp(`^carol${i}:`, 'm'), `round ${i}: carol was lost`);
    }
  });

  it('a lock left by a writer that died is broken after 30 s, not waited on forever', async () => {
    const file = path.join(fresh('accounts-stale-'), 'htpasswd');
    writeFileSync(file, '');
    writeFileSync(`${file}.lock`, '999999\n');
    const old = Date.now() / 1000 - 60;
    utimesSync(`${file}.lock`, old, old);
    await new AccountFiles({ htpasswd: () => file, robotsFile: () => undefined, cost: 4 }).addUser(
      'dave',
      'correct horse battery',
    );
    assert.match(readFileSync(file, 'utf8'), /^dave:/m);
  });
});
