import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import { GateError, InternalFailure, toGateError } from '../core/errors.js';
import {
  MANIFEST_ACCEPT_HEADER,
  MAX_MANIFEST_BYTES,
  MEDIA_TYPES,
  parseManifest,
  referencedBlobs,
  type ParsedManifest,
  isSignatureArtifact,
  isSignatureTag,
  digestOf,
} from '../core/manifest.js';
import { parseRoute } from '../core/route.js';
import {
  catalogLists,
  decideAccess,
  type AccessFact,
  type AccessFacts,
  type AccessOutcome,
  type DecidedAccess,
  type Grants,
} from '../core/access-decision.js';
import type { Route } from '../core/types.js';
import type { TrustService, Verdict } from '../trust/service.js';
import type { ReferrersStore } from '../trust/referrers.js';
import { attestationSubjectOfTag } from '../trust/evidence.js';
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
import { headerValue, upstreamRequestHeaders } from '../registry/headers.js';
import { upstreamFailure } from '../registry/upstream.js';
import type { Audit, AuditEvent } from './audit.js';
import type { Authenticator, Principal } from './authenticate.js';
import type { StreamForwarder } from './forward.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import type { CachedManifest, ManifestCache } from '../cache/manifest-cache.js';
import { pushedManifest, type TagIndex } from '../cache/tag-index.js';
import { sendError } from './respond.js';
import { readBody as readBoundedBody } from './body.js';
import { checkLayerUrls, NO_LAYER_URLS, type LayerUrlPolicy } from '../core/layer-urls.js';

const MAX_CATALOG_BYTES = 16 * 1024 * 1024;
/**
 * Policy: a filtered catalog asks registry:2 for pages of its own size, not the client's `n` (each
 * registry:2 2.8 page walks the repository tree from the start, so `n=1` cost one walk per hidden
 * repository), and reads at most this many pages per request.
 */
const MAX_CATALOG_PAGES = 10;
const UPSTREAM_CATALOG_PAGE = 1000;

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
  /** The authoritative tag index (cache.tagIndex): names a tag's digest without the registry when on. */
  tagIndex?: TagIndex;
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

/** A request answer that is not an access decision, kept for the audit event. */
type Answered = { decision: 'answered'; reason: 'not-acceptable' | 'upstream-404' | 'upstream-400' };

/** What one request has established so far; the audit event is built from it (auditEvent). */
interface RequestRecord {
  requestId: string;
  client: string | undefined;
  method: string;
  route?: Route;
  principal?: Principal;
  /** The digest of the manifest served or pushed (computed from the bytes). */
  digest?: string;
  /** The facts gathered for the access decision. */
  facts: AccessFacts;
  /** Every decision and answer, in order. */
  outcomes: Array<DecidedAccess | Answered>;
}

interface Ctx {
  req: http.IncomingMessage;
  res: http.ServerResponse;
  route: Route;
  principal: Principal;
  grants: Grants;
  record: RequestRecord;
}

/** How to fetch a fact the access decision asks for (only when it asks). */
type Gatherers = { [K in AccessFact]?: () => Promise<AccessFacts[K]> | AccessFacts[K] };

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
    const record: RequestRecord = {
      requestId: randomUUID(),
      client: req.socket.remoteAddress,
      method: req.method ?? '',
      facts: {},
      outcomes: [],
    };
    let failure: GateError | undefined;
    res.setHeader('docker-distribution-api-version', 'registry/2.0');
    handle(d, req, res, record)
      .catch((err: unknown) => {
        const e = toGateError(err);
        failure = e;
        if (e.status === 401 && !e.headers['WWW-Authenticate']) {
          e.headers['WWW-Authenticate'] = challenge(d, req, record);
        }
        sendError(res, e, d.log, { reqId: record.requestId, path: req.url });
      })
      .finally(() => {
        res.once('close', () => {
          const latencyMs = Math.round((performance.now() - started) * 10) / 10;
          d.audit.decision(auditEvent(record, failure, res.statusCode, latencyMs));
        });
        if (res.writableFinished || res.destroyed) res.emit('close');
      });
  };
}

/**
 * The one place an audit event is made: from the parsed route, the identity, and the request's
 * outcomes. The last outcome with a reason names it; a failure after an allow keeps that reason
 * (the error code when there is none) and is a `deny`, or an `error` when trustgate or the
 * registry failed (5xx).
 */
