/**
 * Every client a user has, through trustgate, against a real registry:2: dockerd (Debian
 * docker.io) with the docker CLI, containerd with `ctr` (what kubelet uses) and podman
 * (containers/image, as buildah and skopeo). Each engine runs with its own state directory and
 * socket (test/helpers/engines.ts). For each denial the test checks the exact text the client
 * prints, and the diagnostics of the run show it (issue 14).
 *
 * Certificates: docker treats 127.0.0.0/8 as an insecure registry and, after trying HTTPS without
 * verifying the certificate, would even fall back to plain HTTP; so docker here proves the
 * protocol, not certificate checks. ctr and podman do verify: their certificate errors are tested.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { generateKeyPair } from '../../src/core/signature/sign.js';
import { makeOciImage, makeOciIndex, type DiskImage } from '../helpers/images.js';
import { runSkopeo } from '../helpers/skopeo.js';
import { makeTempDir, removeTempDir, startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';
import { signDirect } from '../helpers/sign.js';
import {
  engineUnavailable,
  run,
  startContainerd,
  startDockerd,
  startPodman,
  type ContainerdHandle,
  type DockerdHandle,
  type PodmanHandle,
  type RunResult,
} from '../helpers/engines.js';

const PW = { consumer: 'consumer-password', publisher: 'publisher-password' } as const;
const noContainerd =
  engineUnavailable('containerd', ['--version']) ?? engineUnavailable('ctr', ['--version']);
const noDocker = noContainerd ?? engineUnavailable('dockerd', ['--version']) ?? engineUnavailable('docker');
const noPodman = engineUnavailable('podman');

/**
 * A containerd hosts.toml (what a node keeps in /etc/containerd/certs.d/<registry>/hosts.toml):
 * trustgate as the host for pull, resolve and push, with its CA when given. containerd 1.6 wants
 * a [host] table even when it names the server itself.
 */
function hostsToml(server: string, mirror: string, ca?: string): string {
  const caLine = ca ? `ca = ${JSON.stringify(ca)}` : '';
  return [
    `server = "https://${server}"`,
    caLine,
    `[host."https://${mirror}"]`,
    '  capabilities = ["pull", "resolve", "push"]',
    caLine && `  ${caLine}`,
    '',
  ].join('\n');
}

/** Shows what the client printed in the test report, then checks it contains `expected`. */
function sees(t: TestContext, r: RunResult, expected: string): void {
  t.diagnostic(`exit ${r.code}: ${r.output.trim().split('\n').slice(-2).join(' | ')}`);
  assert.ok(r.output.includes(expected), `expected:\n  ${expected}\ngot (exit ${r.code}):\n${r.output}`);
}

function ok(r: RunResult, what: string): void {
  assert.equal(r.code, 0, `${what} failed:\n${r.output}`);
}

