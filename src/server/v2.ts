import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import { GateError, toGateError } from '../core/errors.js';
import {
  MEDIA_TYPES,
  parseManifest,
  referencedBlobs,
  type ParsedManifest,
  isSignatureArtifact,
  isSignatureTag,
  digestOf,
} from '../core/manifest.js';
import { parseRoute } from '../core/route.js';
import type { Route } from '../core/types.js';
import type { TrustService, Verdict } from '../trust/service.js';
import type { ReferrersStore } from '../trust/referrers.js';
import {
  checkReferrersTagWrite,
  isBundleReferrer,
  isReferrersTag,
  referrerDescriptor,
  subjectOfReferrersTag,
  referrersIndex,
} from '../core/referrers.js';
import { isBundleReferrerRead } from '../core/serve-decision.js';
import type { Upstream, UpstreamResponse } from '../registry/upstream.js';
import { FreshCoalescer } from '../registry/fresh-coalescer.js';
import { headerValue, upstreamFailure, upstreamRequestHeaders } from '../registry/upstream.js';
import type { Audit, AuditEvent } from './audit.js';
import type { Authenticator, Principal, RepoAction } from './authenticate.js';
import type { StreamForwarder } from './forward.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import type { CachedManifest, ManifestCache } from '../cache/manifest-cache.js';
import { sendError } from './respond.js';
import { readBody as readBoundedBody } from './body.js';
import { checkLayerUrls, NO_LAYER_URLS, type LayerUrlPolicy } from '../core/layer-urls.js';

/** registry:2 refuses manifests over 4 MiB; so do we, before reading more. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const MAX_CATALOG_BYTES = 16 * 1024 * 1024;
/**
 * Policy: a filtered catalog asks registry:2 for pages of its own size, not the client's `n` (each
 * registry:2 2.8 page walks the repository tree from the start, so `n=1` cost one walk per hidden
 * repository), and reads at most this many pages per request.
 */
const MAX_CATALOG_PAGES = 10;
const UPSTREAM_CATALOG_PAGE = 1000;

/**
 * Policy: trustgate always asks the registry for the manifest exactly as stored. With every modern
 * type in Accept, registry:2 neither converts to schema1 (new bytes, new digest) nor collapses a
 * list to its linux/amd64 child, so the bytes we verify are the bytes the client gets.
 */
export const UPSTREAM_MANIFEST_ACCEPT = [
  MEDIA_TYPES.ociManifest,
  MEDIA_TYPES.ociIndex,
  MEDIA_TYPES.dockerManifest,
  MEDIA_TYPES.dockerManifestList,
].join(', ');

export interface PipelineDeps {
  upstream: Upstream;
  forwarder: StreamForwarder;
  auth: Authenticator;
  trust: TrustService;
  /** The OCI 1.1 referrers API trustgate serves over registry:2's referrers tags. */
  referrers: ReferrersStore;
  audit: Audit;
  log: Logger;
  metrics?: Metrics;
  /** Manifest bytes by digest (warm pulls by digest skip the registry). */
  manifests?: ManifestCache;
  /** Told after a manifest DELETE by digest went upstream (to tell the other replicas). */
  onManifestDeleted?: (repo: string, digest: string) => void;
  /** The token service named in challenges (read per request: follows a reload). */
  service: () => string;
  /** Token endpoint URL for the challenge; derived from the Host header when not configured. */
  realm: () => string | undefined;
  isAdmin: (p: Principal) => boolean;
  /** Which layer URLs a pushed manifest may carry (manifests.layerUrls); default: none. */
  layerUrls?: () => LayerUrlPolicy;
}

/** One registry answer for a manifest reference: the response, or held bytes it confirmed (304). */
type RegistryAnswer = { up: UpstreamResponse } | { held: CachedManifest };

/** The dependencies plus what the pipeline keeps for itself. */
interface Pipeline extends PipelineDeps {
  /** Registry answers for tags, shared by concurrent pulls of one tag. */
  tagAnswers: FreshCoalescer<RegistryAnswer>;
}

