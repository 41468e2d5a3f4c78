#!/usr/bin/env node
// Fuzz run against a running trustgate (in this process) in front of a real registry:2, on
// loopback only. Not part of CI. Bounded by count and time:
//   npm run build && node scripts/fuzz.mjs [--count 5000] [--seconds 60] [--seed 1]
// Reports: crashes (uncaught exceptions, unhandled rejections, /healthz failing) and any 2xx to
// a request that should have been refused (oracle below), plus status counts.
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import https from 'node:https';
import { startRegistry } from '../dist/test/helpers/stack.js';
import { startTestGate } from '../dist/test/helpers/trustgate.js';
import { getToken } from '../dist/test/helpers/http.js';
import { pushRandomImage } from '../dist/test/helpers/registry-direct.js';
import { signDirect } from '../dist/test/helpers/sign.js';
import { generateKeyPair } from '../dist/src/core/signature/sign.js';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? dflt : Number(process.argv[i + 1]);
};
const COUNT = arg('count', 5000);
const SECONDS = arg('seconds', 60);
let seed = arg('seed', Date.now() % 2 ** 31);
const SEED = seed;
const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
const pick = (a) => a[Math.floor(rnd() * a.length)];

const crashes = [];
process.on('uncaughtException', (e) => crashes.push(`uncaughtException: ${e.stack ?? e}`));
process.on('unhandledRejection', (e) => crashes.push(`unhandledRejection: ${e?.stack ?? e}`));

const sha = (b) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const registry = await startRegistry();
const release = generateKeyPair('ecdsa-p256');
const gate = await startTestGate({
  registryUrl: registry.url,
  users: { consumer: 'consumer-password' },
  policy: { access: [{ repos: ['prod/app'], pull: ['consumer'], push: [], delete: [] }] },
  trustRules: [{ repos: ['**'], keys: ['release'] }],
  trustedKeys: { release: release.publicKeyPem },
});
const signed = await pushRandomImage(registry.url, 'prod/app', 'v1');
await signDirect(registry.url, 'prod/app', signed.digest, release.pkcs8Der);
const unsigned = await pushRandomImage(registry.url, 'prod/app', 'unsigned');
const secret = await pushRandomImage(registry.url, 'team/secret', 'v1');
const token = await getToken(gate.url, gate.ca, 'consumer', 'consumer-password', [
  'repository:prod/app:pull',
]);
const sigTag = `sha256-${signed.digest.slice(7)}.sig`;

// Oracle: the only (method, path) pairs that may answer 2xx, and only with a token.
const allowed = new Set(
  [
    '/v2/',
    '/v2/prod/app/tags/list',
    '/v2/prod/app/manifests/v1',
    `/v2/prod/app/manifests/${signed.digest}`,
    `/v2/prod/app/manifests/${sigTag}`,
    ...signed.blobs.map((b) => `/v2/prod/app/blobs/${b}`),
  ].flatMap((p) => [`GET ${p}`, `HEAD ${p}`]),
);
const forbiddenBytes = [unsigned.bytes, secret.bytes];
const forbiddenDigests = [unsigned.digest, secret.digest, ...unsigned.blobs, ...secret.blobs];

const repos = [
  'prod/app',
  'team/secret',
  'prod/App',
  'prod//app',
  'prod/app/..',
  'prod%2fapp',
  'team/secret/../../prod/app',
  'prod/app/manifests/x',
];
const refs = [
  'v1',
  'unsigned',
  signed.digest,
  unsigned.digest,
  secret.digest,
  sigTag,
  'V1',
  signed.digest.toUpperCase(),
  `${signed.digest}%00`,
  'v1;x',
  'sha512:' + '0'.repeat(128),
];
const blobs = [...signed.blobs, ...unsigned.blobs, ...secret.blobs, signed.digest, unsigned.digest];
const junk = [
  '',
  '/',
  '//',
  '/.',
  '/..',
  '%2f',
  '%2e%2e',
  ';',
  '?',
  '#',
  '\\',
  '%00',
  '\u00e9',
  '+',
  '?n=1&n=2',
  '?mount=' + unsigned.blobs[0] + '&from=team/secret',
  '?last=team',
  '?digest=' + unsigned.digest,
];
const accepts = [
  undefined,
  '*/*',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v1+prettyjws',
  'application/vnd.oci.image.index.v1+json;q=0',
  'application/json',
  '',
];
const methods = ['GET', 'HEAD', 'PUT', 'POST', 'PATCH', 'DELETE', 'OPTIONS', 'get', 'PROPFIND'];

function genPath() {
  const r = pick(repos);
  const kind = pick(['manifests', 'blobs', 'tags', 'uploads', 'catalog', 'base', 'raw']);
  let p;
  if (kind === 'manifests') p = `/v2/${r}/manifests/${pick(refs)}`;
  else if (kind === 'blobs') p = `/v2/${r}/blobs/${pick(blobs)}`;
  else if (kind === 'tags') p = `/v2/${r}/tags/list`;
  else if (kind === 'uploads') p = `/v2/${r}/blobs/uploads/${pick(['', 'abc', 'x=='])}`;
  else if (kind === 'catalog') p = '/v2/_catalog';
  else if (kind === 'base') p = pick(['/v2/', '/v2', '/healthz', '/token', '/admin/users', '/metrics']);
  else
    p =
      '/' +
      Array.from({ length: 1 + Math.floor(rnd() * 6) }, () =>
        pick([...junk, 'v2', 'prod', 'app', 'manifests']),
      ).join('/');
  if (rnd() < 0.4) {
    const i = Math.floor(rnd() * p.length);
    p = p.slice(0, i) + pick(junk) + p.slice(i);
  }
  if (rnd() < 0.2) p += pick(junk.filter((j) => j.startsWith('?')));
  return p;
}

