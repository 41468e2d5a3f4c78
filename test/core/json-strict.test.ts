import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { GateError } from '../../src/core/errors.js';
import { parseStrictJson } from '../../src/core/json-strict.js';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

function refused(input: Uint8Array | string, pattern?: RegExp): void {
  assert.throws(
    () => parseStrictJson(input, 'doc'),
    (err: unknown) =>
      err instanceof GateError &&
      err.code === 'MANIFEST_INVALID' &&
      (pattern === undefined || pattern.test(err.message)),
  );
}

test('parses ordinary JSON like JSON.parse', () => {
  const text = '{"a":[1,2.5,-3e2,true,false,null],"b":{"c":"x\\u00e9\\n\\"y"},"d":""}';
  assert.deepEqual(parseStrictJson(enc(text), 'doc'), JSON.parse(text));
  assert.deepEqual(parseStrictJson(' [ ] ', 'doc'), []);
  assert.equal(parseStrictJson('"\\ud83d\\ude00"', 'doc'), '\u{1F600}');
});

test('refuses duplicate keys at any depth', () => {
  refused('{"a":1,"a":2}', /duplicate key "a"/);
  refused('{"x":{"y":{"a":1,"b":2,"a":3}}}', /duplicate key "a"/);
  refused('[{"a":1},{"b":1,"b":1}]', /duplicate key "b"/);
  // An escaped spelling of the same key is the same key.
  refused('{"a":1,"\\u0061":2}', /duplicate key/);
});

test('refuses keys that differ only by case (Go matches fields case-insensitively)', () => {
  refused('{"mediaType":"a","MediaType":"b"}', /differ only by case/);
  refused('{"layers":{"DIGEST":1,"digest":2}}', /differ only by case/);
  // Go folds the Kelvin sign onto K and long s onto S.
  refused('{"k":1,"\u212a":2}', /differ only by case/);
  refused('{"s":1,"\u017f":2}', /differ only by case/);
  // U+0130 (İ): JavaScript lowercases it to i + U+0307, Go's ToLower to i (fuzz finding, issue 12).
  refused('{"config":1,"conf\u0130g":2}', /differ only by case/);
  refused('{"i":1,"\u0130":2}', /differ only by case/);
  // Same key text in different objects is fine.
  assert.deepEqual(parseStrictJson('{"a":{"a":1},"b":{"A":1}}', 'doc'), { a: { a: 1 }, b: { A: 1 } });
});

test('refuses invalid UTF-8, BOM, lone surrogates and trailing data', () => {
  refused(Uint8Array.from([0x22, 0xc3, 0x28, 0x22]), /invalid UTF-8/);
  refused(Uint8Array.from([0x22, 0xed, 0xa0, 0x80, 0x22]), /invalid UTF-8/); // encoded surrogate
  refused(Uint8Array.from([0xef, 0xbb, 0xbf, 0x7b, 0x7d]));
  refused('"\\ud800"', /lone surrogate/);
  refused('{"\\udc00":1}', /lone surrogate/);
  refused('{} {}', /after the JSON value/);
  refused('{"a":1,}');
  refused('[1,]');
  refused('01');
  refused('1.');
  refused('"a\tb"', /control character/);
  refused('"\\x41"', /invalid escape/);
  refused('NaN');
  refused('1e400', /out of range/);
  refused('{"a" 1}');
  refused('');
  refused('[');
  refused('"abc\\');
});

test('refuses nesting deeper than the limit without overflowing the stack', () => {
  refused('['.repeat(100000) + ']'.repeat(100000), /nesting deeper/);
  assert.deepEqual(parseStrictJson('['.repeat(200) + ']'.repeat(200), 'doc') !== undefined, true);
});

test('__proto__ is an own property, as with JSON.parse', () => {
  const v = parseStrictJson('{"__proto__":{"polluted":true}}', 'doc') as Record<string, unknown>;
  assert.deepEqual(v, JSON.parse('{"__proto__":{"polluted":true}}'));
  assert.equal(Object.getPrototypeOf(v), Object.prototype);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

test('the caller chooses the error code and the document name', () => {
  assert.throws(
    () => parseStrictJson('{"a":1,"a":1}', 'signature payload', 'DENIED'),
    (err: unknown) =>
      err instanceof GateError && err.code === 'DENIED' && err.message.startsWith('signature payload'),
  );
});

/** True when some object in the value has two keys equal under case folding. */
function hasCaseVariantKeys(v: unknown): boolean {
  if (Array.isArray(v)) return v.some(hasCaseVariantKeys);
  if (typeof v !== 'object' || v === null) return false;
  const keys = Object.keys(v);
  const folded = new Set(keys.map((k) => k.toLowerCase().toUpperCase()));
  return folded.size !== keys.length || Object.values(v).some(hasCaseVariantKeys);
}

test('property: valid JSON round-trips equal to JSON.parse; case-variant keys are refused', () => {
  fc.assert(
    fc.property(fc.jsonValue(), fc.boolean(), (value, pretty) => {
      const text = JSON.stringify(value, null, pretty ? 2 : undefined);
      if (hasCaseVariantKeys(value)) {
        assert.throws(() => parseStrictJson(enc(text), 'doc'), /differ only by case/);
      } else {
        assert.deepEqual(parseStrictJson(enc(text), 'doc'), JSON.parse(text));
      }
    }),
    { numRuns: 1000 },
  );
});

test('property: injecting a duplicate or case-variant key into any object is refused', () => {
  const key = fc.string({ minLength: 1, maxLength: 8 }).filter((k) => k.toUpperCase() !== k.toLowerCase());
  fc.assert(
    fc.property(
      fc.dictionary(fc.string(), fc.jsonValue(), { maxKeys: 5 }),
      key,
      fc.boolean(),
      (obj, k, upper) => {
        const variant = upper ? k.toUpperCase() : k;
        const base = JSON.stringify({ ...obj, [k]: 1 });
        const text = `${base.slice(0, -1)},${JSON.stringify(variant)}:2}`;
        assert.throws(() => parseStrictJson(text, 'doc'), GateError);
      },
    ),
    { numRuns: 300 },
  );
});

// Its speed is not asserted here (no timed tests): a quadratic parser would show in the benches.
test('parses a 4 MiB manifest of 30,000 layers exactly as JSON.parse does', () => {
  const layers = Array.from({ length: 30000 }, (_, i) => ({
    mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
    digest: `sha256:${i.toString(16).padStart(64, '0')}`,
    size: i,
    annotations: { 'org.example/i': `value-${i}` },
  }));
  const text = JSON.stringify({ schemaVersion: 2, layers });
  assert.ok(text.length > 4 * 1024 * 1024);
  const bytes = enc(text);
  const v = parseStrictJson(bytes, 'manifest');
  assert.deepEqual(v, JSON.parse(text));
});