interface Ctx {
  req: http.IncomingMessage;
  res: http.ServerResponse;
  route: Route;
  principal: Principal;
  event: AuditEvent;
}

/**
 * The /v2 pipeline. A request flows one way:
 * parse → authenticate → authorise → (trust check) → forward or serve verified bytes → audit.
 */
export function createV2Handler(
  deps: PipelineDeps,
): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  const d: Pipeline = {
    ...deps,
    tagAnswers: new FreshCoalescer((callers) => deps.metrics?.tagAnswersShared.inc(callers)),
  };
  return (req, res) => {
    const started = performance.now();
    const event: AuditEvent = {
      requestId: randomUUID(),
      identity: 'anonymous',
      client: req.socket.remoteAddress,
      action: req.method ?? '',
      method: req.method ?? '',
      route: 'unknown',
      verdict: 'allow',
      reason: 'ok',
    };
    res.setHeader('docker-distribution-api-version', 'registry/2.0');
    handle(d, req, res, event)
      .catch((err: unknown) => {
        const e = toGateError(err);
        event.verdict = e.status >= 500 ? 'error' : 'deny';
        event.reason = event.reason === 'ok' ? e.code : event.reason;
        if (e.status === 401 && !e.headers['WWW-Authenticate']) {
          e.headers['WWW-Authenticate'] = challenge(d, req, event);
        }
        sendError(res, e, d.log, { reqId: event.requestId, path: req.url });
      })
      .finally(() => {
        res.once('close', () => {
          event.status = res.statusCode;
          event.latencyMs = Math.round((performance.now() - started) * 10) / 10;
          d.audit.decision(event);
        });
        if (res.writableFinished || res.destroyed) res.emit('close');
      });
  };
}

async function handle(
  d: Pipeline,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  event: AuditEvent,
): Promise<void> {
  // parse
  const route = parseRoute({
    method: req.method ?? '',
    url: req.url ?? '',
    contentType: req.headers['content-type'],
    contentLength: req.headers['content-length'],
    chunked: req.headers['transfer-encoding'] !== undefined,
    rawHeaders: req.rawHeaders,
  });
  event.route = route.kind;
  if ('repo' in route) event.repo = route.repo;
  if (route.kind === 'manifest') event.reference = route.ref.tag ?? route.ref.digest;
  if (route.kind === 'blob') event.digest = route.digest;
  event.action = route.action ?? 'ping';
  // authenticate
  const principal = await d.auth.authenticate(req);
  event.identity = principal.identity.subject;
  const ctx: Ctx = { req, res, route, principal, event };
  // authorise
  authorise(ctx);
  // trust check and forward
  switch (route.kind) {
    case 'base':
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '2' });
      res.end('{}');
      return;
    case 'catalog':
      return serveCatalog(d, ctx);
    case 'tags':
      return d.forwarder.forward(req, res, req.url ?? '');
    case 'referrers':
      return serveReferrers(d, ctx, route);
    case 'manifest':
      if (route.action === 'pull') return serveManifest(d, ctx, route.repo, route.ref);
      if (route.action === 'push') return putManifest(d, ctx, route.repo, route.ref);
      if (route.ref.digest) {
        // A manifest deleted through this replica is not served from its manifest cache again
        // (dropped before, and again after, in case a pull re-cached it meanwhile). Other
        // replicas are told through Redis when there is one; without it they keep their copy at
        // most the cache's TTL (cache/manifest-cache.ts).
        const { repo, ref } = route;
        d.manifests?.delete(repo, ref.digest!);
        await d.forwarder.forward(req, res, req.url ?? '');
        d.manifests?.delete(repo, ref.digest!);
        d.onManifestDeleted?.(repo, ref.digest!);
        return;
      }
      return d.forwarder.forward(req, res, req.url ?? '');
    case 'blob':
      if (route.action === 'pull' && !principal.can('push', route.repo)) {
        if (!(await d.trust.isBlobAdmitted(route.repo, route.digest))) {
          event.reason = 'blob-not-admitted';
          // Policy: for a caller without push on the repository, a blob outside every verified
          // manifest of it does not exist: 404 BLOB_UNKNOWN, as registry:2 answers for an absent
          // blob, and the same answer whether or not registry:2 holds it (nothing is asked
          // upstream). containers/image (podman, buildah, skopeo) HEADs each layer before a push
          // and gives up on anything but 200/404, so a 403 here hid the push denial that follows.
          // Callers with no pull at all were refused by authorise() (401/403) and never get here;
          // pushers read upstream's own answer. The message (body and reason phrase) still says
          // what to do for a GET by hand.
          throw new GateError(
            'BLOB_UNKNOWN',
            `blob unknown: ${route.digest} belongs to no verified manifest of ${route.repo} (pull the image by tag or digest, which checks its signature first)`,
          );
        }
      }
      return d.forwarder.forwardBlobRead(req, res, req.url ?? '', principal);
    case 'upload-start':
      asBlobBody(req);
      return d.forwarder.forward(req, res, await uploadStartPath(d, ctx, route));
    case 'upload':
      asBlobBody(req);
      return d.forwarder.forward(req, res, req.url ?? '');
  }
}

