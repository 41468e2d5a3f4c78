/**
 * The throughput ceiling: a raw TLS stream between two Node processes on loopback, with no HTTP
 * and no proxying. The server (a child process: `node dist/bench/lib/ceiling.js serve CERT KEY`)
 * reads a decimal byte count and a newline, writes that many bytes from one pre-allocated buffer,
 * and ends; the client (this process) reads and discards. Same certificate and Node TLS defaults
 * as trustgate, so the difference to trustgate is the cost of HTTP, proxying and checks.
 */
import { randomFillSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { spawnManaged, type Managed } from '../../test/helpers/stack.js';

const CHUNK = 1 << 20;

function serve(certFile: string, keyFile: string): void {
  const buf = randomFillSync(Buffer.allocUnsafe(CHUNK));
  const server = tls.createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) }, (sock) => {
    let line = '';
    const onData = (b: Buffer): void => {
      line += b.toString('latin1');
      const nl = line.indexOf('\n');
      if (nl < 0) {
        if (line.length > 32) sock.destroy();
        return;
      }
      sock.off('data', onData);
      let left = Number(line.slice(0, nl));
      if (!Number.isSafeInteger(left) || left < 0) return void sock.destroy();
      const pump = (): void => {
        while (left > 0) {
          const n = Math.min(left, CHUNK);
          left -= n;
          if (!sock.write(n === CHUNK ? buf : buf.subarray(0, n))) return void sock.once('drain', pump);
        }
        sock.end();
      };
      pump();
    };
    sock.on('data', onData);
    sock.on('error', () => sock.destroy());
  });
  server.listen(0, '127.0.0.1', () => {
    const addr = server.address();
    process.stdout.write(`${typeof addr === 'object' && addr ? addr.port : 0}\n`);
  });
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}

export interface CeilingServer {
  port: number;
  pid: number;
  stop(): Promise<void>;
}

/** Starts the ceiling server in a child Node process. */
export async function startCeilingServer(cert: string, key: string): Promise<CeilingServer> {
  const proc: Managed = spawnManaged(process.execPath, [fileURLToPath(import.meta.url), 'serve', cert, key]);
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`ceiling server did not start:\n${proc.output()}`)),
      10_000,
    );
    let out = '';
    proc.child.stdout?.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /^(\d+)\n/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    void proc.exited().then(() => reject(new Error(`ceiling server exited:\n${proc.output()}`)));
  });
  return { port, pid: proc.pid, stop: () => proc.stop('SIGTERM', 3000) };
}

/** Reads `bytes` from the ceiling server and discards them; returns seconds elapsed and bytes read. */
export function readCeiling(
  port: number,
  ca: string,
  bytes: number,
): Promise<{ seconds: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    let got = 0;
    const sock = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () =>
      sock.write(`${bytes}\n`),
    );
    sock.on('data', (b: Buffer) => (got += b.length));
    sock.on('end', () => {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      if (got !== bytes) reject(new Error(`ceiling: read ${got} of ${bytes} bytes`));
      else resolve({ seconds, bytes: got });
    });
    sock.on('error', reject);
    sock.setTimeout(120_000, () => sock.destroy(new Error('ceiling: timeout')));
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === 'serve') {
  const [, , , cert, key] = process.argv;
  if (!cert || !key) {
    process.stderr.write('usage: node ceiling.js serve CERT KEY\n');
    process.exit(2);
  }
  serve(cert, key);
}
