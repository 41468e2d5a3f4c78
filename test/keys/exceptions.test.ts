/**
 * Vulnerability exceptions: the store (a JSON file the admin API writes and every replica re-reads)
 * and the admin API endpoints (admin only, audited, expired ones reported).
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { ExceptionStore } from '../../src/keys/exceptions.js';
import { GateError } from '../../src/core/errors.js';
import { createLogger } from '../../src/server/log.js';
import { startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';
import { bearer, getToken, request } from '../helpers/http.js';

const quiet = { error: () => undefined };

describe('exception store', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tg-exceptions-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  let t = Date.parse('2026-12-01T00:00:00Z');
  const now = () => new Date(t);

  it('adds, lists (active, then expired), and removes; a second store on the same file sees it', async () => {
    const file = path.join(dir, 'a.json');
    const s = new ExceptionStore(file, quiet, now);
    const other = new ExceptionStore(file, quiet, now);
    const e = await s.add({ cve: 'cve-2026-1', repos: ['prod/**'], expires: '2026-12-02T00:00:00Z', reason: 'not reachable' }, 'alice');
    assert.equal(e.cve, 'CVE-2026-1');
    assert.equal(e.by, 'alice');
    other.reload();
    assert.deepEqual(other.current().map((x) => x.id), [e.id]);
    assert.equal(s.list()[0]!.status, 'active');
    t = Date.parse('2026-12-03T00:00:00Z');
    assert.equal(s.list()[0]!.status, 'expired');
    await s.remove(e.id);
    assert.deepEqual(s.current(), []);
    await assert.rejects(s.remove(e.id), (err: unknown) => err instanceof GateError && err.status === 404);
  });

  it('refuses bad input: no zone, past, over a year, bad pattern, empty reason, bad id', async () => {
    t = Date.parse('2026-12-01T00:00:00Z');
    const s = new ExceptionStore(path.join(dir, 'b.json'), quiet, now);
    const base = { cve: 'CVE-2026-2', repos: ['prod/**'], expires: '2026-12-02T00:00:00Z', reason: 'r' };
    for (const bad of [
      { expires: '2026-12-02T00:00:00' },
      { expires: '2026-11-30T00:00:00Z' },
      { expires: '2028-12-02T00:00:00Z' },
      { repos: ['Prod/**'] },
      { repos: [] },
      { reason: '  ' },
      { cve: '../etc' },
    ]) {
      await assert.rejects(s.add({ ...base, ...bad }, 'a'), (err: unknown) => err instanceof GateError && err.status === 400, JSON.stringify(bad));
    }
  });

  it('fails closed: an unreadable or invalid file grants no exception', () => {
    const file = path.join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ exceptions: [{ id: 'x', cve: 'CVE-1-1' }] }));
    const errors: string[] = [];
    const s = new ExceptionStore(file, { error: (_o, m) => errors.push(m) }, now);
    assert.deepEqual(s.current(), []);
    assert.match(errors[0] ?? '', /no exception applies/);
    writeFileSync(file, '{"exceptions": [');
    chmodSync(file, 0o600);
    s.reload();
    assert.deepEqual(s.current(), []);
  });
});

describe('admin API: exceptions', { timeout: 120_000 }, () => {
  let registry: RegistryHandle;
  let gate: TestGate;
  const lines: string[] = [];
  before(async () => {
    registry = await startRegistry();
    gate = await startTestGate({
      registryUrl: registry.url,
      users: { admin: 'admin-password-1', consumer: 'consumer-password' },
      policy: { admins: ['admin'], access: [{ repos: ['**'], pull: ['consumer'], push: [], delete: [] }] },
      logger: createLogger(
        'info',
        new Writable({
          write(chunk: Buffer, _e, cb) {
            lines.push(...chunk.toString().split('\n').filter(Boolean));
            cb();
          },
        }),
      ),
    });
  });
  after(async () => {
    await gate?.close();
    await registry?.stop();
  });

  const call = async (user: string, password: string, method: string, p: string, body?: unknown) => {
    const t = await getToken(gate.url, gate.ca, user, password, ['registry:admin:*']);
    return request(gate.url, gate.ca, {
      method,
      path: `/admin/v1${p}`,
      headers: { ...bearer(t), ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: Buffer.from(JSON.stringify(body)) } : {}),
    });
  };

  it('add, list and remove are admin only and audited; invalid bodies name the field', async () => {
    const expires = new Date(Date.now() + 86_400_000).toISOString();
    const denied = await call('consumer', 'consumer-password', 'POST', '/exceptions', { cve: 'CVE-2026-9', repos: ['a/**'], expires, reason: 'r' });
    assert.equal(denied.status, 403);
    const bad = await call('admin', 'admin-password-1', 'POST', '/exceptions', { cve: 'CVE-2026-9', repos: ['a/**'], expires });
    assert.equal(bad.status, 400);
    assert.match(bad.body.toString(), /reason/);
    const added = await call('admin', 'admin-password-1', 'POST', '/exceptions', { cve: 'CVE-2026-9', repos: ['a/**'], expires, reason: 'vendor fix pending' });
    assert.equal(added.status, 201, added.body.toString());
    const { id } = JSON.parse(added.body.toString()) as { id: string };
    const list = JSON.parse((await call('admin', 'admin-password-1', 'GET', '/exceptions')).body.toString()) as { active: number; exceptions: Array<{ id: string; by: string }> };
    assert.equal(list.active, 1);
    assert.equal(list.exceptions[0]!.by, 'admin');
    const removed = await call('admin', 'admin-password-1', 'DELETE', `/exceptions/${id}`);
    assert.equal(removed.status, 200);
    const audit = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e['audit'] === 'admin');
    assert.deepEqual(audit.map((e) => [e['change'], e['target']]), [['exception.add', id], ['exception.remove', id]]);
  });
});