/**
 * Policy (I2, I4): an upload request reaches registry:2 as `application/octet-stream`, whatever
 * the client said. registry:2 reads `mount`, `from`, `digest` and `_state` with FormValue, which
 * also parses a form body; with this type no body can ever be read as a form, so only the query
 * that the route parser checked decides. (The parser already refuses form types with a body.)
 */
function asBlobBody(req: http.IncomingMessage): void {
  if (req.method === 'POST' || req.method === 'PUT' || req.method === 'PATCH') {
    req.headers['content-type'] = 'application/octet-stream';
  }
}

/** Refuses what the principal may not do to the repository the route touches. */
function authorise(ctx: Ctx): void {
  const { route, principal, event } = ctx;
  if (route.kind === 'base') {
    // Policy: the ping answers 200 only to a credentialed caller; everyone else gets the
    // challenge that tells the client where the token endpoint is.
    if (!principal.credentialed) throw new GateError('UNAUTHORIZED', 'authentication required');
    return;
  }
  if (route.kind === 'catalog') {
    if (!principal.credentialed) {
      event.reason = 'no-credentials';
      throw new GateError('UNAUTHORIZED', 'authentication required to list repositories');
    }
    if (!principal.canCatalog()) {
      // Any signed-in caller may have it (the listing is filtered); the token just did not ask.
      event.reason = 'insufficient-scope';
      throw new GateError('UNAUTHORIZED', 'the token does not grant registry:catalog:*');
    }
    return;
  }
  const needed: RepoAction[] =
    route.action === 'pull' ? ['pull'] : route.action === 'push' ? ['pull', 'push'] : [route.action];
  const missing = needed.filter((a) => !principal.can(a, route.repo));
  if (missing.length === 0) return;
  if (!principal.credentialed) {
    event.reason = 'no-credentials';
    throw new GateError('UNAUTHORIZED', `authentication required to ${route.action} ${route.repo}`);
  }
  if (missing.every((a) => principal.policyAllows(a, route.repo))) {
    // The identity may do this, its token just did not ask: the client fetches a wider token.
    event.reason = 'insufficient-scope';
    throw new GateError('UNAUTHORIZED', `the token does not grant ${missing.join(',')} on ${route.repo}`);
  }
  event.reason = 'not-allowlisted';
  // Policy: the answer is the same whether or not the repository exists (nothing was asked upstream).
  throw new GateError(
    'DENIED',
    `${missing.join(' and ')} access to ${route.repo} is not allowed for ${principal.identity.subject}: no access rule grants it (ask an admin to add ${principal.identity.subject} to a rule for ${route.repo})`,
  );
}

