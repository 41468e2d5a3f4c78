import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  catalogLists,
  decideAccess,
  type AccessFacts,
  type AccessOutcome,
  type Grants,
  type ManifestVerdictFact,
  type PushedManifestFact,
} from '../../src/core/access-decision.js';
import type { RepoAction } from '../../src/core/policy.js';
import type { Route } from '../../src/core/types.js';

const D = `sha256:${'a'.repeat(64)}`;
const E = `sha256:${'e'.repeat(64)}`;

/** Grants from a table: token grants and policy grants per repository. */
function grants(
  opts: {
    credentialed?: boolean;
    token?: Record<string, RepoAction[]>;
    policy?: Record<string, RepoAction[]>;
    catalog?: boolean;
    admin?: boolean;
  } = {},
): Grants {
  const token = opts.token ?? {};
  const policy = opts.policy ?? token;
  return {
    subject: 'alice',
    credentialed: opts.credentialed ?? true,
    can: (a, repo) => token[repo]?.includes(a) ?? false,
    policyAllows: (a, repo) => policy[repo]?.includes(a) ?? false,
    canCatalog: () => opts.catalog ?? false,
    isAdmin: () => opts.admin ?? false,
  };
}

const PULL = grants({ token: { 'prod/app': ['pull'], 'prod/lib': ['pull'] } });
const PUSH = grants({ token: { 'prod/app': ['pull', 'push'], 'prod/lib': ['pull', 'push'] } });

const manifestPull: Route = { kind: 'manifest', repo: 'prod/app', ref: { tag: 'v1' }, action: 'pull' };
const manifestPush = (tag?: string): Route => ({
  kind: 'manifest',
  repo: 'prod/app',
  ref: tag ? { tag } : { digest: D },
  action: 'push',
});

const pushed = (p: Partial<PushedManifestFact> = {}): PushedManifestFact => ({
  digest: D,
  signatureTag: false,
  referrersTag: false,
  signatureArtifact: false,
  rule: { mode: 'enforce', signedPush: false, pattern: 'prod/**' },
  ...p,
});

const verdict = (v: Partial<ManifestVerdictFact> = {}): ManifestVerdictFact => ({
  allow: true,
  ok: true,
  reason: 'signed',
  message: 'signed by release',
  signers: ['release'],
  rule: 'prod/**',
  digest: D,
  ...v,
});

/** Every reason the tests saw, checked against the full list at the end. */
const seen = new Set<string>();
function decide(route: Route, g: Grants, facts: AccessFacts = {}): AccessOutcome {
  const o = decideAccess({ route, grants: g, facts });
  if (o.decision !== 'need') seen.add(o.reason);
  return o;
}
function denied(o: AccessOutcome, reason: string, code: string, status: number): string {
  assert.equal(o.decision, 'deny', JSON.stringify(o));
  if (o.decision !== 'deny') throw new Error('unreachable');
  assert.equal(o.reason, reason);
  assert.equal(o.error.code, code);
  assert.equal(o.error.status, status);
  return o.error.message;
}

