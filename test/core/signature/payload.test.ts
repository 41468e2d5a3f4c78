import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GateError } from '../../../src/core/errors.js';
import { buildSimpleSigningPayload, parseSimpleSigningPayload } from '../../../src/core/signature/payload.js';
import { tryParseDockerReference as parseDockerReference } from '../../../src/core/reference.js';
import { loadCosignFixture } from '../../helpers/fixtures.js';

const DIGEST = 'sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00';

function refused(text: string, pattern: RegExp): void {
  assert.throws(
    () => parseSimpleSigningPayload(new TextEncoder().encode(text)),
    (e: unknown) => e instanceof GateError && pattern.test(e.message),
  );
}

const good = (over: { critical?: string; optional?: string; extra?: string } = {}): string =>
  `{"critical":${
    over.critical ??
    `{"identity":{"docker-reference":"reg.example/prod/app"},"image":{"docker-manifest-digest":"${DIGEST}"},"type":"cosign container image signature"}`
  },"optional":${over.optional ?? 'null'}${over.extra ?? ''}}`;

test('parses the payloads written by real cosign and by containers/image (skopeo)', () => {
  const cosign = parseSimpleSigningPayload(loadCosignFixture('valid').signatures[0]!.payload);
  assert.deepEqual(cosign, {
    dockerReference: '192.168.64.2:5000/cosign-signed-single-sample',
    manifestDigest: DIGEST,
    optional: null,
  });
  const skopeo = parseSimpleSigningPayload(loadCosignFixture('valid-with-tag').signatures[0]!.payload);
  assert.equal(skopeo.dockerReference, '192.168.64.2:5000/skopeo-signed:tag');
  assert.deepEqual(skopeo.optional, { creator: 'containers/image 5.21.2-dev', timestamp: 1657296609 });
});

test('accepts arbitrary optional annotations (cosign -a key=value)', () => {
  assert.deepEqual(parseSimpleSigningPayload(good({ optional: '{"env":"prod","n":1}' })).optional, {
    env: 'prod',
    n: 1,
  });
});

test('top level: exactly critical and optional', () => {
  refused(good({ extra: ',"x":1' }), /unexpected field "x"/);
  refused(`{"critical":${JSON.stringify({})}}`, /unexpected|missing/);
  refused(good().replace(',"optional":null', ''), /missing field "optional"/);
  refused(good({ optional: '[]' }), /"optional" must be an object or null/);
  refused(good({ optional: '{"creator":1}' }), /creator/);
  refused(good({ optional: '{"timestamp":1.5}' }), /timestamp/);
  refused(good({ optional: '{"timestamp":"1"}' }), /timestamp/);
  refused('[]', /must be a JSON object/);
});

test('critical: exactly type, image, identity with exact values', () => {
  const c = (identity: string, image: string, type: string, extra = ''): string =>
    good({ critical: `{"identity":${identity},"image":${image},"type":${type}${extra}}` });
  const id = '{"docker-reference":"r/x"}';
  const img = `{"docker-manifest-digest":"${DIGEST}"}`;
  const ty = '"cosign container image signature"';
  assert.equal(parseSimpleSigningPayload(c(id, img, ty)).dockerReference, 'r/x');
  refused(c(id, img, ty, ',"extra":1'), /unexpected field "extra"/);
  refused(c(id, img, '"atomic container signature"'), /unrecognised signature type/);
  refused(c(id, img, '"Cosign container image signature"'), /unrecognised/);
  refused(c(id, `{"docker-manifest-digest":"${DIGEST}","x":1}`, ty), /unexpected field "x"/);
  refused(c(id, '{"docker-manifest-digest":"sha256:abc"}', ty), /invalid docker-manifest-digest/);
  refused(c(id, '{}', ty), /missing field/);
  refused(c('{"docker-reference":"r/x","docker-reference2":""}', img, ty), /unexpected field/);
  refused(c('{"docker-reference":""}', img, ty), /non-empty/);
  refused(c('{"docker-reference":5}', img, ty), /non-empty string/);
  refused(good({ critical: `{"identity":${id},"image":${img}}` }), /missing field "type"/);
});

