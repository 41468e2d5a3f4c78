/**
 * Property-based tests (fast-check) for the parsers that stand between attacker bytes and a
 * decision: the route parser, strict JSON, the manifest parser and the simple-signing payload.
 * Properties: no input crashes them (only GateError comes out), and what they accept round-trips.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { GateError } from '../../src/core/errors.js';
import { parseStrictJson } from '../../src/core/json-strict.js';
import { parseManifest } from '../../src/core/manifest.js';
import { parseRoute } from '../../src/core/route.js';
import { buildSimpleSigningPayload, parseSimpleSigningPayload } from '../../src/core/signature/payload.js';

const RUNS = Number(process.env['FC_RUNS'] ?? 2000);
const onlyGateError = (fn: () => unknown): boolean => {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof GateError)) throw e;
  }
  return true;
};

const component = fc.stringMatching(/^[a-z0-9]+(?:[._-][a-z0-9]+)?$/, { maxLength: 12 });
const repo = fc.array(component, { minLength: 1, maxLength: 4 }).map((c) => c.join('/'));
const tag = fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}$/);
const hex64 = fc.stringMatching(/^[0-9a-f]{64}$/);
const digest = hex64.map((h) => `sha256:${h}`);
const urlChars = fc.constantFrom(
  ...'abcAZ09/._-:=%?&#;+ \\\u0000\u00e9\t\r\n@'.split(''),
  '%2f',
  '%2e',
  '..',
  '//',
  '/v2/',
  'manifests',
  'blobs',
  'uploads',
  'tags',
  'list',
  '_catalog',
);

describe('security: properties', () => {
  it('parseRoute never throws anything but GateError, for any method, path and content type', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('GET', 'HEAD', 'PUT', 'POST', 'PATCH', 'DELETE', 'get', 'OPTIONS', ''),
        fc.oneof(
          fc.string({ maxLength: 200 }),
          fc.array(urlChars, { maxLength: 30 }).map((a) => '/v2/' + a.join('')),
        ),
        fc.option(fc.string({ maxLength: 40 }), { nil: undefined }),
        (method, url, contentType) => onlyGateError(() => parseRoute({ method, url, contentType })),
      ),
      { numRuns: RUNS * 5 },
    );
  });

  it('parseRoute round-trips every canonical route: repository, reference and action come back', () => {
    fc.assert(
      fc.property(
        repo,
        fc.oneof(
          tag.map((t) => ({ tag: t })),
          digest.map((d) => ({ digest: d })),
        ),
        fc.constantFrom('GET', 'HEAD', 'PUT', 'DELETE'),
        (name, ref, method) => {
          const r = parseRoute({
            method,
            url: `/v2/${name}/manifests/${'tag' in ref ? ref.tag : ref.digest}`,
          });
          assert.equal(r.kind, 'manifest');
          if (r.kind !== 'manifest') return;
          assert.equal(r.repo, name);
          assert.deepEqual(r.ref, ref);
          assert.equal(r.action, method === 'PUT' ? 'push' : method === 'DELETE' ? 'delete' : 'pull');
        },
      ),
      { numRuns: RUNS },
    );
    fc.assert(
      fc.property(repo, repo, digest, (name, from, d) => {
        const r = parseRoute({ method: 'POST', url: `/v2/${name}/blobs/uploads/?mount=${d}&from=${from}` });
        assert.equal(r.kind, 'upload-start');
        if (r.kind === 'upload-start') assert.deepEqual([r.repo, r.mount], [name, { from, digest: d }]);
      }),
      { numRuns: RUNS },
    );
  });

  it('parseRoute: whatever it accepts, the repository is a substring of the raw path and not encoded', () => {
    fc.assert(
      fc.property(fc.array(urlChars, { maxLength: 30 }), (parts) => {
        const url = '/v2/' + parts.join('');
        let r;
        try {
          r = parseRoute({ method: 'GET', url });
        } catch (e) {
          if (e instanceof GateError) return;
          throw e;
        }
        if ('repo' in r) {
          assert.ok(url.startsWith(`/v2/${r.repo}/`), url);
          assert.doesNotMatch(r.repo, /%|\.\.|\/\/|^\/|\/$/);
        }
      }),
      { numRuns: RUNS * 5 },
    );
  });

  it('parseStrictJson never crashes, and anything it accepts means the same to JSON.parse', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string({ maxLength: 100 }), fc.json({ maxDepth: 4 }), fc.uint8Array({ maxLength: 100 })),
        (input) => {
          let v: unknown;
          try {
            v = parseStrictJson(input, 'doc');
          } catch (e) {
            if (e instanceof GateError) return;
            throw e;
          }
          const text = typeof input === 'string' ? input : new TextDecoder().decode(input);
          assert.deepEqual(v, JSON.parse(text));
        },
      ),
      { numRuns: RUNS * 2 },
    );
  });

  it('parseStrictJson refuses every object with a key repeated in another case', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[a-z]{1,8}$/), fc.jsonValue({ maxDepth: 2 }), (k, v) => {
        const upper = k[0]!.toUpperCase() + k.slice(1);
        assert.throws(() => parseStrictJson(`{"${k}":${JSON.stringify(v)},"${upper}":1}`, 'doc'), GateError);
        assert.throws(
          () => parseStrictJson(`{"x":{"${k}":1,"${k}":${JSON.stringify(v)}}}`, 'doc'),
          GateError,
        );
      }),
      { numRuns: RUNS },
    );
  });

  const descriptor = fc.record({
    mediaType: fc.constantFrom(
      'application/vnd.oci.image.layer.v1.tar',
      'application/vnd.oci.image.config.v1+json',
    ),
    digest,
    size: fc.nat(),
  });

  it('parseManifest never crashes on mutated manifests, and accepted ones round-trip their fields', () => {
    const manifest = fc
      .record({ config: descriptor, layers: fc.array(descriptor, { maxLength: 4 }) })
      .map((m) => ({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        ...m,
      }));
    fc.assert(
      fc.property(manifest, fc.nat(400), fc.string({ maxLength: 4 }), (m, cut, junk) => {
        const text = JSON.stringify(m);
        const parsed = parseManifest(text, 'application/vnd.oci.image.manifest.v1+json');
        const plain = JSON.parse(text) as typeof m; // fast-check records have a null prototype
        assert.deepEqual(parsed.config, plain.config);
        assert.deepEqual(parsed.layers, plain.layers);
        const mutated = text.slice(0, cut % (text.length + 1)) + junk + text.slice(cut % (text.length + 1));
        onlyGateError(() => parseManifest(mutated));
        onlyGateError(() => parseManifest(Buffer.from(mutated, 'latin1'), junk));
      }),
      { numRuns: RUNS },
    );
  });

  it('simple-signing payloads: built ones parse back; arbitrary bytes only raise GateError', () => {
    fc.assert(
      fc.property(repo, fc.option(tag, { nil: undefined }), digest, (name, t, d) => {
        const ref = `registry.example:5000/${name}${t ? `:${t}` : ''}`;
        const p = parseSimpleSigningPayload(
          buildSimpleSigningPayload({ dockerReference: ref, manifestDigest: d }),
        );
        assert.equal(p.dockerReference, ref);
        assert.equal(p.manifestDigest, d);
      }),
      { numRuns: RUNS },
    );
    fc.assert(
      fc.property(fc.oneof(fc.json({ maxDepth: 4 }), fc.uint8Array({ maxLength: 64 })), (x) =>
        onlyGateError(() => parseSimpleSigningPayload(x)),
      ),
      { numRuns: RUNS },
    );
  });
});
