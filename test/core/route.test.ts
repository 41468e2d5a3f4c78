import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { GateError, type OciErrorCode } from '../../src/core/errors.js';
import { parseRoute } from '../../src/core/route.js';
import type { Route } from '../../src/core/types.js';

const HEX64 = '0123456789abcdef'.repeat(4);
const D = `sha256:${HEX64}`;
const D2 = `sha256:${'f'.repeat(64)}`;
const D512 = `sha512:${HEX64}${HEX64}`;
const UUID = 'd95306fa-fad3-4e36-8d41-cf1c93ef8286';

type Req = { method: string; url: string; contentType?: string };

function req(method: string, url: string, contentType?: string): Req {
  return contentType === undefined ? { method, url } : { method, url, contentType };
}

describe('parseRoute: accepted routes', () => {
  const table: Array<[Req, Route]> = [
    [req('GET', '/v2/'), { kind: 'base', action: null }],
    [req('HEAD', '/v2/'), { kind: 'base', action: null }],
    [req('GET', '/v2/?'), { kind: 'base', action: null }],
    [req('GET', '/v2/_catalog'), { kind: 'catalog', action: 'catalog' }],
    [req('GET', '/v2/_catalog?n=100&last=a%2Fb'), { kind: 'catalog', action: 'catalog' }],
    [req('GET', '/v2/foo/tags/list'), { kind: 'tags', repo: 'foo', action: 'pull' }],
    [req('GET', `/v2/foo/referrers/${D}`), { kind: 'referrers', repo: 'foo', digest: D, action: 'pull' }],
    [
      req(
        'HEAD',
        `/v2/a/referrers/referrers/${D}?artifactType=application%2Fvnd.dev.sigstore.bundle.v0.3%2Bjson`,
      ),
      {
        kind: 'referrers',
        repo: 'a/referrers',
        digest: D,
        action: 'pull',
        artifactType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
      },
    ],
    [req('GET', '/v2/foo/referrers/tags/list'), { kind: 'tags', repo: 'foo/referrers', action: 'pull' }],
    [
      req('GET', '/v2/foo/referrers/manifests/v1'),
      { kind: 'manifest', repo: 'foo/referrers', ref: { tag: 'v1' }, action: 'pull' },
    ],
    [req('GET', '/v2/a/b/c/tags/list?n=5&last=v1'), { kind: 'tags', repo: 'a/b/c', action: 'pull' }],
    [
      req('GET', '/v2/library/ubuntu/manifests/22.04'),
      { kind: 'manifest', repo: 'library/ubuntu', ref: { tag: '22.04' }, action: 'pull' },
    ],
    [
      req('HEAD', '/v2/foo/manifests/latest'),
      { kind: 'manifest', repo: 'foo', ref: { tag: 'latest' }, action: 'pull' },
    ],
    [
      req('PUT', '/v2/foo/manifests/v1', 'application/vnd.oci.image.manifest.v1+json'),
      { kind: 'manifest', repo: 'foo', ref: { tag: 'v1' }, action: 'push' },
    ],
    [
      req('DELETE', `/v2/foo/manifests/${D}`),
      { kind: 'manifest', repo: 'foo', ref: { digest: D }, action: 'delete' },
    ],
    [
      req('GET', `/v2/foo/manifests/${D512}`),
      { kind: 'manifest', repo: 'foo', ref: { digest: D512 }, action: 'pull' },
    ],
    [
      req('GET', `/v2/foo/manifests/sha256-${HEX64}.sig`),
      { kind: 'manifest', repo: 'foo', ref: { tag: `sha256-${HEX64}.sig` }, action: 'pull' },
    ],
    [
      req('GET', `/v2/foo/manifests/${'T'.repeat(128)}`),
      { kind: 'manifest', repo: 'foo', ref: { tag: 'T'.repeat(128) }, action: 'pull' },
    ],
    // containerd adds ?ns= on mirror requests; registry:2 ignores unknown keys.
    [
      req('GET', '/v2/foo/manifests/v1?ns=docker.io'),
      { kind: 'manifest', repo: 'foo', ref: { tag: 'v1' }, action: 'pull' },
    ],
    // Reserved words inside a name: registry:2's greedy name takes everything before the suffix.
    [
      req('GET', '/v2/a/manifests/manifests/x'),
      { kind: 'manifest', repo: 'a/manifests', ref: { tag: 'x' }, action: 'pull' },
    ],
    [
      req('GET', '/v2/foo/bar/manifests/manifests/tags'),
      { kind: 'manifest', repo: 'foo/bar/manifests', ref: { tag: 'tags' }, action: 'pull' },
    ],
    [req('GET', '/v2/foo/manifests/tags/list'), { kind: 'tags', repo: 'foo/manifests', action: 'pull' }],
    [req('GET', '/v2/tags/list/tags/list'), { kind: 'tags', repo: 'tags/list', action: 'pull' }],
    [
      req('GET', '/v2/tags/manifests/list'),
      { kind: 'manifest', repo: 'tags', ref: { tag: 'list' }, action: 'pull' },
    ],
    [req('GET', `/v2/a/blobs/blobs/${D}`), { kind: 'blob', repo: 'a/blobs', digest: D, action: 'pull' }],
    [
      req('POST', '/v2/a/blobs/uploads/blobs/uploads/'),
      { kind: 'upload-start', repo: 'a/blobs/uploads', action: 'push' },
    ],
    [
      req('PATCH', `/v2/blobs/uploads/blobs/uploads/${UUID}`),
      { kind: 'upload', repo: 'blobs/uploads', uuid: UUID, action: 'push' },
    ],
    [req('GET', `/v2/foo/blobs/${D}`), { kind: 'blob', repo: 'foo', digest: D, action: 'pull' }],
    [req('HEAD', `/v2/foo/blobs/${D}`), { kind: 'blob', repo: 'foo', digest: D, action: 'pull' }],
    [req('DELETE', `/v2/foo/blobs/${D}`), { kind: 'blob', repo: 'foo', digest: D, action: 'delete' }],
    [req('POST', '/v2/foo/blobs/uploads/'), { kind: 'upload-start', repo: 'foo', action: 'push' }],
    [
      req('POST', '/v2/foo/blobs/uploads/', 'application/octet-stream'),
      { kind: 'upload-start', repo: 'foo', action: 'push' },
    ],
    [
      req('POST', `/v2/foo/blobs/uploads/?mount=${D}&from=library%2Fubuntu`),
      { kind: 'upload-start', repo: 'foo', action: 'push', mount: { from: 'library/ubuntu', digest: D } },
    ],
    [
      req('POST', `/v2/foo/blobs/uploads/?from=lib/x&mount=sha256%3A${HEX64}`),
      { kind: 'upload-start', repo: 'foo', action: 'push', mount: { from: 'lib/x', digest: D } },
    ],
    [
      req('POST', `/v2/foo/blobs/uploads/?digest=sha256%3a${HEX64}`),
      { kind: 'upload-start', repo: 'foo', action: 'push', digest: D },
    ],
    [
      req('GET', `/v2/foo/blobs/uploads/${UUID}`),
      { kind: 'upload', repo: 'foo', uuid: UUID, action: 'push' },
    ],
    [
      req('PATCH', `/v2/foo/blobs/uploads/${UUID}?_state=abc_-DEF%3D%3D`, 'application/octet-stream'),
      { kind: 'upload', repo: 'foo', uuid: UUID, action: 'push' },
    ],
    [
      req('PUT', `/v2/foo/blobs/uploads/${UUID}?_state=eyJ9.x%3D&digest=${encodeURIComponent(D)}`),
      { kind: 'upload', repo: 'foo', uuid: UUID, action: 'push', digest: D },
    ],
    [
      req('DELETE', `/v2/foo/blobs/uploads/${UUID}`),
      { kind: 'upload', repo: 'foo', uuid: UUID, action: 'push' },
    ],
    [
      req('GET', '/v2/foo/blobs/uploads/RDk1MzA2RkEtRkFEMy00RTM2LThENDEtQ0YxQzkzRUY4Mjg2IA_-=='),
      {
        kind: 'upload',
        repo: 'foo',
        uuid: 'RDk1MzA2RkEtRkFEMy00RTM2LThENDEtQ0YxQzkzRUY4Mjg2IA_-==',
        action: 'push',
      },
    ],
    [req('GET', '/v2/foo/blobs/uploads/a.b'), { kind: 'upload', repo: 'foo', uuid: 'a.b', action: 'push' }],
    [req('GET', `/v2/${'a'.repeat(255)}/tags/list`), { kind: 'tags', repo: 'a'.repeat(255), action: 'pull' }],
  ];
  for (const [r, want] of table) {
    test(`${r.method} ${r.url.length > 90 ? `${r.url.slice(0, 90)}…` : r.url}`, () => {
      assert.deepEqual(parseRoute(r), want);
    });
  }
});

