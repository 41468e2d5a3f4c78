/**
 * Ways around content trust (I1) with real registry:2: a tag moved between check and use, Accept
 * conversions, HEAD vs GET, index/child confusion, a blob read as a manifest, signature artifacts
 * used as images, and client claims in User-Agent.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { generateKeyPair } from '../../src/core/signature/sign.js';
import { startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';
import { assertBlobNotAdmitted, bearer, getToken, request, type Reply } from '../helpers/http.js';
import { direct, pushBlob, pushManifest, pushRandomImage, sha256 } from '../helpers/registry-direct.js';
import { signDirect } from '../helpers/sign.js';

const OCI = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const DOCKER = 'application/vnd.docker.distribution.manifest.v2+json';
const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
const SCHEMA1 = 'application/vnd.docker.distribution.manifest.v1+prettyjws';
const ALL = [OCI, OCI_INDEX, DOCKER, DOCKER_LIST].join(', ');

describe('security: enforcement bypass', { timeout: 240_000 }, () => {
  let registry: RegistryHandle;
  let gate: TestGate;
  const release = generateKeyPair('ecdsa-p256');
  const users = { consumer: 'consumer-password', publisher: 'publisher-password' };

  before(async () => {
    registry = await startRegistry();
    gate = await startTestGate({
      registryUrl: registry.url,
      users,
      policy: {
        access: [{ repos: ['**'], pull: ['consumer', 'publisher'], push: ['publisher'], delete: [] }],
      },
      trustRules: [{ repos: ['**'], keys: ['release'] }],
      trustedKeys: { release: release.publicKeyPem },
    });
  });
  after(async () => {
    await gate?.close();
    await registry?.stop();
  });

  const sign = (repo: string, digest: string) => signDirect(registry.url, repo, digest, release.pkcs8Der);
  const tok = (repo: string, u: keyof typeof users = 'consumer') =>
    getToken(gate.url, gate.ca, u, users[u], [`repository:${repo}:pull${u === 'publisher' ? ',push' : ''}`]);
  const get = async (
    repo: string,
    ref: string,
    accept?: string,
    method = 'GET',
    extra = {},
  ): Promise<Reply> =>
    request(gate.url, gate.ca, {
      method,
      path: `/v2/${repo}/${ref.startsWith('blob:') ? `blobs/${ref.slice(5)}` : `manifests/${ref}`}`,
      headers: { ...bearer(await tok(repo)), ...(accept ? { accept } : {}), ...extra },
    });

  it('Kyverno CVE-2022-47633: a tag flipped between signed and unsigned never serves unsigned bytes', async () => {
    const a = await pushRandomImage(registry.url, 'toctou/app', 'v1');
    await sign('toctou/app', a.digest);
    const b = await pushRandomImage(registry.url, 'toctou/app', 'evil');
    const t = await tok('toctou/app');
    let flipping = true;
    const flipper = (async () => {
      for (let i = 0; flipping && i < 2000; i++) {
        await pushManifest(registry.url, 'toctou/app', 'v1', i % 2 ? a.bytes : b.bytes, OCI);
      }
    })();
    const counts = { ok: 0, denied: 0 };
    for (let i = 0; i < 150; i++) {
      const r = await request(gate.url, gate.ca, {
        path: '/v2/toctou/app/manifests/v1',
        headers: { ...bearer(t), accept: OCI },
      });
      if (r.status === 200) {
        counts.ok++;
        assert.equal(sha256(r.body), a.digest, 'served bytes are not the signed manifest');
        assert.equal(r.headers['docker-content-digest'], a.digest);
      } else {
        // 403, or a fail-closed 5xx when registry:2 reads a tag link mid-rewrite (it answers 500).
        assert.ok(r.status === 403 || r.status === 502, `${r.status} ${r.body.toString()}`);
        assert.doesNotMatch(r.body.toString(), /schemaVersion/);
        counts.denied++;
      }
    }
    flipping = false;
    await flipper;
    assert.ok(counts.ok > 0 && counts.denied > 0, `both states seen: ${JSON.stringify(counts)}`);
  });

  it('a tag asked again is resolved conditionally: 304 from registry:2 serves the held, verified bytes; a moved tag is verified anew', async () => {
    const revalidations = async (result: string): Promise<number> =>
      (await gate.tg.metrics.tagRevalidations.get()).values.find((v) => v.labels.result === result)?.value ??
      0;
    const a = await pushRandomImage(registry.url, 'reval/app', 'v1');
    await sign('reval/app', a.digest);
    const first = await get('reval/app', 'v1', OCI);
    assert.equal(first.status, 200);
    const unchanged0 = await revalidations('unchanged');
    const again = await get('reval/app', 'v1', OCI);
    assert.equal(again.status, 200);
    assert.deepEqual(again.body, a.bytes);
    assert.equal(again.headers['docker-content-digest'], a.digest);
    assert.equal(await revalidations('unchanged'), unchanged0 + 1, 'registry:2 answered 304');
    const head = await get('reval/app', 'v1', OCI, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], String(a.bytes.length));
    assert.equal(await revalidations('unchanged'), unchanged0 + 2);

    // The tag moves to an unsigned image: the registry sends the new bytes, which are refused.
    const moved0 = await revalidations('moved');
    const b = await pushRandomImage(registry.url, 'reval/app', 'v1');
    const refused = await get('reval/app', 'v1', OCI);
    assert.equal(refused.status, 403);
    assert.doesNotMatch(refused.body.toString(), /schemaVersion/);
    assert.match(refused.body.toString(), new RegExp(b.digest.slice(7, 19)));
    assert.equal(await revalidations('moved'), moved0 + 1);
    // And back: the signed bytes are served again, never the unsigned ones held meanwhile.
    await pushManifest(registry.url, 'reval/app', 'v1', a.bytes, OCI);
    const back = await get('reval/app', 'v1', OCI);
    assert.equal(back.status, 200);
    assert.deepEqual(back.body, a.bytes);
  });

  it('concurrent pulls of one tag share registry answers, yet a pull that starts after a tag move never gets the old digest', async () => {
    const manifestFetches = async (): Promise<number> =>
      (await gate.tg.metrics.upstreamDuration.get()).values.find(
        (v) => v.metricName === 'trustgate_upstream_duration_seconds_count' && v.labels.kind === 'manifest',
      )?.value ?? 0;
    const shared = async (): Promise<number> =>
      (await gate.tg.metrics.tagAnswersShared.get()).values[0]?.value ?? 0;
    const a = await pushRandomImage(registry.url, 'burst/app', 'v1');
    await sign('burst/app', a.digest);
    const b = await pushRandomImage(registry.url, 'burst/app', 'other');
    await sign('burst/app', b.digest);
    await pushManifest(registry.url, 'burst/app', 'v1', a.bytes, OCI);
    const t = await tok('burst/app');
    const pull = () =>
      request(gate.url, gate.ca, {
        path: '/v2/burst/app/manifests/v1',
        headers: { ...bearer(t), accept: OCI },
      });
    assert.equal((await pull()).status, 200); // warm: verdicts and bytes held

    const fetches0 = await manifestFetches();
    const shared0 = await shared();
    const burst = await Promise.all(Array.from({ length: 64 }, pull));
    for (const r of burst) {
      assert.equal(r.status, 200);
      assert.deepEqual(r.body, a.bytes);
    }
    const fetched = (await manifestFetches()) - fetches0;
    assert.ok(fetched < 64, `64 pulls made ${fetched} registry requests`);
    assert.ok((await shared()) > shared0, 'answers were shared');

    // Freshness: move the tag A -> B -> A … while pulls run; a pull begun after a move completed
    // must see that move (it may see a later one, never an earlier one).
    const stamps: Array<{ started: number; digest: string }> = [];
    // registry:2 now and then answers 500 to a tag read while it rewrites that tag's link file;
    // trustgate passes that on as a 502 (fail closed), which is counted, not served.
    let registryErrors = 0;
    const moves: Array<{ done: number; digest: string }> = [];
    let running = true;
    const pullers = Array.from({ length: 16 }, async () => {
      while (running) {
        const started = performance.now();
        const r = await pull();
        if (r.status === 502) {
          registryErrors++;
          assert.doesNotMatch(r.body.toString(), /schemaVersion/);
          continue;
        }
        assert.equal(r.status, 200, r.body.toString().slice(0, 300));
        stamps.push({ started, digest: String(r.headers['docker-content-digest']) });
      }
    });
    for (let i = 0; i < 20; i++) {
      const to = i % 2 ? a : b;
      await pushManifest(registry.url, 'burst/app', 'v1', to.bytes, OCI);
      moves.push({ done: performance.now(), digest: to.digest });
      await new Promise((r) => setTimeout(r, 15));
    }
    running = false;
    await Promise.all(pullers);
    let checked = 0;
    for (const s of stamps) {
      // The last move that completed before this pull started, and any later move.
      const before = moves.filter((m) => m.done < s.started);
      const last = before.at(-1);
      if (!last) continue;
      const later = moves.slice(before.length).map((m) => m.digest);
      assert.ok(
        s.digest === last.digest || later.includes(s.digest),
        `a pull started after the move to ${last.digest} got ${s.digest}`,
      );
      checked++;
    }
    assert.ok(checked > 50, `only ${checked} pulls overlapped the moves`);
    assert.ok(
      registryErrors < stamps.length / 4,
      `${registryErrors} registry errors, ${stamps.length} pulls`,
    );
  });

  describe('Accept-header conversions (registry:2: schema1 down-conversion, list collapse)', () => {
    let docker: { digest: string; bytes: Buffer };
    before(async () => {
      const cfg = Buffer.from(
        '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}',
      );
      const cd = await pushBlob(registry.url, 'conv/app', cfg);
      const layer = await pushBlob(registry.url, 'conv/app', Buffer.from('layer'));
      const bytes = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: DOCKER,
          config: {
            mediaType: 'application/vnd.docker.container.image.v1+json',
            digest: cd,
            size: cfg.length,
          },
          layers: [
            { mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', digest: layer, size: 5 },
          ],
        }),
      );
      docker = { digest: await pushManifest(registry.url, 'conv/app', 'v1', bytes, DOCKER), bytes };
    });

    it('a schema1-only Accept on an unsigned schema2 tag gets no bytes at all (no converted copy)', async () => {
      for (const accept of [
        SCHEMA1,
        'application/vnd.docker.distribution.manifest.v1+json',
        'application/json',
      ]) {
        const r = await get('conv/app', 'v1', accept);
        assert.equal(r.status, 403, `${accept}: ${r.status}`);
        assert.doesNotMatch(r.body.toString(), /schemaVersion|fsLayers/);
      }
    });

    it('signed schema2: schema1-only Accept is 404, never a schema1 conversion with a new digest', async () => {
      await sign('conv/app', docker.digest);
      await new Promise((r) => setTimeout(r, 1100)); // the negative TTL of the earlier refusal
      for (const accept of [SCHEMA1, 'application/vnd.docker.distribution.manifest.v1+json']) {
        const r = await get('conv/app', 'v1', accept);
        assert.equal(r.status, 404, `${accept}: ${r.status}`);
        assert.doesNotMatch(r.body.toString(), /fsLayers|signatures/);
      }
      const ok = await get('conv/app', 'v1', DOCKER);
      assert.equal(ok.status, 200);
      assert.deepEqual(ok.body, docker.bytes);
      const none = await get('conv/app', 'v1');
      assert.equal(none.status, 200, 'no Accept: stored bytes, unconverted');
      assert.equal(sha256(none.body), docker.digest);
    });

    it('a signed index asked for with image-only Accept does not collapse to a child', async () => {
      const child = await pushRandomImage(registry.url, 'conv/multi', 'child');
      const idx = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: DOCKER_LIST,
          manifests: [
            {
              mediaType: OCI,
              digest: child.digest,
              size: child.bytes.length,
              platform: { architecture: 'amd64', os: 'linux' },
            },
          ],
        }),
      );
      const d = await pushManifest(registry.url, 'conv/multi', 'v1', idx, DOCKER_LIST);
      await sign('conv/multi', d);
      const r = await get('conv/multi', 'v1', `${DOCKER}, ${OCI}`);
      assert.equal(r.status, 404);
      assert.equal(r.headers['docker-content-digest'], undefined);
      const full = await get('conv/multi', 'v1', ALL);
      assert.equal(full.status, 200);
      assert.equal(sha256(full.body), d);
    });
  });

  it('HEAD and GET of a signed image agree on digest, type and length; HEAD sends no body', async () => {
    const img = await pushRandomImage(registry.url, 'head/app', 'v1');
    await sign('head/app', img.digest);
    const g = await get('head/app', 'v1', OCI);
    const h = await get('head/app', 'v1', OCI, 'HEAD');
    assert.equal(g.status, 200);
    assert.equal(h.status, 200);
    for (const k of ['docker-content-digest', 'content-type', 'content-length'])
      assert.equal(h.headers[k], g.headers[k], k);
    assert.equal(h.body.length, 0);
  });

  it('index/child confusion: a child admitted by a verified index in one repository is refused in another', async () => {
    const child = await pushRandomImage(registry.url, 'idx/a', 'child');
    for (const bl of child.blobs) {
      const src = await direct(registry.url, 'GET', `/v2/idx/a/blobs/${bl}`);
      await pushBlob(registry.url, 'idx/b', src.body);
    }
    await pushManifest(registry.url, 'idx/b', 'child', child.bytes, OCI);
    const idx = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: [{ mediaType: OCI, digest: child.digest, size: child.bytes.length }],
      }),
    );
    const d = await pushManifest(registry.url, 'idx/a', 'v1', idx, OCI_INDEX);
    await sign('idx/a', d);
    assert.equal((await get('idx/a', 'v1', ALL)).status, 200);
    assert.equal((await get('idx/a', child.digest, OCI)).status, 200, 'child admitted in idx/a');
    assert.equal((await get('idx/b', child.digest, OCI)).status, 403, 'child admitted in idx/b too');
    assertBlobNotAdmitted(await get('idx/b', `blob:${child.blobs[1]!}`));
  });

  it('a nested index listed by a verified index is refused, and never admitted as an image (issue 12 finding 10)', async () => {
    const inner = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] }));
    const innerD = await pushManifest(registry.url, 'idx/nest', 'inner', inner, OCI_INDEX);
    const outer = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: [{ mediaType: OCI_INDEX, digest: innerD, size: inner.length }],
      }),
    );
    await sign('idx/nest', await pushManifest(registry.url, 'idx/nest', 'v1', outer, OCI_INDEX));
    assert.equal((await get('idx/nest', 'v1', ALL)).status, 400);
    assert.equal((await get('idx/nest', innerD, ALL)).status, 403);
  });

  it('a blob digest asked for as a manifest, and a manifest digest asked for as a blob, give nothing', async () => {
    const img = await pushRandomImage(registry.url, 'cross/app', 'v1');
    await sign('cross/app', img.digest);
    assert.equal((await get('cross/app', 'v1', OCI)).status, 200);
    const asManifest = await get('cross/app', img.blobs[0]!, ALL);
    assert.notEqual(asManifest.status, 200);
    const other = await pushRandomImage(registry.url, 'cross/app', 'unsigned');
    const asBlob = await get('cross/app', `blob:${other.digest}`);
    assertBlobNotAdmitted(asBlob);
  });

  it('a manifest shaped like a signature artifact cannot be pushed under an ordinary tag', async () => {
    // An image disguised as a cosign artifact (OCI config, simplesigning-typed layers) would be
    // served unverified; moby's pull does not check layer media types, so it would run.
    const t = await tok('disguise/app', 'publisher');
    const cfg = await pushBlob(
      registry.url,
      'disguise/app',
      Buffer.from('{"config":{"Entrypoint":["/evil"]}}'),
    );
    const layer = await pushBlob(registry.url, 'disguise/app', Buffer.from('not a payload'));
    const body = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI,
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: cfg, size: 35 },
        layers: [{ mediaType: 'application/vnd.dev.cosign.simplesigning.v1+json', digest: layer, size: 13 }],
      }),
    );
    const r = await request(gate.url, gate.ca, {
      method: 'PUT',
      path: '/v2/disguise/app/manifests/latest',
      headers: { ...bearer(t), 'content-type': OCI },
      body,
    });
    assert.equal(r.status, 403, r.body.toString());
    const stored = await direct(registry.url, 'HEAD', '/v2/disguise/app/manifests/latest', undefined, {
      accept: OCI,
    });
    assert.equal(stored.status, 404);
  });

  it('User-Agent claims (cosign, docker, the registry itself) change nothing', async () => {
    await pushRandomImage(registry.url, 'ua/app', 'v1');
    for (const ua of [
      'cosign/v2.4.1 (linux; amd64)',
      'docker/27.0 go/go1.22 containerd-client',
      'Go-http-client/1.1',
      'trustgate',
      'notary-signer',
    ]) {
      const r = await get('ua/app', 'v1', OCI, 'GET', { 'user-agent': ua });
      assert.equal(r.status, 403, ua);
    }
    assert.equal(createHash('sha256').update('').digest('hex').length, 64);
  });
});