test('duplicate and case-variant keys are refused anywhere in the payload', () => {
  refused(good().replace('"optional":null', '"optional":null,"optional":{}'), /duplicate key/);
  refused(good().replace('"type":"cosign', '"Type":"x","type":"cosign'), /differ only by case/);
  refused(
    good().replace(
      '"docker-reference":"reg.example/prod/app"',
      '"docker-reference":"a/b","docker-reference":"c/d"',
    ),
    /duplicate key/,
  );
});

test('build: skopeo-style payload that our strict parser and JSON.parse both read back', () => {
  const bytes = buildSimpleSigningPayload({
    dockerReference: 'reg.example:5000/prod/app:1.2',
    manifestDigest: DIGEST,
    creator: 'trustgate 0.1.0',
    timestamp: 1767225600,
  });
  const text = new TextDecoder().decode(bytes);
  assert.equal(
    text,
    `{"critical":{"identity":{"docker-reference":"reg.example:5000/prod/app:1.2"},"image":{"docker-manifest-digest":"${DIGEST}"},"type":"cosign container image signature"},"optional":{"creator":"trustgate 0.1.0","timestamp":1767225600}}`,
  );
  assert.deepEqual(parseSimpleSigningPayload(bytes), {
    dockerReference: 'reg.example:5000/prod/app:1.2',
    manifestDigest: DIGEST,
    optional: { creator: 'trustgate 0.1.0', timestamp: 1767225600 },
  });
  // Without optional fields it is byte-identical to what cosign writes.
  const cosignLike = buildSimpleSigningPayload({
    dockerReference: '192.168.64.2:5000/cosign-signed-single-sample',
    manifestDigest: DIGEST,
  });
  assert.deepEqual(cosignLike, loadCosignFixture('valid').signatures[0]!.payload);
});

test('build refuses bad input', () => {
  assert.throws(
    () => buildSimpleSigningPayload({ dockerReference: 'Bad/Name', manifestDigest: DIGEST }),
    TypeError,
  );
  assert.throws(
    () => buildSimpleSigningPayload({ dockerReference: 'a/b', manifestDigest: 'sha256:1' }),
    TypeError,
  );
  assert.throws(
    () => buildSimpleSigningPayload({ dockerReference: 'a/b', manifestDigest: DIGEST, timestamp: 1.5 }),
    TypeError,
  );
});

test('docker reference grammar', () => {
  assert.deepEqual(parseDockerReference('192.168.64.2:5000/cosign-signed-single-sample'), {
    host: '192.168.64.2:5000',
    repo: 'cosign-signed-single-sample',
  });
  assert.deepEqual(parseDockerReference('reg.example/prod/app:v1.0'), {
    host: 'reg.example',
    repo: 'prod/app',
    tag: 'v1.0',
  });
  assert.deepEqual(parseDockerReference('localhost/prod/app'), { host: 'localhost', repo: 'prod/app' });
  assert.deepEqual(parseDockerReference('localhost:5000/app'), { host: 'localhost:5000', repo: 'app' });
  assert.deepEqual(parseDockerReference('[::1]:5000/app'), { host: '[::1]:5000', repo: 'app' });
  // No dot, colon or localhost: the first component is part of the path (no docker.io normalisation).
  assert.deepEqual(parseDockerReference('prod/app'), { repo: 'prod/app' });
  assert.deepEqual(parseDockerReference(`reg.example/a/b:t@${DIGEST}`), {
    host: 'reg.example',
    repo: 'a/b',
    tag: 't',
    digest: DIGEST,
  });
  for (const bad of [
    '',
    'Prod/app',
    'reg.example/',
    'a//b',
    'a/b:',
    'a/b:-x',
    'a/b@sha256:1',
    'a/-b',
    'a/b c',
    '/a',
  ]) {
    assert.equal(parseDockerReference(bad), null, bad);
  }
  assert.equal(parseDockerReference(`r.io/${'a'.repeat(260)}`), null);
});
