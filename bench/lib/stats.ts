/** Small statistics and formatting helpers for the benchmark scripts. */

export const MiB = 1024 * 1024;

export function median(xs: number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? (s[mid] ?? NaN) : ((s[mid - 1] ?? NaN) + (s[mid] ?? NaN)) / 2;
}

export function fmt(n: number, digits = 1): string {
  return Number.isFinite(n) ? n.toFixed(digits) : 'n/a';
}

export function ratio(a: number, b: number): string {
  return Number.isFinite(a) && Number.isFinite(b) && b > 0 ? (a / b).toFixed(3) : 'n/a';
}

/** Integer from an environment variable, with a default and bounds. */
export function envInt(name: string, def: number, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  const v = process.env[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new RangeError(`${name}=${v}: an integer in [${min}, ${max}]`);
  return n;
}

export interface Target<R> {
  name: string;
  run(): Promise<R>;
}

/**
 * Runs every target `runs` times, alternating (A B C A B C …) so drift (page cache, CPU
 * frequency, other load) spreads over all targets instead of favouring one.
 */
export async function alternate<R>(
  targets: Target<R>[],
  runs: number,
  onResult?: (name: string, i: number, r: R) => void,
): Promise<Map<string, R[]>> {
  const out = new Map<string, R[]>(targets.map((t) => [t.name, []]));
  for (let i = 0; i < runs; i++) {
    for (const t of targets) {
      const r = await t.run();
      out.get(t.name)?.push(r);
      onResult?.(t.name, i, r);
    }
  }
  return out;
}

export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows
    .map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  '))
    .join('\n');
}
