/**
 * Issue 12, finding 2: "A form body smuggled past the Content-Type check by Unicode case folding".
 * `Content-Type: applİcation/x-www-form-urlencoded` (U+0130, which Go's strings.ToLower maps to
 * ASCII `i`) passed trustgate's check; registry:2's mime.ParseMediaType read it as a form, and
 * r.FormValue took `mount` and `from` from the body, ahead of the query. A caller with push on one
 * repository mounted, then read, a blob of a repository it has no rights on.
 *
 * The class: any header, query or JSON field that trustgate and Go's parsers read differently
 * (folding, whitespace, duplicates, Unicode). Siblings tested here: the multipart spelling, Unicode
 * whitespace (NBSP, NEL) and lone latin1 bytes, non-ASCII in other headers (Accept, Range,
 * User-Agent), a chunk PATCH and the completing PUT with a form type, `;` and case-variant keys in
 * the query, and manifest keys that fold together only under Go's Unicode rules (ſ, K).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';
import { bearer, getToken, request, type Reply } from '../helpers/http.js';
import { direct, pushBlob, pushRandomImage } from '../helpers/registry-direct.js';

/** A string whose latin1 bytes are the UTF-8 encoding of `s` (how a raw client sends UTF-8). */
const utf8Bytes = (s: string): string => Buffer.from(s, 'utf8').toString('latin1');

