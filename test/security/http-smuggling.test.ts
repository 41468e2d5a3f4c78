/**
 * HTTP framing attacks against trustgate in front of a real registry:2. The registry runs without
 * authentication behind trustgate, so any byte sequence that reaches it as a second request is a
 * request nobody authorised (RFC 9112 §6.3, §11.2 "request smuggling"; CL.TE / TE.CL desync as in
 * CVE-2019-20445/20444 and Node's own CVE-2022-32215, CVE-2023-30589 bare CR, CVE-2024-27982
 * CL+space). Each case puts a hidden `DELETE` of a manifest the attacker may not touch into the
 * body; the test then checks through the registry itself that the manifest is still there.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';
import { bearer, getToken, request } from '../helpers/http.js';
import { direct, pushManifest, pushRandomImage } from '../helpers/registry-direct.js';
import { rawExchange } from '../helpers/raw.js';

describe('security: HTTP request smuggling and framing', { timeout: 180_000 }, () => {
  let registry: RegistryHandle;
  let gate: TestGate;
  let victim: string;
  let victimBytes: Buffer;
  let token: string;
  let ownToken: string;
  const users = { mallory: 'mallory-password-1' };

  before(async () => {
    registry = await startRegistry();
    gate = await startTestGate({
      registryUrl: registry.url,
      users,
      policy: {
        access: [
          { repos: ['public/*'], pull: ['*'], push: [], delete: [] },
          { repos: ['mallory/*'], pull: ['mallory'], push: ['mallory'], delete: ['mallory'] },
          { repos: ['team-b/*'], pull: [], push: [], delete: [] },
        ],
      },
      trustRules: [{ repos: ['**'], mode: 'off' }],
    });
    await pushRandomImage(registry.url, 'public/hello', 'v1');
    await pushRandomImage(registry.url, 'mallory/own', 'v1');
    const v = await pushRandomImage(registry.url, 'team-b/secret', 'v1');
    victim = v.digest;
    victimBytes = v.bytes;
    token = await getToken(gate.url, gate.ca, 'mallory', users.mallory, ['repository:public/hello:pull']);
    ownToken = await getToken(gate.url, gate.ca, 'mallory', users.mallory, [
      'repository:mallory/own:pull,push,delete',
    ]);
  });

  // A case that fails must not make the next ones fail: the victim is put back before each.
  beforeEach(async () => {
    if (registry) {
      await pushManifest(
        registry.url,
        'team-b/secret',
        'v1',
        victimBytes,
        'application/vnd.oci.image.manifest.v1+json',
      );
    }
  });

  after(async () => {
    await gate?.close();
    await registry?.stop();
  });

  const hidden = (): string =>
    `DELETE /v2/team-b/secret/manifests/${victim} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n`;
  const chunked = (s: string): string => `${s.length.toString(16)}\r\n${s}\r\n0\r\n\r\n`;

  async function victimIntact(what: string): Promise<void> {
    // Give a smuggled request time to run upstream before looking.
    await new Promise((r) => setTimeout(r, 300));
    const r = await direct(registry.url, 'HEAD', `/v2/team-b/secret/manifests/${victim}`, undefined, {
      accept: 'application/vnd.oci.image.manifest.v1+json',
    });
    assert.equal(r.status, 200, `${what}: the smuggled DELETE reached the registry`);
  }

  async function gateAlive(): Promise<void> {
    const r = await request(gate.url, gate.ca, { path: '/healthz' });
    assert.equal(r.status, 200);
  }

  // Bodies on methods that carry none: Node's client sends no framing for GET/HEAD/DELETE bodies
  // (no default chunking), and http-proxy sets Content-Length: 0 on DELETE, so a forwarded body
  // would be read by Go as the next request on the pooled connection.
  for (const [method, path, tok] of [
    ['GET', '/v2/public/hello/tags/list', 'pull'],
    ['HEAD', '/v2/public/hello/blobs/sha256:' + 'c'.repeat(64), 'pull'],
    ['GET', '/v2/public/hello/blobs/sha256:' + 'a'.repeat(64), 'pull'],
    ['DELETE', '/v2/mallory/own/manifests/sha256:' + 'b'.repeat(64), 'own'],
  ] as const) {
    it(`a chunked body on ${method} ${path.split('/').slice(-2).join('/')} is refused, never forwarded`, async () => {
      const t = tok === 'pull' ? token : ownToken;
      const r = await rawExchange(
        gate.tg.port,
        gate.ca,
        `${method} ${path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${t}\r\n` +
          `Transfer-Encoding: chunked\r\n\r\n${chunked(hidden())}`,
      );
      await victimIntact(`${method} with chunked body`);
      assert.equal(r.statuses[0], 400, r.text.slice(0, 300));
      await gateAlive();
    });

    it(`a Content-Length body on ${method} ${path.split('/').slice(-2).join('/')} is refused, never forwarded`, async () => {
      const t = tok === 'pull' ? token : ownToken;
      const body = hidden();
      const r = await rawExchange(
        gate.tg.port,
        gate.ca,
        `${method} ${path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${t}\r\n` +
          `Content-Length: ${body.length}\r\n\r\n${body}`,
      );
      await victimIntact(`${method} with Content-Length body`);
      assert.equal(r.statuses[0], 400, r.text.slice(0, 300));
    });
  }

  it('Content-Length together with Transfer-Encoding (CL.TE) is refused', async () => {
    const body = chunked(hidden());
    const r = await rawExchange(
      gate.tg.port,
      gate.ca,
      `POST /v2/mallory/own/blobs/uploads/ HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${ownToken}\r\n` +
        `Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n${body}`,
    );
    assert.equal(r.statuses[0], 400, r.text.slice(0, 300));
    assert.equal(r.statuses.length, 1, 'one request, one answer');
    await victimIntact('CL.TE');
  });

  it('obfuscated Transfer-Encoding values are refused', async () => {
    for (const te of ['chunked, identity', 'xchunked', 'chunked\t', ' chunked', 'identity']) {
      const r = await rawExchange(
        gate.tg.port,
        gate.ca,
        `GET /v2/public/hello/tags/list HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\n` +
          `Transfer-Encoding: ${te}\r\n\r\n${chunked(hidden())}`,
      );
      assert.ok(
        r.statuses[0] === 400 || r.statuses[0] === 501,
        `TE ${JSON.stringify(te)}: ${r.text.slice(0, 200)}`,
      );
    }
    await victimIntact('obfuscated TE');
  });

  it('duplicate Content-Length headers that disagree are refused', async () => {
    const r = await rawExchange(
      gate.tg.port,
      gate.ca,
      `POST /v2/mallory/own/blobs/uploads/ HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${ownToken}\r\n` +
        `Content-Length: 0\r\nContent-Length: 80\r\n\r\n${hidden()}`,
    );
    assert.equal(r.statuses[0], 400, r.text.slice(0, 300));
    await victimIntact('duplicate CL');
  });

  it('Content-Length with a sign, space or hex spelling is refused (CVE-2024-27982 shape)', async () => {
    for (const cl of ['+0', '0x0', '0 80', '-1']) {
      const r = await rawExchange(
        gate.tg.port,
        gate.ca,
        `POST /v2/mallory/own/blobs/uploads/ HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${ownToken}\r\n` +
          `Content-Length: ${cl}\r\n\r\n${hidden()}`,
      );
      assert.equal(r.statuses[0], 400, `CL ${cl}: ${r.text.slice(0, 200)}`);
    }
    await victimIntact('malformed CL');
  });

  it('bare LF and bare CR line endings do not desync: refused or read as one request', async () => {
    for (const sep of ['\n', '\r']) {
      const r = await rawExchange(
        gate.tg.port,
        gate.ca,
        `GET /v2/public/hello/tags/list HTTP/1.1${sep}Host: localhost${sep}Authorization: Bearer ${token}${sep}` +
          `Transfer-Encoding: chunked${sep}${sep}${chunked(hidden())}`,
      );
      assert.ok(r.statuses.length <= 1, `${JSON.stringify(sep)}: two answers`);
      assert.ok(
        r.statuses[0] === undefined || r.statuses[0] >= 400,
        JSON.stringify(sep) + r.text.slice(0, 200),
      );
    }
    await victimIntact('bare line endings');
  });

  it('a header block over the limit gets 431 and the process stays up', async () => {
    const r = await rawExchange(
      gate.tg.port,
      gate.ca,
      `GET /v2/public/hello/tags/list HTTP/1.1\r\nHost: localhost\r\nX-Big: ${'a'.repeat(70_000)}\r\n\r\n`,
    );
    assert.ok(r.statuses[0] === 431 || r.statuses[0] === 400, r.text.slice(0, 200));
    await gateAlive();
  });

  it('slow clients (50 connections dribbling headers) do not stop others being served', async () => {
    const slow = Array.from({ length: 50 }, () =>
      rawExchange(
        gate.tg.port,
        gate.ca,
        ['GET /v2/public/hello/tags/list HTTP/1.1\r\n', 'Host: localhost\r\n', 'X-A: 1\r\n', 'X-B: 2\r\n'],
        { gapMs: 500, idleMs: 3000, maxMs: 4000 },
      ),
    );
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    const r = await request(gate.url, gate.ca, {
      path: '/v2/public/hello/tags/list',
      headers: bearer(token),
    });
    assert.equal(r.status, 200);
    assert.ok(Date.now() - t0 < 2000, `served in ${Date.now() - t0} ms`);
    const done = await Promise.all(slow);
    assert.ok(
      done.every((d) => d.statuses.length === 0),
      'an incomplete request got an answer',
    );
    await gateAlive();
  });
});
