import type http from 'node:http';
import { createProxyServer, type ProxyServer } from 'http-proxy-3';
import { stripHopByHop, upstreamRequestHeaders } from '../registry/headers.js';
import { upstreamFailure, type Upstream } from '../registry/upstream.js';
import { addressKey } from '../auth/credentials.js';
import { GateError } from '../core/errors.js';
import { RelayLimiter, type RelayClaim } from '../core/relay-limits.js';
import type { Principal } from './authenticate.js';
import { closeAfterAnswer } from './body.js';
import { releaseChunksOnceWritten } from './release-written.js';
import { sendError } from './respond.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';

/** Methods whose body registry:2 reads; every other forwarded method must come without one. */
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);

function carriesBody(h: http.IncomingHttpHeaders): boolean {
  const cl = h['content-length'];
  return h['transfer-encoding'] !== undefined || (cl !== undefined && cl !== '0');
}

/**
 * Streams a request to registry:2 and its answer back, with backpressure both ways and nothing
 * buffered whole (I5). Used for blobs, uploads, tag lists and deletes; manifests take the
 * buffered, verified path instead.
 */
export class StreamForwarder {
  private readonly proxy: ProxyServer;
  /** Each identity's and address's share of the DirectReader's reads (see forwardBlobRead). */
  private readonly directShare?: RelayLimiter;

  constructor(
    private readonly upstream: Upstream,
    private readonly log: Logger,
    private readonly metrics?: Metrics,
    /** Bounds on concurrent blob relays; unbounded without one. */
    private readonly relays?: RelayLimiter,
  ) {
    const direct = upstream.direct;
    if (direct) {
      // Policy: one identity or one address takes at most half of the direct reader's reads; its
      // further relays take the general path. Clients that stop reading (each holding a direct
      // read) then cannot push every other client onto the slower path (bench/starvation.ts).
      const half = Math.max(1, Math.floor(direct.capacity / 2));
      this.directShare = new RelayLimiter({ global: direct.capacity, perIdentity: half, perAddress: half });
    }
    this.proxy = createProxyServer({
      target: upstream.target.origin,
      agent: upstream.agent,
      xfwd: false,
      changeOrigin: false,
      proxyTimeout: undefined,
    });
    // An upload's body chunks are freed once written to the registry, not when V8 next collects
    // (release-written.ts: ~80 MiB of peak RSS per streamed upload otherwise). http-proxy emits
    // this when the registry connection is assigned; chunks written before that are left to GC.
    // Policy: nothing else reads a forwarded body (the linger budget counts lengths only).
    this.proxy.on('proxyReq', (proxyReq, req) => {
      if (BODY_METHODS.has(req.method ?? '')) releaseChunksOnceWritten(proxyReq);
    });
    // Policy: every proxy error has a handler; http-proxy without one throws and kills the process.
    this.proxy.on('error', (err, _req, res) => this.fail(err, res as http.ServerResponse | undefined));
    this.proxy.on('proxyRes', (proxyRes, req, res) => {
      stripHopByHop(proxyRes.headers);
      const status = proxyRes.statusCode ?? 502;
      if (status >= 500) {
        // Policy: a registry failure is answered by trustgate, never relayed: registry:2's 5xx
        // bodies name its storage paths and driver (review 6's fuzz run: an upload PUT's 500
        // carried `/docker/registry/v2/repositories/…/_uploads/…/data`). The log keeps the status;
        // ending the response here makes http-proxy skip its own copy of the answer.
        proxyRes.resume();
        sendError(
          res as http.ServerResponse,
          new GateError(
            status === 503 ? 'UNAVAILABLE' : 'UPSTREAM_FAILED',
            `the registry failed this request (status ${status}); retry later, or ask the operator to check trustgate's log`,
          ),
          this.log,
          { upstreamStatus: status, method: req.method },
        );
        return;
      }
      if (!req.complete) {
        // Policy: an answer before the whole request body (registry:2 refusing an upload at once)
        // ends the connection, the lingering way (body.ts): the rest of the body, piped to a
        // registry connection that is gone, would otherwise never be read, and the client's
        // connection would hang with its next request unparsed. Set here, http-proxy keeps it.
        proxyRes.headers['connection'] = 'close';
        closeAfterAnswer(req);
      }
      // Policy: an upstream body that ends before its declared length (a FIN mid-body, or
      // registry:2's mis-framed 416) ends the client's response early too: a truncated transfer
      // the client notices, never one left hanging or looking complete.
      proxyRes.once('close', () => {
        if (!proxyRes.complete && !res.writableEnded) res.destroy();
      });
    });
  }

