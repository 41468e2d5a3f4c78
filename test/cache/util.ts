import { createHmac } from 'node:crypto';
import type { CacheLogger } from '../../src/cache/redis-cache.js';

export const SECRET = 'test-secret-0123456789abcdef-0123456789';

export interface LogLine {
  level: 'info' | 'warn' | 'error';
  obj: object;
  msg: string;
}

export function recordingLogger(): CacheLogger & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  return {
    lines,
    info: (obj, msg) => void lines.push({ level: 'info', obj, msg }),
    warn: (obj, msg) => void lines.push({ level: 'warn', obj, msg }),
    error: (obj, msg) => void lines.push({ level: 'error', obj, msg }),
  };
}

/** Polls `pred` every 20 ms; false if it did not hold within `timeoutMs`. */
export async function waitFor(pred: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await pred()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return pred();
}

/**
 * The wire format, written independently of the implementation: lets a test craft values with
 * a valid MAC (bad JSON, expired, other key) to check what the reader does with them.
 */
export function seal(fullKey: string, json: string, secret = SECRET): string {
  const k = createHmac('sha256', secret).update('trustgate verdict cache v1').digest();
  const mac = createHmac('sha256', k).update(fullKey).update('\0').update(json).digest('base64url');
  return `${mac}.${json}`;
}

/** Records unhandled rejections and uncaught exceptions while installed. */
export function trapProcessErrors(): { errors: unknown[]; uninstall(): void } {
  const errors: unknown[] = [];
  const onRejection = (e: unknown): void => void errors.push(e);
  const onException = (e: unknown): void => void errors.push(e);
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
  return {
    errors,
    uninstall() {
      process.removeListener('unhandledRejection', onRejection);
      process.removeListener('uncaughtException', onException);
    },
  };
}

export async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const t0 = performance.now();
  const value = await fn();
  return { value, ms: performance.now() - t0 };
}