function challenge(d: Pipeline, req: http.IncomingMessage, event: AuditEvent): string {
  const host = headerValue(req.headers.host) ?? 'localhost';
  const realm = d.realm() ?? `https://${host}/token`;
  let value = `Bearer realm="${realm}",service="${d.service()}"`;
  if (event.route === 'catalog') value += ',scope="registry:catalog:*"';
  else if (event.repo) {
    const actions = event.action === 'push' ? 'pull,push' : event.action;
    value += `,scope="repository:${event.repo}:${actions}"`;
  }
  if (event.reason === 'insufficient-scope') value += ',error="insufficient_scope"';
  return value;
}

/**
 * A blob mount needs pull on `from` (I4), and the blob must be one the caller could GET from
 * `from`: a pull-only caller only gets blobs of verified manifests there (I1), and a mount into
 * its own repository must not be a way round that. Policy: otherwise the mount is dropped and a
 * plain upload starts, which the spec allows and which leaks nothing.
 */
async function uploadStartPath(
  d: Pipeline,
  ctx: Ctx,
  route: Extract<Route, { kind: 'upload-start' }>,
): Promise<string> {
  const url = ctx.req.url ?? '';
  if (!route.mount) return url;
  const { from, digest } = route.mount;
  const readable =
    ctx.principal.can('pull', from) &&
    (ctx.principal.can('push', from) || (await d.trust.isBlobAdmitted(from, digest)));
  if (readable) return url;
  ctx.event.reason = 'mount-dropped';
  const u = new URL(url, 'http://x');
  u.searchParams.delete('mount');
  u.searchParams.delete('from');
  return u.pathname + u.search;
}

async function serveCatalog(d: Pipeline, ctx: Ctx): Promise<void> {
  const admin = d.isAdmin(ctx.principal);
  const n = Number(new URL(ctx.req.url ?? '', 'http://x').searchParams.get('n') ?? '') || undefined;
  const visible: string[] = [];
  const asked = new URL(ctx.req.url ?? '/v2/_catalog', 'http://x').searchParams.get('last');
  let path = admin
    ? (ctx.req.url ?? '/v2/_catalog')
    : `/v2/_catalog?n=${UPSTREAM_CATALOG_PAGE}${asked ? `&last=${encodeURIComponent(asked)}` : ''}`;
  let link: string | undefined;
  // Policy: the catalog lists only the repositories the caller may pull (I4), and the Link cursor
  // names only a listed one: registry:2's cursor is the last name of its page, which may be hidden.
  // For a non-admin, upstream pages are read until `n` visible names (bounded); a listing with no
  // visible name in MAX_CATALOG_PAGES pages ends there.
  let more = false;
  for (let page = 0; page < MAX_CATALOG_PAGES; page++) {
    const up = await d.upstream.request({
      method: 'GET',
      path,
      headers: { accept: 'application/json' },
      maxBytes: MAX_CATALOG_BYTES,
      kind: 'catalog',
    });
    if (up.status !== 200) throw upstreamFailure(new Error(`catalog answered ${up.status}`));
    let repos: unknown;
    try {
      repos = (JSON.parse(up.body.toString('utf8')) as { repositories?: unknown }).repositories;
    } catch (err) {
      throw upstreamFailure(err);
    }
    if (!Array.isArray(repos)) throw upstreamFailure(new Error('catalog without repositories'));
    if (admin) {
      visible.push(...repos.filter((r): r is string => typeof r === 'string'));
      link = headerValue(up.headers.link);
      break;
    }
    for (const r of repos) {
      if (n !== undefined && visible.length >= n) {
        more = true;
        break;
      }
      if (typeof r === 'string' && ctx.principal.policyAllows('pull', r)) visible.push(r);
    }
    const next = /^<(\/v2\/_catalog\?[^>]*)>/.exec(headerValue(up.headers.link) ?? '')?.[1];
    if (!next) break;
    more = true;
    if (n !== undefined && visible.length >= n) break;
    path = next;
  }
  if (!admin && more) {
    const last = visible.at(-1);
    if (last) link = `</v2/_catalog?last=${encodeURIComponent(last)}${n ? `&n=${n}` : ''}>; rel="next"`;
  }
  const body = JSON.stringify({ repositories: visible });
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(body)),
  };
  if (link) headers['link'] = link;
  ctx.res.writeHead(200, headers);
  ctx.res.end(body);
}

