import type http from 'node:http';
import type net from 'node:net';
import { Pool, type Dispatcher } from 'undici';
import { GateError } from '../core/errors.js';
import { stripHopByHop, type UpstreamResponse } from './upstream.js';
import type { RelayResult } from './direct-reader.js';

/**
 * GET/HEAD answers from a plain-http registry:2 read with undici (upstream.reads: undici): the
 * same surface as DirectReader, on two undici pools (blob relays, control plane) sized like
 * Upstream's agents. Kept to measure undici against the hand-written reader (bench/blob.ts,
 * bench/manifest.ts).
 */
export interface UndiciReaderOptions {
  origin: string;
  timeoutMs: number;
  blobConnections: number;
  controlConnections: number;
}

export class UndiciReader {
  private readonly blobs: Pool;
  private readonly control: Pool;
  private active = 0;

  constructor(private readonly opts: UndiciReaderOptions) {
    const common = { headersTimeout: opts.timeoutMs, bodyTimeout: opts.timeoutMs, pipelining: 1 };
    this.blobs = new Pool(opts.origin, { ...common, connections: opts.blobConnections });
    this.control = new Pool(opts.origin, { ...common, connections: opts.controlConnections });
  }

  relay(
    method: 'GET' | 'HEAD',
    path: string,
    headers: http.OutgoingHttpHeaders,
    res: http.ServerResponse,
    client: net.Socket,
  ): Promise<RelayResult> {
    if (client.destroyed || res.destroyed) return Promise.resolve('done');
    this.active++;
    return new Promise<RelayResult>((resolve, reject) => {
      let started = false;
      let over = false;
      let controller: Dispatcher.DispatchController | undefined;
      const finish = (err?: Error): void => {
        if (over) return;
        over = true;
        this.active--;
        res.off('close', onClose);
        client.off('close', onClose);
        res.off('drain', onDrain);
        if (err && !started) reject(err);
        else {
          if (err) res.destroy(err);
          resolve('done');
        }
      };
      const onClose = (): void => {
        controller?.abort(new Error('client went away'));
        finish();
      };
      const onDrain = (): void => controller?.resume();
      res.once('close', onClose);
      client.once('close', onClose);
      this.blobs.dispatch(
        { path, method, headers: headers as Record<string, string>, blocking: true },
        {
          onRequestStart: (c) => {
            controller = c;
            if (over) c.abort(new Error('client went away'));
          },
          onResponseStart: (_c, status, upHeaders) => {
            const h = stripHopByHop({ ...upHeaders });
            if (status === 416) h['content-length'] = '0';
            res.writeHead(status, h as http.OutgoingHttpHeaders);
            started = true;
            if (status === 416) {
              res.end();
              controller?.abort(new Error('416 body not relayed'));
              finish();
            }
          },
          onResponseData: (c, chunk) => {
            if (over) return;
            if (!res.write(chunk)) {
              c.pause();
              res.once('drain', onDrain);
            }
          },
          onResponseEnd: () => {
            if (over) return;
            res.end();
            finish();
          },
          onResponseError: (_c, err) => finish(err),
        },
      );
    });
  }

  fetch(
    method: 'GET' | 'HEAD',
    path: string,
    headers: http.OutgoingHttpHeaders,
    maxBytes: number,
  ): Promise<UpstreamResponse | 'fallback'> {
    return new Promise((resolve, reject) => {
      let status = 0;
      let head: http.IncomingHttpHeaders = {};
      const chunks: Buffer[] = [];
      let size = 0;
      let done = false;
      const tooLarge = (): GateError =>
        new GateError('MANIFEST_INVALID', `upstream response exceeds ${maxBytes} bytes`, { status: 502 });
      const timer = setTimeout(
        () => controller?.abort(new Error(`upstream gave no complete answer in ${this.opts.timeoutMs} ms`)),
        this.opts.timeoutMs,
      );
      let controller: Dispatcher.DispatchController | undefined;
      const fail = (err: Error): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        reject(err);
      };
      this.control.dispatch(
        { path, method, headers: headers as Record<string, string> },
        {
          onRequestStart: (c) => {
            controller = c;
          },
          onResponseStart: (c, s, h) => {
            status = s;
            head = stripHopByHop({ ...h });
            const cl = Number(h['content-length'] ?? 0);
            if (cl > maxBytes) c.abort(tooLarge());
          },
          onResponseData: (c, chunk) => {
            size += chunk.length;
            if (size > maxBytes) return c.abort(tooLarge());
            chunks.push(chunk);
          },
          onResponseEnd: () => {
            if (done) return;
            done = true;
            clearTimeout(timer);
            resolve({ status, headers: head, body: Buffer.concat(chunks, size) });
          },
          onResponseError: (_c, err) => fail(err),
        },
      );
    });
  }

  get capacity(): number {
    return this.opts.blobConnections;
  }

  get activeReads(): number {
    return this.active;
  }

  close(): void {
    void this.blobs.destroy();
    void this.control.destroy();
  }
}
