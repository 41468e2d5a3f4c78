/**
 * The reason phrase of trustgate's error answers (issue 14): containerd prints only the status
 * line, so a 4xx carries its message there, reduced to what a status line may hold.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { MAX_REASON_PHRASE, reasonPhrase } from '../../src/server/respond.js';

describe('reasonPhrase', () => {
  it('a 4xx carries the standard phrase and the message', () => {
    assert.equal(
      reasonPhrase(403, 'pull access to a/b is not allowed'),
      'Forbidden: pull access to a/b is not allowed',
    );
    assert.equal(
      reasonPhrase(401, 'invalid username or password'),
      'Unauthorized: invalid username or password',
    );
    assert.equal(reasonPhrase(404, ''), 'Not Found');
  });

  it('other statuses keep the bare standard phrase', () => {
    assert.equal(reasonPhrase(500, 'internal error: secret detail'), 'Internal Server Error');
    assert.equal(reasonPhrase(503, 'registry down'), 'Service Unavailable');
    assert.equal(reasonPhrase(200, 'x'), 'OK');
  });

  it('no CR, LF or non-ASCII reaches the status line; the length is bounded', () => {
    assert.equal(reasonPhrase(403, 'a\r\nSet-Cookie: x=1'), 'Forbidden: a Set-Cookie: x=1');
    assert.equal(reasonPhrase(403, 'prod/app@sha256:… ünsigned'), 'Forbidden: prod/app@sha256:... ?nsigned');
    const long = reasonPhrase(403, 'x'.repeat(1000));
    assert.equal(long.length, MAX_REASON_PHRASE);
    assert.ok(long.endsWith('...'));
  });

  it('property: always printable ASCII, at most MAX_REASON_PHRASE, for any message', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 100, max: 599 }),
        fc.string({ unit: 'binary', maxLength: 600 }),
        (s, m) => {
          const p = reasonPhrase(s, m);
          assert.match(p, /^[\x20-\x7e]*$/);
          assert.ok(p.length <= MAX_REASON_PHRASE);
        },
      ),
    );
  });
});
