import http from 'node:http';
import https from 'node:https';
import { GateError, InternalFailure } from '../core/errors.js';
import { DirectReader, responseTooLarge, type UpstreamResponse } from './direct-reader.js';
import { upstreamRequestChannel, type UpstreamRequestEvent } from './events.js';

export type { UpstreamResponse } from './direct-reader.js';

/**
 * The upstream registry client: pooled keep-alive connections to registry:2, in two pools. Blob
 * downloads (the streaming proxy's blob reads) have their own agent, the control plane (buffered
 * manifest and signature requests, manifest pushes, tag lists, uploads, catalog) another, so a
 * blob relay held open by a client that does not read can never take a control-plane socket.
 */

export interface UpstreamRequest {
  method: string;
  path: string;
  headers?: http.OutgoingHttpHeaders;
  body?: Buffer;
  maxBytes: number;
  signal?: AbortSignal;
  /** Label for metrics: manifest, signature, catalog, probe… */
  kind?: string;
}

export interface UpstreamOptions {
  url: string;
  timeoutMs: number;
  /** Pooled connections to the registry, both pools together. */
  maxSockets: number;
  /**
   * Connections of `maxSockets` reserved for blob relays (their own agent); the control plane
   * gets the rest. Unset: one agent for everything.
   */
  blobSockets?: number;
  /** `direct`: GET/HEAD answers from a plain-http registry are read by DirectReader. */
  reads?: 'direct' | 'node';
}

export class Upstream {
  readonly target: URL;
  /** The control plane's pool: everything but blob downloads. */
  readonly agent: http.Agent;
  /** Blob downloads through Node's http client (when DirectReader does not relay them). */
  readonly blobAgent: http.Agent;
  /** trustgate's own reader for GET/HEAD answers of a plain-http registry, when configured. */
  readonly direct?: DirectReader;
  private readonly timeoutMs: number;
  /** The registry's host name or address, without an IPv6 literal's brackets. */
  private readonly hostname: string;

  constructor(opts: UpstreamOptions) {
    this.target = new URL(opts.url);
    if (this.target.pathname !== '/' || this.target.search) {
      throw new Error(`upstream.url must be a bare origin (got ${opts.url})`);
    }
    const Agent = this.target.protocol === 'https:' ? https.Agent : http.Agent;
    const blobSockets = opts.blobSockets;
    if (
      blobSockets !== undefined &&
      !(Number.isInteger(blobSockets) && blobSockets >= 1 && blobSockets < opts.maxSockets)
    ) {
      throw new TypeError(`upstream: blobSockets must be an integer in [1, maxSockets) (got ${blobSockets})`);
    }
    const pool = (maxSockets: number): http.Agent =>
      new Agent({
        keepAlive: true,
        maxSockets,
        maxFreeSockets: Math.min(64, maxSockets),
        scheduling: 'lifo',
      });
    this.agent = pool(opts.maxSockets - (blobSockets ?? 0));
    this.blobAgent = blobSockets === undefined ? this.agent : pool(blobSockets);
    this.timeoutMs = opts.timeoutMs;
    this.hostname = this.target.hostname.replace(/^\[|\]$/g, '');
    if (opts.reads !== 'node' && this.target.protocol === 'http:') {
      this.direct = new DirectReader({
        host: this.hostname,
        port: Number(this.target.port || 80),
        timeoutMs: opts.timeoutMs,
        source: this,
      });
    }
  }

  /**
   * One buffered request to the registry. The body is read up to `maxBytes`; a larger body is
   * refused (never truncated). Network errors and timeouts become upstream failures (502/503 at the edge).
   */
  async request(opts: UpstreamRequest): Promise<UpstreamResponse> {
    const { method } = opts;
    if (this.direct && (method === 'GET' || method === 'HEAD') && !opts.body && !opts.signal) {
      const started = performance.now();
      const host = this.target.host;
      let answer: UpstreamResponse | 'fallback';
      try {
        answer = await this.direct.fetch(method, opts.path, { host, ...opts.headers }, opts.maxBytes);
      } catch (err) {
        throw upstreamFailure(err);
      }
      if (answer !== 'fallback') {
        this.observed(opts, started);
        return answer;
      }
    }
    return this.requestViaNode(opts);
  }

  /** The same through Node's http client (https upstreams, bodies, and what DirectReader hands back). */
  private requestViaNode(opts: UpstreamRequest): Promise<UpstreamResponse> {
    const mod = this.target.protocol === 'https:' ? https : http;
    const started = performance.now();
    const done = (): void => this.observed(opts, started);
    return new Promise((resolve, reject) => {
      const req = mod.request(
        {
          protocol: this.target.protocol,
          hostname: this.hostname,
          port: this.target.port,
          method: opts.method,
          path: opts.path,
          headers: { ...opts.headers, ...(opts.body ? { 'content-length': String(opts.body.length) } : {}) },
          agent: this.agent,
          signal: opts.signal,
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > opts.maxBytes) {
              res.destroy();
              reject(responseTooLarge(opts.maxBytes));
              return;
            }
            chunks.push(c);
          });
          res.on('end', () => {
            done();
            resolve({
              status: res.statusCode ?? 502,
              headers: res.headers,
              body: Buffer.concat(chunks, size),
            });
          });
          res.on('error', (err) => reject(upstreamFailure(err)));
        },
      );
      req.setTimeout(this.timeoutMs, () =>
        req.destroy(new Error(`upstream timeout after ${this.timeoutMs} ms`)),
      );
      req.on('error', (err) => reject(upstreamFailure(err)));
      req.end(opts.body);
    });
  }

  /** Publishes how long a buffered request took (upstreamRequestChannel; metrics subscribe). */
  private observed(opts: UpstreamRequest, started: number): void {
    if (!upstreamRequestChannel.hasSubscribers) return;
    const event: UpstreamRequestEvent = {
      source: this,
      kind: opts.kind ?? 'other',
      seconds: (performance.now() - started) / 1000,
    };
    upstreamRequestChannel.publish(event);
  }

  /** 'ok' when the registry answers GET /v2/ (200 or 401), otherwise what went wrong. */
  async probe(): Promise<string> {
    try {
      const r = await this.request({ method: 'GET', path: '/v2/', maxBytes: 4096, kind: 'probe' });
      return r.status === 200 || r.status === 401 ? 'ok' : `status ${r.status}`;
    } catch (err) {
      return `unreachable: ${(err as Error).message}`;
    }
  }

  close(): void {
    this.agent.destroy();
    this.blobAgent.destroy();
    this.direct?.close();
  }
}

/**
 * Policy: an unreachable upstream is a 503 (retry later); one that breaks mid-answer is a 502
 * (core/errors.ts maps the kinds). A refusal or an internal failure already made passes as it is.
 */
export function upstreamFailure(err: unknown): GateError | InternalFailure {
  if (err instanceof GateError || err instanceof InternalFailure) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const unreachable = code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EHOSTUNREACH';
  return unreachable
    ? new InternalFailure('upstream-unreachable', 'the registry behind trustgate is unavailable', {
        logDetail: `${code ?? ''} ${String(err)}`,
        cause: err,
      })
    : new InternalFailure('upstream-failed', 'the registry behind trustgate failed', {
        logDetail: `${code ?? ''} ${String(err)}`,
        cause: err,
      });
}
