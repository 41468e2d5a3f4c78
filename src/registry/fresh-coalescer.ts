/**
 * Shares registry answers between concurrent requests for the same key without ever giving a
 * request an answer older than the request itself.
 *
 * A request never joins a fetch that was already sent: it may have left before the request
 * arrived, and so before a tag move the client already knows about. Instead, requests that
 * arrive while a fetch for their key is in flight wait for the NEXT fetch, which starts when the
 * current one settles and is shared by all of them. Every caller thus gets the result of a fetch
 * that started after it called `run`: reads stay as fresh as one fetch per request (linearizable),
 * while a burst of N requests for one tag costs at most two fetches in flight instead of N.
 */
interface Entry<T> {
  /** The waiters' shared answer, and the fetch the first of them brought. */
  next?: Deferred<T> & { fetch: () => Promise<T> };
  waiting: number;
}

/** Callers of one key must pass equivalent fetches: one of them runs for all. */
export class FreshCoalescer<T> {
  private readonly inflight = new Map<string, Entry<T>>();

  /** `onShared` is told how many callers shared a fetch (after it settles), for metrics. */
  constructor(private readonly onShared?: (callers: number) => void) {}

  run(key: string, fetch: () => Promise<T>): Promise<T> {
    const entry = this.inflight.get(key);
    if (!entry) {
      const e: Entry<T> = { waiting: 0 };
      this.inflight.set(key, e);
      return this.start(key, e, fetch, 1);
    }
    entry.next ??= { ...deferred<T>(), fetch };
    entry.waiting++;
    return entry.next.promise;
  }

  private start(key: string, entry: Entry<T>, fetch: () => Promise<T>, callers: number): Promise<T> {
    const p = Promise.resolve().then(fetch);
    const settle = (ok: boolean): void => {
      if (ok && callers > 1) this.onShared?.(callers);
      const next = entry.next;
      if (!next) {
        this.inflight.delete(key);
        return;
      }
      // The waiters' own fetch starts now, after the one they could not join has settled.
      const waiting = entry.waiting;
      entry.next = undefined;
      entry.waiting = 0;
      this.start(key, entry, next.fetch, waiting).then(next.resolve, next.reject);
    };
    p.then(
      () => settle(true),
      () => settle(false),
    );
    return p;
  }

  /** Keys with a fetch in flight (for tests and metrics). */
  get size(): number {
    return this.inflight.size;
  }
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (v: T) => void;
  reject: (e: unknown) => void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
