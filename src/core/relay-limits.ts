import { GateError } from './errors.js';

/**
 * Bounds on concurrent blob relays (issue 12, item 4: upstream pool starvation). A blob read
 * holds an upstream connection for as long as its client takes to accept the body, so without a
 * bound a few hundred clients that never read took every connection to the registry and hung
 * everyone's tag lists, uploads and manifest pushes.
 *
 * Pure: counts in, decision out (no clock, no I/O). The server asks `tryStart` after the request
 * is authorised and before it touches the registry, and calls the `release` it got back once the
 * response is over (finished, aborted or destroyed).
 */

export interface RelayBounds {
  /** Blob relays at once in this process (its blob share of the upstream pool). */
  global: number;
  /** Blob relays at once for one authenticated identity. */
  perIdentity: number;
  /** Blob relays at once from one client address key (IPv6 by /64). */
  perAddress: number;
  /** Sent as Retry-After with a refusal. */
  retryAfterSeconds?: number;
}

export interface RelayClaim {
  /** The caller's identity subject (alice, robot:ci, mtls:CN=x, anonymous). */
  identity: string;
  /** False for an anonymous caller. */
  credentialed: boolean;
  /** The client address key from the socket, never a header (auth/credentials.ts addressKey). */
  address: string;
}

export type RelayBound = 'identity' | 'address' | 'global';

export type RelayDecision =
  | {
      ok: true;
      /** Ends the relay's claim; calling it again does nothing. */
      release: () => void;
    }
  | { ok: false; bound: RelayBound; error: GateError };

/**
 * Policy: a refused relay is retried by the client after a few seconds (a multi-MiB relay ends in
 * about that time, and a stalled one within the write-idle deadline); never a queue held open.
 */
export const DEFAULT_RELAY_RETRY_AFTER_SECONDS = 5;

function positiveInt(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
    throw new TypeError(`relay bounds: ${name} must be a positive integer (got ${String(v)})`);
  }
  return v;
}

export class RelayLimiter {
  private readonly global: number;
  private readonly perIdentity: number;
  private readonly perAddress: number;
  private readonly retryAfter: number;
  private total = 0;
  /** Only keys with relays in progress: at most `global` entries each. */
  private readonly byIdentity = new Map<string, number>();
  private readonly byAddress = new Map<string, number>();

  constructor(bounds: RelayBounds) {
    this.global = positiveInt('global', bounds.global);
    this.perIdentity = positiveInt('perIdentity', bounds.perIdentity);
    this.perAddress = positiveInt('perAddress', bounds.perAddress);
    this.retryAfter = positiveInt(
      'retryAfterSeconds',
      bounds.retryAfterSeconds ?? DEFAULT_RELAY_RETRY_AFTER_SECONDS,
    );
  }

  /**
   * Whether one more blob relay may start for `claim`; when it may, it is counted until released.
   * The caller's own bounds are checked first, so an abusive identity or address is told that it
   * is the one over its share (429) before the process-wide bound (503) says anything.
   */
  tryStart(claim: RelayClaim): RelayDecision {
    // Policy: anonymous callers all share the subject `anonymous`, so a count per identity would
    // let one anonymous client lock every other out; they are bounded per address and globally.
    const identity = claim.credentialed ? claim.identity : undefined;
    const byIdentity = identity === undefined ? 0 : (this.byIdentity.get(identity) ?? 0);
    if (identity !== undefined && byIdentity >= this.perIdentity) {
      return this.refuse(
        'identity',
        'TOOMANYREQUESTS',
        `too many blob downloads at once for ${identity}: ${byIdentity} are in progress, the limit per identity is ${this.perIdentity}; retry when one has finished (an identity shared by many hosts needs a higher limits.blobRelaysPerIdentity)`,
      );
    }
    const byAddress = this.byAddress.get(claim.address) ?? 0;
    if (byAddress >= this.perAddress) {
      return this.refuse(
        'address',
        'TOOMANYREQUESTS',
        `too many blob downloads at once from this client address: ${byAddress} are in progress, the limit per address is ${this.perAddress}; retry when one has finished (many hosts behind one address need a higher limits.blobRelaysPerAddress)`,
      );
    }
    if (this.total >= this.global) {
      return this.refuse(
        'global',
        'UNAVAILABLE',
        `trustgate is relaying its maximum of ${this.global} blob downloads at once; retry in ${this.retryAfter} s`,
      );
    }
    this.total++;
    if (identity !== undefined) this.byIdentity.set(identity, byIdentity + 1);
    this.byAddress.set(claim.address, byAddress + 1);
    let released = false;
    return {
      ok: true,
      release: () => {
        if (released) return;
        released = true;
        this.total--;
        if (identity !== undefined) decrement(this.byIdentity, identity);
        decrement(this.byAddress, claim.address);
      },
    };
  }

  /** Blob relays in progress. */
  get active(): number {
    return this.total;
  }

  /** Relays in progress for one identity subject (0 when none, or when anonymous). */
  activeFor(identity: string): number {
    return this.byIdentity.get(identity) ?? 0;
  }

  /** Relays in progress from one address key. */
  activeFrom(address: string): number {
    return this.byAddress.get(address) ?? 0;
  }

  private refuse(bound: RelayBound, code: 'TOOMANYREQUESTS' | 'UNAVAILABLE', message: string): RelayDecision {
    return {
      ok: false,
      bound,
      error: new GateError(code, message, {
        headers: { 'Retry-After': String(this.retryAfter) },
        logDetail: { bound, active: this.total },
      }),
    };
  }
}

function decrement(map: Map<string, number>, key: string): void {
  const n = (map.get(key) ?? 0) - 1;
  if (n > 0) map.set(key, n);
  else map.delete(key);
}
