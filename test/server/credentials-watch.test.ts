/**
 * The credential files are checked every second. A file that disappears (deleted, or moved away
 * by hand) must neither crash trustgate nor keep the accounts it held: nobody signs in until the
 * file is back.
 */
import assert from 'node:assert/strict';
import { renameSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';
import { getToken, request } from '../helpers/http.js';

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 1500));

describe('credential files watch', { timeout: 60_000 }, () => {
  let registry: RegistryHandle;
  let gate: TestGate;

  before(async () => {
    registry = await startRegistry();
    gate = await startTestGate({ registryUrl: registry.url, users: { alice: 'alice-password-1' } });
  });
  after(async () => {
    await gate?.close();
    await registry?.stop();
  });

  it('a vanished htpasswd file accepts nobody and does not crash; its return restores sign-in', async () => {
    await getToken(gate.url, gate.ca, 'alice', 'alice-password-1', []);
    const file = path.join(gate.dir, 'htpasswd');
    renameSync(file, `${file}.away`);
    await settle();
    await assert.rejects(getToken(gate.url, gate.ca, 'alice', 'alice-password-1', []), /401/);
    assert.equal((await request(gate.url, gate.ca, { path: '/healthz' })).status, 200);
    renameSync(`${file}.away`, file);
    await settle();
    await getToken(gate.url, gate.ca, 'alice', 'alice-password-1', []);
  });
});
