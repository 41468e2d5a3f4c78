// The oracle: which 2xx answers are unexpected. It parses the request with its own reading of the
// distribution grammar (not trustgate's parser), knows what each fuzz identity may do (the policy
// below, and the access claims of the token actually sent), and knows which manifests and blobs a
// pull-only caller may get (fixtures.mjs: signed, listed in a signed index, or signature artifacts).
//
// Rules (severity "security" breaks an invariant's purpose; "strictness" is an I2 refusal that
// DESIGN.md requires even where no leak follows):
//   AUTH-*      2xx on /v2 without a valid credential, or a refused credential the audit log shows as accepted
//   AUTHZ-*     2xx for an action the token does not grant (pull, push, delete, catalog)
//   I1-*        pull-only caller got a manifest that is not signed/listed/a signature artifact, a blob of
//               no such manifest, bytes not matching the digest asked for, or a rejected signature payload;
//               a signature artifact pushed under an ordinary reference; an unverified signature pushed
//   I4-*        a mount from a repository the caller cannot read; a hidden blob readable from dev/*;
//               _catalog naming a repository the caller cannot pull
//   TOKEN-*     the token endpoint granted more than the policy allows
//   ADMIN-*     2xx from /admin to a non-admin
//   I2-*        2xx for a request registry:2 would read differently: non-canonical path or method,
//               duplicate/encoded query keys or `;`, a form body on an upload, ambiguous manifest keys
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import {
  ambiguities,
  goMultipartFields,
  goParseQuery,
  goReadsForm,
  isSigArtifactShape,
  jsView,
  SIMPLESIGNING,
  COSIGN_SIG,
} from './json-model.mjs';

const sha = (b) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

const COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const NAME = `${COMPONENT}(?:/${COMPONENT})*`;
const TAG = '[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}';
const DIGEST = 'sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}';
const ROUTES = [
  ['base', /^\/v2\/$/, ['GET', 'HEAD']],
  ['catalog', /^\/v2\/_catalog$/, ['GET']],
  ['tags', new RegExp(`^/v2/(${NAME})/tags/list$`), ['GET']],
  ['manifest', new RegExp(`^/v2/(${NAME})/manifests/(${TAG}|${DIGEST})$`), ['GET', 'HEAD', 'PUT', 'DELETE']],
  ['blob', new RegExp(`^/v2/(${NAME})/blobs/(${DIGEST})$`), ['GET', 'HEAD', 'DELETE']],
  ['upload-start', new RegExp(`^/v2/(${NAME})/blobs/uploads/$`), ['POST']],
  [
    'upload',
    new RegExp(`^/v2/(${NAME})/blobs/uploads/([A-Za-z0-9_.=-]+)$`),
    ['GET', 'PATCH', 'PUT', 'DELETE'],
  ],
];

/** Our reading of a /v2 request target: { kind, repo, ref, methods } or { kind: null }. */
export function readTarget(target) {
  const q = target.indexOf('?');
  const path = q === -1 ? target : target.slice(0, q);
  const query = q === -1 ? '' : target.slice(q + 1);
  const issues = [];
  if (target.includes('#')) issues.push('fragment');
  if (query.includes(';')) issues.push('semicolon');
  const seen = new Set();
  if (query !== '') {
    for (const pair of query.split('&')) {
      const k = pair.split('=')[0];
      if (/[%+]/.test(k)) issues.push(`encoded-key:${k}`);
      const f = k.toLowerCase();
      if (seen.has(f)) issues.push(`duplicate-key:${k}`);
      seen.add(f);
    }
  }
  for (const [kind, re, methods] of ROUTES) {
    const m = re.exec(path);
    if (!m) continue;
    const repo = m[1];
    if (repo !== undefined && repo.length > 255) break;
    return { kind, repo, ref: m[2], methods, query, issues };
  }
  return { kind: null, query, issues };
}

/** The policy of the fuzz gate (fuzz.mjs passes the same to trustgate). */
export const POLICY = {
  access: [
    { repos: ['prod/app'], pull: ['consumer'], push: [], delete: [] },
    { repos: ['dev/*'], pull: ['consumer', 'publisher'], push: ['publisher'], delete: [] },
    { repos: ['team/secret'], pull: ['keeper'], push: ['keeper'], delete: [] },
  ],
};
const DEV = /^dev\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
export function policyAllows(sub, action, repo) {
  if (sub === 'consumer') return action === 'pull' && (repo === 'prod/app' || DEV.test(repo));
  if (sub === 'publisher') return (action === 'pull' || action === 'push') && DEV.test(repo);
  if (sub === 'keeper') return (action === 'pull' || action === 'push') && repo === 'team/secret';
  return false;
}

export function decodeJwt(token) {
  try {
    const [, p] = String(token).split('.');
    return JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
  } catch {
    return null;
  }
}

export function rightsFromClaims(claims) {
  const access = claims?.access ?? [];
  const has = (type, name, action) =>
    access.some(
      (a) => a.type === type && a.name === name && (a.actions?.includes(action) || a.actions?.includes('*')),
    );
  return {
    sub: claims?.sub,
    can: (action, repo) => has('repository', repo, action) && policyAllows(claims?.sub, action, repo),
    catalog: () => has('registry', 'catalog', '*'),
  };
}
export const NO_RIGHTS = { sub: 'anonymous', can: () => false, catalog: () => false };