function auditEvent(
  r: RequestRecord,
  failure: GateError | undefined,
  status: number,
  latencyMs: number,
): AuditEvent {
  const route = r.route;
  const event: AuditEvent = {
    requestId: r.requestId,
    identity: r.principal?.identity.subject ?? 'anonymous',
    client: r.client,
    action: route ? (route.action ?? 'ping') : r.method,
    method: r.method,
    route: route?.kind ?? 'unknown',
    verdict: 'allow',
    reason: 'ok',
  };
  if (route && 'repo' in route) event.repo = route.repo;
  if (route?.kind === 'manifest') event.reference = route.ref.tag ?? route.ref.digest;
  if (route?.kind === 'blob') event.digest = route.digest;
  if (r.digest) event.digest = r.digest;
  for (const o of r.outcomes) {
    if (o.reason !== 'ok') event.reason = o.reason;
    if (o.decision !== 'answered' && o.keys) event.keys = [...o.keys];
    if (o.decision === 'audit-allow' || o.decision === 'deny') event.verdict = o.decision;
  }
  if (failure) {
    event.verdict = failure.status >= 500 ? 'error' : 'deny';
    if (event.reason === 'ok') event.reason = failure.code;
  }
  event.status = status;
  event.latencyMs = latencyMs;
  return event;
}

/**
 * Asks the access decision, fetching each fact it needs with `gather`, until it decides or needs
 * a fact named in `later` (a later step has it and asks again). A denial is thrown.
 */
async function decide(
  ctx: Ctx,
  gather: Gatherers = {},
  later: readonly AccessFact[] = [],
): Promise<AccessOutcome> {
  const { record } = ctx;
  for (;;) {
    const outcome = decideAccess({ route: ctx.route, grants: ctx.grants, facts: record.facts });
    if (outcome.decision === 'need') {
      const fetch = gather[outcome.fact];
      if (fetch) {
        await gatherFact(record.facts, outcome.fact, fetch);
        continue;
      }
      // Policy: a fact nobody gathers is a gap in the pipeline; the request fails (500), it is
      // never served as if the decision had allowed it.
      if (later.includes(outcome.fact)) return outcome;
      throw new Error(`access fact ${outcome.fact} was asked for and has no gatherer`);
    }
    record.outcomes.push(outcome);
    if (outcome.decision === 'deny') throw outcome.error;
    return outcome;
  }
}

async function gatherFact<K extends AccessFact>(
  facts: AccessFacts,
  fact: K,
  fetch: () => Promise<AccessFacts[K]> | AccessFacts[K],
): Promise<void> {
  const value = await fetch();
  if (value === undefined) throw new TypeError(`access fact ${fact} was asked for and not found`);
  facts[fact] = value;
}

async function handle(
  d: Pipeline,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  record: RequestRecord,
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
  record.route = route;
  // authenticate
  const principal = await d.auth.authenticate(req);
  record.principal = principal;
  const grants: Grants = {
    subject: principal.identity.subject,
    credentialed: principal.credentialed,
    can: (action, repo) => principal.can(action, repo),
    policyAllows: (action, repo) => principal.policyAllows(action, repo),
    canCatalog: () => principal.canCatalog(),
    isAdmin: () => d.isAdmin(principal),
  };
  const ctx: Ctx = { req, res, route, principal, grants, record };
  // authorise: the facts a route's decision may need before anything is forwarded
  const access = await decide(
    ctx,
    {
      blobAdmitted: () => route.kind === 'blob' && d.trust.isBlobAdmitted(route.repo, route.digest),
      mountBlobAdmitted: () =>
        route.kind === 'upload-start' &&
        route.mount !== undefined &&
        d.trust.isBlobAdmitted(route.mount.from, route.mount.digest),
      subjectPullable: () =>
        route.kind === 'referrers' ? pullableByDigest(d, ctx, route.repo, route.digest) : undefined,
    },
    // Decided by serveManifest and putManifest, once the manifest bytes are at hand.
    ['manifestVerdict', 'pushed'],
  );
  // trust check and forward
  switch (route.kind) {
    case 'base':
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '2' });
      res.end('{}');
      return;
    case 'catalog':
      return serveCatalog(d, ctx, access.decision === 'allow' && access.listAll === true);
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
        d.tagIndex?.forgetDigest(repo, ref.digest!);
        await d.forwarder.forward(req, res, req.url ?? '');
        d.manifests?.delete(repo, ref.digest!);
        d.tagIndex?.forgetDigest(repo, ref.digest!);
        d.onManifestDeleted?.(repo, ref.digest!);
        return;
      }
      // A DELETE by tag: the tag index drops the tag before it is sent and tells the other replicas.
      if (route.ref.tag && d.tagIndex) {
        const forward = (): Promise<void> => d.forwarder.forward(req, res, req.url ?? '');
        return d.tagIndex.write(route.repo, route.ref.tag, forward, () => undefined);
      }
      return d.forwarder.forward(req, res, req.url ?? '');
    case 'blob':
      return d.forwarder.forwardBlobRead(req, res, req.url ?? '', principal);
    case 'upload-start': {
      asBlobBody(req);
      const url = req.url ?? '';
      const dropMount = access.decision === 'allow' && access.dropMount === true;
      return d.forwarder.forward(req, res, dropMount ? withoutMount(url) : url);
    }
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

