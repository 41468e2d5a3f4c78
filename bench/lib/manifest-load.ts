/**
 * Load helpers shared by the manifest benchmarks (bench/manifest.ts, bench/replicas.ts): wrk runs
 * with CPU per request, single GETs, bearer tokens, and cosign 3 bundle referrers.
 */
import { spawnSync } from 'node:child_process';
import https from 'node:https';
import { pushBlob, pushManifest } from '../../test/helpers/registry-direct.js';
import {
  BUNDLE_REFERRER_ARTIFACT_TYPE,
  buildBundleReferrerManifest,
} from '../../src/core/evidence/bundle-writer.js';
import { COSIGN_SIGNATURE_ANNOTATION, MEDIA_TYPES } from '../../src/core/manifest.js';
import { signatureTagFor } from '../../src/core/reference.js';
import { buildSimpleSigningPayload } from '../../src/core/signature/payload.js';
import { signPayload } from '../../src/core/signature/sign.js';
import { cpuSeconds } from './cpu.js';

export const ACCEPT = 'application/vnd.oci.image.manifest.v1+json';

export interface WrkResult {
  rps: number;
  p50ms: number;
  p99ms: number;
  errors: number;
  /** Requests completed. */
  requests: number;
  /** CPU microseconds per request, by process (from /proc). */
  cpuUs: Record<string, number>;
}

function toMs(v: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(v.trim());
  if (!m) return NaN;
  const n = Number(m[1]);
  return m[2] === 'us' ? n / 1000 : m[2] === 's' ? n * 1000 : n;
}

export function wrk(
  connections: number,
  url: string,
  headers: Record<string, string>,
  seconds: number,
  pids: Record<string, number>,
  script?: string,
): WrkResult {
  const cpu0 = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, cpuSeconds(p)]));
  const args = ['-t2', `-c${connections}`, `-d${seconds}s`, '--latency', '--timeout', '5s'];
  for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
  if (script) args.push('-s', script);
  const r = spawnSync('wrk', [...args, url], { encoding: 'utf8', timeout: (seconds + 30) * 1000 });
  if (r.status !== 0) throw new Error(`wrk failed: ${r.stderr || r.error}`);
  const out = r.stdout;
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const p50 = /\s50%\s+(\S+)/.exec(out)?.[1] ?? '';
  const p99 = /\s99%\s+(\S+)/.exec(out)?.[1] ?? '';
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const sockErr = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = non2xx + (sockErr ? sockErr.slice(1).reduce((a, b) => a + Number(b), 0) : 0);
  const requests = Number(/(\d+) requests in/.exec(out)?.[1]);
  const cpuUs = Object.fromEntries(
    Object.entries(pids).map(([k, p]) => [k, ((cpuSeconds(p) - (cpu0[k] ?? 0)) * 1e6) / requests]),
  );
  return { rps, p50ms: toMs(p50), p99ms: toMs(p99), errors, requests, cpuUs };
}

export function get(
  url: string,
  ca: string,
  headers: Record<string, string>,
  agent: https.Agent,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = https.get(url, { ca, headers, agent }, (res) => {
      res.resume();
      res.on('end', () => {
        if (res.statusCode !== 200) reject(new Error(`${url}: ${res.statusCode}`));
        else resolve(performance.now() - started);
      });
    });
    req.on('error', reject);
  });
}

/**
 * Attaches `bundle` to `img` as cosign 3 leaves it on a registry without the referrers API: the
 * referrer manifest pushed by digest (its blobs first), and the referrers tag
 * `sha256-<hex>` listing it.
 */
