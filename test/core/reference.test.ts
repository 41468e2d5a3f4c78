import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { GateError, type OciErrorCode } from '../../src/core/errors.js';
import {
  isValidDigest,
  isValidRepoName,
  isValidTag,
  parseDockerReference,
  signatureTagFor,
  type DockerReference,
} from '../../src/core/reference.js';

const HEX64 = '0123456789abcdef'.repeat(4);
const D256 = `sha256:${HEX64}`;
const D512 = `sha512:${HEX64}${HEX64}`;

function assertGateError(fn: () => unknown, code: OciErrorCode): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof GateError, `expected GateError, got ${String(e)}`);
    assert.equal(e.code, code);
    return true;
  });
}

describe('isValidRepoName', () => {
  const valid = [
    'a',
    'library/ubuntu',
    'a/b/c/d/e',
    'foo.bar',
    'foo_bar',
    'foo__bar',
    'foo-bar',
    'foo---bar',
    'docker.io/library/x',
    '0/9',
    'a'.repeat(255),
    `${'a'.repeat(127)}/${'b'.repeat(127)}`,
  ];
  for (const name of valid) {
    test(`accepts ${name.length > 40 ? `${name.slice(0, 20)}…(${name.length})` : name}`, () => {
      assert.equal(isValidRepoName(name), true);
    });
  }
  const invalid = [
    '',
    'A',
    'Library/ubuntu',
    'foo/',
    '/foo',
    'foo//bar',
    '.foo',
    'foo.',
    'foo..bar',
    'foo___bar',
    'foo._bar',
    '-foo',
    'foo-',
    '_foo',
    'foo_',
    'localhost:5000/foo',
    'foo bar',
    'foo%2fbar',
    'foo\\bar',
    '..',
    '.',
    'a'.repeat(256),
    `${'a'.repeat(128)}/${'b'.repeat(127)}`,
    'föö',
    'foo\0',
  ];
  for (const name of invalid) {
    test(`refuses ${JSON.stringify(name.length > 40 ? `${name.slice(0, 20)}…(${name.length})` : name)}`, () => {
      assert.equal(isValidRepoName(name), false);
    });
  }
  test('linear time on a hostile separator run', () => {
    const start = performance.now();
    assert.equal(isValidRepoName(`${'a-'.repeat(120)}!`), false);
    assert.equal(isValidRepoName(`${'a_'.repeat(120)}_`), false);
    assert.ok(performance.now() - start < 200);
  });
});

describe('isValidTag', () => {
  for (const t of ['latest', 'v1.2.3', 'A', '_', '1', 'a-b_c.d', 'x'.repeat(128)]) {
    test(`accepts ${t.slice(0, 20)}`, () => assert.equal(isValidTag(t), true));
  }
  for (const t of ['', '.a', '-a', 'a:b', 'a/b', 'a@b', 'x'.repeat(129), 'é', 'a b', 'a+b']) {
    test(`refuses ${JSON.stringify(t.slice(0, 20))}`, () => assert.equal(isValidTag(t), false));
  }
});

describe('isValidDigest', () => {
  test('accepts sha256 and sha512 in lowercase hex', () => {
    assert.equal(isValidDigest(D256), true);
    assert.equal(isValidDigest(D512), true);
  });
  const invalid = [
    `sha256:${HEX64.toUpperCase()}`,
    `SHA256:${HEX64}`,
    `sha256:${HEX64.slice(1)}`,
    `sha256:${HEX64}0`,
    `sha512:${HEX64}`,
    `sha384:${HEX64}${HEX64.slice(0, 32)}`,
    `md5:${HEX64.slice(0, 32)}`,
    `sha256+b64:${HEX64}`,
    `sha256:${HEX64.slice(1)}g`,
    HEX64,
    `sha256-${HEX64}`,
    `sha256:${HEX64}\n`,
    '',
  ];
  for (const d of invalid) {
    test(`refuses ${JSON.stringify(d.slice(0, 24))}`, () => assert.equal(isValidDigest(d), false));
  }
});

describe('signatureTagFor', () => {
  test('sha256 digest → sha256-<hex>.sig, a valid tag', () => {
    const tag = signatureTagFor(D256);
    assert.equal(tag, `sha256-${HEX64}.sig`);
    assert.equal(isValidTag(tag), true);
  });
  test('sha512 is refused: its tag would exceed 128 characters', () => {
    assert.equal(isValidTag(`sha512-${D512.slice(7)}.sig`), false);
    assertGateError(() => signatureTagFor(D512), 'DIGEST_INVALID');
  });
  test('malformed digests are refused', () => {
    assertGateError(() => signatureTagFor('sha256:abc'), 'DIGEST_INVALID');
    assertGateError(() => signatureTagFor(`sha256:${HEX64}/../x`), 'DIGEST_INVALID');
  });
});

