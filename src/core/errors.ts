/**
 * The one error type of trustgate. Every refusal, at any step of the pipeline, is a GateError;
 * `server/respond.ts` is the one place that turns it into the OCI distribution error JSON.
 *
 * `message` is for the client (actionable, says what and why, never secrets);
 * `logDetail` is for the log only.
 */

/** OCI distribution spec error codes (plus distribution's UNAVAILABLE/UNKNOWN for 5xx). */
export const ociErrorStatus = {
  BLOB_UNKNOWN: 404,
  BLOB_UPLOAD_INVALID: 400,
  BLOB_UPLOAD_UNKNOWN: 404,
  DIGEST_INVALID: 400,
  MANIFEST_BLOB_UNKNOWN: 404,
  MANIFEST_INVALID: 400,
  MANIFEST_UNKNOWN: 404,
  NAME_INVALID: 400,
  NAME_UNKNOWN: 404,
  SIZE_INVALID: 400,
  UNAUTHORIZED: 401,
  DENIED: 403,
  UNSUPPORTED: 405,
  TOOMANYREQUESTS: 429,
  UNAVAILABLE: 503,
  UNKNOWN: 500,
} as const;

export type OciErrorCode = keyof typeof ociErrorStatus;

export interface GateErrorOptions {
  /** Overrides the table's HTTP status (e.g. 502 for an upstream that answered garbage, 404 for unknown routes). */
  status?: number;
  /** Structured detail sent to the client in `detail` (must be safe to show). */
  detail?: unknown;
  /** Extra response headers, e.g. WWW-Authenticate on 401 or Retry-After on 429. */
  headers?: Record<string, string>;
  /** Detail for the log only. */
  logDetail?: unknown;
  cause?: unknown;
}

export class GateError extends Error {
  readonly code: OciErrorCode;
  readonly status: number;
  readonly detail: unknown;
  readonly headers: Record<string, string>;
  readonly logDetail: unknown;

  constructor(code: OciErrorCode, message: string, opts: GateErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'GateError';
    this.code = code;
    this.status = opts.status ?? ociErrorStatus[code];
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

/** Wraps anything thrown into a GateError; unknown errors become a generic 500 whose cause is only logged. */
export function toGateError(err: unknown): GateError {
  if (err instanceof GateError) return err;
  return new GateError('UNKNOWN', 'internal error', { logDetail: String(err), cause: err });
}