function send(method, path, headers, body) {
  const u = new URL(gate.url);
  return new Promise((resolve) => {
    let req;
    try {
      req = https.request(
        { host: u.hostname, port: u.port, method, path, headers, ca: gate.ca, agent: false, timeout: 15_000 },
        (res) => {
          const chunks = [];
          res.on('data', (c) => chunks.push(c));
          res.on('end', () =>
            resolve({ status: res.statusCode, body: Buffer.concat(chunks), headers: res.headers }),
          );
          res.on('error', () => resolve({ status: 'reset' }));
        },
      );
    } catch {
      return resolve({ status: 'client-refused' });
    }
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ status: e.message === 'timeout' ? 'timeout' : 'error' }));
    req.end(body);
  });
}

const counts = {};
const unexpected = [];
const t0 = Date.now();
let n = 0;
for (; n < COUNT && Date.now() - t0 < SECONDS * 1000; n++) {
  const method = pick(methods);
  const path = genPath();
  const headers = {};
  if (rnd() < 0.8)
    headers.authorization = pick([
      `Bearer ${token}`,
      `Bearer ${token}x`,
      'Basic Y29uc3VtZXI6Y29uc3VtZXItcGFzc3dvcmQ=',
      `bearer ${token}`,
      `Bearer ${token}`,
    ]);
  const a = pick(accepts);
  if (a !== undefined) headers.accept = a;
  if (rnd() < 0.3)
    headers['content-type'] = pick([
      'application/x-www-form-urlencoded',
      'application/vnd.oci.image.manifest.v1+json',
      'multipart/form-data; boundary=x',
      'text/plain',
    ]);
  if (rnd() < 0.1) headers['user-agent'] = pick(['cosign/2', 'docker/27 containerd', 'trustgate']);
  if (rnd() < 0.1) headers['x-forwarded-for'] = '10.0.0.1';
  let body;
  if (rnd() < 0.3)
    body = pick([
      Buffer.alloc(0),
      Buffer.from(unsigned.bytes),
      Buffer.from('mount=' + unsigned.blobs[0] + '&from=team/secret'),
      Buffer.from(`{"schemaVersion":2,"schemaVersion":1}`),
      Buffer.from(Array.from({ length: Math.floor(rnd() * 2000) }, () => Math.floor(rnd() * 256))),
    ]);
  const r = await send(method, path, headers, body);
  counts[r.status] = (counts[r.status] ?? 0) + 1;
  if (typeof r.status === 'number' && r.status >= 200 && r.status < 300) {
    const key = `${method} ${path}`;
    // A credentialed caller may list the catalog: only what it may pull, and no hidden name in Link.
    const catalogOk =
      path.startsWith('/v2/_catalog') &&
      !/secret/.test(`${r.body} ${r.headers.link ?? ''}`) &&
      headers.authorization === `Bearer ${token}`;
    // Health probes answer anyone; express answers OPTIONS outside /v2 with its Allow list (no data).
    const open =
      path === '/healthz' || path === '/readyz' || (method === 'OPTIONS' && !path.startsWith('/v2'));
    const legit =
      open ||
      catalogOk ||
      (headers.authorization === `Bearer ${token}` &&
        (allowed.has(key) || path === '/healthz' || path === '/readyz'));
    const leaks =
      forbiddenBytes.some((b) => r.body.includes(b)) ||
      (r.body.length > 0 && forbiddenDigests.includes(sha(r.body))) ||
      forbiddenDigests.includes(String(r.headers['docker-content-digest']));
    if (!legit || leaks)
      unexpected.push({ method, path, status: r.status, auth: headers.authorization?.slice(0, 12), leaks });
  }
  if (n % 500 === 0) {
    const h = await send('GET', '/healthz', {});
    if (h.status !== 200) crashes.push(`/healthz answered ${h.status} after ${n} requests`);
  }
}
const secs = ((Date.now() - t0) / 1000).toFixed(1);
const h = await send('GET', '/healthz', {});
if (h.status !== 200) crashes.push(`/healthz answered ${h.status} at the end`);
await gate.close();
await registry.stop();
console.log(
  JSON.stringify(
    {
      seed: SEED,
      requests: n,
      seconds: Number(secs),
      statuses: counts,
      crashes,
      unexpected2xx: [...new Map(unexpected.map((u) => [`${u.method} ${u.path}`, u])).values()].slice(0, 30),
      unexpectedCount: unexpected.length,
    },
    null,
    2,
  ),
);
process.exit(crashes.length > 0 || unexpected.length > 0 ? 1 : 0);