describe('parseDockerReference', () => {
  const accepted: Array<[string, DockerReference]> = [
    ['ubuntu', { repo: 'ubuntu' }],
    ['library/ubuntu', { repo: 'library/ubuntu' }],
    ['ubuntu:22.04', { repo: 'ubuntu', tag: '22.04' }],
    ['registry.example.com/prod/app', { host: 'registry.example.com', repo: 'prod/app' }],
    [
      'registry.example.com:5000/prod/app:v1',
      { host: 'registry.example.com:5000', repo: 'prod/app', tag: 'v1' },
    ],
    ['localhost/app', { host: 'localhost', repo: 'app' }],
    ['localhost:5000/a/b', { host: 'localhost:5000', repo: 'a/b' }],
    ['localhost:5000', { repo: 'localhost', tag: '5000' }],
    ['myhost:443/app', { host: 'myhost:443', repo: 'app' }],
    ['[::1]:5000/app', { host: '[::1]:5000', repo: 'app' }],
    ['Example.COM/app', { host: 'Example.COM', repo: 'app' }],
    ['foo/bar', { repo: 'foo/bar' }],
    ['a.b/c', { host: 'a.b', repo: 'c' }],
    ['localhostx/app', { repo: 'localhostx/app' }],
    [`app@${D256}`, { repo: 'app', digest: D256 }],
    [`h.io/app:v1@${D256}`, { host: 'h.io', repo: 'app', tag: 'v1', digest: D256 }],
    [`h.io/app@${D512}`, { host: 'h.io', repo: 'app', digest: D512 }],
  ];
  for (const [input, want] of accepted) {
    test(`parses ${input.slice(0, 50)}`, () => {
      assert.deepEqual(parseDockerReference(input), want);
    });
  }
  const refused: Array<[string, OciErrorCode]> = [
    ['', 'NAME_INVALID'],
    ['Ubuntu', 'NAME_INVALID'],
    ['Foo/bar', 'NAME_INVALID'],
    ['h.io/', 'NAME_INVALID'],
    ['h.io//app', 'NAME_INVALID'],
    ['-h.io/app', 'NAME_INVALID'],
    ['h_io.x/app', 'NAME_INVALID'],
    ['a_b.c/d', 'NAME_INVALID'],
    ['h.io:abc/app', 'NAME_INVALID'],
    ['app:', 'MANIFEST_INVALID'],
    ['app:.v1', 'MANIFEST_INVALID'],
    [`app:${'x'.repeat(129)}`, 'MANIFEST_INVALID'],
    ['app@sha256:abc', 'DIGEST_INVALID'],
    [`app@${D256}@${D256}`, 'DIGEST_INVALID'],
    [`app@md5:${HEX64.slice(0, 32)}`, 'DIGEST_INVALID'],
    [`h.io/${'a'.repeat(251)}`, 'NAME_INVALID'],
    ['[::1]:5000', 'NAME_INVALID'],
    ['app tag', 'NAME_INVALID'],
  ];
  for (const [input, code] of refused) {
    test(`refuses ${JSON.stringify(input.slice(0, 40))} with ${code}`, () => {
      assertGateError(() => parseDockerReference(input), code);
    });
  }

  test('property: HOST/REPO[:TAG][@DIGEST] round-trips', () => {
    const component = fc
      .stringMatching(/^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/)
      .filter((c) => c.length <= 30);
    const repo = fc.array(component, { minLength: 1, maxLength: 4 }).map((cs) => cs.join('/'));
    const host = fc.constantFrom(
      'localhost',
      'localhost:5000',
      'registry.example.com',
      'r.io:443',
      '[::1]:5000',
    );
    const tag = fc.stringMatching(/^\w[\w.-]{0,20}$/);
    const digest = fc.constantFrom(D256, D512);
    fc.assert(
      fc.property(
        fc.option(host, { nil: undefined }),
        repo,
        fc.option(tag, { nil: undefined }),
        fc.option(digest, { nil: undefined }),
        (h, r, t, d) => {
          const s = `${h === undefined ? '' : `${h}/`}${r}${t === undefined ? '' : `:${t}`}${d === undefined ? '' : `@${d}`}`;
          // Without a host, a first component containing `.` is itself read as the host, and
          // refused when it is not a valid host name (an `_` is fine in a path, not in a host).
          const first = r.split('/')[0] ?? '';
          const firstIsHost = h === undefined && r.includes('/') && first.includes('.');
          if (firstIsHost && first.includes('_')) {
            assert.throws(
              () => parseDockerReference(s),
              (e: unknown) => e instanceof GateError && e.code === 'NAME_INVALID',
            );
            return;
          }
          const got = parseDockerReference(s);
          if (firstIsHost) {
            assert.equal(got.host, first);
            assert.equal(got.repo, r.slice(first.length + 1));
          } else {
            assert.equal(got.host, h);
            assert.equal(got.repo, r);
          }
          assert.equal(got.tag, t);
          assert.equal(got.digest, d);
        },
      ),
    );
  });

  test('property: throws only GateError on arbitrary strings', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (s) => {
        try {
          const r = parseDockerReference(s);
          assert.equal(isValidRepoName(r.repo), true);
        } catch (e) {
          assert.ok(e instanceof GateError, String(e));
        }
      }),
    );
  });
});
