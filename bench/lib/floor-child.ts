/**
 * `node dist/bench/lib/floor-child.js CONFIG`: the Node floor of a pull by tag (bench/manifest.ts
 * target `node-floor`). The same TLS listener as trustgate (its certificate, cipher list and socket
 * options) and trustgate's own upstream client (keep-alive, the direct reader), and nothing else:
 * no authentication, policy, trust, cache, audit or metrics. Each request is one conditional-free
 * GET of the same path from registry:2, relayed with its status, type and body. It prints
 * `TRUSTGATE_PORT=<port>` like trustgate-child.ts, so the same launcher starts it.
 *
 * What it answers: how much of trustgate's CPU per request is Node itself (TLS, HTTP parsing and
 * writing, one upstream exchange, the kernel's share of four socket calls) on this machine, under
 * the same load, measured in the same alternating runs.
 */
import https from 'node:https';
import { loadConfigFile } from '../../src/config/load.js';
import { tlsOptions } from '../../src/server/compose.js';
import { Upstream } from '../../src/registry/upstream.js';

async function main(): Promise<number> {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: node floor-child.js CONFIG\n');
    return 2;
  }
  const config = loadConfigFile(file, process.env);
  const upstream = new Upstream({
    url: config.upstream.url,
    timeoutMs: config.upstream.timeoutMs,
    maxSockets: config.upstream.maxSockets,
  });
  const server = https.createServer({ ...tlsOptions(config), highWaterMark: 256 * 1024 }, (req, res) => {
    upstream
      .request({
        method: 'GET',
        path: req.url ?? '/',
        headers: { accept: req.headers.accept ?? '*/*' },
        maxBytes: 4 * 1024 * 1024,
      })
      .then(
        (up) => {
          res.writeHead(up.status, {
            'content-type': String(up.headers['content-type'] ?? 'application/octet-stream'),
            'content-length': String(up.body.length),
          });
          res.end(up.body);
        },
        () => {
          res.writeHead(502, { 'content-length': '0' });
          res.end();
        },
      );
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  process.stdout.write(`TRUSTGATE_PORT=${typeof address === 'object' && address ? address.port : 0}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  server.closeAllConnections();
  server.close();
  upstream.close();
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`floor-child: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
