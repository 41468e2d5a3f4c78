import type http from 'node:http';
import { createProxyServer, type ProxyServer } from 'http-proxy-3';
import {
  stripHopByHop,
  upstreamFailure,
  upstreamRequestHeaders,
  type Upstream,
} from '../registry/upstream.js';
import { GateError } from '../core/errors.js';
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

  constructor(
    private readonly upstream: Upstream,
    private readonly log: Logger,
    private readonly metrics?: Metrics,
  ) {
    this.proxy = createProxyServer({
      target: upstream.target.origin,
      agent: upstream.agent,
      xfwd: false,
      changeOrigin: false,
      proxyTimeout: undefined,
    });
    // Policy: every proxy error has a handler; http-proxy without one throws and kills the process.
    this.proxy.on('error', (err, _req, res) => this.fail(err, res as http.ServerResponse | undefined));
    this.proxy.on('proxyRes', (proxyRes, _req, res) => {
      stripHopByHop(proxyRes.headers);
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
        new GateError('UNSUPPORTED', `a ${req.method ?? ''} request must not carry a body`, { status: 400 }),
        this.log,
      );
      return Promise.resolve();
    }
    this.countBytes(req, res);
    return this.proxyWeb(req, res, path);
  }

  /**
   * A blob GET/HEAD: through the DirectReader when configured, which hands anything it does not
   * relay itself back to the general path before a byte reaches the client.
   */
  async forwardBlobRead(req: http.IncomingMessage, res: http.ServerResponse, path: string): Promise<void> {
    const method = req.method;
    const direct = this.upstream.direct;
    if (!direct || (method !== 'GET' && method !== 'HEAD') || carriesBody(req.headers)) {
      return this.forward(req, res, path);
    }
    this.countBytes(req, res);
    try {
      const outcome = await direct.relay(method, path, upstreamRequestHeaders(req.headers), res, req.socket);
      if (outcome === 'done') return;
    } catch (err) {
      return this.fail(err, res);
    }
    return this.proxyWeb(req, res, path);
  }

  private proxyWeb(req: http.IncomingMessage, res: http.ServerResponse, path: string): Promise<void> {
    req.url = path;
    req.headers = upstreamRequestHeaders(req.headers) as http.IncomingHttpHeaders;
    return new Promise((resolve) => {
      res.once('close', () => resolve());
      this.proxy.web(req, res, {}, (err) => this.fail(err, res));
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
