#!/usr/bin/env node
// Fuzz run against trustgate (in this process) in front of a real registry:2, loopback only.
// Not part of CI. Bounded by count and time; deterministic from --seed (see scripts/fuzz/):
//
//   npm run build && node scripts/fuzz.mjs [--count 5000] [--seconds 60] [--seed 1] [--out report.json]
//   node scripts/fuzz.mjs --seed S --replay N[,M]   # send only inputs N, M of that seed's sequence
//
// Exercises the route, query, header (Content-Type spellings incl. U+0130/NBSP/NEL, duplicates,
// name case), credential, manifest (duplicate / case-variant / Unicode-folded keys, huge counts,
// nested indexes, urls) and signature payload parsers, with five token identities kept valid for
// the whole run (refresh_token grant before expiry). Reports status counts, how many requests got
// past authentication (trustgate's audit log: identity not anonymous), crashes (uncaught
// exceptions, unhandled rejections, /healthz failing) and every 2xx the oracle (fuzz/oracle.mjs)
// did not expect, with the exact input. Exit code 1 on a crash or a security finding.
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { setTimeout } from 'node:timers';
import { URLSearchParams } from 'node:url';
import path from 'node:path';
import bcrypt from 'bcryptjs';
import { makeTempDir, startRegistry } from '../dist/test/helpers/stack.js';
import { startTestGate } from '../dist/test/helpers/trustgate.js';
import { request } from '../dist/test/helpers/http.js';
import { direct } from '../dist/test/helpers/registry-direct.js';
import { createLogger } from '../dist/src/server/log.js';
import { createRng } from './fuzz/prng.mjs';
import { clientContext, rawRequest, sourceAddress } from './fuzz/raw-http.mjs';
import { buildFixtures, ed25519FromSeed } from './fuzz/fixtures.mjs';
import { createGenerator } from './fuzz/generate.mjs';
import { createOracle, decodeJwt, NO_RIGHTS, POLICY, rightsFromClaims } from './fuzz/oracle.mjs';
import { jsView } from './fuzz/json-model.mjs';

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i === -1 ? dflt : argv[i + 1];
};
const COUNT = Number(opt('count', 5000));
const SECONDS = Number(opt('seconds', 60));
const SEED = Number(opt('seed', Date.now() % 2 ** 31));
const OUT = opt('out', undefined);
const REPLAY = opt('replay', undefined)?.split(',').map(Number);
const CONCURRENCY = Math.max(1, Math.min(16, Number(opt('concurrency', 4))));
// Short-lived tokens, so that any run longer than ~2 minutes crosses expiries: the harness must
// refresh, and the first tokens (kept as "stale" credentials) must start being refused.
const TOKEN_TTL = Math.max(60, Number(opt('token-ttl', 120)));
if (![COUNT, SECONDS, SEED].every(Number.isFinite))
  throw new TypeError('--count, --seconds and --seed take numbers');

// A throw from trustgate's code (or a library under it) is a crash finding. A throw from this
// harness (its stack starts in scripts/) stops the run with exit code 2.
const crashes = [];
const onFault = (kind) => (e) => {
  const stack = String(e?.stack ?? e);
  if (/\/scripts\/fuzz/.test(stack.split('\n').slice(0, 2).join('\n'))) {
    process.stderr.write(`fuzz harness error (${kind}): ${stack}\n`);
    process.exit(2);
  }
  crashes.push(`${kind}: ${stack}`);
};
process.on('uncaughtException', onFault('uncaughtException'));
process.on('unhandledRejection', onFault('unhandledRejection'));
// Hard bound on the whole process: setup, the run, and the shutdown.
setTimeout(
  () => {
    process.stderr.write('fuzz: watchdog expired (setup or shutdown hung)\n');
    process.exit(2);
  },
  (SECONDS + 300) * 1000,
).unref();

const sha = (b) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const b64u = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');