  /**
   * Forwards `req` as it is (method, body stream) to `path` upstream. Resolves when the response
   * has been fully sent or the exchange was torn down.
   */
  forward(req: http.IncomingMessage, res: http.ServerResponse, path: string): Promise<void> {
    if (!BODY_METHODS.has(req.method ?? '') && carriesBody(req.headers)) {
      // Policy: no body where registry:2 reads none. Node's client sends a GET/HEAD/DELETE body
      // without framing (and http-proxy sets Content-Length: 0 on DELETE), so Go would read the
      // body as a second, unauthorised request on the pooled connection (request smuggling).
      res.setHeader('connection', 'close');
      sendError(
        res,
        new GateError('BAD_REQUEST', `a ${req.method ?? ''} request must not carry a body`),
        this.log,
      );
      return Promise.resolve();
    }
    this.countBytes(req, res);
    return this.proxyWeb(req, res, path);
  }

  /**
   * A blob GET/HEAD (a relay): admitted by the relay bounds first, then through the DirectReader
   * when configured and within the caller's share of it, which hands anything it does not relay
   * itself back to the general path before a byte reaches the client. Relays use the blob pool
   * only (Upstream.blobAgent), never the control plane's. Throws a GateError (429/503 with
   * Retry-After) when a bound is reached.
   */
  async forwardBlobRead(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    path: string,
    principal?: Principal,
  ): Promise<void> {
    const method = req.method;
    if ((method !== 'GET' && method !== 'HEAD') || carriesBody(req.headers)) {
      return this.forward(req, res, path);
    }
    // The client left while the request was authorised: nothing to relay, nothing to count.
    if (res.destroyed || req.socket.destroyed) return;
    const claim: RelayClaim = {
      identity: principal?.identity.subject ?? 'anonymous',
      credentialed: principal?.credentialed ?? false,
      address: addressKey(req.socket.remoteAddress),
    };
    this.holdRelay(req, res, claim);
    this.countBytes(req, res);
    const direct = this.upstream.direct;
    const share = this.directShare?.tryStart(claim);
    if (direct && share?.ok) {
      whenOver(req, res, share.release);
      try {
        const outcome = await direct.relay(
          method,
          path,
          upstreamRequestHeaders(req.headers),
          res,
          req.socket,
        );
        if (outcome === 'done') return;
      } catch (err) {
        return this.fail(err, res);
      }
      share.release();
    }
    return this.proxyWeb(req, res, path, this.upstream.blobAgent);
  }

  /** Counts this response as a blob relay until it is over, or throws the refusal (429/503). */
  private holdRelay(req: http.IncomingMessage, res: http.ServerResponse, claim: RelayClaim): void {
    if (!this.relays) return;
    const decision = this.relays.tryStart(claim);
    if (!decision.ok) {
      this.metrics?.relaysRefused.inc({ bound: decision.bound });
      throw decision.error;
    }
    const gauge = this.metrics?.blobRelays;
    gauge?.inc();
    whenOver(req, res, () => {
      decision.release();
      gauge?.dec();
    });
  }

  private proxyWeb(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    path: string,
    agent: http.Agent = this.upstream.agent,
  ): Promise<void> {
    req.url = path;
    req.headers = upstreamRequestHeaders(req.headers) as http.IncomingHttpHeaders;
    return new Promise((resolve) => {
      res.once('close', () => resolve());
      this.proxy.web(req, res, agent === this.upstream.agent ? {} : { agent }, (err) => this.fail(err, res));
    });
  }

  /**
   * Bytes on the client connection while this exchange ran, counted once at the end: a listener
   * per chunk measurably slowed blob streaming (bench/blob.ts).
   */
  private countBytes(req: http.IncomingMessage, res: http.ServerResponse): void {
    const m = this.metrics;
    if (!m) return;
    const socket = req.socket;
    const read0 = socket.bytesRead;
    const written0 = socket.bytesWritten;
    res.once('close', () => {
      m.bytes.inc({ direction: 'up' }, Math.max(0, socket.bytesRead - read0));
      m.bytes.inc({ direction: 'down' }, Math.max(0, socket.bytesWritten - written0));
    });
  }

  private fail(err: unknown, res: http.ServerResponse | undefined): void {
    if (!res || res.writableEnded || res.destroyed) return;
    sendError(res, upstreamFailure(err), this.log);
  }

  close(): void {
    this.proxy.close();
  }
}

/**
 * Calls `done` once when the exchange is over: the response's close, or the connection's for a
 * pipelined request whose turn never came.
 */
function whenOver(req: http.IncomingMessage, res: http.ServerResponse, done: () => void): void {
  const socket = req.socket;
  let ended = false;
  const over = (): void => {
    // Once: the connection's close emits the response's, and both listeners may already be queued.
    if (ended) return;
    ended = true;
    res.off('close', over);
    socket.off('close', over);
    done();
  };
  res.once('close', over);
  socket.once('close', over);
}
