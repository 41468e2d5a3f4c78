import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { basicCredentialsOf, parseBasicAuth } from '../../src/auth/basic.js';
import { GateError } from '../../src/core/errors.js';

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
const refused = (fn: () => unknown, re?: RegExp) =>
  assert.throws(
    fn,
    (e: unknown) =>
      e instanceof GateError && e.status === 401 && e.code === 'UNAUTHORIZED' && (!re || re.test(e.message)),
  );

describe('parseBasicAuth', () => {
  it('parses one well-formed header, splitting at the first colon', () => {
    assert.deepEqual(parseBasicAuth(`Basic ${b64('alice:pa:ss')}`), { user: 'alice', password: 'pa:ss' });
    assert.deepEqual(parseBasicAuth(`basic ${b64('bob:')}`), { user: 'bob', password: '' });
    assert.deepEqual(parseBasicAuth(`Basic ${b64('jürgen:pässwörd')}`), {
      user: 'jürgen',
      password: 'pässwörd',
    });
    assert.equal(parseBasicAuth(undefined), undefined);
  });

  it('refuses other schemes and malformed base64', () => {
    refused(() => parseBasicAuth('Bearer abc'));
    refused(() => parseBasicAuth('Basic'));
    refused(() => parseBasicAuth('Basic '));
    refused(() => parseBasicAuth(`Basic  ${b64('a:b')}`));
    refused(() => parseBasicAuth(`Basic ${b64('a:b')} `));
    refused(() => parseBasicAuth('Basic !!!!'));
    refused(() => parseBasicAuth('Basic YWI6Yw'), /base64/); // missing padding
    refused(() => parseBasicAuth('Basic YWI6Yx=='), /base64/); // non-canonical trailing bits
    refused(() => parseBasicAuth(`Basic ${b64('a:b').replace(/=/g, '')}==`));
    refused(() => parseBasicAuth(['Basic a', 'Basic b']), /more than one/);
  });

  it('refuses no colon, empty user, invalid UTF-8, BOMs that would vanish', () => {
    refused(() => parseBasicAuth(`Basic ${b64('alice')}`), /no `:`/);
    refused(() => parseBasicAuth(`Basic ${b64(':pw')}`), /empty user/);
    refused(
      () => parseBasicAuth(`Basic ${Buffer.from([0x61, 0xff, 0x3a, 0x62]).toString('base64')}`),
      /UTF-8/,
    );
    // the BOM is kept, so it can never silently become "alice"
    assert.equal(parseBasicAuth(`Basic ${b64('\uFEFFalice:x')}`)?.user, '\uFEFFalice');
  });

  it('refuses NUL and control characters, very long names and passwords over 72 bytes', () => {
    refused(() => parseBasicAuth(`Basic ${b64('ali\u0000ce:pw')}`), /control/);
    refused(() => parseBasicAuth(`Basic ${b64('alice:pw\u0000')}`), /control/);
    refused(() => parseBasicAuth(`Basic ${b64('alice:pw\n')}`), /control/);
    refused(() => parseBasicAuth(`Basic ${b64(`${'a'.repeat(257)}:pw`)}`), /at most 256/);
    assert.equal(parseBasicAuth(`Basic ${b64(`${'a'.repeat(256)}:pw`)}`)?.user.length, 256);
    assert.equal(parseBasicAuth(`Basic ${b64(`a:${'x'.repeat(72)}`)}`)?.password.length, 72);
    refused(() => parseBasicAuth(`Basic ${b64(`a:${'x'.repeat(73)}`)}`), /72 bytes/);
    refused(() => parseBasicAuth(`Basic ${b64(`a:${'é'.repeat(37)}`)}`), /72 bytes/); // 74 bytes
    refused(() => parseBasicAuth(`Basic ${'A'.repeat(100_000)}`), /too long/);
  });

  it('basicCredentialsOf refuses two Authorization headers even though Node keeps only one', () => {
    const h = `Basic ${b64('alice:pw')}`;
    assert.deepEqual(
      basicCredentialsOf({ headers: { authorization: h }, rawHeaders: ['Authorization', h] }),
      {
        user: 'alice',
        password: 'pw',
      },
    );
    refused(
      () =>
        basicCredentialsOf({
          headers: { authorization: h },
          rawHeaders: ['Authorization', h, 'authorization', `Basic ${b64('root:x')}`],
        }),
      /more than one/,
    );
  });
});
