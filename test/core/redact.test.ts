import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  LOGGED_QUERY_KEYS,
  REDACTED,
  isSecretKey,
  redactFlat,
  redactText,
  redactUrl,
  redactValue,
} from '../../src/core/redact.js';

describe('redact', () => {
  it('keeps the path and allowlisted query values; redacts every other value and bare components', () => {
    assert.equal(
      redactUrl('/v2/a/blobs/uploads/u?_state=S&digest=sha256:abc&X-Amz-Signature=Z&flag'),
      `/v2/a/blobs/uploads/u?_state=${REDACTED}&digest=sha256:abc&X-Amz-Signature=${REDACTED}&${REDACTED}`,
    );
    assert.equal(redactUrl('/v2/_catalog?n=10&last=b'), '/v2/_catalog?n=10&last=b');
    assert.equal(redactUrl('/x#access_token=T'), `/x#access_token=${REDACTED}`);
    assert.equal(redactUrl(`/x?${'k'.repeat(100)}=v`), `/x?${REDACTED}=${REDACTED}`);
    // Percent-encoded look-alikes of allowlisted keys are not allowlisted.
    assert.equal(redactUrl('/x?dig%65st=v'), `/x?dig%65st=${REDACTED}`);
  });

  it('property: a value under a key outside the allowlist never survives redactUrl or redactText', () => {
    const key = fc
      .stringMatching(/^[A-Za-z_][A-Za-z0-9_.%-]{0,20}$/)
      .filter((k) => !LOGGED_QUERY_KEYS.has(k));
    const value = fc.stringMatching(/^[A-Za-z0-9._~%+-]{8,40}$/);
    fc.assert(
      fc.property(key, value, fc.constantFrom('?', '&'), (k, v, sep) => {
        const url = `/v2/a/tags/list?n=1${sep === '?' ? '&' : sep}${k}=${v}`;
        assert.ok(!redactUrl(url).includes(v), redactUrl(url));
        assert.ok(!redactText(`GET ${url} failed`).includes(v));
      }),
    );
  });

  it('secret keys at any depth, in any case or spelling; values under URL keys; Errors', () => {
    for (const k of [
      'password',
      'Password',
      'client_secret',
      'refresh-token',
      'hmacSecret',
      '_state',
      'Authorization',
    ]) {
      assert.ok(isSecretKey(k), k);
    }
    for (const k of ['key', 'state', 'path', 'subject', 'digest']) assert.ok(!isSecretKey(k), k);
    const v = redactValue({
      a: { b: [{ token: 'T1' }] },
      headers: { authorization: 'Bearer x' },
      location: '/v2/a/blobs/uploads/u?_state=S2',
      err: new Error('at https://u:P3@host/x'),
      n: 3,
      empty: '',
    }) as Record<string, unknown>;
    const text = JSON.stringify(v);
    for (const s of ['T1', 'Bearer x', 'S2', 'P3']) assert.ok(!text.includes(s), `${s}: ${text}`);
    assert.equal(v['n'], 3);
  });

  it('does not change the object it is given', () => {
    const o = { password: 'p', path: '/x?token=t' };
    redactValue(o);
    assert.deepEqual(o, { password: 'p', path: '/x?token=t' });
  });

  it('redactFlat (the audit record path) redacts exactly as redactValue does: URL fields, nested objects, arrays of objects, Errors', () => {
    const record = {
      audit: 'decision',
      path: '/v2/a/blobs/uploads/u?opaquesecret&_state=s&digest=sha256:00',
      target: 'https://r.example/x?sig=abc',
      token: 'tok',
      reason: 'Bearer abcdefgh1234 rejected',
      keys: ['release', 'eyJhbGciOiJIUzI1NiJ9.e30.c2ln'],
      nested: { password: 'p', url: '/x?token=t', deep: { authorization: 'Basic dXNlcjpwYXNzd29yZA==' } },
      list: [{ secret: 's' }, { location: '/v2/x?_state=s' }, 'redis://:pw@h'],
      err: Object.assign(new Error('failed at https://u:pw@h/?access_token=x'), { code: 'E' }),
      status: 201,
      latencyMs: 1.5,
      client: undefined,
      empty: null,
    };
    assert.deepEqual(redactFlat(record), redactValue(record));
    assert.doesNotMatch(JSON.stringify(redactFlat(record)), /opaquesecret|tok"|dXNlcjpw|pw@|access_token=x/);
  });
});
