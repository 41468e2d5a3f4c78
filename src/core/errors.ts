/**
 * The one error table of trustgate. Every refusal, at any step of the pipeline, is a GateError
 * made from a named descriptor of ERRORS, which fixes both the OCI error code the client reads and
 * the HTTP status it gets (as distribution's errcode descriptors do): no call site chooses a
 * status. `server/respond.ts` is the one place that writes it as the OCI distribution error JSON.
 *
 * Failures that are not a refusal of the client (the registry behind trustgate unreachable, or
 * answering too much) are InternalFailures: adapters throw and catch them by kind, and only the
 * edge (toGateError, called by the writer) turns them into what a client sees.
 *
 * `message` is for the client (actionable, says what and why, never secrets);
 * `logDetail` is for the log only.
 */

/** OCI distribution spec error codes (plus distribution's UNAVAILABLE/UNKNOWN for 5xx). */
export type OciErrorCode =
  | 'BLOB_UNKNOWN'
  | 'BLOB_UPLOAD_INVALID'
  | 'BLOB_UPLOAD_UNKNOWN'
  | 'DIGEST_INVALID'
  | 'MANIFEST_BLOB_UNKNOWN'
  | 'MANIFEST_INVALID'
  | 'MANIFEST_UNKNOWN'
  | 'NAME_INVALID'
  | 'NAME_UNKNOWN'
  | 'SIZE_INVALID'
  | 'UNAUTHORIZED'
  | 'DENIED'
  | 'UNSUPPORTED'
  | 'TOOMANYREQUESTS'
  | 'UNAVAILABLE'
  | 'UNKNOWN';

export interface ErrorDescriptor {
  /** The code in the OCI error body. */
  readonly code: OciErrorCode;
  /** The HTTP status of the answer. */
  readonly status: number;
}

/**
 * Every answer trustgate can refuse with. A descriptor named after an OCI code answers with that
 * code's status as distribution registers it; the others name what trustgate refuses that the
 * spec has no code of its own for, with the closest OCI code and the HTTP status that says it.
 */
export const ERRORS = {
  BLOB_UNKNOWN: { code: 'BLOB_UNKNOWN', status: 404 },
  BLOB_UPLOAD_INVALID: { code: 'BLOB_UPLOAD_INVALID', status: 400 },
  BLOB_UPLOAD_UNKNOWN: { code: 'BLOB_UPLOAD_UNKNOWN', status: 404 },
  DIGEST_INVALID: { code: 'DIGEST_INVALID', status: 400 },
  // 400 as distribution registers it (a PUT naming a blob the registry lacks is the client's error).
  MANIFEST_BLOB_UNKNOWN: { code: 'MANIFEST_BLOB_UNKNOWN', status: 400 },
  MANIFEST_INVALID: { code: 'MANIFEST_INVALID', status: 400 },
  MANIFEST_UNKNOWN: { code: 'MANIFEST_UNKNOWN', status: 404 },
  NAME_INVALID: { code: 'NAME_INVALID', status: 400 },
  NAME_UNKNOWN: { code: 'NAME_UNKNOWN', status: 404 },
  SIZE_INVALID: { code: 'SIZE_INVALID', status: 400 },
  UNAUTHORIZED: { code: 'UNAUTHORIZED', status: 401 },
  DENIED: { code: 'DENIED', status: 403 },
  /** A method the route does not have. */
  UNSUPPORTED: { code: 'UNSUPPORTED', status: 405 },
  TOOMANYREQUESTS: { code: 'TOOMANYREQUESTS', status: 429 },
  UNAVAILABLE: { code: 'UNAVAILABLE', status: 503 },
  UNKNOWN: { code: 'UNKNOWN', status: 500 },

  /** A malformed request: path, query, parameter, header, key or body the operation cannot take. */
  BAD_REQUEST: { code: 'UNSUPPORTED', status: 400 },
  /** A path that is no endpoint of trustgate (registry API, token or admin). */
  NO_SUCH_ENDPOINT: { code: 'UNSUPPORTED', status: 404 },
  /** The request head did not arrive in time. */
  REQUEST_TIMEOUT: { code: 'UNSUPPORTED', status: 408 },
  /** The admin API cannot do this in this deployment (e.g. no accounts file configured). */
  NOT_CONFIGURED: { code: 'UNSUPPORTED', status: 409 },
  /** Another change to the same object is under way: try again. */
  CHANGE_IN_PROGRESS: { code: 'UNAVAILABLE', status: 409 },
  /** A request body over its limit (refused, never truncated). */
  BODY_TOO_LARGE: { code: 'SIZE_INVALID', status: 413 },
  /** A manifest PUT over the registry's 4 MiB limit. */
  MANIFEST_TOO_LARGE: { code: 'MANIFEST_INVALID', status: 413 },
  /** A body in an encoding or type the route does not take (forms, compressed bodies). */
  UNSUPPORTED_MEDIA_TYPE: { code: 'UNSUPPORTED', status: 415 },
  /** A request header section over its limit. */
  HEADERS_TOO_LARGE: { code: 'UNSUPPORTED', status: 431 },
  /** The client went away before its body ended (nobody reads the answer; the log does). */
  CLIENT_ABORTED: { code: 'UNKNOWN', status: 400 },
  /** The registry behind trustgate answered something unusable (a broken, oversized or wrong answer). */
  UPSTREAM_FAILED: { code: 'UNAVAILABLE', status: 502 },
} as const satisfies Record<string, ErrorDescriptor>;

