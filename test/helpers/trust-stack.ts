/**
 * The stack most content-trust tests need: a real registry:2, a gate in front of it with a
 * consumer (pull only) and a publisher (pull and push), one trusted ECDSA key `release`, and the
 * requests those tests make through the gate.
 */
import { generateKeyPair } from '../../src/core/signature/sign.js';
import { MEDIA_TYPES } from '../../src/core/manifest.js';
import type { TrustRule } from '../../src/config/schema.js';
import { startRegistry, type RegistryHandle } from './stack.js';
import { startTestGate, type TestGate, type TestGateOptions } from './trustgate.js';
import { bearer, getToken, request, type Reply } from './http.js';
import { signatureManifest } from './sign.js';
import { signatureTagFor } from '../../src/core/reference.js';

/** Every manifest type a modern client accepts. */
export const ACCEPT_ALL = [
  MEDIA_TYPES.ociManifest,
  MEDIA_TYPES.ociIndex,
  MEDIA_TYPES.dockerManifest,
  MEDIA_TYPES.dockerManifestList,
].join(', ');

export const USERS = { consumer: 'consumer-password', publisher: 'publisher-password' } as const;
export type User = keyof typeof USERS;

export interface TrustStack {
  registry: RegistryHandle;
  gate: TestGate;
  /** The trusted key `release`. */
  release: ReturnType<typeof generateKeyPair>;
  /** A token for `repo`: pull for the consumer, pull and push for the publisher. */
  token(repo: string, user?: User): Promise<string>;
  /** A manifest GET/HEAD through the gate as the consumer, accepting every manifest type. */
  pull(repo: string, ref: string, method?: string): Promise<Reply>;
  /** A blob GET through the gate as the consumer. */
  blob(repo: string, digest: string): Promise<Reply>;
  /** A manifest PUT through the gate as the publisher. */
  push(repo: string, ref: string, body: Buffer, contentType: string): Promise<Reply>;
  stop(): Promise<void>;
}

export async function startTrustStack(
  trustRules: Array<Partial<TrustRule> & { repos: string[] }> = [{ repos: ['**'], keys: ['release'] }],
  gateOptions: Pick<TestGateOptions, 'sigstore' | 'trustedRoot'> = {},
): Promise<TrustStack> {
  const release = generateKeyPair('ecdsa-p256');
  const registry = await startRegistry();
  const gate = await startTestGate({
    registryUrl: registry.url,
    users: { ...USERS },
    policy: { access: [{ repos: ['**'], pull: ['consumer', 'publisher'], push: ['publisher'], delete: [] }] },
    trustRules,
    trustedKeys: { release: release.publicKeyPem },
    ...gateOptions,
  });
  const token = (repo: string, user: User = 'consumer'): Promise<string> =>
    getToken(gate.url, gate.ca, user, USERS[user], [
      `repository:${repo}:pull${user === 'publisher' ? ',push' : ''}`,
    ]);
  return {
    registry,
    gate,
    release,
    token,
    pull: async (repo, ref, method = 'GET') =>
      request(gate.url, gate.ca, {
        method,
        path: `/v2/${repo}/manifests/${ref}`,
        headers: { ...bearer(await token(repo)), accept: ACCEPT_ALL },
      }),
    blob: async (repo, digest) =>
      request(gate.url, gate.ca, { path: `/v2/${repo}/blobs/${digest}`, headers: bearer(await token(repo)) }),
    push: async (repo, ref, body, contentType) =>
      request(gate.url, gate.ca, {
        method: 'PUT',
        path: `/v2/${repo}/manifests/${ref}`,
        headers: { ...bearer(await token(repo, 'publisher')), 'content-type': contentType },
        body,
      }),
    async stop() {
      await gate.close();
      await registry.stop();
    },
  };
}

/**
 * Signs `repo@digest` with the stack's `release` key (cosign's `.sig` layout, blobs written to
 * registry:2 directly) and pushes the `.sig` manifest through trustgate as the publisher.
 */
export async function pushReleaseSignature(stack: TrustStack, repo: string, digest: string): Promise<Reply> {
  return stack.push(
    repo,
    signatureTagFor(digest),
    await signatureManifest(stack.registry.url, repo, digest, stack.release.pkcs8Der),
    MEDIA_TYPES.ociManifest,
  );
}