describe('parseRoute: refused inputs', () => {
  // [request, code, status]
  const table: Array<[Req, OciErrorCode, number]> = [
    // request target form
    [req('GET', 'http://registry/v2/'), 'UNSUPPORTED', 400],
    [req('GET', '*'), 'UNSUPPORTED', 400],
    [req('GET', ''), 'UNSUPPORTED', 400],
    [req('GET', 'v2/'), 'UNSUPPORTED', 400],
    [req('GET', '/v2/foo/manifests/v1#frag'), 'UNSUPPORTED', 400],
    [req('GET', '/v2/foo/manifests/v1?x=1#frag'), 'UNSUPPORTED', 400],
    // percent-encoding anywhere in the path, even of a harmless byte
    [req('GET', '/v2/foo%2fbar/manifests/v1'), 'NAME_INVALID', 400],
    [req('GET', '/v2/foo%2Fbar/manifests/v1'), 'NAME_INVALID', 400],
    [req('GET', '/v2/foo/%2e%2e/bar/manifests/v1'), 'NAME_INVALID', 400],
    [req('GET', '/v2/foo/manifests/v1%00'), 'NAME_INVALID', 400],
    [req('GET', '/v2/f%6fo/manifests/v1'), 'NAME_INVALID', 400],
    [req('GET', '/%76%32/foo/manifests/v1'), 'NAME_INVALID', 400],
    [req('GET', '/v2/foo/manifests/sha256%3A' + HEX64), 'NAME_INVALID', 400],
    // dot segments, empty segments, trailing slashes registry:2 would redirect
    [req('GET', '/v2/foo/../bar/manifests/v1'), 'NAME_INVALID', 400],
    [req('GET', '/v2/./foo/manifests/v1'), 'NAME_INVALID', 400],
    [req('GET', '/v2/foo/manifests/..'), 'NAME_INVALID', 400],
    [req('GET', '/v2/foo//bar/manifests/v1'), 'NAME_INVALID', 400],
    [req('GET', '//v2/foo/manifests/v1'), 'UNSUPPORTED', 404],
    [req('GET', '/v2/../admin'), 'NAME_INVALID', 400],
    [req('GET', '/v2//'), 'NAME_INVALID', 400],
    [req('GET', '/v2/foo/manifests/v1/'), 'NAME_INVALID', 400],
    [req('GET', '/v2/foo/tags/list/'), 'NAME_INVALID', 400],
    [req('GET', '/v2/_catalog/'), 'NAME_INVALID', 400],
    [req('GET', '/v2/blobs/uploads/'), 'NAME_INVALID', 400],
    // backslash, control characters, NUL, whitespace, non-ASCII, `;`
    [req('GET', '/v2/foo\\bar/manifests/v1'), 'NAME_INVALID', 400],
    [req('GET', '/v2/foo/manifests/v1\0'), 'NAME_INVALID', 400],
    [req('GET', '/v2/foo/manifests/v\t1'), 'NAME_INVALID', 400],
    [req('GET', '/v2/foo/manifests/v1\r\n'), 'NAME_INVALID', 400],
    [req('GET', '/v2/foo bar/manifests/v1'), 'NAME_INVALID', 400],
    [req('GET', '/v2/föo/manifests/v1'), 'NAME_INVALID', 400],
    [req('GET', '/v2/foo;x=y/manifests/v1'), 'NAME_INVALID', 400],
    [req('GET', '/v2/foo/manifests/v1;'), 'NAME_INVALID', 400],
    // unknown paths
    [req('GET', '/'), 'UNSUPPORTED', 404],
    [req('GET', '/v2'), 'UNSUPPORTED', 404],
    [req('GET', '/V2/'), 'UNSUPPORTED', 404],
    [req('GET', '/v1/foo'), 'UNSUPPORTED', 404],
    [req('GET', '/v2/foo'), 'UNSUPPORTED', 404],
    [req('GET', '/v2/foo/bar'), 'UNSUPPORTED', 404],
    [req('GET', '/v2/foo/tags'), 'UNSUPPORTED', 404],
    [req('DELETE', '/v2/foo/tags/v1'), 'UNSUPPORTED', 404],
    [req('GET', '/v2/tags/list'), 'UNSUPPORTED', 404],
    [req('GET', '/v2/manifests/v1'), 'UNSUPPORTED', 404],
    [req('GET', `/v2/blobs/${D}`), 'UNSUPPORTED', 404],
    [req('POST', '/v2/foo/blobs/uploads'), 'UNSUPPORTED', 404],
    [req('GET', `/v2/foo/referrers/${D.slice(0, 20)}`), 'DIGEST_INVALID', 400],
    [req('GET', '/v2/_catalog/x'), 'UNSUPPORTED', 404],
    // methods
    [req('POST', '/v2/'), 'UNSUPPORTED', 405],
    [req('get', '/v2/'), 'UNSUPPORTED', 405],
    [req('HEAD', '/v2/_catalog'), 'UNSUPPORTED', 405],
    [req('DELETE', '/v2/foo/tags/list'), 'UNSUPPORTED', 405],
    [req('POST', '/v2/foo/manifests/v1'), 'UNSUPPORTED', 405],
    [req('PATCH', '/v2/foo/manifests/v1'), 'UNSUPPORTED', 405],
    [req('PUT', `/v2/foo/blobs/${D}`), 'UNSUPPORTED', 405],
    [req('GET', '/v2/foo/blobs/uploads/'), 'UNSUPPORTED', 405],
    [req('POST', `/v2/foo/blobs/uploads/${UUID}`), 'UNSUPPORTED', 405],
    [req('OPTIONS', '/v2/foo/manifests/v1'), 'UNSUPPORTED', 405],
    // names
    [req('GET', '/v2/Foo/manifests/v1'), 'NAME_INVALID', 400],
    [req('GET', '/v2/localhost:5000/foo/manifests/v1'), 'NAME_INVALID', 400],
    [req('GET', '/v2/_foo/tags/list'), 'NAME_INVALID', 400],
    [req('GET', '/v2/foo-/tags/list'), 'NAME_INVALID', 400],
    [req('GET', '/v2/a..b/tags/list'), 'NAME_INVALID', 400],
    [req('GET', `/v2/${'a'.repeat(256)}/tags/list`), 'NAME_INVALID', 400],
    [req('GET', `/v2/${'a'.repeat(128)}/${'b'.repeat(127)}/tags/list`), 'NAME_INVALID', 400],
    // tags and digests
    [req('GET', '/v2/foo/manifests/.hidden'), 'MANIFEST_INVALID', 400],
    [req('GET', '/v2/foo/manifests/-x'), 'MANIFEST_INVALID', 400],
    [req('GET', `/v2/foo/manifests/${'t'.repeat(129)}`), 'MANIFEST_INVALID', 400],
    [req('GET', '/v2/foo/manifests/v=1'), 'MANIFEST_INVALID', 400],
    [req('GET', '/v2/foo/manifests/sha256:abc'), 'DIGEST_INVALID', 400],
    [req('GET', `/v2/foo/manifests/sha256:${HEX64.toUpperCase()}`), 'DIGEST_INVALID', 400],
    [req('GET', `/v2/foo/manifests/md5:${HEX64.slice(0, 32)}`), 'DIGEST_INVALID', 400],
    [req('GET', `/v2/foo/manifests/v1:${HEX64}`), 'DIGEST_INVALID', 400],
    [req('GET', '/v2/foo/blobs/latest'), 'DIGEST_INVALID', 400],
    [req('GET', `/v2/foo/blobs/sha384:${HEX64}${HEX64.slice(0, 32)}`), 'DIGEST_INVALID', 400],
    [req('GET', `/v2/foo/blobs/sha256:${HEX64}0`), 'DIGEST_INVALID', 400],
    // upload ids
    [req('PATCH', '/v2/foo/blobs/uploads/abc:def'), 'BLOB_UPLOAD_INVALID', 400],
    // query syntax
    [req('PUT', `/v2/foo/blobs/uploads/${UUID}?digest=${D}&digest=${D2}`), 'UNSUPPORTED', 400],
    [req('PUT', `/v2/foo/blobs/uploads/${UUID}?digest=${D}&Digest=${D2}`), 'UNSUPPORTED', 400],
    [req('GET', '/v2/foo/tags/list?n=1&n=2'), 'UNSUPPORTED', 400],
    [req('POST', `/v2/foo/blobs/uploads/?%64igest=${D}`), 'UNSUPPORTED', 400],
    [req('POST', `/v2/foo/blobs/uploads/?dig+est=${D}`), 'UNSUPPORTED', 400],
    [req('POST', `/v2/foo/blobs/uploads/?digest=${D};from=x`), 'UNSUPPORTED', 400],
    [req('POST', `/v2/foo/blobs/uploads/?digest=${D}&&x=1`), 'UNSUPPORTED', 400],
    [req('POST', `/v2/foo/blobs/uploads/?digest=${D}&`), 'UNSUPPORTED', 400],
    [req('POST', `/v2/foo/blobs/uploads/?=x`), 'UNSUPPORTED', 400],
    [req('POST', `/v2/foo/blobs/uploads/?digest=%zz`), 'UNSUPPORTED', 400],
    [req('POST', `/v2/foo/blobs/uploads/?digest=%2`), 'UNSUPPORTED', 400],
    [req('GET', `/v2/foo/tags/list?last=a%00b`), 'UNSUPPORTED', 400],
    [req('GET', `/v2/foo/tags/list?last=%ff`), 'UNSUPPORTED', 400],
    [req('GET', `/v2/foo/tags/list?last=a b`), 'UNSUPPORTED', 400],
    // pagination
    [req('GET', '/v2/_catalog?n=0'), 'UNSUPPORTED', 400],
    [req('GET', '/v2/_catalog?n=-1'), 'UNSUPPORTED', 400],
    [req('GET', '/v2/_catalog?n=+5'), 'UNSUPPORTED', 400],
    [req('GET', '/v2/_catalog?n=05'), 'UNSUPPORTED', 400],
    [req('GET', '/v2/_catalog?n=1e3'), 'UNSUPPORTED', 400],
    [req('GET', '/v2/_catalog?n='), 'UNSUPPORTED', 400],
    [req('GET', '/v2/_catalog?n=9999999999'), 'UNSUPPORTED', 400],
    [req('GET', '/v2/foo/tags/list?n=abc'), 'UNSUPPORTED', 400],
    // mount / from / digest on upload start
    [req('POST', `/v2/foo/blobs/uploads/?mount=${D}`), 'UNSUPPORTED', 400],
    [req('POST', '/v2/foo/blobs/uploads/?from=bar'), 'UNSUPPORTED', 400],
    [req('POST', `/v2/foo/blobs/uploads/?mount=${D}&from=Bar`), 'NAME_INVALID', 400],
    [req('POST', `/v2/foo/blobs/uploads/?mount=${D}&from=bar%2F..%2Fbaz`), 'NAME_INVALID', 400],
    [req('POST', `/v2/foo/blobs/uploads/?mount=${D}&from=`), 'NAME_INVALID', 400],
    [req('POST', '/v2/foo/blobs/uploads/?mount=sha256:abc&from=bar'), 'DIGEST_INVALID', 400],
    [req('POST', `/v2/foo/blobs/uploads/?mount=${D}&from=bar&digest=${D}`), 'UNSUPPORTED', 400],
    [req('POST', '/v2/foo/blobs/uploads/?digest=sha256:abc'), 'DIGEST_INVALID', 400],
    [req('POST', `/v2/foo/blobs/uploads/?digest=sha256:${HEX64}+`), 'DIGEST_INVALID', 400],
    // digest on upload chunks
    [req('PUT', `/v2/foo/blobs/uploads/${UUID}`), 'DIGEST_INVALID', 400],
    [req('PUT', `/v2/foo/blobs/uploads/${UUID}?digest=`), 'DIGEST_INVALID', 400],
    [req('PUT', `/v2/foo/blobs/uploads/${UUID}?Digest=${D}`), 'DIGEST_INVALID', 400],
    [req('PATCH', `/v2/foo/blobs/uploads/${UUID}?digest=${D}`), 'UNSUPPORTED', 400],
    // form bodies: registry:2's FormValue would read parameters from them (I2, I4)
    [req('POST', '/v2/foo/blobs/uploads/', 'application/x-www-form-urlencoded'), 'UNSUPPORTED', 415],
    [
      req('POST', '/v2/foo/blobs/uploads/', 'Application/X-WWW-Form-Urlencoded; charset=utf-8'),
      'UNSUPPORTED',
      415,
    ],
    [req('POST', '/v2/foo/blobs/uploads/', ' application/x-www-form-urlencoded ;'), 'UNSUPPORTED', 415],
    [req('POST', '/v2/foo/blobs/uploads/', 'multipart/form-data; boundary=x'), 'UNSUPPORTED', 415],
    [req('POST', `/v2/foo/blobs/uploads/?digest=${D}`, 'MULTIPART/FORM-DATA'), 'UNSUPPORTED', 415],
    [req('PATCH', `/v2/foo/blobs/uploads/${UUID}`, 'application/x-www-form-urlencoded'), 'UNSUPPORTED', 415],
    [req('PUT', `/v2/foo/blobs/uploads/${UUID}?digest=${D}`, 'multipart/mixed'), 'UNSUPPORTED', 415],
    [req('PUT', '/v2/foo/manifests/v1', 'application/x-www-form-urlencoded'), 'UNSUPPORTED', 415],
  ];
  for (const [r, code, status] of table) {
    const label = `${r.method} ${JSON.stringify(r.url.length > 80 ? `${r.url.slice(0, 80)}…` : r.url)}${r.contentType === undefined ? '' : ` [${r.contentType}]`}`;
    test(`${label} → ${code} ${status}`, () => {
      assert.throws(
        () => parseRoute(r),
        (e: unknown) => {
          assert.ok(e instanceof GateError, `expected GateError, got ${String(e)}`);
          assert.equal(e.code, code, e.message);
          assert.equal(e.status, status, e.message);
          return true;
        },
      );
    });
  }

  test('405 names the allowed methods', () => {
    assert.throws(
      () => parseRoute(req('POST', `/v2/foo/blobs/${D}`)),
      (e: unknown) => e instanceof GateError && e.headers['Allow'] === 'GET, HEAD, DELETE',
    );
  });

  test('a form content type on a GET is not a body and is ignored', () => {
    assert.equal(parseRoute(req('GET', '/v2/foo/manifests/v1', 'multipart/form-data')).kind, 'manifest');
  });
});