export function createOracle(F) {
  const dynamic = new Map(); // digest -> { repo, bytes } of manifests pushed through trustgate
  const validSig = (repo, l) =>
    F.validSigLayers.get(repo)?.has(`${l?.digest}|${l?.annotations?.[COSIGN_SIG]}`);

  function bytesOf(digest) {
    return F.manifests.get(digest)?.bytes ?? dynamic.get(digest)?.bytes;
  }

  /**
   * w: { method, target, headers (sent), body, contentType, expect ('valid'|'invalid'|'maybe'),
   *      rights, tokenUser }. r: the response. Returns [{ rule, severity, why }].
   */
  function judge(w, r) {
    const st = r.status;
    if (typeof st !== 'number' || st < 200 || st > 299) return [];
    const out = [];
    const flag = (rule, severity, why) => out.push({ rule, severity, why });
    const { method } = w;
    // Node's parser ends the target at the first space, so trailing spaces are not part of it.
    const target = w.target.replace(/ +$/, '');
    const isV2 = target === '/v2' || target.startsWith('/v2/') || target.startsWith('/v2?');
    if (!isV2) {
      // express routes an absolute-form target by its path
      const path = /^https?:\/\//i.test(target) ? new URL(target).pathname : target.split(/[?#]/)[0];
      if ((path === '/healthz' || path === '/readyz') && (method === 'GET' || method === 'HEAD')) return out;
      if (method === 'OPTIONS' && r.body.length < 100 && !path.startsWith('/admin')) return out;
      if (path === '/token') return (judgeToken(w, r, flag), out);
      if (path.startsWith('/admin'))
        flag('ADMIN-2xx', 'security', `${method} ${path} answered ${st} to a non-admin`);
      else flag('ROUTE-unexpected-2xx', 'strictness', `${method} ${path} answered ${st}`);
      return out;
    }
    const t = readTarget(target);
    if (t.kind === null)
      flag('I2-route-not-canonical', 'strictness', 'the path is not in the distribution grammar');
    else if (!t.methods.includes(method))
      flag('I2-method', 'strictness', `${method} is not a ${t.kind} method`);
    for (const i of t.issues) flag('I2-query', 'strictness', i);
    const rights = w.rights;
    if (w.expect === 'invalid')
      flag('AUTH-2xx-without-valid-credential', 'security', `credential: ${w.credLabel}`);
    if (t.kind === null) return out;
    const { repo } = t;
    const ct = w.contentType;
    const hasBody = w.body !== undefined && w.body.length > 0;
    const formRead = ['POST', 'PUT', 'PATCH'].includes(method) && hasBody && goReadsForm(ct);
    const form = formRead
      ? /multipart/i.test(ct)
        ? goMultipartFields(w.body, ct)
        : goParseQuery(w.body.toString('latin1'))
      : new Map();
    switch (t.kind) {
      case 'base':
        break;
      case 'catalog': {
        if (!rights.catalog())
          flag('AUTHZ-catalog', 'security', 'the token does not grant registry:catalog:*');
        const v = jsView(r.body);
        for (const name of v?.repositories ?? []) {
          if (!policyAllows(rights.sub, 'pull', name)) flag('I4-catalog', 'security', `lists ${name}`);
        }
        const link = (r.headers.link ?? []).join(',');
        const last = /last=([^&>]*)/.exec(link)?.[1];
        if (last && !policyAllows(rights.sub, 'pull', decodeURIComponent(last)))
          flag('I4-catalog-link', 'security', `Link names ${last}`);
        break;
      }
      case 'tags':
        if (!rights.can('pull', repo)) flag('AUTHZ-pull', 'security', `tags of ${repo}`);
        break;
      case 'manifest': {
        if (method === 'DELETE') {
          if (!rights.can('delete', repo)) flag('AUTHZ-delete', 'security', `manifest delete in ${repo}`);
          break;
        }
        if (method === 'PUT') {
          judgePut(w, t, flag);
          break;
        }
        if (!rights.can('pull', repo)) flag('AUTHZ-pull', 'security', `manifest of ${repo}`);
        const served =
          method === 'HEAD' || r.body.length === 0 ? r.headers['docker-content-digest']?.[0] : sha(r.body);
        const header = r.headers['docker-content-digest']?.[0];
        if (method !== 'HEAD' && r.body.length > 0 && header && header !== served) {
          flag(
            'I1-digest-header-mismatch',
            'security',
            `Docker-Content-Digest ${header} but bytes hash to ${served}`,
          );
        }
        if (t.ref.includes(':') && served !== t.ref)
          flag('I1-digest-mismatch', 'security', `asked ${t.ref}, served ${served}`);
        const bytes = method === 'HEAD' ? bytesOf(served) : r.body;
        const amb = bytes ? ambiguities(bytes) : [];
        if (amb === null) flag('I2-manifest-not-json', 'strictness', `served ${served}, not JSON`);
        else if (amb.length)
          flag(
            'I2-manifest-keys',
            'strictness',
            `served ${served}: ${amb.map((a) => `${a.rule} ${a.detail}`).join('; ')}`,
          );
        if (!rights.can('push', repo)) {
          const info = F.manifests.get(served);
          const allowed =
            F.allowedManifests.get(repo)?.has(served) || (bytes && isSigArtifactShape(jsView(bytes)));
          if (!allowed) {
            const what = info?.decoy
              ? `${info.decoy.type} decoy ${info.decoy.name}`
              : info
                ? `${info.kind}${info.tag ? ` :${info.tag}` : ''}`
                : 'unknown manifest';
            const rule =
              info?.decoy?.type === 'payload' ? 'I1-signature-payload-accepted' : 'I1-unverified-manifest';
            flag(rule, 'security', `pull-only ${rights.sub} got ${served} (${what}) from ${repo}`);
          }
        }
        break;
      }
      case 'blob': {
        const digest = t.ref;
        if (method === 'DELETE') {
          if (!rights.can('delete', repo)) flag('AUTHZ-delete', 'security', `blob delete in ${repo}`);
          break;
        }
        if (!rights.can('pull', repo)) flag('AUTHZ-pull', 'security', `blob of ${repo}`);
        if (!rights.can('push', repo)) {
          if (!F.allowedBlobs.get(repo)?.has(digest))
            flag('I1-unadmitted-blob', 'security', `pull-only ${rights.sub} got blob ${digest} of ${repo}`);
        } else if (F.forbiddenBlobs.has(digest) && DEV.test(repo)) {
          flag(
            'I4-cross-repo-blob',
            'security',
            `${rights.sub} read ${digest} (a blob of a repository it cannot pull) through ${repo}`,
          );
        }
        break;
      }
      case 'upload-start': {
        if (!rights.can('push', repo)) flag('AUTHZ-push', 'security', `upload start in ${repo}`);
        if (formRead)
          flag(
            'I2-form-body',
            'strictness',
            `registry:2 reads this body as a form (Content-Type ${JSON.stringify(ct)})`,
          );
        if (st === 201) {
          // registry's FormValue: body values first, then the query (first of duplicates)
          const q = goParseQuery(t.query);
          const mount = form.get('mount') ?? q.get('mount');
          const from = form.get('from') ?? q.get('from');
          if (mount && from) {
            const readable =
              rights.can('pull', from) && (rights.can('push', from) || F.allowedBlobs.get(from)?.has(mount));
            if (!readable)
              flag('I4-mount', 'security', `mounted ${mount} from ${from}, which ${rights.sub} cannot read`);
          }
        }
        break;
      }
      case 'upload':
        if (!rights.can('push', repo)) flag('AUTHZ-push', 'security', `upload ${method} in ${repo}`);
        if (formRead)
          flag(
            'I2-form-body',
            'strictness',
            `registry:2 reads this body as a form (Content-Type ${JSON.stringify(ct)})`,
          );
        break;
    }
    return out;
  }

  function judgePut(w, t, flag) {
    const { repo, ref } = t;
    const rights = w.rights;
    if (!rights.can('push', repo) || !rights.can('pull', repo))
      flag('AUTHZ-push', 'security', `manifest PUT in ${repo}`);
    const body = w.body ?? Buffer.alloc(0);
    const amb = ambiguities(body);
    if (amb === null) flag('I2-manifest-not-json', 'strictness', 'accepted a body JavaScript cannot parse');
    else if (amb.length)
      flag('I2-manifest-keys', 'strictness', amb.map((a) => `${a.rule} ${a.detail}`).join('; '));
    const v = jsView(body);
    if (isSigArtifactShape(v)) {
      if (!/^sha256-[0-9a-f]{64}\.sig$/.test(ref))
        flag('I1-signature-artifact-misplaced', 'security', `under ${ref}`);
      else {
        const bad = v.layers.filter((l) => l.mediaType === SIMPLESIGNING && !validSig(repo, l));
        if (bad.length)
          flag(
            'I1-unverified-signature-accepted',
            'security',
            `${bad.length} layer(s) whose signature no trusted key made`,
          );
      }
    }
    dynamic.set(sha(body), { repo, bytes: body });
  }

  function judgeToken(w, r, flag) {
    const v = jsView(r.body);
    const tok = v?.token ?? v?.access_token;
    if (!tok) return;
    const c = decodeJwt(tok);
    if (!c) return;
    const expectSub = w.tokenUser ?? 'anonymous';
    if (c.sub !== expectSub) flag('TOKEN-subject', 'security', `asked as ${expectSub}, token for ${c.sub}`);
    for (const a of c.access ?? []) {
      for (const action of a.actions ?? []) {
        const ok =
          a.type === 'registry'
            ? a.name === 'catalog' && action === '*' && c.sub !== 'anonymous'
            : a.type === 'repository' && policyAllows(c.sub, action, a.name);
        if (!ok) flag('TOKEN-overgrant', 'security', `${c.sub} granted ${a.type}:${a.name}:${action}`);
      }
    }
  }

  return { judge, dynamic };
}
