#!/usr/bin/env node
// Differential run of the /v2 access decisions of two builds of trustgate (review 6, issue 13):
// the same request matrix (route kind x identity x trust mode) against each build, each in front
// of its own real registry:2 seeded with the same bytes, comparing status and OCI error code.
// Not part of CI. Loopback only; bounded (a fixed matrix, one request at a time).
//
//   npm run build   (in both trees)
//   node scripts/access-differential.mjs --old /path/to/old-tree --new /path/to/new-tree [--out FILE]
import { Buffer } from 'node:buffer';
import { writeFileSync } from 'node:fs';
import path from 'node:path';

const argv = process.argv.slice(2);
const opt = (name) => {
  const i = argv.indexOf(`--${name}`);
  return i === -1 ? undefined : argv[i + 1];
};
const OLD = path.resolve(opt('old') ?? '.');
const NEW = path.resolve(opt('new') ?? '.');
const OUT = opt('out');

const mod = (root, p) => import(path.join(root, 'dist', p));

const helpers = await (async () => {
  const stack = await mod(NEW, 'test/helpers/stack.js');
  const direct = await mod(NEW, 'test/helpers/registry-direct.js');
  const sign = await mod(NEW, 'test/helpers/sign.js');
  const keys = await mod(NEW, 'src/core/signature/sign.js');
  const http = await mod(NEW, 'test/helpers/http.js');
  return { ...stack, ...direct, ...sign, ...keys, ...http };
})();

const PW = {
  puller: 'puller-password-1',
  pusher: 'pusher-password-1',
  publisher: 'publisher-password-1',
  admin: 'admin-password-12',
  builder: 'builder-password-1',
};
// Trust mode per repository prefix ('none': no trust rule covers it).
const PREFIXES = ['enf', 'aud', 'off', 'sp', 'open', 'none'];
const TRUST_RULES = [
  { repos: ['enf/**', 'open/**'], keys: ['release'] },
  { repos: ['aud/**'], keys: ['release'], mode: 'audit' },
  { repos: ['off/**'], keys: ['release'], mode: 'off' },
  { repos: ['sp/**'], keys: ['release'], signedPush: true },
];
const POLICY = {
  admins: ['admin'],
  access: [
    {
      repos: ['**'],
      pull: ['puller', 'publisher', 'admin', 'robot:ci', 'mtls:CN=build-01'],
      push: ['pusher', 'publisher', 'robot:ci'],
      delete: ['publisher'],
    },
    { repos: ['open/**'], pull: ['anonymous'], push: [], delete: [] },
    // Pull everywhere, push only into */dst: a mount from */app needs the blob admitted there.
    { repos: ['**'], pull: ['builder'], push: [], delete: [] },
    { repos: ['*/dst'], pull: ['builder'], push: ['builder'], delete: [] },
  ],
};
const OCI = 'application/vnd.oci.image.manifest.v1+json';
const ACCEPT = [
  OCI,
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');
const MISSING = `sha256:${'0'.repeat(63)}1`;
const hex = (d) => d.slice('sha256:'.length);

const key = helpers.generateKeyPair('ed25519');

/** Seeds a registry with the same bytes for every run (ed25519 signatures are deterministic). */
async function seed(url) {
  const out = {};
  for (const p of PREFIXES) {
    const repo = `${p}/app`;
    const cfg = Buffer.from(
      `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"p":"${p}"}`,
    );
    const cfgD = await helpers.pushBlob(url, repo, cfg);
    const mk = async (name) => {
      const layer = Buffer.from(`layer ${name} of ${repo}`);
      const layerD = await helpers.pushBlob(url, repo, layer);
      const body = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI,
          config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: cfgD, size: cfg.length },
          layers: [
            { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layerD, size: layer.length },
          ],
        }),
      );
      const digest = await helpers.pushManifest(url, repo, name, body, OCI);
      return { layer: layerD, body, digest };
    };
    const signed = await mk('signed');
    const unsigned = await mk('unsigned');
    const { sigManifest } = await helpers.signDirect(url, repo, signed.digest, key.pkcs8Der);
    out[p] = {
      repo,
      cfg: cfgD,
      signed,
      unsigned,
      sig: { body: sigManifest, digest: helpers.sha256(sigManifest) },
    };
  }
  return out;
}

