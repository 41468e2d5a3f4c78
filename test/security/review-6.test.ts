/**
 * Review 6: adversarial tests of the one access decision (core/access-decision.ts, merged in
 * 96cd239) against the answers trustgate gave before it (77ba6f5). HELD tests pass when the
 * defence held; `fixed` tests broke at review (they failed before the fix) and pass now.
 * scripts/access-differential.mjs runs the whole route x identity x trust-mode matrix against
 * both builds; these tests pin the answers an authorisation regression would change first.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { decideAccess, type AccessFacts, type Grants } from '../../src/core/access-decision.js';
import { ERRORS, InternalFailure, toGateError } from '../../src/core/errors.js';
import { MEDIA_TYPES } from '../../src/core/manifest.js';
import type { RepoAction } from '../../src/core/policy.js';
import { generateKeyPair } from '../../src/core/signature/sign.js';
import type { Route } from '../../src/core/types.js';
import { startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';
import { bearer, getToken, request, assertBlobNotAdmitted, type Reply } from '../helpers/http.js';
import { direct, pushRandomImage, sha256 } from '../helpers/registry-direct.js';
import { signDirect } from '../helpers/sign.js';

const OCI = MEDIA_TYPES.ociManifest;
const ACCEPT = [OCI, MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerManifest, MEDIA_TYPES.dockerManifestList].join(
  ', ',
);
const D = `sha256:${'a'.repeat(64)}`;
const hex = (d: string): string => d.slice('sha256:'.length);
const codeOf = (r: Reply): string =>
  r.body.length === 0 ? '-' : ((r.json() as { errors?: Array<{ code: string }> }).errors?.[0]?.code ?? 'ok');

describe('security: review 6 (one access decision)', () => {
  describe('the decision itself (pure)', () => {
    /** Every identity shape the server can hand the decision. */
    const shapes: Record<string, Grants> = {};
    const actions: RepoAction[][] = [
      [],
      ['pull'],
      ['push'],
      ['pull', 'push'],
      ['pull', 'push', 'delete'],
      ['delete'],
    ];
    for (const credentialed of [false, true]) {
      for (const onRepo of actions) {
        for (const onFrom of actions) {
          for (const policyWider of [false, true]) {
            shapes[`${credentialed}/${onRepo.join('+')}/${onFrom.join('+')}/${policyWider}`] = {
              subject: 'x',
              credentialed,
              can: (a, repo) => (repo === 'r/app' ? onRepo : onFrom).includes(a),
              policyAllows: (a, repo) => policyWider || (repo === 'r/app' ? onRepo : onFrom).includes(a),
              canCatalog: () => credentialed,
              isAdmin: () => false,
            };
          }
        }
      }
    }
    const routes: Route[] = [
      { kind: 'base', action: null },
      { kind: 'catalog', action: 'catalog' },
      { kind: 'tags', repo: 'r/app', action: 'pull' },
      { kind: 'blob', repo: 'r/app', digest: D, action: 'pull' },
      { kind: 'blob', repo: 'r/app', digest: D, action: 'delete' },
      { kind: 'upload-start', repo: 'r/app', action: 'push' },
      { kind: 'upload-start', repo: 'r/app', action: 'push', mount: { from: 'r/src', digest: D } },
      { kind: 'upload', repo: 'r/app', uuid: 'u', action: 'push' },
      { kind: 'referrers', repo: 'r/app', digest: D, action: 'pull' },
      { kind: 'manifest', repo: 'r/app', ref: { tag: 'v1' }, action: 'delete' },
      { kind: 'manifest', repo: 'r/app', ref: { digest: D }, action: 'delete' },
    ];

    it('HELD: before forwarding, no route but a manifest pull/push is left with a `need` once the handler gathered its three facts (a `need` the switch ignores would forward unchecked)', () => {
      // server/v2.ts handle() gathers blobAdmitted, mountBlobAdmitted and subjectPullable, then
      // forwards every route except manifest GET/HEAD/PUT (which decide again with their own facts).
      let asked = 0;
      for (const route of routes) {
        for (const [name, g] of Object.entries(shapes)) {
          for (const v of [true, false]) {
            const facts: AccessFacts = {
              blobAdmitted: v,
              mountBlobAdmitted: v,
              subjectPullable: v ? 'yes' : 'no',
            };
            const o = decideAccess({ route, grants: g, facts });
            asked++;
            assert.notEqual(o.decision, 'need', `${route.kind} ${name}: ${JSON.stringify(o)}`);
          }
        }
      }
      assert.ok(asked > 1000);
    });

    it('HELD: a fact that says no never allows more than the same request with the fact missing would after gathering (no fact defaults to allow): blob, mount, referrers', () => {
      for (const [name, g] of Object.entries(shapes)) {
        const blob = decideAccess({ route: routes[3]!, grants: g, facts: { blobAdmitted: false } });
        if (!g.can('push', 'r/app') && g.can('pull', 'r/app')) {
          assert.equal(decideAccess({ route: routes[3]!, grants: g, facts: {} }).decision, 'need', name);
          assert.equal(blob.decision, 'deny', name);
        }
        const mount = decideAccess({ route: routes[6]!, grants: g, facts: { mountBlobAdmitted: false } });
        if (mount.decision === 'allow' && !g.can('push', 'r/src')) assert.equal(mount.dropMount, true, name);
        const refs = decideAccess({ route: routes[8]!, grants: g, facts: { subjectPullable: 'no' } });
        if (!g.can('push', 'r/app')) assert.notEqual(refs.decision, 'allow', name);
      }
    });
  });

  describe('the error table', () => {
    // The status each OCI code had before the table (77ba6f5's ociErrorStatus).
    const before: Record<string, number> = {
      BLOB_UNKNOWN: 404,
      BLOB_UPLOAD_INVALID: 400,
      BLOB_UPLOAD_UNKNOWN: 404,
      DIGEST_INVALID: 400,
      MANIFEST_BLOB_UNKNOWN: 404,
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

    it('HELD: no refusal became a 5xx (a client retries those) and no failure became a 4xx; the one OCI status that moved (MANIFEST_BLOB_UNKNOWN 404 -> 400) stays a 4xx', () => {
      for (const [name, d] of Object.entries(ERRORS)) {
        const was = before[name];
        if (was !== undefined && name !== 'MANIFEST_BLOB_UNKNOWN') assert.equal(d.status, was, name);
        const fiveHundred = d.status >= 500;
        const failure = name === 'UNAVAILABLE' || name === 'UNKNOWN' || name === 'UPSTREAM_FAILED';
        assert.equal(fiveHundred, failure, `${name}: ${d.status}`);
      }
      assert.equal(ERRORS.MANIFEST_BLOB_UNKNOWN.status, 400);
      // The registry's failures stay 502/503, as before (UNAVAILABLE code; it was MANIFEST_INVALID on a 502).
      for (const [kind, status] of [
        ['upstream-unreachable', 503],
        ['upstream-failed', 502],
        ['upstream-body-too-large', 502],
        ['upstream-digest-mismatch', 502],
      ] as const) {
        const e = toGateError(new InternalFailure(kind, 'x'));
        assert.equal(e.status, status, kind);
        assert.equal(e.code, 'UNAVAILABLE', kind);
      }
    });
  });

  describe('end to end (registry:2, every trust mode)', { timeout: 300_000 }, () => {
    const PW = {
      puller: 'puller-password-1',
      publisher: 'publisher-password-1',
      builder: 'builder-password-1',
    };
    let registry: RegistryHandle;
    let gate: TestGate;
    const key = generateKeyPair('ecdsa-p256');
    const img: Record<
      string,
      {
        signed: Awaited<ReturnType<typeof pushRandomImage>>;
        unsigned: Awaited<ReturnType<typeof pushRandomImage>>;
      }
    > = {};
    const MODES = ['enf', 'aud', 'off', 'sp', 'none'] as const;

    before(async () => {
      registry = await startRegistry();
      for (const p of MODES) {
        const signed = await pushRandomImage(registry.url, `${p}/app`, 'signed');
        const unsigned = await pushRandomImage(registry.url, `${p}/app`, 'unsigned');
        await signDirect(registry.url, `${p}/app`, signed.digest, key.pkcs8Der);
        img[p] = { signed, unsigned };
      }
      gate = await startTestGate({
        registryUrl: registry.url,
        users: PW,
        policy: {
          access: [
            { repos: ['**'], pull: ['puller', 'publisher', 'builder'], push: ['publisher'], delete: [] },
            { repos: ['*/dst'], pull: [], push: ['builder'], delete: [] },
          ],
        },
        trustRules: [
          { repos: ['enf/**'], keys: ['release'] },
          { repos: ['aud/**'], keys: ['release'], mode: 'audit' },
          { repos: ['off/**'], keys: ['release'], mode: 'off' },
          { repos: ['sp/**'], keys: ['release'], signedPush: true },
        ],
        trustedKeys: { release: key.publicKeyPem },
      });
    });
    after(async () => {
      await gate?.close();
      await registry?.stop();
    });

    const scopes = MODES.flatMap((p) => [`repository:${p}/app:pull,push`, `repository:${p}/dst:pull,push`]);
    const tokens = new Map<string, string>();
    const as = async (
      user: keyof typeof PW,
      o: { method?: string; path: string; headers?: Record<string, string>; body?: Buffer },
    ): Promise<Reply> => {
      let t = tokens.get(user);
      if (!t) {
        t = await getToken(gate.url, gate.ca, user, PW[user], scopes);
        tokens.set(user, t);
      }
      return request(gate.url, gate.ca, { ...o, headers: { accept: ACCEPT, ...o.headers, ...bearer(t) } });
    };

    it('HELD: a pull-only caller gets the same answer for GET and HEAD of unsigned bytes, by tag and by digest, in every mode (403 in enforce and with no rule, which trusts no key; audit and off serve)', async () => {
      const expected: Record<string, number> = { enf: 403, sp: 403, aud: 200, off: 200, none: 403 };
      for (const p of MODES) {
        for (const ref of ['unsigned', img[p]!.unsigned.digest]) {
          const got = await as('puller', { path: `/v2/${p}/app/manifests/${ref}` });
          const head = await as('puller', { method: 'HEAD', path: `/v2/${p}/app/manifests/${ref}` });
          assert.equal(got.status, expected[p], `${p} GET ${ref}: ${got.body.toString()}`);
          assert.equal(head.status, got.status, `${p} HEAD ${ref}`);
          if (got.status === 403) assert.equal(codeOf(got), 'DENIED');
        }
      }
    });

    it('HELD: in enforce mode a pull-only caller never reads a blob of an unsigned image (GET and HEAD, 404 from trustgate, not upstream), and reads the signed one after its verified pull', async () => {
      const { signed, unsigned } = img['enf']!;
      for (const method of ['GET', 'HEAD']) {
        for (const b of unsigned.blobs) {
          assertBlobNotAdmitted(
            await as('puller', { method, path: `/v2/enf/app/blobs/${b}` }),
            `${method} ${b}`,
          );
        }
      }
      assert.equal((await as('puller', { path: '/v2/enf/app/manifests/signed' })).status, 200);
      for (const b of signed.blobs)
        assert.equal((await as('puller', { path: `/v2/enf/app/blobs/${b}` })).status, 200);
    });

    it('HELD: a cross-repository mount by a caller with only pull on `from` is dropped for a blob outside every verified manifest there (202, a plain upload), and mounts an admitted one (201)', async () => {
      const { signed, unsigned } = img['enf']!;
      const layer = (i: { blobs: string[] }): string => i.blobs[0]!;
      const drop = await as('builder', {
        method: 'POST',
        path: `/v2/enf/dst/blobs/uploads/?mount=${layer(unsigned)}&from=enf/app`,
      });
      assert.equal(drop.status, 202, drop.body.toString());
      assert.equal((await direct(registry.url, 'HEAD', `/v2/enf/dst/blobs/${layer(unsigned)}`)).status, 404);
      // Admitted by a verified pull (of any caller), the signed layer mounts.
      assert.equal((await as('puller', { path: '/v2/enf/app/manifests/signed' })).status, 200);
      const mount = await as('builder', {
        method: 'POST',
        path: `/v2/enf/dst/blobs/uploads/?mount=${layer(signed)}&from=enf/app`,
      });
      assert.equal(mount.status, 201, mount.body.toString());
    });

    it('HELD: the referrers of an unsigned subject are refused to a pull-only caller (403) in enforce and listed in audit; a publisher lists them', async () => {
      const enf = await as('puller', { path: `/v2/enf/app/referrers/${img['enf']!.unsigned.digest}` });
      assert.equal(enf.status, 403, enf.body.toString());
      const aud = await as('puller', { path: `/v2/aud/app/referrers/${img['aud']!.unsigned.digest}` });
      assert.equal(aud.status, 200, aud.body.toString());
      const pub = await as('publisher', { path: `/v2/enf/app/referrers/${img['enf']!.unsigned.digest}` });
      assert.equal(pub.status, 200, pub.body.toString());
    });

    it('HELD: a signature artifact enters only through its .sig tag (ordinary tag and digest refused in enforce and audit, accepted with the rule off); its .sig tag is checked; unsigned bytes under a .sig tag are refused', async () => {
      for (const p of ['enf', 'aud', 'off'] as const) {
        const sigTag = `sha256-${hex(img[p]!.signed.digest)}.sig`;
        const sig = await direct(registry.url, 'GET', `/v2/${p}/app/manifests/${sigTag}`, undefined, {
          accept: OCI,
        });
        assert.equal(sig.status, 200);
        const put = (ref: string, body: Buffer): Promise<Reply> =>
          as('publisher', {
            method: 'PUT',
            path: `/v2/${p}/app/manifests/${ref}`,
            headers: { 'content-type': OCI },
            body,
          });
        const byTag = await put('disguised', sig.body);
        const byDigest = await put(sha256(sig.body), sig.body);
        const asSig = await put(sigTag, sig.body);
        const bogus = await put(`sha256-${hex(img[p]!.unsigned.digest)}.sig`, img[p]!.unsigned.bytes);
        const refused = p === 'off' ? 201 : 403;
        assert.equal(byTag.status, refused, `${p} tag: ${byTag.body.toString()}`);
        assert.equal(byDigest.status, refused, `${p} digest: ${byDigest.body.toString()}`);
        // The same signatures again under their .sig tag: checked (nothing new is refused), or
        // accepted unchecked with the rule off.
        assert.equal(asSig.status, p === 'off' ? 201 : 403, `${p} .sig: ${asSig.body.toString()}`);
        if (p !== 'off') assert.match(asSig.body.toString(), /adds no new signature/);
        assert.equal(
          bogus.status === 201,
          p === 'off',
          `${p} bogus .sig: ${bogus.status} ${bogus.body.toString()}`,
        );
      }
    });

    it('HELD: under signedPush an unsigned digest cannot be tagged (403 naming the keys), a signed one can; by digest both enter', async () => {
      const { signed, unsigned } = img['sp']!;
      const put = (ref: string, body: Buffer): Promise<Reply> =>
        as('publisher', {
          method: 'PUT',
          path: `/v2/sp/app/manifests/${ref}`,
          headers: { 'content-type': OCI },
          body,
        });
      const refused = await put('new-unsigned', unsigned.bytes);
      assert.equal(refused.status, 403, refused.body.toString());
      assert.match(refused.body.toString(), /requires signed pushes.*trusted: release/);
      assert.equal((await put('new-signed', signed.bytes)).status, 201);
      assert.equal((await put(unsigned.digest, unsigned.bytes)).status, 201);
    });

    it('HELD: a token that did not ask for push gets the insufficient_scope challenge (401) on a write, not a 403 or a 5xx, so the client fetches a wider token and nothing else changes', async () => {
      const t = await getToken(gate.url, gate.ca, 'publisher', PW.publisher, ['repository:enf/app:pull']);
      const r = await request(gate.url, gate.ca, {
        method: 'PUT',
        path: '/v2/enf/app/manifests/x',
        headers: { ...bearer(t), 'content-type': OCI },
        body: img['enf']!.unsigned.bytes,
      });
      assert.equal(r.status, 401);
      assert.match(String(r.headers['www-authenticate']), /error="insufficient_scope"/);
      assert.match(String(r.headers['www-authenticate']), /scope="repository:enf\/app:pull,push"/);
      // A pull of unsigned bytes with the same narrow token is a trust refusal, not a publisher read.
      const pull = await request(gate.url, gate.ca, {
        path: '/v2/enf/app/manifests/unsigned',
        headers: { ...bearer(t), accept: ACCEPT },
      });
      assert.equal(pull.status, 403, pull.body.toString());
    });
  });
});