export async function pushBundleReferrer(
  registryUrl: string,
  repo: string,
  img: { digest: string; bytes: Buffer },
  bundle: Uint8Array,
): Promise<void> {
  const ref = buildBundleReferrerManifest({
    bundle,
    subject: { mediaType: ACCEPT, digest: img.digest, size: img.bytes.length },
    created: new Date(),
  });
  for (const b of ref.blobs) await pushBlob(registryUrl, repo, Buffer.from(b.bytes));
  await pushManifest(registryUrl, repo, ref.digest, Buffer.from(ref.manifest), ACCEPT);
  const index = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociIndex,
    manifests: [
      {
        mediaType: ACCEPT,
        digest: ref.digest,
        size: ref.manifest.length,
        artifactType: BUNDLE_REFERRER_ARTIFACT_TYPE,
      },
    ],
  };
  await pushManifest(
    registryUrl,
    repo,
    `sha256-${img.digest.slice('sha256:'.length)}`,
    Buffer.from(JSON.stringify(index)),
    MEDIA_TYPES.ociIndex,
  );
}

/** A manifest PUT through trustgate (`token` with push); resolves with the status, 201 expected. */
export function putThrough(
  base: string,
  ca: string,
  token: string,
  repo: string,
  ref: string,
  body: Buffer,
  contentType: string,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      `${base}/v2/${repo}/manifests/${ref}`,
      {
        method: 'PUT',
        ca,
        agent: false,
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': contentType,
          'content-length': body.length,
        },
      },
      (res) => {
        let b = '';
        res.on('data', (c: Buffer) => (b += c.toString()));
        res.on('end', () =>
          res.statusCode === 201 ? resolve() : reject(new Error(`${res.statusCode} ${b}`)),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Signs `img` through trustgate, as cosign does with trustgate as its registry: the blobs go to
 * registry:2 (not what is measured), the signature manifest through trustgate: a legacy `.sig`
 * (PUT to `sha256-<hex>.sig`, checked by trustgate) or a bundle referrer (PUT by digest;
 * trustgate records it in the referrers index).
 */
export async function signThrough(
  o: { registryUrl: string; gateUrl: string; ca: string; token: string },
  repo: string,
  img: { digest: string; bytes: Buffer },
  format: 'legacy' | 'bundle',
  key: Uint8Array,
  bundle: () => Uint8Array,
): Promise<void> {
  if (format === 'bundle') {
    const ref = buildBundleReferrerManifest({
      bundle: bundle(),
      subject: { mediaType: ACCEPT, digest: img.digest, size: img.bytes.length },
      created: new Date(),
    });
    for (const b of ref.blobs) await pushBlob(o.registryUrl, repo, Buffer.from(b.bytes));
    return putThrough(o.gateUrl, o.ca, o.token, repo, ref.digest, Buffer.from(ref.manifest), ACCEPT);
  }
  const payload = Buffer.from(
    buildSimpleSigningPayload({ dockerReference: `localhost/${repo}`, manifestDigest: img.digest }),
  );
  const config = Buffer.from('{}');
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: ACCEPT,
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: await pushBlob(o.registryUrl, repo, config),
        size: config.length,
      },
      layers: [
        {
          mediaType: MEDIA_TYPES.cosignSimpleSigning,
          digest: await pushBlob(o.registryUrl, repo, payload),
          size: payload.length,
          annotations: {
            [COSIGN_SIGNATURE_ANNOTATION]: Buffer.from(signPayload(key, payload)).toString('base64'),
          },
        },
      ],
    }),
  );
  return putThrough(o.gateUrl, o.ca, o.token, repo, signatureTagFor(img.digest), manifest, ACCEPT);
}

export async function fetchToken(
  base: string,
  ca: string,
  creds: { username: string; password: string },
  repo: string,
  actions = 'pull',
): Promise<string> {
  return new Promise((resolve, reject) => {
    const auth = Buffer.from(`${creds.username}:${creds.password}`).toString('base64');
    const req = https.get(
      `${base}/token?service=trustgate&scope=repository:${repo}:${actions}`,
      { ca, headers: { authorization: `Basic ${auth}` }, agent: false },
      (res) => {
        let b = '';
        res.on('data', (c: Buffer) => (b += c.toString()));
        res.on('end', () =>
          res.statusCode === 200 ? resolve((JSON.parse(b) as { token: string }).token) : reject(new Error(b)),
        );
      },
    );
    req.on('error', reject);
  });
}