async function startStack(root) {
  const { startTestGate } = await mod(root, 'test/helpers/trustgate.js');
  const registry = await helpers.startRegistry();
  const seeded = await seed(registry.url);
  const gate = await startTestGate({
    registryUrl: registry.url,
    users: PW,
    policy: POLICY,
    trustRules: TRUST_RULES,
    trustedKeys: { release: key.publicKeyPem },
    mtls: true,
    robots: true,
  });
  const req = (o) => helpers.request(gate.url, gate.ca, o);
  const allScopes = (actions) => [
    ...PREFIXES.flatMap((p) => ['app', 'dst'].map((r) => `repository:${p}/${r}:${actions}`)),
    'registry:catalog:*',
  ];
  const tok = (u, pw, actions = 'pull,push,delete') =>
    helpers.getToken(gate.url, gate.ca, u, pw, allScopes(actions));
  const adminApi = await helpers.getToken(gate.url, gate.ca, 'admin', PW.admin, ['registry:admin:*']);
  const robot = await req({
    method: 'POST',
    path: '/admin/v1/robots',
    headers: { ...helpers.bearer(adminApi), 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'ci' }),
  });
  if (robot.status !== 201) throw new Error(`robot: ${robot.status} ${robot.body}`);
  const robotSecret = robot.json().secret;
  const ids = {
    anonymous: {},
    // A token asked for without credentials: policy grants `anonymous` pull on open/**.
    'anonymous-token': {
      headers: helpers.bearer(
        await helpers.getToken(gate.url, gate.ca, undefined, undefined, allScopes('pull,push')),
      ),
    },
    puller: { headers: helpers.bearer(await tok('puller', PW.puller)) },
    pusher: { headers: helpers.bearer(await tok('pusher', PW.pusher)) },
    publisher: { headers: helpers.bearer(await tok('publisher', PW.publisher)) },
    'publisher-pull-token': { headers: helpers.bearer(await tok('publisher', PW.publisher, 'pull')) },
    admin: { headers: helpers.bearer(await tok('admin', PW.admin)) },
    builder: { headers: helpers.bearer(await tok('builder', PW.builder)) },
    mtls: { cert: gate.clientCert.cert, key: gate.clientCert.key },
    robot: { headers: helpers.bearer(await tok('robot$ci', robotSecret)) },
    'bad-token': { headers: { authorization: 'Bearer not.a.token' } },
  };
  return { registry, gate, seeded, req, ids };
}

/** The request matrix: [label, {method, path, headers?, body?}] in a fixed order. */
function matrix(s, id) {
  const out = [];
  const add = (label, o) => out.push([`${id} ${label}`, o]);
  add('GET /v2/', { path: '/v2/' });
  add('HEAD /v2/', { method: 'HEAD', path: '/v2/' });
  add('GET catalog', { path: '/v2/_catalog' });
  for (const p of PREFIXES) {
    const x = s.seeded[p];
    const R = x.repo;
    add(`${p} tags`, { path: `/v2/${R}/tags/list` });
    const refs = {
      'tag signed': 'signed',
      'tag unsigned': 'unsigned',
      'tag missing': 'missing',
      'digest signed': x.signed.digest,
      'digest unsigned': x.unsigned.digest,
      'digest sig-artifact': x.sig.digest,
      'digest missing': MISSING,
      '.sig tag': `sha256-${hex(x.signed.digest)}.sig`,
      'referrers tag': `sha256-${hex(x.signed.digest)}`,
    };
    for (const m of ['GET', 'HEAD']) {
      for (const [k, ref] of Object.entries(refs))
        add(`${p} ${m} manifest ${k}`, {
          method: m,
          path: `/v2/${R}/manifests/${ref}`,
          headers: { accept: ACCEPT },
        });
      for (const [k, d] of Object.entries({
        'signed layer': x.signed.layer,
        'unsigned layer': x.unsigned.layer,
        config: x.cfg,
        missing: MISSING,
      }))
        add(`${p} ${m} blob ${k}`, { method: m, path: `/v2/${R}/blobs/${d}` });
    }
    for (const [k, d] of Object.entries({
      signed: x.signed.digest,
      unsigned: x.unsigned.digest,
      missing: MISSING,
    }))
      add(`${p} referrers ${k}`, { path: `/v2/${R}/referrers/${d}` });
  }
  return out;
}