describe('access decision (core/access-decision.ts)', () => {
  after(() => {
    const own = [
      'ok',
      'publisher-read',
      'signature-push',
      'referrers-tag-push',
      'mount-dropped',
      'no-credentials',
      'insufficient-scope',
      'not-allowlisted',
      'blob-not-admitted',
      'subject-not-verified',
      'signature-artifact-misplaced',
      'signed-push-required',
    ];
    assert.deepEqual(
      own.filter((r) => !seen.has(r)),
      [],
      'every reason of the access decision is covered',
    );
  });

  it('the ping: 200 to a credentialed caller, the challenge (no-credentials) to anyone else', () => {
    assert.deepEqual(decide({ kind: 'base', action: null }, grants()), { decision: 'allow', reason: 'ok' });
    denied(
      decide({ kind: 'base', action: null }, grants({ credentialed: false })),
      'no-credentials',
      'UNAUTHORIZED',
      401,
    );
  });

  it('the catalog: credentials, then the catalog scope; admins list everything, others what policy lets them pull', () => {
    const catalog: Route = { kind: 'catalog', action: 'catalog' };
    denied(decide(catalog, grants({ credentialed: false })), 'no-credentials', 'UNAUTHORIZED', 401);
    denied(decide(catalog, grants()), 'insufficient-scope', 'UNAUTHORIZED', 401);
    assert.deepEqual(decide(catalog, grants({ catalog: true })), { decision: 'allow', reason: 'ok' });
    assert.deepEqual(decide(catalog, grants({ catalog: true, admin: true })), {
      decision: 'allow',
      reason: 'ok',
      listAll: true,
    });
    const g = grants({ token: {}, policy: { 'prod/app': ['pull'] } });
    assert.equal(catalogLists(g, 'prod/app'), true);
    assert.equal(catalogLists(g, 'prod/secret'), false);
  });

  it('a repository action: no credentials, a narrow token, or no rule; the same denial whether the repository exists', () => {
    const tags: Route = { kind: 'tags', repo: 'prod/app', action: 'pull' };
    denied(decide(tags, grants({ credentialed: false })), 'no-credentials', 'UNAUTHORIZED', 401);
    const narrow = grants({ token: { 'prod/app': ['pull'] }, policy: { 'prod/app': ['pull', 'push'] } });
    const scope = denied(decide(manifestPush('v1'), narrow), 'insufficient-scope', 'UNAUTHORIZED', 401);
    assert.match(scope, /does not grant push on prod\/app/);
    const msg = denied(decide(manifestPush('v1'), PULL), 'not-allowlisted', 'DENIED', 403);
    assert.match(msg, /push access to prod\/app is not allowed for alice/);
    // A push needs pull too.
    const pushOnly = grants({ token: { 'prod/app': ['push'] }, policy: { 'prod/app': ['push'] } });
    assert.match(
      denied(decide(manifestPush('v1'), pushOnly), 'not-allowlisted', 'DENIED', 403),
      /^pull access/,
    );
    assert.deepEqual(decide(tags, PULL), { decision: 'allow', reason: 'ok' });
    const del: Route = { kind: 'manifest', repo: 'prod/app', ref: { digest: D }, action: 'delete' };
    denied(decide(del, PUSH), 'not-allowlisted', 'DENIED', 403);
    assert.equal(decide(del, grants({ token: { 'prod/app': ['delete'] } })).decision, 'allow');
  });

  it('a blob read: publishers read anything; a pull-only caller only admitted blobs, else 404 BLOB_UNKNOWN', () => {
    const blob: Route = { kind: 'blob', repo: 'prod/app', digest: D, action: 'pull' };
    assert.deepEqual(decide(blob, PUSH), { decision: 'allow', reason: 'ok' });
    assert.deepEqual(decide(blob, PULL), { decision: 'need', fact: 'blobAdmitted' });
    assert.equal(decide(blob, PULL, { blobAdmitted: true }).decision, 'allow');
    const msg = denied(decide(blob, PULL, { blobAdmitted: false }), 'blob-not-admitted', 'BLOB_UNKNOWN', 404);
    assert.match(msg, /belongs to no verified manifest of prod\/app/);
  });

  it('a blob mount: dropped unless the caller could GET the blob from `from`', () => {
    const mount = (from: string): Route => ({
      kind: 'upload-start',
      repo: 'prod/app',
      action: 'push',
      mount: { from, digest: E },
    });
    const g = grants({ token: { 'prod/app': ['pull', 'push'], 'prod/lib': ['pull'] } });
    assert.deepEqual(decide(mount('prod/secret'), g), {
      decision: 'allow',
      reason: 'mount-dropped',
      dropMount: true,
    });
    assert.deepEqual(decide(mount('prod/lib'), g), { decision: 'need', fact: 'mountBlobAdmitted' });
    assert.deepEqual(decide(mount('prod/lib'), g, { mountBlobAdmitted: false }), {
      decision: 'allow',
      reason: 'mount-dropped',
      dropMount: true,
    });
    assert.deepEqual(decide(mount('prod/lib'), g, { mountBlobAdmitted: true }), {
      decision: 'allow',
      reason: 'ok',
    });
    assert.deepEqual(decide(mount('prod/lib'), PUSH), { decision: 'allow', reason: 'ok' });
    const plain: Route = { kind: 'upload-start', repo: 'prod/app', action: 'push' };
    assert.deepEqual(decide(plain, PUSH), { decision: 'allow', reason: 'ok' });
  });

  it('a manifest pull: publishers read unverified; everyone else by the trust verdict (enforce, audit, deny)', () => {
    assert.deepEqual(decide(manifestPull, PUSH), { decision: 'allow', reason: 'publisher-read' });
    assert.deepEqual(decide(manifestPull, PULL), { decision: 'need', fact: 'manifestVerdict' });
    assert.deepEqual(decide(manifestPull, PULL, { manifestVerdict: verdict() }), {
      decision: 'allow',
      reason: 'signed',
      keys: ['release'],
    });
    assert.deepEqual(
      decide(manifestPull, PULL, {
        manifestVerdict: verdict({ ok: false, reason: 'no-signature', signers: [] }),
      }),
      { decision: 'audit-allow', reason: 'no-signature', keys: [] },
    );
    const refused = verdict({
      allow: false,
      ok: false,
      reason: 'no-signature',
      message: 'no signature found',
    });
    assert.deepEqual(decide(manifestPull, PULL, { manifestVerdict: refused }), {
      decision: 'need',
      fact: 'trustedKeys',
    });
    const msg = denied(
      decide(manifestPull, PULL, { manifestVerdict: refused, trustedKeys: ['release', 'ci'] }),
      'no-signature',
      'DENIED',
      403,
    );
    assert.equal(msg, `prod/app@${D}: no signature found (trusted for prod/**: release, ci)`);
    // A verdict that already names the image and the keys is the denial line as it is.
    const named = verdict({
      allow: false,
      ok: false,
      reason: 'untrusted-key',
      message: 'prod/app:v1 is signed by evil (trusted: release)',
    });
    assert.equal(
      denied(decide(manifestPull, PULL, { manifestVerdict: named }), 'untrusted-key', 'DENIED', 403),
      'prod/app:v1 is signed by evil (trusted: release)',
    );
  });

  it('a manifest push: .sig tags verified, referrers tags checked by the store, misplaced signature artifacts refused', () => {
    const sigTag = `sha256-${'a'.repeat(64)}.sig`;
    assert.deepEqual(decide(manifestPush(sigTag), PUSH), { decision: 'need', fact: 'pushed' });
    const sig = pushed({ signatureTag: true, signatureArtifact: true });
    assert.deepEqual(decide(manifestPush(sigTag), PUSH, { pushed: sig }), {
      decision: 'need',
      fact: 'signaturePushSigners',
    });
    assert.deepEqual(decide(manifestPush(sigTag), PUSH, { pushed: sig, signaturePushSigners: ['release'] }), {
      decision: 'allow',
      reason: 'signature-push',
      keys: ['release'],
    });
    const off = { mode: 'off' as const, signedPush: true, pattern: 'prod/**' };
    assert.deepEqual(decide(manifestPush(sigTag), PUSH, { pushed: { ...sig, rule: off } }), {
      decision: 'allow',
      reason: 'ok',
    });
    assert.deepEqual(
      decide(manifestPush(`sha256-${'a'.repeat(64)}`), PUSH, { pushed: pushed({ referrersTag: true }) }),
      { decision: 'allow', reason: 'referrers-tag-push' },
    );
    const misplaced = pushed({ signatureArtifact: true });
    assert.match(
      denied(
        decide(manifestPush('v1'), PUSH, { pushed: misplaced }),
        'signature-artifact-misplaced',
        'DENIED',
        403,
      ),
      /^prod\/app:v1: a cosign signature artifact may only be pushed under its sha256-<hex>\.sig tag/,
    );
    assert.match(
      denied(
        decide(manifestPush(), PUSH, { pushed: misplaced }),
        'signature-artifact-misplaced',
        'DENIED',
        403,
      ),
      new RegExp(`^prod/app@${D}:`),
    );
    assert.equal(decide(manifestPush('v1'), PUSH, { pushed: { ...misplaced, rule: off } }).decision, 'allow');
    assert.deepEqual(decide(manifestPush('v1'), PUSH, { pushed: pushed() }), {
      decision: 'allow',
      reason: 'ok',
    });
  });

  it('a push by tag under signedPush: only a digest already signed by a trusted key', () => {
    const signed = pushed({ rule: { mode: 'enforce', signedPush: true, pattern: 'prod/**' } });
    assert.deepEqual(decide(manifestPush('v1'), PUSH, { pushed: signed }), {
      decision: 'need',
      fact: 'signedPushVerdict',
    });
    assert.deepEqual(
      decide(manifestPush('v1'), PUSH, {
        pushed: signed,
        signedPushVerdict: { ok: true, signers: ['release'] },
      }),
      {
        decision: 'allow',
        reason: 'ok',
        keys: ['release'],
      },
    );
    const unsigned = { pushed: signed, signedPushVerdict: { ok: false, signers: [] } };
    assert.deepEqual(decide(manifestPush('v1'), PUSH, unsigned), { decision: 'need', fact: 'trustedKeys' });
    const msg = denied(
      decide(manifestPush('v1'), PUSH, { ...unsigned, trustedKeys: [] }),
      'signed-push-required',
      'DENIED',
      403,
    );
    assert.match(
      msg,
      /prod\/app requires signed pushes: .*\(trusted: none\).*trustgate sign prod\/app@sha256:a+ --tag v1/,
    );
    // By digest there is no tag to protect.
    assert.deepEqual(decide(manifestPush(), PUSH, { pushed: signed }), { decision: 'allow', reason: 'ok' });
  });

  it('the referrers of a digest: listed only to a caller who may pull the subject', () => {
    const referrers: Route = { kind: 'referrers', repo: 'prod/app', digest: D, action: 'pull' };
    assert.deepEqual(decide(referrers, PUSH), { decision: 'allow', reason: 'ok' });
    assert.deepEqual(decide(referrers, PULL), { decision: 'need', fact: 'subjectPullable' });
    assert.equal(decide(referrers, PULL, { subjectPullable: 'yes' }).decision, 'allow');
    assert.equal(decide(referrers, PULL, { subjectPullable: 'absent' }).decision, 'allow');
    const msg = denied(
      decide(referrers, PULL, { subjectPullable: 'no' }),
      'subject-not-verified',
      'DENIED',
      403,
    );
    assert.match(msg, /has no valid signature from a key trusted for this repository/);
    denied(decide(referrers, grants({ credentialed: false })), 'no-credentials', 'UNAUTHORIZED', 401);
  });
});