/** I1: one upstream fetch, verified, and exactly those bytes served. */
async function serveManifest(
  d: Pipeline,
  ctx: Ctx,
  repo: string,
  ref: { tag?: string; digest?: string },
): Promise<void> {
  const { req, res, principal, event } = ctx;
  const reference = ref.digest ?? ref.tag ?? '';
  // By digest, the evidence depends on the digest alone: when the manifest must be read from the
  // registry, the evidence reads start now, alongside it (the decision still waits for the
  // manifest and is made in verify below).
  if (ref.digest && !principal.can('push', repo) && !d.manifests?.get(repo, ref.digest)) {
    d.trust.prefetch(repo, ref.digest);
  }
  const fetched = await fetchManifest(d, ctx, repo, ref, reference);
  if (!fetched) return;
  const { bytes, contentType } = fetched;
  // Policy: the digest is computed from the bytes we hold, never taken from Docker-Content-Digest.
  const digest = digestOf(bytes, ref.digest);
  event.digest = digest;
  if (ref.digest && digest !== ref.digest) {
    d.manifests?.delete(repo, ref.digest);
    throw new GateError('MANIFEST_INVALID', `the registry returned bytes that do not match ${ref.digest}`, {
      status: 502,
      logDetail: { got: digest },
    });
  }
  // Bytes under a digest never change: the strict parse is done once per (digest, content type).
  const known = fetched.parsed ? fetched : d.manifests?.get(repo, digest);
  const manifest =
    known?.parsed && known.contentType === contentType ? known.parsed : parseManifest(bytes, contentType);
  if (!fetched.parsed) d.manifests?.set(repo, digest, { bytes, contentType, parsed: manifest });
  if (ref.tag) d.manifests?.rememberTag(repo, ref.tag, digest);
  if (!principal.can('push', repo)) {
    // Policy: identities with push rights on a repository may read its unsigned manifests, so a
    // publisher can resolve and sign what it pushed. Everyone else gets verified bytes only.
    const subjectPullable = isBundleReferrerRead({ tag: ref.tag, manifest })
      ? (await pullableByDigest(d, ctx, repo, manifest.subject!.digest)) === 'yes'
      : undefined;
    const verdict = await d.trust.verify(repo, digest, manifest, ref.tag, { subjectPullable });
    recordVerdict(event, verdict);
    if (!verdict.allow) throw new GateError('DENIED', denial(repo, digest, verdict, d));
    await admit(d, repo, digest, manifest, verdict);
  } else {
    event.reason = 'publisher-read';
  }
  if (!acceptable(req.headers.accept, manifest.mediaType)) {
    event.reason = 'not-acceptable';
    throw new GateError(
      'MANIFEST_UNKNOWN',
      `${repo}:${reference} is stored as ${manifest.mediaType}, which the client's Accept header excludes; trustgate never converts manifests`,
      { status: 404 },
    );
  }
  res.writeHead(200, {
    'content-type': manifest.mediaType,
    'content-length': String(bytes.length),
    'docker-content-digest': digest,
    etag: `"${digest}"`,
  });
  res.end(req.method === 'HEAD' ? undefined : bytes);
}

/**
 * The manifest bytes for a pull: by digest from the in-process cache when present (bytes under a
 * digest never change), otherwise ONE registry fetch. Returns undefined when the registry's own
 * 4xx answer was relayed. A tag is always resolved upstream: tags move.
 */
