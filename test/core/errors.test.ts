import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  ERRORS,
  GateError,
  InternalFailure,
  badRequest,
  isInternalFailure,
  toGateError,
  type ErrorName,
} from '../../src/core/errors.js';

describe('error table (core/errors.ts)', () => {
  it('a GateError takes code and status from its descriptor, and from nowhere else', () => {
    for (const name of Object.keys(ERRORS) as ErrorName[]) {
      const e = new GateError(name, 'm');
      assert.equal(e.code, ERRORS[name].code, name);
      assert.equal(e.status, ERRORS[name].status, name);
      assert.equal(e.descriptor, name);
    }
  });

  it('the OCI codes answer with the status distribution registers for them', () => {
    const expected: Record<string, number> = {
      BLOB_UNKNOWN: 404,
      BLOB_UPLOAD_UNKNOWN: 404,
      DIGEST_INVALID: 400,
      MANIFEST_BLOB_UNKNOWN: 400,
      MANIFEST_INVALID: 400,
      MANIFEST_UNKNOWN: 404,
      NAME_INVALID: 400,
      NAME_UNKNOWN: 404,
      SIZE_INVALID: 400,
      UNAUTHORIZED: 401,
      DENIED: 403,
      UNSUPPORTED: 405,
      TOOMANYREQUESTS: 429,
      UNAVAILABLE: 503,
      UNKNOWN: 500,
    };
    for (const [name, status] of Object.entries(expected)) {
      assert.equal(ERRORS[name as ErrorName].status, status, name);
      assert.equal(ERRORS[name as ErrorName].code, name);
    }
  });

  it('badRequest is the one malformed-request constructor: 400 UNSUPPORTED', () => {
    const e = badRequest('bad', { logDetail: { x: 1 } });
    assert.equal(e.status, 400);
    assert.equal(e.code, 'UNSUPPORTED');
    assert.deepEqual(e.logDetail, { x: 1 });
    assert.deepEqual(e.toBody(), { errors: [{ code: 'UNSUPPORTED', message: 'bad' }] });
  });

  it('internal failures are told apart by kind and mapped at the edge', () => {
    const cases: Array<[InternalFailure, number, string]> = [
      [
        new InternalFailure('upstream-unreachable', 'the registry behind trustgate is unavailable'),
        503,
        'UNAVAILABLE',
      ],
      [new InternalFailure('upstream-failed', 'the registry behind trustgate failed'), 502, 'UNAVAILABLE'],
      [
        new InternalFailure('upstream-body-too-large', 'upstream response exceeds 5 bytes'),
        502,
        'UNAVAILABLE',
      ],
      [
        new InternalFailure('upstream-digest-mismatch', 'the registry returned other bytes'),
        502,
        'UNAVAILABLE',
      ],
    ];
    for (const [failure, status, code] of cases) {
      const e = toGateError(failure);
      assert.equal(e.status, status, failure.kind);
      assert.equal(e.code, code, failure.kind);
      assert.equal(e.message, failure.message);
      assert.equal(e.cause, failure);
    }
    const tooLarge = cases[2]![0];
    assert.ok(isInternalFailure(tooLarge, 'upstream-body-too-large'));
    assert.ok(!isInternalFailure(tooLarge, 'upstream-failed'));
    assert.ok(!isInternalFailure(new GateError('MANIFEST_INVALID', 'x'), 'upstream-body-too-large'));
  });

  it('anything else is a 500 whose cause is only logged', () => {
    const e = toGateError(new Error('secret path /etc/x'));
    assert.equal(e.status, 500);
    assert.equal(e.message, 'internal error');
    assert.match(String(e.logDetail), /secret path/);
    const same = new GateError('DENIED', 'no');
    assert.equal(toGateError(same), same);
  });
});