describe('e2e: docker, containerd and podman through trustgate', { timeout: 900_000 }, () => {
  let registry: RegistryHandle;
  let gate: TestGate;
  let work: string;
  const release = generateKeyPair('ecdsa-p256');
  const images: Record<string, DiskImage> = {};
  let caFile: string;

  /** Puts an image straight into registry:2 (optionally signed), as a publisher would have. */
  async function seed(name: string, img: DiskImage, signed: boolean): Promise<void> {
    const r = await runSkopeo([
      'copy',
      '--quiet',
      '--all',
      '--preserve-digests',
      '--dest-tls-verify=false',
      img.ref,
      `docker://${registry.url.replace('http://', '')}/${name}`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    if (signed) await signDirect(registry.url, name.split(':')[0]!, img.manifestDigest, release.pkcs8Der);
  }

  before(async () => {
    registry = await startRegistry();
    gate = await startTestGate({
      registryUrl: registry.url,
      users: { ...PW },
      policy: {
        access: [
          { repos: ['prod/**'], pull: ['consumer', 'publisher'], push: ['publisher'], delete: [] },
          { repos: ['secret/**'], pull: ['publisher'], push: ['publisher'], delete: [] },
        ],
      },
      trustRules: [{ repos: ['**'], keys: ['release'] }],
      trustedKeys: { release: release.publicKeyPem },
    });
    caFile = path.join(gate.certDir, 'ca.crt');
    work = makeTempDir('engines');
    const small = { layers: 1, layerBytes: 16 * 1024 };
    images['signed'] = await makeOciImage(path.join(work, 'signed'), small);
    images['unsigned'] = await makeOciImage(path.join(work, 'unsigned'), small);
    images['secret'] = await makeOciImage(path.join(work, 'secret'), small);
    images['multi'] = await makeOciIndex(path.join(work, 'multi'), ['linux/amd64', 'linux/arm64'], small);
    images['fresh'] = await makeOciImage(path.join(work, 'fresh'), small);
    await seed('prod/signed:v1', images['signed'], true);
    await seed('prod/unsigned:v1', images['unsigned'], false);
    await seed('secret/app:v1', images['secret'], true);
    await seed('prod/multi:v1', images['multi'], true);
  });

  after(async () => {
    await gate?.close();
    await registry?.stop();
    if (work) removeTempDir(work);
  });

  const unsignedDenial = (): string =>
    `prod/unsigned@${images['unsigned']!.manifestDigest} has no signature; sign it with a key trusted for this repository (trusted: release)`;
  const forbidden = (user: string, action: string, repo: string): string =>
    `${action} access to ${repo} is not allowed for ${user}: no access rule grants it (ask an admin to add ${user} to a rule for ${repo})`;

  describe('docker (dockerd 20.10 + docker CLI)', { skip: noDocker }, () => {
    let containerd: ContainerdHandle;
    let dockerd: DockerdHandle;
    let docker: DockerdHandle['docker'];
    const login = (user: keyof typeof PW, password: string = PW[user]): Promise<RunResult> =>
      docker(['login', '-u', user, '--password-stdin', gate.host], { stdin: password });

    before(async () => {
      containerd = await startContainerd();
      dockerd = await startDockerd(containerd);
      docker = dockerd.docker;
    });
    after(async () => {
      await dockerd?.stop();
      await containerd?.stop();
    });

    it('a bad password: docker login prints the reason', async (t) => {
      const r = await login('consumer', 'wrong');
      assert.notEqual(r.code, 0);
      sees(
        t,
        r,
        `Error response from daemon: Get "https://${gate.host}/v2/": unauthorized: invalid username or password`,
      );
    });

    it('pulls a signed image by tag and by digest, and a signed multi-platform index', async () => {
      ok(await login('consumer'), 'login');
      ok(await docker(['pull', '-q', `${gate.host}/prod/signed:v1`]), 'pull by tag');
      ok(
        await docker(['pull', '-q', `${gate.host}/prod/signed@${images['signed']!.manifestDigest}`]),
        'by digest',
      );
      ok(await docker(['pull', '-q', `${gate.host}/prod/multi:v1`]), 'pull of an index');
      const inspect = await docker([
        'image',
        'inspect',
        '-f',
        '{{.Os}}/{{.Architecture}}',
        `${gate.host}/prod/multi:v1`,
      ]);
      assert.equal(inspect.stdout.trim(), 'linux/amd64');
    });

    it('an unsigned image: docker pull prints the denial', async (t) => {
      const r = await docker(['pull', `${gate.host}/prod/unsigned:v1`]);
      assert.notEqual(r.code, 0);
      sees(t, r, `denied: ${unsignedDenial()}`);
    });

    it('a forbidden repository: docker pull prints the denial', async (t) => {
      const r = await docker(['pull', `${gate.host}/secret/app:v1`]);
      assert.notEqual(r.code, 0);
      sees(t, r, `denied: ${forbidden('consumer', 'pull', 'secret/app')}`);
    });

    it('a pull-only user pushing: docker push prints the push denial', async (t) => {
      ok(await docker(['tag', `${gate.host}/prod/signed:v1`, `${gate.host}/prod/new:v1`]), 'tag');
      const r = await docker(['push', `${gate.host}/prod/new:v1`]);
      assert.notEqual(r.code, 0);
      sees(t, r, `denied: ${forbidden('consumer', 'push', 'prod/new')}`);
    });

    it('a publisher pushes; consumers pull it once it is signed', async () => {
      ok(await login('publisher'), 'publisher login');
      ok(await docker(['tag', `${gate.host}/prod/signed:v1`, `${gate.host}/prod/pushed:v1`]), 'tag');
      const pushed = await docker(['push', `${gate.host}/prod/pushed:v1`]);
      ok(pushed, 'publisher push');
      const digest = /digest: (sha256:[0-9a-f]{64})/.exec(pushed.output)?.[1];
      assert.ok(digest, pushed.output);
      ok(await docker(['rmi', `${gate.host}/prod/pushed:v1`]), 'rmi');
      ok(await login('consumer'), 'consumer login');
      const before = await docker(['pull', `${gate.host}/prod/pushed:v1`]);
      assert.ok(before.output.includes(`denied: prod/pushed@${digest} has no signature`), before.output);
      await signDirect(registry.url, 'prod/pushed', digest, release.pkcs8Der);
      // The refusal above is cached for negativeTtlSeconds (1 s here); the signature went straight
      // into the registry, as `trustgate sign` through another replica would.
      let after: RunResult | undefined;
      for (let i = 0; i < 10 && after?.code !== 0; i++) {
        await new Promise((r) => setTimeout(r, 500));
        after = await docker(['pull', '-q', `${gate.host}/prod/pushed:v1`]);
      }
      ok(after!, 'consumer pull after signing');
    });
  });

  describe('containerd (ctr, as kubelet pulls)', { skip: noContainerd }, () => {
    let containerd: ContainerdHandle;
    /** hosts.toml as a node has it in /etc/containerd/certs.d/<registry>/: trustgate with its CA. */
    let hosts: string;
    const pull = (ref: string, user = 'consumer', password: string = PW.consumer, hostsDir = hosts) =>
      containerd.ctr(['images', 'pull', '--hosts-dir', hostsDir, '--user', `${user}:${password}`, ref]);

    before(async () => {
      containerd = await startContainerd();
      hosts = containerd.hostsDir('gate', gate.host, hostsToml(gate.host, gate.host, caFile));
    });
    after(async () => {
      await containerd?.stop();
    });

    it('pulls (and unpacks) a signed image, and a signed index for this platform', async () => {
      ok(await pull(`${gate.host}/prod/signed:v1`), 'pull');
      ok(await pull(`${gate.host}/prod/multi:v1`), 'pull of an index');
    });

    it('without the CA in hosts.toml: a certificate error', async (t) => {
      const noCa = containerd.hostsDir('no-ca', gate.host, hostsToml(gate.host, gate.host));
      const r = await pull(`${gate.host}/prod/signed:v1`, 'consumer', PW.consumer, noCa);
      assert.notEqual(r.code, 0);
      sees(t, r, 'x509: certificate signed by unknown authority');
    });

    it('plain HTTP to the TLS port (ctr without a hosts.toml speaks http to 127.0.0.1): 400 with the reason', async (t) => {
      const r = await containerd.ctr([
        'images',
        'pull',
        '--user',
        `consumer:${PW.consumer}`,
        `${gate.host}/prod/signed:v1`,
      ]);
      assert.notEqual(r.code, 0);
      sees(
        t,
        r,
        `pulling from host ${gate.host} failed with status code [manifests v1]: 400 Bad Request: HTTP request to an HTTPS server`,
      );
    });

    it('an unsigned image: the reason phrase carries the denial (a HEAD has no body)', async (t) => {
      const r = await pull(`${gate.host}/prod/unsigned:v1`);
      assert.notEqual(r.code, 0);
      sees(
        t,
        r,
        `pulling from host ${gate.host} failed with status code [manifests v1]: 403 Forbidden: ${unsignedDenial()}`,
      );
    });

    it('a forbidden repository: the reason phrase carries the denial', async (t) => {
      const r = await pull(`${gate.host}/secret/app:v1`);
      assert.notEqual(r.code, 0);
      sees(
        t,
        r,
        `failed with status code [manifests v1]: 403 Forbidden: ${forbidden('consumer', 'pull', 'secret/app')}`,
      );
    });

    it('a bad password: the OAuth2 POST answer says why in its status line', async (t) => {
      const r = await pull(`${gate.host}/prod/signed:v1`, 'consumer', 'wrong');
      assert.notEqual(r.code, 0);
      sees(
        t,
        r,
        'failed to fetch oauth token: unexpected status: 401 Unauthorized: invalid username or password',
      );
    });

    it('a pull-only user pushing: ctr push prints the push denial', async (t) => {
      ok(
        await containerd.ctr(['images', 'tag', `${gate.host}/prod/signed:v1`, `${gate.host}/prod/new:v1`]),
        'tag',
      );
      const r = await containerd.ctr([
        'images',
        'push',
        '--hosts-dir',
        hosts,
        '--user',
        `consumer:${PW.consumer}`,
        `${gate.host}/prod/new:v1`,
      ]);
      assert.notEqual(r.code, 0);
      sees(t, r, `403 Forbidden: ${forbidden('consumer', 'push', 'prod/new')}`);
    });

    it("a node's mirror configuration: a registry name mapped to trustgate in hosts.toml", async (t) => {
      // As /etc/containerd/certs.d/registry.example.internal/hosts.toml on a node (the CRI
      // plugin's config_path): pulls of registry.example.internal/... go to trustgate, with the
      // CA, and carry ?ns=registry.example.internal. The server is trustgate too, so nothing
      // leaves loopback if the mirror fails.
      const node = containerd.hostsDir(
        'node',
        'registry.example.internal',
        hostsToml(gate.host, gate.host, caFile),
      );
      ok(
        await pull('registry.example.internal/prod/signed:v1', 'consumer', PW.consumer, node),
        'mirror pull',
      );
      const r = await pull('registry.example.internal/prod/unsigned:v1', 'consumer', PW.consumer, node);
      assert.notEqual(r.code, 0);
      sees(t, r, `403 Forbidden: ${unsignedDenial()}`);
    });
  });

  describe('podman (containers/image: podman, buildah, skopeo)', { skip: noPodman }, () => {
    let pm: PodmanHandle;
    const creds = (user: keyof typeof PW, password: string = PW[user]): string[] => [
      '--creds',
      `${user}:${password}`,
    ];
    const tls = (): string[] => ['--cert-dir', gate.certDir];

    before(() => {
      pm = startPodman();
    });
    after(async () => {
      await pm?.stop();
    });

    it('pulls a signed image; without the CA a certificate error', async (t) => {
      ok(
        await pm.podman(['pull', '-q', ...tls(), ...creds('consumer'), `${gate.host}/prod/signed:v1`]),
        'pull',
      );
      const r = await pm.podman(['pull', '-q', ...creds('consumer'), `${gate.host}/prod/signed:v1`]);
      assert.notEqual(r.code, 0);
      sees(t, r, 'x509: certificate signed by unknown authority');
    });

    it('an unsigned image, a forbidden repository, a bad password: podman prints the reason', async (t) => {
      const unsigned = await pm.podman([
        'pull',
        ...tls(),
        ...creds('consumer'),
        `${gate.host}/prod/unsigned:v1`,
      ]);
      sees(t, unsigned, `reading manifest v1 in ${gate.host}/prod/unsigned: denied: ${unsignedDenial()}`);
      const secret = await pm.podman(['pull', ...tls(), ...creds('consumer'), `${gate.host}/secret/app:v1`]);
      sees(
        t,
        secret,
        `reading manifest v1 in ${gate.host}/secret/app: denied: ${forbidden('consumer', 'pull', 'secret/app')}`,
      );
      const bad = await pm.podman([
        'pull',
        ...tls(),
        ...creds('consumer', 'wrong'),
        `${gate.host}/prod/signed:v1`,
      ]);
      sees(
        t,
        bad,
        'unable to retrieve auth token: invalid username/password: unauthorized: invalid username or password',
      );
      for (const r of [unsigned, secret, bad]) assert.notEqual(r.code, 0);
    });

    it('a pull-only user pushing: podman reaches the upload and prints the push denial (layer HEADs answer 404)', async (t) => {
      // Into podman's storage with skopeo (podman would name the image after its directory).
      const id = 'localhost/fresh:v1';
      const loaded = await runSkopeo(['copy', '--quiet', images['fresh']!.ref, pm.storageRef(id)]);
      assert.equal(loaded.code, 0, loaded.stderr);
      const r = await pm.podman([
        'push',
        ...tls(),
        ...creds('consumer'),
        id,
        `docker://${gate.host}/prod/new:v1`,
      ]);
      assert.notEqual(r.code, 0);
      sees(
        t,
        r,
        `initiating layer upload to /v2/prod/new/blobs/uploads/ in ${gate.host}: denied: ${forbidden('consumer', 'push', 'prod/new')}`,
      );
      assert.ok(!r.output.includes('trying to reuse blob'), r.output);
      ok(
        await pm.podman(['push', ...tls(), ...creds('publisher'), id, `docker://${gate.host}/prod/new:v1`]),
        'publisher push',
      );
    });
  });

  it('curl over plain HTTP to the TLS port: 400 HTTP request to an HTTPS server', async (t) => {
    const r = await run('curl', ['-sS', '-i', '--max-time', '20', `http://${gate.host}/v2/`]);
    t.diagnostic(r.output.split('\r\n')[0] ?? '');
    assert.equal(r.code, 0, r.output);
    assert.match(r.output, /^HTTP\/1\.1 400 Bad Request: HTTP request to an HTTPS server/);
    assert.match(r.output, /"code":"UNSUPPORTED","message":"HTTP request to an HTTPS server/);
  });
});