function writes(s, id) {
  const out = [];
  const add = (label, o) => out.push([`${id} ${label}`, o]);
  for (const p of PREFIXES) {
    const x = s.seeded[p];
    const R = x.repo;
    const dst = `${p}/dst`;
    const put = (label, ref, body) =>
      add(`${p} PUT manifest ${label}`, {
        method: 'PUT',
        path: `/v2/${R}/manifests/${ref}`,
        headers: { 'content-type': OCI },
        body,
      });
    add(`${p} POST upload`, { method: 'POST', path: `/v2/${R}/blobs/uploads/` });
    add(`${p} mount signed layer`, {
      method: 'POST',
      path: `/v2/${dst}/blobs/uploads/?mount=${x.signed.layer}&from=${R}`,
    });
    add(`${p} mount unsigned layer`, {
      method: 'POST',
      path: `/v2/${dst}/blobs/uploads/?mount=${x.unsigned.layer}&from=${R}`,
    });
    add(`${p} mount enf signed layer`, {
      method: 'POST',
      path: `/v2/${dst}/blobs/uploads/?mount=${s.seeded.enf.signed.layer}&from=enf/app`,
    });
    add(`${p} mount enf unsigned layer`, {
      method: 'POST',
      path: `/v2/${dst}/blobs/uploads/?mount=${s.seeded.enf.unsigned.layer}&from=enf/app`,
    });
    add(`${p} PATCH upload fake`, {
      method: 'PATCH',
      path: `/v2/${R}/blobs/uploads/00000000-0000-4000-8000-000000000000`,
      body: 'x',
      headers: { 'content-type': 'application/octet-stream' },
    });
    add(`${p} PUT upload fake`, {
      method: 'PUT',
      path: `/v2/${R}/blobs/uploads/00000000-0000-4000-8000-000000000000?digest=${MISSING}`,
    });
    put('unsigned by new tag', `t-${id.replace(/[^a-z0-9]/g, '')}`, x.unsigned.body);
    put('signed by new tag', `s-${id.replace(/[^a-z0-9]/g, '')}`, x.signed.body);
    put('sig-artifact by tag', `x-${id.replace(/[^a-z0-9]/g, '')}`, x.sig.body);
    put('sig-artifact by digest', x.sig.digest, x.sig.body);
    put('sig-artifact by its .sig tag', `sha256-${hex(x.signed.digest)}.sig`, x.sig.body);
    put('unsigned as .sig of unsigned', `sha256-${hex(x.unsigned.digest)}.sig`, x.unsigned.body);
    put('unsigned by digest', x.unsigned.digest, x.unsigned.body);
    put('unsigned under referrers tag', `sha256-${hex(x.signed.digest)}`, x.unsigned.body);
    add(`${p} DELETE manifest missing digest`, { method: 'DELETE', path: `/v2/${R}/manifests/${MISSING}` });
    add(`${p} DELETE manifest by tag`, { method: 'DELETE', path: `/v2/${R}/manifests/unsigned` });
    add(`${p} DELETE blob missing`, { method: 'DELETE', path: `/v2/${R}/blobs/${MISSING}` });
  }
  return out;
}

function codeOf(r) {
  if (r.body.length === 0) return '-';
  try {
    const j = r.json();
    return j.errors?.[0]?.code ?? 'ok-json';
  } catch {
    return 'non-json';
  }
}

async function run(s) {
  const results = [];
  const send = async (label, o, id) => {
    const who = s.ids[id];
    const r = await s.req({
      ...o,
      headers: { ...(o.headers ?? {}), ...(who.headers ?? {}) },
      cert: who.cert,
      key: who.key,
    });
    results.push({ label, status: r.status, code: codeOf(r), msg: r.body.toString().slice(0, 300) });
  };
  for (const id of Object.keys(s.ids)) for (const [label, o] of matrix(s, id)) await send(label, o, id);
  for (const id of Object.keys(s.ids)) for (const [label, o] of writes(s, id)) await send(label, o, id);
  // After the writes: the reads again (admission and referrers state moved).
  for (const id of Object.keys(s.ids))
    for (const [label, o] of matrix(s, id)) await send(`after ${label}`, o, id);
  // The registry gone (connection refused): the same reads, for the answers of a failing upstream.
  await s.registry.kill();
  for (const id of ['anonymous', 'puller', 'publisher', 'builder'])
    for (const [label, o] of matrix(s, id)) await send(`registry down ${label}`, o, id);
  for (const id of ['puller', 'publisher'])
    for (const [label, o] of writes(s, id)) await send(`registry down ${label}`, o, id);
  return results;
}

const report = { old: OLD, new: NEW, compared: 0, differed: [], perTree: {} };
const runs = {};
for (const [name, root] of [
  ['old', OLD],
  ['new', NEW],
]) {
  const s = await startStack(root);
  try {
    runs[name] = await run(s);
  } finally {
    await s.gate.close();
    await s.registry.stop();
  }
  const counts = {};
  for (const r of runs[name]) counts[r.status] = (counts[r.status] ?? 0) + 1;
  report.perTree[name] = counts;
}
for (let i = 0; i < runs.old.length; i++) {
  const a = runs.old[i];
  const b = runs.new[i];
  if (a.label !== b.label) throw new Error(`matrix out of step at ${i}: ${a.label} / ${b.label}`);
  report.compared++;
  if (a.status !== b.status || a.code !== b.code) report.differed.push({ label: a.label, old: a, new: b });
}
report.rows = runs.new.map(
  (b, i) => `${b.label} => ${runs.old[i].status}/${runs.old[i].code} | ${b.status}/${b.code}`,
);
if (OUT) writeFileSync(OUT, JSON.stringify(report, null, 1));
process.stdout.write(`compared ${report.compared}, differed ${report.differed.length}\n`);
process.stdout.write(`status counts: ${JSON.stringify(report.perTree)}\n`);
for (const d of report.differed)
  process.stdout.write(
    `DIFF ${d.label}: old ${d.old.status}/${d.old.code} new ${d.new.status}/${d.new.code}\n   old: ${d.old.msg}\n   new: ${d.new.msg}\n`,
  );
process.exit(0);
