import tls from 'node:tls';

/**
 * Raw bytes over TLS to a test server: for request shapes an HTTP client library refuses to send
 * (smuggling, bare LF, duplicate lengths). Collects what the server answers until it closes the
 * connection or `idleMs` passes without data; bounded by `maxMs` in all cases.
 */
export function rawExchange(
  port: number,
  ca: string,
  payload: Buffer | string | Array<Buffer | string>,
  o: { idleMs?: number; maxMs?: number; gapMs?: number } = {},
): Promise<{ text: string; closed: boolean; statuses: number[] }> {
  const idleMs = o.idleMs ?? 1500;
  const maxMs = o.maxMs ?? 10_000;
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let closed = false;
    let idle: NodeJS.Timeout | undefined;
    const s = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost' });
    const finish = (): void => {
      clearTimeout(idle);
      clearTimeout(hard);
      s.destroy();
      const text = Buffer.concat(chunks).toString('latin1');
      const statuses = [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
      resolve({ text, closed, statuses });
    };
    const hard = setTimeout(finish, maxMs);
    const arm = (): void => {
      clearTimeout(idle);
      idle = setTimeout(finish, idleMs);
    };
    s.on('data', (b: Buffer) => {
      chunks.push(b);
      arm();
    });
    s.on('end', () => {
      closed = true;
      finish();
    });
    s.on('close', () => {
      closed = true;
      finish();
    });
    s.on('error', () => {
      closed = true;
      finish();
    });
    s.once('secureConnect', async () => {
      const parts = Array.isArray(payload) ? payload : [payload];
      for (const p of parts) {
        if (s.destroyed) return;
        s.write(p);
        if (o.gapMs) await new Promise((r) => setTimeout(r, o.gapMs));
      }
      arm();
    });
  });
}