export type ErrorName = keyof typeof ERRORS;

export interface GateErrorOptions {
  /** Structured detail sent to the client in `detail` (must be safe to show). */
  detail?: unknown;
  /** Extra response headers, e.g. WWW-Authenticate on 401 or Retry-After on 429. */
  headers?: Record<string, string>;
  /** Detail for the log only. */
  logDetail?: unknown;
  cause?: unknown;
}

export class GateError extends Error {
  /** The descriptor this error was made from. */
  readonly descriptor: ErrorName;
  readonly code: OciErrorCode;
  readonly status: number;
  readonly detail: unknown;
  readonly headers: Record<string, string>;
  readonly logDetail: unknown;

  constructor(name: ErrorName, message: string, opts: GateErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'GateError';
    this.descriptor = name;
    this.code = ERRORS[name].code;
    this.status = ERRORS[name].status;
    this.detail = opts.detail;
    this.headers = opts.headers ?? {};
    this.logDetail = opts.logDetail;
  }

  /** The OCI error body: `{"errors":[{"code","message","detail"}]}`. */
  toBody(): { errors: Array<{ code: OciErrorCode; message: string; detail?: unknown }> } {
    const entry: { code: OciErrorCode; message: string; detail?: unknown } = {
      code: this.code,
      message: this.message,
    };
    if (this.detail !== undefined) entry.detail = this.detail;
    return { errors: [entry] };
  }
}

/** A malformed request (400). The one shared constructor for the many places that refuse input. */
export function badRequest(message: string, opts?: GateErrorOptions): GateError {
  return new GateError('BAD_REQUEST', message, opts);
}

/** Failures inside trustgate or behind it, each mapped to one descriptor at the edge. */
const INTERNAL = {
  /** The registry could not be reached (connection refused, no such host): retry later. */
  'upstream-unreachable': 'UNAVAILABLE',
  /** The registry broke off or answered garbage. */
  'upstream-failed': 'UPSTREAM_FAILED',
  /** The registry's answer was over the bound trustgate reads (a reader skips or refuses it). */
  'upstream-body-too-large': 'UPSTREAM_FAILED',
  /** The registry's bytes do not hash to the digest asked for. */
  'upstream-digest-mismatch': 'UPSTREAM_FAILED',
} as const satisfies Record<string, ErrorName>;

export type InternalFailureKind = keyof typeof INTERNAL;

/**
 * A failure that is no refusal of the client: adapters throw it and decide on its `kind` (never on
 * an OCI code), and toGateError maps it to what the client sees. `message` is safe to show.
 */
export class InternalFailure extends Error {
  readonly kind: InternalFailureKind;
  readonly logDetail: unknown;

  constructor(
    kind: InternalFailureKind,
    message: string,
    opts: { logDetail?: unknown; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'InternalFailure';
    this.kind = kind;
    this.logDetail = opts.logDetail;
  }
}

/** True when `err` is an InternalFailure of that kind. */
export function isInternalFailure(err: unknown, kind?: InternalFailureKind): err is InternalFailure {
  return err instanceof InternalFailure && (kind === undefined || err.kind === kind);
}

/**
 * The edge: anything thrown becomes the GateError a client sees. Internal failures map through
 * their kind; unknown errors become a generic 500 whose cause is only logged.
 */
export function toGateError(err: unknown): GateError {
  if (err instanceof GateError) return err;
  if (err instanceof InternalFailure) {
    return new GateError(INTERNAL[err.kind], err.message, {
      logDetail: err.logDetail ?? { kind: err.kind },
      cause: err,
    });
  }
  return new GateError('UNKNOWN', 'internal error', { logDetail: String(err), cause: err });
}
