/**
 * The blob relay bounds (issue 12, item 4: upstream pool starvation), pure: which bound refuses,
 * with which OCI code, status and Retry-After; releases; and, as a property, that no sequence of
 * starts and releases ever exceeds a bound or leaves a count behind.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { GateError } from '../../src/core/errors.js';
import { RelayLimiter, type RelayClaim } from '../../src/core/relay-limits.js';

const claim = (identity: string, address: string, credentialed = true): RelayClaim => ({
  identity,
  credentialed,
  address,
});

describe('core: relay limits', () => {
  it('refuses past the identity bound with 429 TOOMANYREQUESTS and Retry-After', () => {
    const l = new RelayLimiter({ global: 10, perIdentity: 2, perAddress: 5 });
    assert.ok(l.tryStart(claim('alice', 'a:1')).ok);
    assert.ok(l.tryStart(claim('alice', 'a:2')).ok);
    const d = l.tryStart(claim('alice', 'a:3'));
    assert.ok(!d.ok);
    assert.equal(d.bound, 'identity');
    assert.ok(d.error instanceof GateError);
    assert.equal(d.error.code, 'TOOMANYREQUESTS');
    assert.equal(d.error.status, 429);
    assert.equal(d.error.headers['Retry-After'], '5');
    assert.match(d.error.message, /alice: 2 are in progress, the limit per identity is 2/);
    assert.deepEqual(d.error.toBody().errors[0]?.code, 'TOOMANYREQUESTS');
    // Another identity is not affected.
    assert.ok(l.tryStart(claim('bob', 'a:3')).ok);
    assert.equal(l.active, 3);
  });

  it('refuses past the address bound with 429, whoever asks', () => {
    const l = new RelayLimiter({ global: 10, perIdentity: 5, perAddress: 2, retryAfterSeconds: 3 });
    assert.ok(l.tryStart(claim('alice', 'a:1')).ok);
    assert.ok(l.tryStart(claim('bob', 'a:1')).ok);
    const d = l.tryStart(claim('carol', 'a:1'));
    assert.ok(!d.ok);
    assert.equal(d.bound, 'address');
    assert.equal(d.error.status, 429);
    assert.equal(d.error.headers['Retry-After'], '3');
    assert.doesNotMatch(d.error.message, /a:1/, 'the address key is not echoed');
    assert.ok(l.tryStart(claim('carol', 'a:2')).ok);
  });

  it('refuses past the global bound with 503 UNAVAILABLE and Retry-After', () => {
    const l = new RelayLimiter({ global: 2, perIdentity: 5, perAddress: 5 });
    assert.ok(l.tryStart(claim('alice', 'a:1')).ok);
    assert.ok(l.tryStart(claim('bob', 'a:2')).ok);
    const d = l.tryStart(claim('carol', 'a:3'));
    assert.ok(!d.ok);
    assert.equal(d.bound, 'global');
    assert.equal(d.error.code, 'UNAVAILABLE');
    assert.equal(d.error.status, 503);
    assert.equal(d.error.headers['Retry-After'], '5');
  });

  it("the caller's own bound is named before the global one", () => {
    const l = new RelayLimiter({ global: 2, perIdentity: 2, perAddress: 5 });
    assert.ok(l.tryStart(claim('alice', 'a:1')).ok);
    assert.ok(l.tryStart(claim('alice', 'a:1')).ok);
    const d = l.tryStart(claim('alice', 'a:1'));
    assert.ok(!d.ok);
    assert.equal(d.bound, 'identity');
  });

  it('anonymous callers are bounded per address and globally, not as one shared identity', () => {
    const l = new RelayLimiter({ global: 10, perIdentity: 1, perAddress: 2 });
    assert.ok(l.tryStart(claim('anonymous', 'a:1', false)).ok);
    assert.ok(l.tryStart(claim('anonymous', 'a:2', false)).ok, 'a second anonymous client elsewhere');
    assert.ok(l.tryStart(claim('anonymous', 'a:1', false)).ok);
    const d = l.tryStart(claim('anonymous', 'a:1', false));
    assert.ok(!d.ok);
    assert.equal(d.bound, 'address');
    assert.equal(l.activeFor('anonymous'), 0);
  });

  it('release frees the slot once, however often it is called', () => {
    const l = new RelayLimiter({ global: 1, perIdentity: 1, perAddress: 1 });
    const a = l.tryStart(claim('alice', 'a:1'));
    assert.ok(a.ok);
    assert.ok(!l.tryStart(claim('bob', 'a:2')).ok);
    a.release();
    a.release();
    assert.equal(l.active, 0);
    assert.equal(l.activeFor('alice'), 0);
    assert.equal(l.activeFrom('a:1'), 0);
    const b = l.tryStart(claim('bob', 'a:2'));
    assert.ok(b.ok);
    assert.ok(!l.tryStart(claim('carol', 'a:3')).ok, 'the double release did not make room for two');
  });

  it('bounds are validated at once', () => {
    assert.throws(() => new RelayLimiter({ global: 0, perIdentity: 1, perAddress: 1 }), TypeError);
    assert.throws(() => new RelayLimiter({ global: 1, perIdentity: 1.5, perAddress: 1 }), /perIdentity/);
    assert.throws(
      () => new RelayLimiter({ global: 1, perIdentity: 1, perAddress: 1, retryAfterSeconds: -1 }),
      /retryAfterSeconds/,
    );
  });

  it('property: no sequence of starts and releases exceeds a bound or leaves a count behind', () => {
    const op = fc.oneof(
      fc.record({
        start: fc.constant(true),
        who: fc.constantFrom('alice', 'bob', 'carol', 'anonymous'),
        at: fc.constantFrom('a:1', 'a:2', 'a:3'),
      }),
      fc.record({ start: fc.constant(false), pick: fc.nat(), twice: fc.boolean() }),
    );
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 4 }),
        fc.array(op, { maxLength: 60 }),
        (global, perIdentity, perAddress, ops) => {
          const l = new RelayLimiter({ global, perIdentity, perAddress });
          const held: Array<{ release: () => void; who: string; at: string }> = [];
          for (const o of ops) {
            if ('who' in o) {
              const credentialed = o.who !== 'anonymous';
              const d = l.tryStart(claim(o.who, o.at, credentialed));
              const byWho = held.filter((h) => h.who === o.who).length;
              const byAt = held.filter((h) => h.at === o.at).length;
              const fits =
                (!credentialed || byWho < perIdentity) && byAt < perAddress && held.length < global;
              assert.equal(d.ok, fits);
              if (d.ok) held.push({ release: d.release, who: o.who, at: o.at });
            } else if (held.length > 0) {
              const [h] = held.splice(o.pick % held.length, 1);
              h!.release();
              if (o.twice) h!.release();
            }
            assert.equal(l.active, held.length);
          }
          for (const h of held.splice(0)) h.release();
          assert.equal(l.active, 0);
          for (const who of ['alice', 'bob', 'carol']) assert.equal(l.activeFor(who), 0);
          for (const at of ['a:1', 'a:2', 'a:3']) assert.equal(l.activeFrom(at), 0);
        },
      ),
    );
  });
});
