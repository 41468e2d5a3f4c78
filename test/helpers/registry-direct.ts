import { createHash } from 'node:crypto';
import http from 'node:http';

/**
 * Plain-HTTP access to the test registry:2, bypassing trustgate. Tests use it only for the
 * publisher-side setup (pushing fixtures, writing signatures) and to check what reached the
 * registry; every client-side assertion goes through trustgate.
 */
export interface DirectReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export function direct(
  registryUrl: string,
  method: string,
  path: string,
  body?: Buffer,
  headers: http.OutgoingHttpHeaders = {},
): Promise<DirectReply> {
  const u = new URL(path, registryUrl);
  return new Promise((resolve, reject) => {
    const req = http.request(
      u,
      {
        method,
        headers: { ...headers, ...(body ? { 'content-length': String(body.length) } : {}) },
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

export function sha256(b: Buffer | Uint8Array): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

export async function pushBlob(registryUrl: string, repo: string, bytes: Buffer): Promise<string> {
  const digest = sha256(bytes);
  const start = await direct(registryUrl, 'POST', `/v2/${repo}/blobs/uploads/`);
  if (start.status !== 202) throw new Error(`upload start ${start.status}: ${start.body.toString()}`);
  const loc = new URL(String(start.headers.location), registryUrl);
  loc.searchParams.set('digest', digest);
  const put = await direct(registryUrl, 'PUT', loc.pathname + loc.search, bytes, {
    'content-type': 'application/octet-stream',
  });
  if (put.status !== 201) throw new Error(`blob PUT ${put.status}: ${put.body.toString()}`);
  return digest;
}

export async function pushManifest(
  registryUrl: string,
  repo: string,
  ref: string,
  bytes: Buffer,
  mediaType: string,
): Promise<string> {
  const put = await direct(registryUrl, 'PUT', `/v2/${repo}/manifests/${ref}`, bytes, {
    'content-type': mediaType,
  });
  if (put.status !== 201) throw new Error(`manifest PUT ${put.status}: ${put.body.toString()}`);
  return sha256(bytes);
}

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

/** Pushes a small random OCI image (config + `layers` layers) and returns its manifest digest. */
export async function pushRandomImage(
  registryUrl: string,
  repo: string,
  tag: string,
  layers = 1,
  layerBytes = 1024,
): Promise<{ digest: string; bytes: Buffer; blobs: string[] }> {
  const layerDescs = [];
  for (let i = 0; i < layers; i++) {
    const data = Buffer.from(Array.from({ length: layerBytes }, () => Math.floor(Math.random() * 256)));
    const digest = await pushBlob(registryUrl, repo, data);
    layerDescs.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest, size: data.length });
  }
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      rootfs: { type: 'layers', diff_ids: layerDescs.map((l) => l.digest) },
    }),
  );
  const configDigest = await pushBlob(registryUrl, repo, config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: configDigest,
        size: config.length,
      },
      layers: layerDescs,
    }),
  );
  const digest = await pushManifest(registryUrl, repo, tag, manifest, OCI_MANIFEST);
  return { digest, bytes: manifest, blobs: [configDigest, ...layerDescs.map((l) => l.digest)] };
}
