/**
 * FreshCoalescer: concurrent requests share registry answers, but never one older than the
 * request (the property a tag resolution needs: a tag moved before a pull began is never served
 * at its old digest to that pull).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { FreshCoalescer } from '../../src/registry/fresh-coalescer.js';

/** A controllable upstream: each fetch records when it started and settles when told. */
function upstream() {
  let clock = 0;
  const fetches: Array<{ startedAt: number; settle: (ok: boolean) => void }> = [];
  return {
    tick: () => ++clock,
    get clock() {
      return clock;
    },
    fetches,
    fetch: (): Promise<number> =>
      new Promise((resolve, reject) => {
        const startedAt = clock;
        fetches.push({
          startedAt,
          settle: (ok) => (ok ? resolve(startedAt) : reject(new Error(`f${startedAt}`))),
        });
      }),
  };
}

const flush = () => new Promise<void>((r) => setImmediate(r));

describe('FreshCoalescer', () => {
  it('a caller arriving while a fetch is in flight waits for the next fetch, never the current one', async () => {
    const up = upstream();
    const shared: number[] = [];
    const c = new FreshCoalescer<number>((n) => shared.push(n));
    const first = c.run('k', up.fetch);
    await flush();
    assert.equal(up.fetches.length, 1);
    up.tick(); // the tag moves after the first fetch left
    const second = c.run('k', up.fetch);
    const third = c.run('k', up.fetch);
    await flush();
    assert.equal(up.fetches.length, 1, 'no second fetch while the first is in flight');
    up.fetches[0]!.settle(true);
    assert.equal(await first, 0);
    await flush();
    assert.equal(up.fetches.length, 2, 'the waiters get a fetch of their own');
    assert.equal(up.fetches[1]!.startedAt, 1);
    up.fetches[1]!.settle(true);
    assert.equal(await second, 1, 'the answer started after the caller arrived');
    assert.equal(await third, 1, 'and is shared');
    assert.deepEqual(shared, [2]);
    assert.equal(c.size, 0);
  });

  it('a failed fetch fails its callers only; the waiters still get their own fetch', async () => {
    const up = upstream();
    const shared: number[] = [];
    const c = new FreshCoalescer<number>((n) => shared.push(n));
    const first = c.run('k', up.fetch);
    await flush();
    const waiters = [c.run('k', up.fetch), c.run('k', up.fetch), c.run('k', up.fetch)];
    up.fetches[0]!.settle(false);
    await assert.rejects(first, /f0/);
    await flush();
    up.fetches[1]!.settle(false);
    for (const w of waiters) await assert.rejects(w, /f0/);
    assert.deepEqual(shared, [], 'a failed fetch answered nobody');
    const ok = [c.run('k', up.fetch), c.run('k', up.fetch)];
    await flush();
    up.fetches[2]!.settle(true);
    await flush();
    up.fetches[3]!.settle(true);
    await Promise.all(ok);
    assert.deepEqual(shared, [], 'one caller per fetch: nothing shared');
    assert.equal(c.size, 0);
  });

  it('keys are independent', async () => {
    const up = upstream();
    const c = new FreshCoalescer<number>();
    const a = c.run('a', up.fetch);
    const b = c.run('b', up.fetch);
    await flush();
    assert.equal(up.fetches.length, 2);
    for (const f of up.fetches) f.settle(true);
    assert.deepEqual(await Promise.all([a, b]), [0, 0]);
  });

  it('property: every caller gets an answer from a fetch that started at or after its call', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.constantFrom('call', 'tick', 'settle', 'fail', 'flush'), { minLength: 1, maxLength: 60 }),
        async (steps) => {
          const up = upstream();
          const c = new FreshCoalescer<number>();
          const calls: Array<{ at: number; p: Promise<number | Error> }> = [];
          let settled = 0;
          const drive = async (step: string): Promise<void> => {
            if (step === 'call') calls.push({ at: up.clock, p: c.run('k', up.fetch).catch((e: Error) => e) });
            else if (step === 'tick') up.tick();
            else if ((step === 'settle' || step === 'fail') && settled < up.fetches.length)
              up.fetches[settled++]!.settle(step === 'settle');
            await flush();
          };
          for (const s of steps) await drive(s);
          // Settle whatever is left.
          for (let guard = 0; settled < up.fetches.length || c.size > 0; guard++) {
            assert.ok(guard < 1000, 'no progress');
            if (settled < up.fetches.length) up.fetches[settled++]!.settle(true);
            await flush();
          }
          for (const call of calls) {
            const r = await call.p;
            const startedAt = r instanceof Error ? Number(r.message.slice(1)) : r;
            assert.ok(startedAt >= call.at, `a call at ${call.at} got a fetch started at ${startedAt}`);
          }
          assert.ok(up.fetches.length <= calls.length);
        },
      ),
      { numRuns: 300 },
    );
  });
});