describe('security: form bodies and Unicode in headers (issue 12, finding 2)', { timeout: 120_000 }, () => {
  let registry: RegistryHandle;
  let gate: TestGate;
  let secret: string;
  const users = { attacker: 'attacker-password' };

  before(async () => {
    registry = await startRegistry();
    gate = await startTestGate({
      registryUrl: registry.url,
      users,
      policy: { access: [{ repos: ['team-a/**'], pull: ['attacker'], push: ['attacker'], delete: [] }] },
      trustRules: [{ repos: ['**'], keys: [] }],
    });
    secret = await pushBlob(registry.url, 'team-b/secret', randomBytes(4096));
  });
  after(async () => {
    await gate?.close();
    await registry?.stop();
  });

  const pushToken = (): Promise<string> =>
    getToken(gate.url, gate.ca, 'attacker', users.attacker, ['repository:team-a/app:pull,push']);
  const mounted = async (): Promise<boolean> =>
    (await direct(registry.url, 'HEAD', `/v2/team-a/app/blobs/${secret}`)).status === 200;
  const start = async (contentType: string, body: string | Buffer, extra = {}): Promise<Reply> =>
    request(gate.url, gate.ca, {
      method: 'POST',
      path: '/v2/team-a/app/blobs/uploads/',
      headers: { ...bearer(await pushToken()), 'content-type': contentType, ...extra },
      body,
    });

  const formBody = (): string => `mount=${secret}&from=team-b/secret`;
  const multipart = (): string =>
    [
      '--XX',
      'Content-Disposition: form-data; name="mount"',
      '',
      secret,
      '--XX',
      'Content-Disposition: form-data; name="from"',
      '',
      'team-b/secret',
      '--XX--',
      '',
    ].join('\r\n');

  const cases: Array<[string, string, () => string]> = [
    ['U+0130 in application (the finding)', utf8Bytes('applİcation/x-www-form-urlencoded'), formBody],
    ['U+0130 in multipart', `${utf8Bytes('multİpart/form-data')}; boundary=XX`, multipart],
    ['UTF-8 NBSP after the type', `application/x-www-form-urlencoded${utf8Bytes('\u00a0')}`, formBody],
    ['UTF-8 NEL before the type', `${utf8Bytes('\u0085')}application/x-www-form-urlencoded`, formBody],
    ['a lone latin1 byte 0xA0', 'application/x-www-form-urlencoded\u00a0', formBody],
    ['fullwidth letters', utf8Bytes('ａpplication/x-www-form-urlencoded'), formBody],
  ];
  for (const [name, contentType, body] of cases) {
    it(`upload start, ${name}: refused with 400, nothing mounted`, async () => {
      const r = await start(contentType, body());
      assert.equal(r.status, 400, `${r.status} ${r.body.toString()}`);
      assert.match(r.body.toString(), /outside printable ASCII/);
      assert.equal(await mounted(), false, 'the blob of team-b was mounted into team-a');
    });
  }

  it('ASCII form types with a body stay refused (415); the mount never happens', async () => {
    for (const ct of [
      'application/x-www-form-urlencoded',
      'APPLICATION/X-WWW-FORM-URLENCODED',
      ' application/x-www-form-urlencoded ; charset=utf-8',
      'multipart/form-data; boundary=XX',
    ]) {
      const r = await start(ct, ct.startsWith('multi') ? multipart() : formBody());
      assert.equal(r.status, 415, `${ct}: ${r.status} ${r.body.toString()}`);
    }
    assert.equal(await mounted(), false);
  });

  it('an empty body with a form Content-Type (curl -d "", urllib) starts a plain upload: nothing to smuggle', async () => {
    const r = await start('application/x-www-form-urlencoded', '', { 'content-length': '0' });
    assert.equal(r.status, 202, r.body.toString());
    assert.equal(await mounted(), false);
  });

  it('a chunk PATCH and the completing PUT with a form type (with a body) are refused', async () => {
    const t = await pushToken();
    const begin = await request(gate.url, gate.ca, {
      method: 'POST',
      path: '/v2/team-a/app/blobs/uploads/',
      headers: { ...bearer(t), 'content-length': '0' },
    });
    assert.equal(begin.status, 202, begin.body.toString());
    const loc = new URL(String(begin.headers['location']), 'https://x');
    const upload = loc.pathname + loc.search;
    for (const [method, ct, path] of [
      ['PATCH', utf8Bytes('applİcation/x-www-form-urlencoded'), upload],
      ['PATCH', 'application/x-www-form-urlencoded', upload],
      ['PUT', `${utf8Bytes('multİpart/form-data')}; boundary=XX`, `${upload}&digest=${secret}`],
    ] as const) {
      const r = await request(gate.url, gate.ca, {
        method,
        path,
        headers: { ...bearer(t), 'content-type': ct },
        body: `digest=${secret}`,
      });
      assert.ok(r.status === 400 || r.status === 415, `${method} ${ct}: ${r.status} ${r.body.toString()}`);
    }
    assert.equal(await mounted(), false);
  });

  it('non-ASCII bytes in any other header of a /v2 request are refused before the registry sees them', async () => {
    const img = await pushRandomImage(registry.url, 'team-a/app', 'v1');
    const t = await pushToken();
    for (const [name, value] of [
      ['accept', `application/vnd.oci.image.manifest.v1+json${utf8Bytes('\u00a0')}`],
      ['user-agent', utf8Bytes('docker/27 (İ)')],
      ['x-anything', 'caf\u00e9'],
    ] as const) {
      const r = await request(gate.url, gate.ca, {
        path: '/v2/team-a/app/manifests/v1',
        headers: { ...bearer(t), [name]: value },
      });
      assert.equal(r.status, 400, `${name}: ${r.status}`);
    }
    const range = await request(gate.url, gate.ca, {
      path: `/v2/team-a/app/blobs/${img.blobs[1]!}`,
      headers: { ...bearer(t), range: `bytes=0-${utf8Bytes('１')}` },
    });
    assert.equal(range.status, 400);
  });

  it('query siblings: `;` pairs and case-variant keys cannot carry a second mount or from', async () => {
    const t = await pushToken();
    for (const q of [
      `mount=${secret};from=team-b/secret&from=team-a/app`,
      `mount=${secret}&from=team-a/app&FROM=team-b/secret`,
      `mount=${secret}&from=team-a/app&x=1;from=team-b/secret`,
    ]) {
      const r = await request(gate.url, gate.ca, {
        method: 'POST',
        path: `/v2/team-a/app/blobs/uploads/?${q}`,
        headers: { ...bearer(t), 'content-length': '0' },
      });
      assert.equal(r.status, 400, `${q}: ${r.status} ${r.body.toString()}`);
    }
    assert.equal(await mounted(), false);
  });

  it('manifest keys that fold together only under Go\u2019s Unicode rules (ſ, K) are refused', async () => {
    const img = await pushRandomImage(registry.url, 'team-a/app', 'fold');
    const doc = JSON.parse(img.bytes.toString()) as Record<string, unknown>;
    const layers = JSON.stringify(doc['layers']);
    for (const body of [
      img.bytes.toString().replace('"layers":', `"layer\u017f":[],"layers":`),
      img.bytes.toString().replace('"schemaVersion":2', '"\u017fchemaVersion":2,"schemaVersion":2'),
      img.bytes.toString().replace('"layers":', `"\u212a":1,"k":1,"layers":`),
      `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":${JSON.stringify(doc['config'])},"layers":${layers},"LAYERS":[]}`,
    ]) {
      const r = await request(gate.url, gate.ca, {
        method: 'PUT',
        path: '/v2/team-a/app/manifests/folded',
        headers: {
          ...bearer(await pushToken()),
          'content-type': 'application/vnd.oci.image.manifest.v1+json',
        },
        body: Buffer.from(body, 'utf8'),
      });
      assert.equal(r.status, 400, `${body.slice(0, 80)}: ${r.status} ${r.body.toString()}`);
      assert.match(r.body.toString(), /MANIFEST_INVALID/);
    }
  });
});