function challenge(d: Pipeline, req: http.IncomingMessage, record: RequestRecord): string {
  const host = headerValue(req.headers.host) ?? 'localhost';
  const realm = d.realm() ?? `https://${host}/token`;
  let value = `Bearer realm="${realm}",service="${d.service()}"`;
  const route = record.route;
  if (route?.kind === 'catalog') value += ',scope="registry:catalog:*"';
  else if (route && 'repo' in route) {
    const actions = route.action === 'push' ? 'pull,push' : route.action;
    value += `,scope="repository:${route.repo}:${actions}"`;
  }
  if (record.outcomes.some((o) => o.reason === 'insufficient-scope')) value += ',error="insufficient_scope"';
  return value;
}

/** The upload URL without its mount (the access decision dropped it: a plain upload starts). */
function withoutMount(url: string): string {
  const u = new URL(url, 'http://x');
  u.searchParams.delete('mount');
  u.searchParams.delete('from');
  return u.pathname + u.search;
}

async function serveCatalog(d: Pipeline, ctx: Ctx, admin: boolean): Promise<void> {
  const query = new URL(ctx.req.url ?? '', 'http://x').searchParams;
  const n = Number(query.get('n') ?? '') || undefined;
  const visible: string[] = [];
  const asked = query.get('last');
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
      if (typeof r === 'string' && catalogLists(ctx.grants, r)) visible.push(r);
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
  const { req, res, record } = ctx;
  const reference = ref.digest ?? ref.tag ?? '';
  // By digest, the evidence depends on the digest alone: when the manifest must be read from the
  // registry, the evidence reads start now, alongside it, for a caller whose read the decision will
  // verify (not a publisher's, core/access-decision.ts manifestRead); the decision still waits for
  // the manifest and its verdict below.
  if (ref.digest && !ctx.grants.can('push', repo) && !d.manifests?.get(repo, ref.digest)) {
    d.trust.prefetch(repo, ref.digest);
  }
  const fetched = await fetchManifest(d, ctx, repo, ref, reference);
  if (!fetched) return;
  const { bytes, contentType } = fetched;
  // Policy: the digest is computed from the bytes we hold, never taken from Docker-Content-Digest.
  const digest = digestOf(bytes, ref.digest);
  record.digest = digest;
  if (ref.digest && digest !== ref.digest) {
    d.manifests?.delete(repo, ref.digest);
    throw new InternalFailure(
      'upstream-digest-mismatch',
      `the registry returned bytes that do not match ${ref.digest}`,
      { logDetail: { got: digest } },
    );
  }
  // Bytes under a digest never change: the strict parse is done once per (digest, content type).
  const known = fetched.parsed ? fetched : d.manifests?.get(repo, digest);
  const manifest =
    known?.parsed && known.contentType === contentType ? known.parsed : parseManifest(bytes, contentType);
  if (!fetched.parsed) d.manifests?.set(repo, digest, { bytes, contentType, parsed: manifest });
  if (ref.tag) d.manifests?.rememberTag(repo, ref.tag, digest);
  let verdict: Verdict | undefined;
  await decide(ctx, {
    manifestVerdict: async () => {
      const subjectPullable = isBundleReferrerRead({ tag: ref.tag, manifest })
        ? (await pullableByDigest(d, ctx, repo, manifest.subject!.digest)) === 'yes'
        : undefined;
      verdict = await d.trust.verify(repo, digest, manifest, ref.tag, { subjectPullable });
      return { ...verdict, digest };
    },
    trustedKeys: () => d.trust.trustedKeyNames(repo),
  });
  if (verdict) await admit(d, repo, digest, manifest, verdict);
  if (!acceptable(req.headers.accept, manifest.mediaType)) {
    record.outcomes.push({ decision: 'answered', reason: 'not-acceptable' });
    throw new GateError(
      'MANIFEST_UNKNOWN',
      `${repo}:${reference} is stored as ${manifest.mediaType}, which the client's Accept header excludes; trustgate never converts manifests`,
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
 * 4xx answer was relayed. A tag is resolved upstream (tags move), unless the tag index (off by
 * default) names its digest.
 */
async function fetchManifest(
  d: Pipeline,
  ctx: Ctx,
  repo: string,
  ref: { tag?: string; digest?: string },
  reference: string,
): Promise<CachedManifest | undefined> {
  const { req, res, record } = ctx;
  if (ref.digest) {
    const hit = d.manifests?.get(repo, ref.digest);
    if (hit) return hit;
  }
  const { tag } = ref;
  // cache.tagIndex (docs/security-model.md, "Tag index"): when on, the index may name the tag's
  // digest instead of the registry; the held bytes are then hashed and verified as any others.
  const indexed = tag ? d.tagIndex?.resolve(repo, tag) : undefined;
  if (indexed) return indexed.manifest;
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
    record.outcomes.push({
      decision: 'answered',
      reason: up.status === 404 ? 'upstream-404' : 'upstream-400',
    });
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
  const headers: Record<string, string> = { accept: MANIFEST_ACCEPT_HEADER };
  if (previous) headers['if-none-match'] = `"${previous.digest}"`;
  const observed = tag ? d.tagIndex?.beforeRead(repo, tag) : undefined;
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
    if (observed) d.tagIndex!.afterRead(observed, previous.digest);
    return { held: previous.manifest };
  }
  // The tag index learns the registry's answer (the digest of the bytes, never the header).
  if (observed && (up.status === 200 || up.status === 404)) {
    d.tagIndex!.afterRead(observed, up.status === 200 ? digestOf(up.body) : null);
  }
  if (previous && up.status === 200) d.metrics?.tagRevalidations.inc({ result: 'moved' });
  return { up };
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
  // Policy: the attestation gate withholds the image, not the evidence about it: the referrers of a
  // signed subject (its signatures and attestations) stay readable when its scan refuses it, so a
  // publisher can attach a new scan and a consumer can see why.
  return (await d.trust.verify(repo, digest, got.manifest, undefined, { attestations: false })).allow
    ? 'yes'
    : 'no';
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
    () => new GateError('MANIFEST_TOO_LARGE', `manifest exceeds ${max} bytes`),
  );
}

async function putManifest(
  d: Pipeline,
  ctx: Ctx,
  repo: string,
  ref: { tag?: string; digest?: string },
): Promise<void> {
  const { req, res, record } = ctx;
  const body = await readBody(req, MAX_MANIFEST_BYTES);
  const contentType = headerValue(req.headers['content-type']);
  // Policy: the manifest is parsed the strict way (duplicate or case-variant keys refused) so
  // trustgate and registry:2 can never read two different documents out of the same bytes (I2).
  const manifest = parseManifest(body, contentType);
  // Policy: foreign layers only from allowlisted URLs (registry:2 would answer 500, or skip them).
  checkLayerUrls(manifest, d.layerUrls?.() ?? NO_LAYER_URLS);
  const digest = digestOf(body);
  record.digest = digest;
  if (ref.digest && ref.digest !== digest) {
    throw new GateError('DIGEST_INVALID', `manifest bytes hash to ${digest}, not ${ref.digest}`);
  }
  const rule = d.trust.ruleFor(repo);
  await decide(ctx, {
    pushed: () => ({
      digest,
      signatureTag: isSignatureTag(ref.tag),
      referrersTag: isReferrersTag(ref.tag),
      signatureArtifact: isSignatureArtifact(manifest),
      rule: { mode: rule.mode, signedPush: rule.signedPush === true, pattern: rule.pattern },
    }),
    signaturePushSigners: async () => (await d.trust.checkSignaturePush(repo, ref.tag!, manifest)).signers,
    signedPushVerdict: () =>
      d.trust.verify(repo, digest, manifest, ref.tag, { fresh: true, purpose: 'signed-push' }),
    trustedKeys: () => d.trust.trustedKeyNames(repo),
  });
  const headers = upstreamRequestHeaders(req.headers);
  const put = (): Promise<UpstreamResponse> =>
    d.upstream.request({
      method: 'PUT',
      path: `/v2/${repo}/manifests/${ref.digest ?? ref.tag}`,
      headers: { ...headers, 'content-type': contentType ?? manifest.mediaType },
      body,
      maxBytes: 1024 * 1024,
      kind: 'manifest-put',
    });
  // A PUT by tag through the tag index: the tag is dropped before the PUT is sent and recorded
  // only once registry:2 accepted these very bytes (201, and its digest is the one computed here).
  const send = (): Promise<UpstreamResponse> =>
    ref.tag && d.tagIndex
      ? d.tagIndex.write(repo, ref.tag, put, (up) =>
          up.status === 201 && headerValue(up.headers['docker-content-digest']) === digest
            ? { digest, manifest: pushedManifest(body, manifest) }
            : undefined,
        )
      : put();
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
    await d.trust.evidenceChanged(repo, ref.tag.replace(/^sha256-([0-9a-f]{64})\.sig$/, 'sha256:$1'));
  }
  const attested = attestationSubjectOfTag(ref.tag);
  if (up.status === 201 && attested) {
    // A new legacy attestation (sha256-<hex>.att) may turn an attestation refusal into a pass.
    await d.trust.invalidate(repo, attested);
  }
  const out: Record<string, string> = {};
  if (up.status === 201 && subject && !referrersTag) {
    // A new referrer may carry a signature: the subject's refusal is looked at again at once.
    await d.trust.evidenceChanged(repo, subject);
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