async function fetchManifest(
  d: Pipeline,
  ctx: Ctx,
  repo: string,
  ref: { tag?: string; digest?: string },
  reference: string,
): Promise<CachedManifest | undefined> {
  const { req, res, event } = ctx;
  if (ref.digest) {
    const hit = d.manifests?.get(repo, ref.digest);
    if (hit) return hit;
  }
  const { tag } = ref;
  const answer = tag
    ? await d.tagAnswers.run(`${repo}:${tag}`, () => askRegistry(d, repo, reference, tag))
    : await askRegistry(d, repo, reference);
  if ('held' in answer) return answer.held;
  const { up } = answer;
  if (up.status === 404 || up.status === 400) {
    // The registry's own OCI error (MANIFEST_UNKNOWN, NAME_UNKNOWN, …) passes through.
    res.writeHead(up.status, {
      'content-type': 'application/json',
      'content-length': String(up.body.length),
    });
    res.end(req.method === 'HEAD' ? undefined : up.body);
    event.reason = 'upstream-' + up.status;
    return undefined;
  }
  if (up.status !== 200) throw upstreamFailure(new Error(`manifest GET answered ${up.status}`));
  return { bytes: up.body, contentType: headerValue(up.headers['content-type']) };
}

/**
 * One registry answer for a manifest reference. Policy: a tag is resolved by the registry on
 * every pull, but conditionally when this replica holds the bytes it last resolved to: registry:2
 * compares the tag's current digest with If-None-Match before reading the manifest and answers
 * 304 when it has not moved. The held bytes are then served, re-hashed in serveManifest and
 * verified like any others (I1: one registry answer still decides the digest; a moved tag gets a
 * 200 with the new bytes). Nothing here depends on the client, so concurrent pulls of one tag can
 * share the answer (FreshCoalescer: only an answer asked for after the pull arrived).
 */
async function askRegistry(
  d: Pipeline,
  repo: string,
  reference: string,
  tag?: string,
): Promise<RegistryAnswer> {
  const previous = tag ? d.manifests?.lastResolved(repo, tag) : undefined;
  const headers: Record<string, string> = { accept: UPSTREAM_MANIFEST_ACCEPT };
  if (previous) headers['if-none-match'] = `"${previous.digest}"`;
  const up = await d.upstream.request({
    method: 'GET',
    path: `/v2/${repo}/manifests/${reference}`,
    headers,
    maxBytes: MAX_MANIFEST_BYTES,
    kind: 'manifest',
  });
  if (up.status === 304) {
    if (!previous) throw upstreamFailure(new Error('manifest GET answered 304 to an unconditional request'));
    d.metrics?.tagRevalidations.inc({ result: 'unchanged' });
    return { held: previous.manifest };
  }
  if (previous && up.status === 200) d.metrics?.tagRevalidations.inc({ result: 'moved' });
  return { up };
}

function recordVerdict(event: AuditEvent, v: Verdict): void {
  event.reason = v.reason;
  event.keys = v.signers;
  if (!v.allow) event.verdict = 'deny';
  else if (!v.ok) event.verdict = 'audit-allow';
}

/** The client's denial line: names the image, what was missing, and the keys that would do. */
function denial(repo: string, digest: string, v: Verdict, d: Pipeline): string {
  const subject = v.message.startsWith(repo) ? '' : `${repo}@${digest}: `;
  const trusted = v.message.includes('trusted:')
    ? ''
    : ` (trusted for ${v.rule}: ${d.trust.trustedKeyNames(repo).join(', ') || 'none'})`;
  return `${subject}${v.message}${trusted}`;
}

async function admit(
  d: Pipeline,
  repo: string,
  digest: string,
  m: ParsedManifest,
  v: Verdict,
): Promise<void> {
  if (v.reason === 'signature-artifact') {
    if (isBundleReferrer(m)) return d.trust.admitBundleLayers(repo, digest, m, v.epoch);
    return d.trust.admitSignaturePayloads(repo, digest, m, v.epoch);
  }
  if (m.kind === 'index') {
    // Policy: only an index that verified on its own admits its children; audit mode does not.
    if (v.ok) await d.trust.admitChildren(repo, digest, m, v.epoch);
    return;
  }
  await d.trust.admitBlobs(repo, digest, referencedBlobs(m), v.epoch);
}

/**
 * A client's PUT to a referrers tag (`sha256-<hex>`): the tag is trustgate's own index of that
 * digest's referrers (see core/referrers.ts for what is accepted).
 */
