/**
 * Adversarial review of the `cold` change (issues 13 and 18): the issued-token memory
 * (auth/tokens.ts). The token service is exercised directly (it does no I/O).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadOrCreateTokenKeys } from '../../src/auth/token-keys.js';
import { TokenService } from '../../src/auth/tokens.js';
import { GateError } from '../../src/core/errors.js';
import type { AccessClaim } from '../../src/core/scope.js';
import type { Identity } from '../../src/core/types.js';

function refused(p: Promise<unknown>): Promise<void> {
  return assert.rejects(p, (e: unknown) => e instanceof GateError && e.status === 401);
}

describe('review-cold: issued-token memory', () => {
  const log = { info: () => undefined, warn: () => undefined };
  const alice: Identity = { subject: 'alice', kind: 'user', groups: [] };
  const access: AccessClaim[] = [{ type: 'repository', name: 'team-a/app', actions: ['pull'] }];
  const NOW = new Date('2026-05-01T12:00:00Z');
  const opts = { issuer: 'trustgate', service: 'registry.test', ttlSeconds: 300, refreshTtlSeconds: 3600 };
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'tg-review-cold-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('fixed (a reload during the signing left the token remembered under the new settings): a token signed across configure() or setKeys() is verified, not known', async () => {
    const s = new TokenService({ keys: await loadOrCreateTokenKeys(path.join(dir, 'a'), log), ...opts });
    // The signing is asynchronous: the reload lands while it runs (a SIGHUP during a token request).
    const pending = s.issue(alice, access, NOW);
    s.configure({ ...opts, service: 'other.test' });
    const t = (await pending).token;
    // Signed for registry.test; the service is other.test now: full verification refuses it.
    await refused(s.verifyAccessToken(t, NOW));
    // Keys: a token signed with a key withdrawn by a reload during the signing.
    s.configure(opts);
    const pending2 = s.issue(alice, access, NOW);
    s.setKeys(await loadOrCreateTokenKeys(path.join(dir, 'b'), log));
    const u = (await pending2).token;
    await refused(s.verifyAccessToken(u, NOW));
  });

  it('HELD: a remembered token altered in any way (padding, trailing data, case, header, payload) is verified and refused', async () => {
    const s = new TokenService({ keys: await loadOrCreateTokenKeys(path.join(dir, 'c'), log), ...opts });
    const t = (await s.issue(alice, access, NOW)).token;
    const [h, p, sig] = t.split('.') as [string, string, string];
    const upper = (x: string): string => x.replace(/[a-z]/, (c) => c.toUpperCase());
    for (const altered of [
      `${t}=`,
      `${t}.`,
      `${upper(h)}.${p}.${sig}`,
      `${h}.${upper(p)}.${sig}`,
      `${h}.${p}.${upper(sig)}`,
      `${h}.${p}.`,
    ]) {
      await refused(s.verifyAccessToken(altered, NOW));
    }
    // The original is still known; another replica (same keys, no memory) verifies it fully.
    assert.equal((await s.verifyAccessToken(t, NOW)).subject, 'alice');
    const replica = new TokenService({
      keys: await loadOrCreateTokenKeys(path.join(dir, 'c'), log),
      ...opts,
    });
    assert.equal((await replica.verifyAccessToken(t, NOW)).subject, 'alice');
    await refused(
      new TokenService({
        ...opts,
        keys: await loadOrCreateTokenKeys(path.join(dir, 'c'), log),
        service: 'x.test',
      }).verifyAccessToken(t, NOW),
    );
  });
});