describe('parseRoute: properties', () => {
  const component = fc
    .stringMatching(/^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/)
    .filter((c) => c.length <= 40);
  const name = fc
    .array(fc.oneof(component, fc.constantFrom('manifests', 'blobs', 'uploads', 'tags', 'list', 'v2')), {
      minLength: 1,
      maxLength: 5,
    })
    .map((cs) => cs.join('/'));
  const tag = fc.stringMatching(/^\w[\w.-]{0,127}$/);
  const hex = (len: number) =>
    fc
      .array(fc.constantFrom(...'0123456789abcdef'), { minLength: len, maxLength: len })
      .map((a) => a.join(''));
  const digest = fc.oneof(
    hex(64).map((h) => `sha256:${h}`),
    hex(128).map((h) => `sha512:${h}`),
  );
  const upstreamMethod = fc.constantFrom('GET', 'HEAD', 'PUT', 'DELETE');

  test('never throws anything but GateError on arbitrary input', () => {
    const chars = fc.constantFrom(...'/v2_catalog:@%.?&=#;+\\ a-zAZ09\0\u00e9'.split(''));
    const structured = fc
      .array(
        fc.oneof(
          chars,
          fc.constantFrom('manifests', 'blobs', 'uploads/', 'tags/list', D, 'digest=', 'mount='),
        ),
        {
          maxLength: 30,
        },
      )
      .map((a) => `/v2/${a.join('')}`);
    const method = fc.constantFrom('GET', 'HEAD', 'PUT', 'POST', 'PATCH', 'DELETE', 'OPTIONS', 'get', '');
    fc.assert(
      fc.property(
        method,
        fc.oneof(fc.string({ unit: 'binary', maxLength: 200 }), structured),
        fc.option(fc.string({ maxLength: 40 }), { nil: undefined }),
        (m, url, ct) => {
          try {
            const r = parseRoute(ct === undefined ? { method: m, url } : { method: m, url, contentType: ct });
            // Whatever parses is a canonical /v2 path.
            assert.ok(url.startsWith('/v2/'));
            assert.ok(!url.includes('%') && !url.includes('/./') && !url.includes('/../'));
            assert.ok(r.kind !== 'base' || url.split('?')[0] === '/v2/');
          } catch (e) {
            assert.ok(e instanceof GateError, `non-GateError for ${JSON.stringify(url)}: ${String(e)}`);
            assert.ok(e.status >= 400 && e.status < 500);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });

  test('manifest routes round-trip (name, tag | digest)', () => {
    fc.assert(
      fc.property(
        name,
        fc.oneof(
          tag.map((t) => ({ tag: t })),
          digest.map((d) => ({ digest: d })),
        ),
        upstreamMethod,
        (n, ref, m) => {
          const refStr = 'tag' in ref ? ref.tag : ref.digest;
          const r = parseRoute({ method: m, url: `/v2/${n}/manifests/${refStr}` });
          const action = m === 'PUT' ? 'push' : m === 'DELETE' ? 'delete' : 'pull';
          assert.deepEqual(r, { kind: 'manifest', repo: n, ref, action });
        },
      ),
    );
  });

  test('blob, tags and upload routes round-trip', () => {
    fc.assert(
      fc.property(name, digest, name, (n, d, from) => {
        assert.deepEqual(parseRoute({ method: 'GET', url: `/v2/${n}/blobs/${d}` }), {
          kind: 'blob',
          repo: n,
          digest: d,
          action: 'pull',
        });
        assert.deepEqual(parseRoute({ method: 'GET', url: `/v2/${n}/tags/list` }), {
          kind: 'tags',
          repo: n,
          action: 'pull',
        });
        assert.deepEqual(
          parseRoute({
            method: 'POST',
            url: `/v2/${n}/blobs/uploads/?mount=${encodeURIComponent(d)}&from=${encodeURIComponent(from)}`,
          }),
          { kind: 'upload-start', repo: n, action: 'push', mount: { from, digest: d } },
        );
        assert.deepEqual(
          parseRoute({
            method: 'PUT',
            url: `/v2/${n}/blobs/uploads/${UUID}?digest=${encodeURIComponent(d)}`,
          }),
          { kind: 'upload', repo: n, uuid: UUID, action: 'push', digest: d },
        );
      }),
    );
  });

  test('any percent-encoded byte in the path is refused', () => {
    fc.assert(
      fc.property(name, tag, fc.integer({ min: 0, max: 255 }), fc.nat(), (n, t, byte, at) => {
        const url = `/v2/${n}/manifests/${t}`;
        const i = 1 + (at % (url.length - 1));
        const enc = `%${byte.toString(16).padStart(2, '0')}`;
        const bad = url.slice(0, i) + enc + url.slice(i);
        assert.throws(
          () => parseRoute({ method: 'GET', url: bad }),
          (e: unknown) => e instanceof GateError && e.code === 'NAME_INVALID',
        );
      }),
    );
  });
});