// ---- trustgate's audit log, read in-process ---------------------------------------------------
// One audit record per /v2 request; `client` is the request's own loopback source address.
const audit = new Map();
const errorLines = [];
const sink = {
  write(line) {
    if (line.includes('"audit":"decision"')) {
      const e = JSON.parse(line);
      audit.set(e.client, {
        identity: e.identity,
        verdict: e.verdict,
        reason: e.reason,
        route: e.route,
        status: e.status,
      });
    } else if (line.includes('"level":50') || line.includes('"level":60')) {
      if (errorLines.length < 50) errorLines.push(line.slice(0, 600));
    }
  },
};

// ---- the stack ----------------------------------------------------------------------------------
const fixtureRng = createRng(SEED, 'fixtures');
const release = ed25519FromSeed(fixtureRng.bytes(32));
const untrusted = ed25519FromSeed(fixtureRng.bytes(32));
const registry = await startRegistry();
const authDir = makeTempDir('fuzz-auth');
const users = {
  consumer: 'consumer-password',
  publisher: 'publisher-password',
  outsider: 'outsider-password',
  keeper: 'keeper-password',
};
// The auth block is given whole (startTestGate's `extra` replaces it), with our own htpasswd.
const htpasswd = path.join(authDir, 'htpasswd');
writeFileSync(
  htpasswd,
  Object.entries(users)
    .map(([u, p]) => `${u}:${bcrypt.hashSync(p, 4).replace(/^\$2b\$/, '$2y$')}\n`)
    .join(''),
);
const gate = await startTestGate({
  registryUrl: registry.url,
  extra: { auth: { htpasswd, tokenKeyDir: path.join(authDir, 'token'), tokenTtlSeconds: TOKEN_TTL } },
  policy: POLICY,
  trustRules: [{ repos: ['**'], keys: ['release'] }],
  trustedKeys: { release: release.publicKeyPem },
  logger: createLogger('info', sink),
});
const port = Number(new URL(gate.url).port);
const setupStart = performance.now();
const F = await buildFixtures(registry.url, fixtureRng, release, untrusted);
const setupSeconds = (performance.now() - setupStart) / 1000;
const progress = (msg) => process.stderr.write(`[fuzz ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
progress(
  `registry:2 and trustgate up; ${F.manifests.size} fixture manifests in ${setupSeconds.toFixed(1)} s`,
);

// ---- credentials, valid for the whole run ---------------------------------------------------------
// The old harness fetched one token before the loop; tokens live auth.tokenTtlSeconds (300 s by
// default, plus 30 s clock tolerance), so every bearer request after that was a 401. Here each
// fuzz identity logs in once (OAuth2 password grant, access_type=offline, which also returns a
// refresh token) and is refreshed with the refresh_token grant before its access token expires
// (60 s before, or at half its life if shorter), with a bounded number of token calls. The first
// token of each is kept as the "stale" credential: valid at first, refused after TTL + 30 s.
const TOKEN_SPECS = {
  consumer: {
    user: 'consumer',
    scope: 'repository:prod/app:pull repository:dev/app:pull repository:dev/other:pull registry:catalog:*',
  },
  'consumer-narrow': { user: 'consumer', scope: 'repository:prod/app:pull' },
  'consumer-greedy': {
    user: 'consumer',
    scope:
      'repository:prod/app:pull,push,delete repository:team/secret:pull repository:dev/app:pull,push,delete',
  },
  publisher: {
    user: 'publisher',
    scope:
      'repository:dev/app:pull,push repository:dev/other:pull,push repository:dev/new0:pull,push repository:dev/new1:pull,push repository:team/secret:pull registry:catalog:* repository:prod/app:pull',
  },
  outsider: {
    user: 'outsider',
    scope: 'repository:prod/app:pull repository:dev/app:pull,push registry:catalog:*',
  },
};
const tokenStats = { logins: 0, refreshes: 0, relogins: 0, failures: [] };
const MAX_TOKEN_CALLS = Object.keys(TOKEN_SPECS).length * (4 + 2 * Math.ceil(SECONDS / (TOKEN_TTL / 2)));
let tokenCalls = 0;
const pool = {};

async function tokenPost(fields) {
  if (++tokenCalls > MAX_TOKEN_CALLS) throw new Error('token call budget exhausted');
  const body = new URLSearchParams({
    service: 'trustgate',
    client_id: 'trustgate-fuzz',
    access_type: 'offline',
    ...fields,
  }).toString();
  const r = await request(gate.url, gate.ca, {
    method: 'POST',
    path: '/token',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      'content-length': String(Buffer.byteLength(body)),
    },
    body,
  });
  if (r.status !== 200)
    throw new Error(`token endpoint answered ${r.status}: ${r.body.toString().slice(0, 200)}`);
  const v = r.json();
  const claims = decodeJwt(v.access_token ?? v.token);
  return {
    token: v.access_token ?? v.token,
    refresh: v.refresh_token,
    claims,
    expiresIn: v.expires_in,
    receivedAt: Date.now(),
  };
}

async function login(name) {
  const s = TOKEN_SPECS[name];
  const t = await tokenPost({
    grant_type: 'password',
    username: s.user,
    password: users[s.user],
    scope: s.scope,
  });
  tokenStats.logins++;
  return t;
}

async function maintainTokens() {
  const now = Date.now();
  for (const [name, e] of Object.entries(pool)) {
    // refresh at 240 s of a 300 s token, at 60 s of a 120 s one
    const lead = Math.min(60, e.current.expiresIn / 2);
    if (now < e.current.receivedAt + (e.current.expiresIn - lead) * 1000) continue;
    try {
      const t = await tokenPost({
        grant_type: 'refresh_token',
        refresh_token: e.current.refresh ?? e.refresh,
        scope: TOKEN_SPECS[name].scope,
      });
      t.refresh ??= e.refresh;
      e.current = t;
      tokenStats.refreshes++;
    } catch (err) {
      tokenStats.failures.push(`${name} refresh: ${err.message}`);
      try {
        e.current = await login(name);
        tokenStats.relogins++;
      } catch (err2) {
        tokenStats.failures.push(`${name} re-login: ${err2.message}`);
        e.current.receivedAt = now; // retry after another period, not on every request
      }
    }
  }
}

for (const name of Object.keys(TOKEN_SPECS)) {
  const t = await login(name);
  pool[name] = { initial: t, current: t, refresh: t.refresh };
}

// ---- one input on the wire ----------------------------------------------------------------------
const uploads = new Map(); // owner -> { path, state } of its last upload session

function tamper(tok, how) {
  const [h, p, s] = tok.split('.');
  const header = JSON.parse(Buffer.from(h, 'base64url').toString());
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
  switch (how) {
    case 'payload':
      claims.access = [
        { type: 'repository', name: 'team/secret', actions: ['pull', 'push', 'delete'] },
        ...(claims.access ?? []),
      ];
      return `${h}.${b64u(claims)}.${s}`;
    case 'alg-none':
      return `${b64u({ alg: 'none', typ: header.typ })}.${p}.`;
    case 'sig-flip': {
      const i = Math.floor(s.length / 2);
      return `${h}.${p}.${s.slice(0, i)}${s[i] === 'A' ? 'B' : 'A'}${s.slice(i + 1)}`;
    }
    case 'truncate':
      return tok.slice(0, -10);
    case 'kid':
      return `${b64u({ ...header, kid: 'x' })}.${p}.${s}`;
    case 'jku':
      return `${b64u({ ...header, jku: 'https://127.0.0.1:1/jwks' })}.${p}.${s}`;
    default:
      return `${b64u({ ...header, typ: 'trustgate-refresh+jwt' })}.${p}.${s}`;
  }
}

/** Credential -> Authorization values, what the oracle expects of it, and the rights it carries. */
function credential(c, now) {
  switch (c.k) {
    case 'token': {
      const e = pool[c.name].current;
      return {
        values: [`${c.scheme}${e.token}`],
        expect: c.scheme === 'Bearer ' ? 'valid' : 'maybe',
        claims: e.claims,
        label: `${c.scheme.trim() || 'Bearer'}<${c.name} token>`,
      };
    }
    case 'stale': {
      const e = pool[c.name].initial;
      const limit = e.claims.exp * 1000 + 30_000; // CLOCK_TOLERANCE_S
      const expect = now < limit - 5000 ? 'valid' : now > limit + 5000 ? 'invalid' : 'maybe';
      return {
        values: [`Bearer ${e.token}`],
        expect,
        claims: expect === 'invalid' ? null : e.claims,
        label: `Bearer <first ${c.name} token, exp ${e.claims.exp}>`,
      };
    }
    case 'tampered':
      return {
        values: [`Bearer ${tamper(pool[c.name].current.token, c.how)}`],
        expect: 'invalid',
        label: `Bearer <${c.name} token, tampered: ${c.how}>`,
      };
    case 'refresh':
      return {
        values: [`Bearer ${pool[c.name].refresh}`],
        expect: 'invalid',
        label: `Bearer <${c.name} refresh token>`,
      };
    case 'basic':
      return {
        values: [`Basic ${Buffer.from(`${c.user}:${c.pass}`).toString('base64')}`],
        expect: 'invalid',
        label: `Basic <${c.user}:${c.pass}>`,
      };
    case 'garbage':
      return { values: [c.value], expect: 'invalid', label: JSON.stringify(c.value.slice(0, 40)) };
    case 'dup': {
      const a = credential(c.a, now);
      const b = credential(c.b, now);
      const both = a.expect === 'valid' && b.expect === 'valid';
      const claims = both
        ? {
            sub: a.claims.sub === b.claims.sub ? a.claims.sub : 'anonymous',
            access: (a.claims.access ?? []).filter((x) =>
              JSON.stringify(b.claims.access ?? []).includes(JSON.stringify(x)),
            ),
          }
        : null;
      return {
        values: [...a.values, ...b.values],
        expect: both ? 'maybe' : 'invalid',
        claims,
        label: `two Authorization headers: ${a.label} + ${b.label}`,
      };
    }
    default:
      return { values: [], expect: 'invalid', label: 'none' };
  }
}

function materialize(inp, now) {
  const cred = credential(inp.cred, now);
  const headers = inp.headers.map(([k, v]) => [k, v]);
  for (const v of cred.values) headers.push([inp.authHeaderName, v]);
  let target = inp.target;
  if (target.includes('{UUID}') || target.includes('{STATE}')) {
    const u = uploads.get(inp.uploadOwner) ?? {
      uuid: '00000000-0000-4000-8000-000000000000',
      state: '_state=x',
    };
    target = target.replace('{UUID}', u.uuid).replace('{STATE}', u.state);
  }
  let wireBody = inp.body;
  if (inp.body !== undefined) {
    if (inp.chunked || inp.teAndCl) {
      headers.push(['Transfer-Encoding', 'chunked']);
      if (inp.teAndCl) headers.push(['Content-Length', String(inp.body.length)]);
      wireBody = Buffer.concat([
        Buffer.from(`${inp.body.length.toString(16)}\r\n`),
        inp.body,
        Buffer.from('\r\n0\r\n\r\n'),
      ]);
      if (inp.body.length === 0) wireBody = Buffer.from('0\r\n\r\n');
    } else {
      headers.push(['Content-Length', String(inp.body.length)]);
      if (inp.dupCl) headers.push(['Content-Length', String(inp.body.length + 1)]);
    }
  }
  headers.push(['Connection', 'close']);
  const contentType = headers.find(([k]) => k.toLowerCase() === 'content-type')?.[1];
  const rights = cred.claims ? rightsFromClaims(cred.claims) : NO_RIGHTS;
  return {
    method: inp.method,
    target,
    headers,
    wireBody,
    body: inp.body,
    contentType,
    expect: cred.expect,
    rights,
    credLabel: cred.label,
    tokenUser: inp.tokenUser,
    expectSub: cred.claims?.sub,
  };
}

function describe(n, w) {
  const b = w.body;
  let body;
  if (b !== undefined) {
    const text = b.toString('utf8');
    const printable = [...text].every(
      (ch) => ch === '\t' || ch === '\n' || ch === '\r' || (ch >= ' ' && ch !== '\x7f'),
    );
    body =
      printable && !text.includes('\ufffd')
        ? { text: text.length > 1200 ? `${text.slice(0, 1200)}…` : text }
        : { base64: b.subarray(0, 900).toString('base64') };
    body = { length: b.length, sha256: sha(b), ...body };
  }
  const headers = w.headers.map(([k, v]) =>
    k.toLowerCase() === 'authorization' ? [k, '<see credential>'] : [k, v],
  );
  return { n, method: w.method, target: w.target, credential: w.credLabel, headers, body };
}

// ---- the run ------------------------------------------------------------------------------------
const gen = createGenerator(createRng(SEED, 'requests'), F);
const oracle = createOracle(F);
const tlsCache = clientContext(gate.ca);
const counts = {};
const findings = [];
const records = [];
const labelCounts = new Map();
const inputsHash = createHash('sha256');
const inputCheckpoints = {};
const anomalies = { fiveHundreds: [], timeouts: 0, slowest: [] };
const decoyStats = new Map();
const sweepRepos = ['dev/app', 'dev/other', 'dev/new0', 'dev/new1', 'dev/new2', 'dev/new3'];
const sweepBlobs = [...(F.repoBlobs.get('team/secret') ?? []), ...F.unsigned.u1.blobs];
const linked = new Set();
const checkLinked = async (repo, digest, n, w) => {
  if (linked.has(`${repo}@${digest}`)) return;
  const r = await direct(registry.url, 'HEAD', `/v2/${repo}/blobs/${digest}`);
  if (r.status === 200) {
    linked.add(`${repo}@${digest}`);
    findings.push({
      rule: 'I4-forbidden-blob-linked',
      severity: 'security',
      why: `registry:2 now has ${digest} (a blob of a repository no fuzz identity may read from ${repo}) linked in ${repo}`,
      input: w ? describe(n, w) : { afterRequest: n },
    });
  }
};

let t0 = performance.now();
let n = 0;
let sent = 0;
const last = REPLAY ? Math.max(...REPLAY) + 1 : COUNT;
/** The next input to send, or null when the run is over (count, time, or replay list done). */
function take() {
  while (n < last && performance.now() - t0 < SECONDS * 1000) {
    const i = n++;
    const inp = gen.next();
    inputsHash.update(JSON.stringify({ ...inp, body: inp.body ? sha(inp.body) : null }));
    // Same seed, same inputs: runs stopped at different counts agree on every checkpoint.
    if ((i + 1) % 10_000 === 0) inputCheckpoints[i + 1] = inputsHash.copy().digest('hex').slice(0, 16);
    if (!REPLAY || REPLAY.includes(i)) return [i, inp];
  }
  return null;
}

let tokenRefresh = null;
/** One refresh at a time, however many requests are in flight. */
const tokensFresh = () => (tokenRefresh ??= maintainTokens().finally(() => (tokenRefresh = null)));

async function one(n, inp) {
  await tokensFresh();
  const w = materialize(inp, Date.now());
  const started = performance.now();
  const r = await rawRequest({
    port,
    localAddress: sourceAddress(n),
    method: w.method,
    target: w.target,
    headers: w.headers,
    body: w.wireBody,
    timeoutMs: 20_000,
    tlsCache,
  });
  const ms = performance.now() - started;
  const k = ++sent;
  counts[r.status] = (counts[r.status] ?? 0) + 1;
  for (const l of inp.labels) labelCounts.set(l, (labelCounts.get(l) ?? 0) + 1);
  records.push({
    n,
    addr: sourceAddress(n),
    expect: w.expect,
    expectSub: w.expectSub,
    status: r.status,
    cred: w.credLabel,
  });
  if (r.status === 'timeout') anomalies.timeouts++;
  if (typeof r.status === 'number' && r.status >= 500 && anomalies.fiveHundreds.length < 20)
    anomalies.fiveHundreds.push({
      status: r.status,
      body: r.body.toString().slice(0, 300),
      input: describe(n, w),
    });
  if (anomalies.slowest.length < 5 || ms > anomalies.slowest.at(-1).ms) {
    anomalies.slowest.push({
      ms: Math.round(ms),
      status: r.status,
      input: { n, method: w.method, target: w.target.slice(0, 200), labels: inp.labels },
    });
    anomalies.slowest.sort((a, b) => b.ms - a.ms).splice(5);
  }
  // upload sessions, for the upload-chunk requests that follow
  const loc = r.headers?.location?.[0];
  if (loc && r.status === 202 && inp.uploadOwner) {
    const u = new URL(loc, 'http://x');
    const m = /\/blobs\/uploads\/([^/]+)$/.exec(u.pathname);
    if (m) uploads.set(inp.uploadOwner, { uuid: m[1], state: u.search.slice(1) || '_state=x' });
  }
  // payload / shape decoys asked for by a pull-only caller
  const dm = /^\/v2\/prod\/app\/manifests\/(decoy-[^?]+|shape-[^?]+)$/.exec(w.target);
  if (
    dm &&
    (w.method === 'GET' || w.method === 'HEAD') &&
    w.rights.can('pull', 'prod/app') &&
    !w.rights.can('push', 'prod/app')
  ) {
    const s = decoyStats.get(dm[1]) ?? decoyStats.set(dm[1], { asked: 0, served: 0 }).get(dm[1]);
    s.asked++;
    if (r.status === 200) s.served++;
  }
  for (const f of oracle.judge(w, r)) findings.push({ ...f, status: r.status, input: describe(n, w) });
  if (r.status === 201 && /\/blobs\/uploads\/(\?|$)/.test(w.target)) {
    const repo = /^\/v2\/(.+)\/blobs\/uploads\//.exec(w.target)?.[1];
    for (const d of F.forbiddenBlobs)
      if (repo && /^dev\//.test(repo) && (w.target.includes(d) || w.body?.includes(d)))
        await checkLinked(repo, d, n, w);
  }
  if (k % 500 === 0) {
    const h = await rawRequest({
      port,
      localAddress: '127.0.0.1',
      method: 'GET',
      target: '/healthz',
      headers: [
        ['Host', 'localhost'],
        ['Connection', 'close'],
      ],
      timeoutMs: 10_000,
      tlsCache,
    });
    if (h.status !== 200) crashes.push(`/healthz answered ${h.status} after ${k} requests`);
  }
  if (k % 5000 === 0)
    for (const repo of sweepRepos) for (const d of sweepBlobs) await checkLinked(repo, d, n);
  if (k % 1000 === 0) {
    const ok = Object.entries(counts)
      .filter(([s]) => s.startsWith('2'))
      .reduce((a, [, c]) => a + c, 0);
    progress(
      `${sent} requests, ${Math.round((performance.now() - t0) / 1000)} s, ${ok} 2xx, ${findings.length} unexpected, ${tokenStats.refreshes} refreshes`,
    );
  }
}

/**
 * Calibration, before the fuzz inputs: every decoy and fixture once, as a clean pull by the
 * consumer (pull-only) with the full Accept list. Shows the oracle's expectations hold where they
 * should (accept-class payloads and plain shapes are served) and what trustgate refuses.
 */
async function calibrate() {
  const out = { payload: {}, shape: {}, fixture: {} };
  const accept = [
    'application/vnd.oci.image.manifest.v1+json',
    'application/vnd.oci.image.index.v1+json',
    'application/vnd.docker.distribution.manifest.v2+json',
    'application/vnd.docker.distribution.manifest.list.v2+json',
  ].join(', ');
  const targets = [
    ...F.payloadDecoys.map((d) => ['payload', `${d.decoy.name} (${d.decoy.class})`, d.tag]),
    ...F.shapeDecoys.map((d) => ['shape', d.decoy.name, d.tag]),
    ...['v1', 'v2', 'unsigned', 'untrusted', 'multi', 'nested', 'nested4', 'unsigned-index'].map((t) => [
      'fixture',
      t,
      t,
    ]),
  ];
  for (const [i, [kind, name, ref]] of targets.entries()) {
    await tokensFresh();
    const inp = {
      method: 'GET',
      target: `/v2/prod/app/manifests/${ref}`,
      headers: [
        ['Host', 'localhost'],
        ['Accept', accept],
      ],
      cred: { k: 'token', name: 'consumer', scheme: 'Bearer ' },
      authHeaderName: 'Authorization',
    };
    const w = materialize(inp, Date.now());
    const r = await rawRequest({
      port,
      localAddress: `127.251.${1 + (i >> 8)}.${1 + (i & 0xff)}`,
      method: w.method,
      target: w.target,
      headers: w.headers,
      timeoutMs: 20_000,
      tlsCache,
    });
    const code = jsView(r.body)?.errors?.[0]?.code;
    out[kind][name] = `${r.status}${code ? ` ${code}` : ''}`;
    for (const f of oracle.judge(w, r))
      findings.push({ ...f, status: r.status, input: { ...describe(`calibration ${i}`, w) } });
  }
  return out;
}
const calibration = await calibrate();
t0 = performance.now();

async function worker() {
  for (let next = take(); next !== null; next = take()) await one(...next);
}

try {
  await Promise.all(Array.from({ length: REPLAY ? 1 : CONCURRENCY }, worker));
} catch (err) {
  // A fault of this harness, not of trustgate: stop everything and say so.
  process.stderr.write(`fuzz harness error at input ${n}: ${err?.stack ?? err}\n`);
  await gate.close().catch(() => {});
  await registry.stop().catch(() => {});
  process.exit(2);
}
const seconds = (performance.now() - t0) / 1000;
for (const repo of sweepRepos) for (const d of sweepBlobs) await checkLinked(repo, d, n);
const h = await rawRequest({
  port,
  ca: gate.ca,
  localAddress: '127.0.0.1',
  method: 'GET',
  target: '/healthz',
  headers: [
    ['Host', 'localhost'],
    ['Connection', 'close'],
  ],
  timeoutMs: 10_000,
  tlsCache,
});
if (h.status !== 200) crashes.push(`/healthz answered ${h.status} at the end`);
await gate.close();
await registry.stop();

// ---- past authentication, from the audit log ------------------------------------------------------
const past = { count: 0, byIdentity: {}, byVerdictReason: {}, byStatus: {}, twoXXByIdentityRouteReason: {} };
const auditClasses = { notAudited: 0, refusedBeforeAuthentication: 0, unauthenticated: 0, authenticated: 0 };
let twoXX = 0;
for (const rec of records) {
  if (typeof rec.status === 'number' && rec.status >= 200 && rec.status < 300) twoXX++;
  const e = audit.get(rec.addr);
  if (!e) {
    auditClasses.notAudited++;
    continue;
  }
  if (e.identity === 'anonymous') {
    if (e.route === 'unknown') auditClasses.refusedBeforeAuthentication++;
    else auditClasses.unauthenticated++;
    continue;
  }
  auditClasses.authenticated++;
  past.count++;
  past.byIdentity[e.identity] = (past.byIdentity[e.identity] ?? 0) + 1;
  const vr = `${e.verdict}/${e.reason}`;
  past.byVerdictReason[vr] = (past.byVerdictReason[vr] ?? 0) + 1;
  past.byStatus[e.status] = (past.byStatus[e.status] ?? 0) + 1;
  if (e.status >= 200 && e.status < 300) {
    const k = `${e.identity} ${e.route} ${e.reason}`;
    past.twoXXByIdentityRouteReason[k] = (past.twoXXByIdentityRouteReason[k] ?? 0) + 1;
  }
  if (rec.expect === 'invalid')
    findings.push({
      rule: 'AUTH-invalid-credential-accepted',
      severity: 'security',
      why: `audit: ${e.identity} ${vr} for ${rec.cred}`,
      input: { n: rec.n },
    });
  else if (rec.expect === 'valid' && e.identity !== rec.expectSub)
    findings.push({
      rule: 'AUTH-identity-mismatch',
      severity: 'security',
      why: `token for ${rec.expectSub}, audit says ${e.identity}`,
      input: { n: rec.n },
    });
}

const byRule = {};
for (const f of findings) byRule[f.rule] = (byRule[f.rule] ?? 0) + 1;
const distinct = [
  ...new Map(
    findings.map((f) => [`${f.rule}|${f.input.method} ${f.input.target}|${f.input.credential}`, f]),
  ).values(),
];
const family = {};
for (const [l, c] of labelCounts) {
  const k = l.split(':')[0];
  family[k] = (family[k] ?? 0) + c;
}
const decoys = { payload: { accept: [0, 0], reject: [0, 0], either: [0, 0] }, shapes: {} };
for (const d of F.payloadDecoys) {
  const s = decoyStats.get(`decoy-${d.decoy.name}`);
  if (!s) continue;
  decoys.payload[d.decoy.class][0]++;
  if (s.served > 0) decoys.payload[d.decoy.class][1]++;
}
for (const d of F.shapeDecoys) decoys.shapes[d.decoy.name] = decoyStats.get(d.tag) ?? { asked: 0, served: 0 };

const report = {
  command: `node scripts/fuzz.mjs ${argv.join(' ')}`.trim(),
  seed: SEED,
  concurrency: REPLAY ? 1 : CONCURRENCY,
  tokenTtlSeconds: TOKEN_TTL,
  requests: sent,
  seconds: Math.round(seconds * 10) / 10,
  requestsPerSecond: Math.round(sent / seconds),
  setupSeconds: Math.round(setupSeconds * 10) / 10,
  inputsSha256: inputsHash.digest('hex'),
  inputCheckpoints,
  statuses: counts,
  twoXX,
  pastAuthentication: { ...past, share: Math.round((past.count / Math.max(1, sent)) * 1000) / 10 },
  audit: auditClasses,
  tokens: tokenStats,
  calibration,
  payloadDecoys: Object.fromEntries(
    Object.entries(decoys.payload).map(([k, [asked, served]]) => [
      k,
      `${served} of ${asked} decoys asked were served to a pull-only caller`,
    ]),
  ),
  shapeDecoys: decoys.shapes,
  fixturesSkipped: F.skipped,
  crashes,
  unexpectedCount: findings.length,
  unexpectedByRule: byRule,
  unexpectedSecurity: findings.filter((f) => f.severity === 'security').length,
  unexpectedFirstByRule: Object.fromEntries(new Map([...findings].reverse().map((f) => [f.rule, f]))),
  unexpected2xx: distinct.slice(0, 2000),
  anomalies: { ...anomalies, errorLogLines: errorLines.slice(0, 10) },
  coverage: { byFamily: family, labels: Object.fromEntries([...labelCounts].sort((a, b) => b[1] - a[1])) },
};
if (OUT) writeFileSync(OUT, JSON.stringify(report, null, 2));
const brief = {
  ...report,
  coverage: { byFamily: family },
  unexpected2xx: `${distinct.length} distinct (method, target, credential, rule); all in --out`,
};
console.log(JSON.stringify(brief, null, 2));
process.exit(crashes.length > 0 || report.unexpectedSecurity > 0 ? 1 : 0);