async function checkReferrersTagPut(
  d: Pipeline,
  repo: string,
  tag: string,
  index: ParsedManifest,
): Promise<void> {
  const existing = await d.referrers.storedIndex(repo, subjectOfReferrersTag(tag));
  const referrers = new Map<string, ParsedManifest | undefined>();
  for (const e of index.manifests)
    referrers.set(e.digest, (await d.referrers.manifest(repo, e.digest))?.manifest);
  checkReferrersTagWrite(tag, index, existing, referrers);
}

/**
 * May this caller pull `digest` of `repo`? Publishers may read anything of their repository;
 * everyone else only what verifies by digest (I1). 'absent' when the registry has no such manifest.
 */
async function pullableByDigest(
  d: Pipeline,
  ctx: Ctx,
  repo: string,
  digest: string,
): Promise<'yes' | 'no' | 'absent'> {
  if (ctx.principal.can('push', repo)) return 'yes';
  const got = await d.referrers.manifest(repo, digest);
  if (!got) return 'absent';
  return (await d.trust.verify(repo, digest, got.manifest)).allow ? 'yes' : 'no';
}

/**
 * The OCI 1.1 referrers API over registry:2: the referrers of a digest the caller may pull, each
 * described from its own manifest, filtered by artifactType when asked. Policy: a caller who may
 * not pull the subject is refused like a pull of it; the API never answers 404 (spec 1.1), so a
 * digest with no referrers (or none stored) lists nothing.
 */
async function serveReferrers(
  d: Pipeline,
  ctx: Ctx,
  route: Extract<Route, { kind: 'referrers' }>,
): Promise<void> {
  const { repo, digest, artifactType } = route;
  if ((await pullableByDigest(d, ctx, repo, digest)) === 'no') {
    ctx.event.reason = 'subject-not-verified';
    throw new GateError(
      'DENIED',
      `${repo}@${digest} has no valid signature from a key trusted for this repository, so its referrers are not listed`,
    );
  }
  const listed = (await d.referrers.list(repo, digest)).map((r) => r.descriptor);
  const { body, filtered } = referrersIndex(listed, artifactType);
  const headers: Record<string, string> = {
    'content-type': MEDIA_TYPES.ociIndex,
    'content-length': String(body.length),
  };
  if (filtered) headers['oci-filters-applied'] = 'artifactType';
  ctx.res.writeHead(200, headers);
  ctx.res.end(ctx.req.method === 'HEAD' ? undefined : body);
}

/** Accept check after verification: an absent header or a wildcard accepts anything. */
function acceptable(accept: string | undefined, mediaType: string): boolean {
  if (!accept) return true;
  const types = accept.split(',').map((s) => s.split(';')[0]!.trim().toLowerCase());
  return types.includes(mediaType.toLowerCase()) || types.includes('*/*') || types.includes('application/*');
}

/**
 * Reads a request body up to `max` bytes; more is refused, never truncated, and the 413 reaches the
 * client before the connection closes (server/body.ts).
 */
function readBody(req: http.IncomingMessage, max: number): Promise<Buffer> {
  return readBoundedBody(
    req,
    max,
    () => new GateError('MANIFEST_INVALID', `manifest exceeds ${max} bytes`, { status: 413 }),
  );
}

