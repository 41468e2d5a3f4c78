/**
 * The keyring's periodic check reads and hashes the key directory every second; parsing the keys
 * (about a millisecond per Ed25519 key) happens only when the content changed.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { generateKeyPair } from '../../src/core/signature/sign.js';
import { Keyring, parseKeyDir, type KeyDirContent, type KeyringLogger } from '../../src/keys/keyring.js';

const silent: KeyringLogger = { info: () => undefined, warn: () => undefined, error: () => undefined };

describe('keyring', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'keyring-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('an unchanged directory is not parsed again; a changed one is, once', () => {
    writeFileSync(path.join(dir, 'release.pub'), generateKeyPair('ed25519').publicKeyPem);
    let parses = 0;
    const counting = (c: KeyDirContent) => {
      parses++;
      return parseKeyDir(c);
    };
    const ring = new Keyring(dir, silent, 1000, counting);
    assert.equal(parses, 1);
    assert.deepEqual([...ring.snapshot.keys.keys()], ['release']);
    for (let i = 0; i < 3; i++) assert.equal(ring.reload(), false);
    assert.equal(parses, 1, 'no parse without a change');

    writeFileSync(path.join(dir, 'backup.pub'), generateKeyPair('ecdsa-p256').publicKeyPem);
    assert.equal(ring.reload(), true);
    assert.equal(parses, 2);
    assert.deepEqual([...ring.snapshot.keys.keys()].sort(), ['backup', 'release']);
    assert.equal(ring.reload(), false);
    assert.equal(parses, 2);

    // A meta change is a change; a broken key is reported and not trusted.
    writeFileSync(path.join(dir, 'release.meta.json'), JSON.stringify({ revoked: true }));
    writeFileSync(path.join(dir, 'broken.pub'), 'not a key');
    assert.equal(ring.reload(), true);
    assert.equal(ring.snapshot.keys.get('release')?.revoked, true);
    assert.equal(ring.snapshot.keys.has('broken'), false);
    assert.ok(ring.snapshot.errors.some((e) => e.file === 'broken.pub'));
  });
});
