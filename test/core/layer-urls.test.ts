/**
 * Layer URLs (issue 12, finding 9): the pure policy decision, and the manifest keys Go reads
 * case-insensitively (a `URLs` key is registry:2's `urls`; trustgate must not see past it).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GateError } from '../../src/core/errors.js';
import {
  checkLayerUrls,
  compileLayerUrlPolicy,
  layerUrlRefusal,
  MAX_URL_LENGTH,
  NO_LAYER_URLS,
  type LayerUrlPolicy,
} from '../../src/core/layer-urls.js';
import {
  MEDIA_TYPE_DOCKER_MANIFEST,
  MEDIA_TYPE_OCI_CONFIG,
  MEDIA_TYPE_OCI_INDEX,
  MEDIA_TYPE_OCI_MANIFEST,
  parseManifest,
} from '../../src/core/manifest.js';

const D1 = `sha256:${'a'.repeat(64)}`;
const D2 = `sha256:${'b'.repeat(64)}`;
const LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';
const FOREIGN = 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip';

const policy = compileLayerUrlPolicy({
  allow: ['^https://layers\\.example\\.com/', '^https://mcr\\.microsoft\\.com/'],
  deny: ['/blocked/'],
});

function image(layer: Record<string, unknown>, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    schemaVersion: 2,
    mediaType: MEDIA_TYPE_OCI_MANIFEST,
    config: { mediaType: MEDIA_TYPE_OCI_CONFIG, digest: D1, size: 2 },
    layers: [{ mediaType: LAYER, digest: D2, size: 10, ...layer }],
    ...extra,
  });
}

function refused(doc: string, p: LayerUrlPolicy, pattern: RegExp, ct?: string): void {
  assert.throws(
    () => checkLayerUrls(parseManifest(doc, ct), p),
    (err: unknown) =>
      err instanceof GateError &&
      err.code === 'MANIFEST_INVALID' &&
      err.status === 400 &&
      pattern.test(err.message),
    doc,
  );
}

describe('checkLayerUrls', () => {
  it('a manifest without urls passes any policy', () => {
    checkLayerUrls(parseManifest(image({})), NO_LAYER_URLS);
    checkLayerUrls(parseManifest(image({ urls: [] })), NO_LAYER_URLS);
    checkLayerUrls(parseManifest(image({ urls: null })), NO_LAYER_URLS);
  });

  it('by default every URL is refused, naming the setting', () => {
    refused(image({ urls: ['https://layers.example.com/a'] }), NO_LAYER_URLS, /manifests\.layerUrls\.allow/);
    // Policy: deny alone allows nothing (registry:2 would allow everything deny does not match).
    const denyOnly = compileLayerUrlPolicy({ allow: [], deny: ['evil'] });
    refused(image({ urls: ['https://layers.example.com/a'] }), denyOnly, /not allowed/);
  });

  it('allowed URLs pass, on any layer media type; every URL of a layer must pass', () => {
    checkLayerUrls(parseManifest(image({ urls: ['https://layers.example.com/a.tar'] })), policy);
    checkLayerUrls(
      parseManifest(
        image(
          { mediaType: FOREIGN, urls: ['https://mcr.microsoft.com/l'] },
          { mediaType: MEDIA_TYPE_DOCKER_MANIFEST },
        ),
      ),
      policy,
    );
    refused(
      image({ urls: ['https://layers.example.com/a.tar', 'https://other.example.com/b'] }),
      policy,
      /urls\[1\].*matches no expression of manifests\.layerUrls\.allow/,
    );
  });

  it('deny wins over allow; expressions match anywhere unless anchored (like Go MatchString)', () => {
    refused(
      image({ urls: ['https://layers.example.com/x/blocked/a'] }),
      policy,
      /manifests\.layerUrls\.deny/,
    );
    // Unanchored: "example" matches inside any URL that contains it.
    const loose = compileLayerUrlPolicy({ allow: ['example'], deny: [] });
    checkLayerUrls(parseManifest(image({ urls: ['https://evil.test/example'] })), loose);
    // The anchored allow above does not match a look-alike host.
    refused(image({ urls: ['https://layers.example.com.evil.test/a'] }), policy, /matches no expression/);
  });

  it('URLs must be http(s), without a fragment, printable ASCII, and of bounded length', () => {
    const all = compileLayerUrlPolicy({ allow: ['.*'], deny: [] });
    for (const [url, why] of [
      ['ftp://layers.example.com/a', /not http or https/],
      ['file:///etc/passwd', /not http or https/],
      ['https://layers.example.com/a#x', /fragment/],
      ['https://layers.example.com/a b', /printable ASCII/],
      ['https://layers.example.com/\u00e9', /printable ASCII/],
      ['/relative/path', /absolute URL/],
      [`https://layers.example.com/${'a'.repeat(MAX_URL_LENGTH)}`, /longer than/],
    ] as const) {
      assert.match(layerUrlRefusal(url, all) ?? '', why, url);
      refused(image({ urls: [url] }), all, why);
    }
    assert.equal(layerUrlRefusal('HTTPS://layers.example.com/a', all), undefined);
  });

  it('urls on a config, a subject or an index entry are refused even when allowlisted', () => {
    const url = 'https://layers.example.com/c';
    refused(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MEDIA_TYPE_OCI_MANIFEST,
        config: { mediaType: MEDIA_TYPE_OCI_CONFIG, digest: D1, size: 2, urls: [url] },
        layers: [],
      }),
      policy,
      /config\.urls/,
    );
    refused(
      image({}, { subject: { mediaType: MEDIA_TYPE_OCI_MANIFEST, digest: D1, size: 2, urls: [url] } }),
      policy,
      /subject\.urls/,
    );
    refused(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MEDIA_TYPE_OCI_INDEX,
        manifests: [{ mediaType: MEDIA_TYPE_OCI_MANIFEST, digest: D1, size: 2, urls: [url] }],
      }),
      policy,
      /manifests\[0\]\.urls/,
    );
  });

  it('a Docker foreign layer without urls is refused (registry:2 answers 500 to it)', () => {
    refused(
      image({ mediaType: FOREIGN }, { mediaType: MEDIA_TYPE_DOCKER_MANIFEST }),
      policy,
      /foreign layer without urls/,
    );
  });

  it('an invalid expression is a TypeError naming the key', () => {
    assert.throws(
      () => compileLayerUrlPolicy({ allow: ['('], deny: [] }),
      /manifests\.layerUrls\.allow\[0\]/,
    );
    assert.throws(
      () => compileLayerUrlPolicy({ allow: [], deny: ['ok', '[z-a]'] }),
      /manifests\.layerUrls\.deny\[1\]/,
    );
  });
});

describe('parseManifest: keys Go would read into a field under another spelling', () => {
  it('"URLs" (Go reads it as urls) is refused, on layers, configs and index entries', () => {
    for (const key of ['URLs', 'Urls', 'URLS', 'uRLs']) {
      assert.throws(
        () => parseManifest(image({ [key]: ['https://x/'] })),
        /key ".*" must be spelled "urls"/,
        key,
      );
    }
  });

  it('variants of other fields are refused at every level', () => {
    const cases: string[] = [
      image({}).replace(
        '"mediaType":"application/vnd.oci.image.manifest',
        '"MediaType":"application/vnd.oci.image.manifest',
      ),
      image({}).replace('"schemaVersion"', '"SchemaVersion"'),
      image({ Annotations: { a: 'b' } }),
      image({}, { Subject: { mediaType: MEDIA_TYPE_OCI_MANIFEST, digest: D1, size: 2 } }),
      // The long s folds onto "s" in Go: "ſize" is read as "size".
      image({}).replace('"size":10', '"size":10,"\u017fize":11').replace('"size":10,', ''),
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MEDIA_TYPE_OCI_INDEX,
        manifests: [
          {
            mediaType: MEDIA_TYPE_OCI_MANIFEST,
            digest: D1,
            size: 2,
            platform: { architecture: 'amd64', os: 'linux', Variant: 'v8' },
          },
        ],
      }),
    ];
    for (const doc of cases)
      assert.throws(() => parseManifest(doc), /manifest invalid: .* key .* must be spelled/, doc);
  });

  it('exact spellings and unknown keys still parse', () => {
    const m = parseManifest(image({ urls: ['https://x/'], 'org.example.extra': 1 }, { somethingElse: true }));
    assert.deepEqual(m.layers[0]?.urls, ['https://x/']);
  });
});
