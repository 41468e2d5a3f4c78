/**
 * Talking to several trustgate replicas of one registry as a consumer and a publisher (the tag
 * index tests): gate options every replica shares, tokens cached per gate, repository and user, and
 * the manifest requests and metric reads those tests make.
 */
import assert from 'node:assert/strict';
import { MEDIA_TYPES } from '../../src/core/manifest.js';
import { bearer, getToken, request, type Reply } from './http.js';
import { sha256 } from './registry-direct.js';
import type { TestGate, TestGateOptions } from './trustgate.js';
import { USERS, type User } from './trust-stack.js';

const OCI = MEDIA_TYPES.ociManifest;

/** Options every replica shares: the two users on every repository, images signed by `release`. */
export function replicaOptions(
  registryUrl: string,
  releasePublicKeyPem: string,
): Pick<TestGateOptions, 'registryUrl' | 'users' | 'policy' | 'trustRules' | 'trustedKeys'> {
  return {
    registryUrl,
    users: { ...USERS },
    policy: {
      access: [
        { repos: ['**'], pull: ['consumer', 'publisher'], push: ['publisher'], delete: ['publisher'] },
      ],
    },
    trustRules: [{ repos: ['**'], keys: ['release'] }],
    trustedKeys: { release: releasePublicKeyPem },
  };
}

export interface ReplicaClient {
  /** A token of `gate` for `repo`: pull for the consumer, pull,push,delete for the publisher. */
  token(gate: TestGate, repo: string, user?: User): Promise<string>;
  /** A manifest request as the consumer (GET unless `method` says otherwise), accepting OCI. */
  pull(gate: TestGate, repo: string, ref: string, method?: string): Promise<Reply>;
  /** A manifest PUT as the publisher. */
  put(gate: TestGate, repo: string, ref: string, body: Buffer): Promise<Reply>;
  /** A manifest DELETE as the publisher. */
  del(gate: TestGate, repo: string, ref: string): Promise<Reply>;
  /** Pulls through `gate` until `ok` holds for the answer (at most `tries` times, 50 ms apart). */
  pullUntil(
    gate: TestGate,
    repo: string,
    tag: string,
    ok: (r: Reply) => Promise<boolean> | boolean,
    tries?: number,
  ): Promise<Reply>;
}

export function replicaClient(): ReplicaClient {
  const tokens = new Map<string, string>();
  const token = async (gate: TestGate, repo: string, user: User = 'consumer'): Promise<string> => {
    const key = `${gate.url} ${repo} ${user}`;
    let t = tokens.get(key);
    if (!t) {
      const actions = user === 'publisher' ? 'pull,push,delete' : 'pull';
      t = await getToken(gate.url, gate.ca, user, USERS[user], [`repository:${repo}:${actions}`]);
      tokens.set(key, t);
    }
    return t;
  };
  const pull = async (gate: TestGate, repo: string, ref: string, method = 'GET'): Promise<Reply> =>
    request(gate.url, gate.ca, {
      method,
      path: `/v2/${repo}/manifests/${ref}`,
      headers: { ...bearer(await token(gate, repo)), accept: OCI },
    });
  return {
    token,
    pull,
    put: async (gate, repo, ref, body) =>
      request(gate.url, gate.ca, {
        method: 'PUT',
        path: `/v2/${repo}/manifests/${ref}`,
        headers: { ...bearer(await token(gate, repo, 'publisher')), 'content-type': OCI },
        body,
      }),
    del: async (gate, repo, ref) =>
      request(gate.url, gate.ca, {
        method: 'DELETE',
        path: `/v2/${repo}/manifests/${ref}`,
        headers: bearer(await token(gate, repo, 'publisher')),
      }),
    async pullUntil(gate, repo, tag, ok, tries = 100) {
      let r: Reply | undefined;
      for (let i = 0; i < tries; i++) {
        r = await pull(gate, repo, tag);
        if (await ok(r)) return r;
        await new Promise((res) => setTimeout(res, 50));
      }
      assert.fail(`no pull of ${repo}:${tag} met the condition; last: ${r?.status} ${r?.body.toString()}`);
    },
  };
}

/** Manifest reads by tag or digest that `gate` sent to registry:2 (from its own metrics). */
export async function registryManifestReads(gate: TestGate): Promise<number> {
  return (
    (await gate.tg.metrics.upstreamDuration.get()).values.find(
      (v) => v.metricName === 'trustgate_upstream_duration_seconds_count' && v.labels.kind === 'manifest',
    )?.value ?? 0
  );
}

/** Asserts a 200 whose Docker-Content-Digest names the bytes sent, and returns that digest. */
export function served(r: Reply): string {
  assert.equal(r.status, 200, r.body.toString());
  assert.equal(r.headers['docker-content-digest'], sha256(r.body), 'the header names the bytes sent');
  return sha256(r.body);
}