async function putManifest(
  d: Pipeline,
  ctx: Ctx,
  repo: string,
  ref: { tag?: string; digest?: string },
): Promise<void> {
  const { req, res, event } = ctx;
  const body = await readBody(req, MAX_MANIFEST_BYTES);
  const contentType = headerValue(req.headers['content-type']);
  // Policy: the manifest is parsed the strict way (duplicate or case-variant keys refused) so
  // trustgate and registry:2 can never read two different documents out of the same bytes (I2).
  const manifest = parseManifest(body, contentType);
  // Policy: foreign layers only from allowlisted URLs (registry:2 would answer 500, or skip them).
  checkLayerUrls(manifest, d.layerUrls?.() ?? NO_LAYER_URLS);
  const digest = digestOf(body);
  event.digest = digest;
  if (ref.digest && ref.digest !== digest) {
    throw new GateError('DIGEST_INVALID', `manifest bytes hash to ${digest}, not ${ref.digest}`);
  }
  const rule = d.trust.ruleFor(repo);
  if (isSignatureTag(ref.tag)) {
    if (rule.mode !== 'off') {
      const { signers } = await d.trust.checkSignaturePush(repo, ref.tag, manifest);
      event.keys = signers;
      event.reason = 'signature-push';
    }
  } else if (isReferrersTag(ref.tag)) {
    // Checked below, under the subject's lock, together with the write.
    event.reason = 'referrers-tag-push';
  } else if (rule.mode !== 'off' && isSignatureArtifact(manifest)) {
    // Policy (I1): signature artifacts are served unverified, so one under an ordinary tag, or
    // pushed by digest (then pulled by that digest), would be an unsigned image in disguise
    // (moby's pull does not check layer media types). They enter only through their
    // sha256-<hex>.sig tag, where every added signature is verified.
    event.reason = 'signature-artifact-misplaced';
    throw new GateError(
      'DENIED',
      `${repo}${ref.tag ? `:${ref.tag}` : `@${digest}`}: a cosign signature artifact may only be pushed under its sha256-<hex>.sig tag`,
    );
  } else if (ref.tag && rule.signedPush && rule.mode !== 'off') {
    const verdict = await d.trust.verify(repo, digest, manifest, ref.tag, {
      fresh: true,
      purpose: 'signed-push',
    });
    if (!verdict.ok) {
      event.reason = 'signed-push-required';
      throw new GateError(
        'DENIED',
        `${repo} requires signed pushes: push ${repo}@${digest} by digest, sign it with a key trusted for ${rule.pattern} (trusted: ${d.trust.trustedKeyNames(repo).join(', ') || 'none'}), e.g. \`trustgate sign ${repo}@${digest} --tag ${ref.tag}\`, then tag it`,
      );
    }
    event.keys = verdict.signers;
  }
  const headers = upstreamRequestHeaders(req.headers);
  const send = (): Promise<UpstreamResponse> =>
    d.upstream.request({
      method: 'PUT',
      path: `/v2/${repo}/manifests/${ref.digest ?? ref.tag}`,
      headers: { ...headers, 'content-type': contentType ?? manifest.mediaType },
      body,
      maxBytes: 1024 * 1024,
      kind: 'manifest-put',
    });
  const referrersTag = isReferrersTag(ref.tag) ? ref.tag : undefined;
  // Policy: a client's write of a referrers tag is checked and sent under the same per-subject
  // lock as trustgate's own recordings, so neither undoes the other within this process.
  const subject = manifest.subject?.digest;
  const up = referrersTag
    ? await d.referrers.exclusive(repo, subjectOfReferrersTag(referrersTag), async () => {
        await checkReferrersTagPut(d, repo, referrersTag, manifest);
        return send();
      })
    : subject
      ? // OCI 1.1: trustgate keeps the referrers index itself and says so with OCI-Subject, so
        // clients (oras, notation) write no fallback tag; cosign finds the referrers API instead.
        await d.referrers.pushAndRecord(
          repo,
          subject,
          referrerDescriptor(digest, body.length, manifest),
          isBundleReferrer(manifest),
          send,
        )
      : await send();
  if (up.status === 201 && isSignatureTag(ref.tag)) {
    // A new signature may turn an earlier refusal into a pass at once.
    await d.trust.invalidate(repo, ref.tag.replace(/^sha256-([0-9a-f]{64})\.sig$/, 'sha256:$1'));
  }
  const out: Record<string, string> = {};
  if (up.status === 201 && subject && !referrersTag) {
    // A new referrer may carry a signature: the subject's refusal is looked at again at once.
    await d.trust.invalidate(repo, subject);
    out['oci-subject'] = subject;
  }
  for (const h of ['content-type', 'location', 'docker-content-digest']) {
    const v = headerValue(up.headers[h]);
    if (v) out[h] = v;
  }
  out['content-length'] = String(up.body.length);
  res.writeHead(up.status, out);
  res.end(up.body);
}
