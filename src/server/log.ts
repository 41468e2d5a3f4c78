import { pino, type Logger, type LoggerOptions } from 'pino';
import { redactText, redactValue } from '../core/redact.js';

export type { Logger };

/**
 * The options of every trustgate logger (the main one and the audit file's). Policy: credentials
 * never reach a log line, whichever module logs them: every log call goes through core/redact.ts
 * at the logger itself (the merged object and the message), and so do a child logger's bindings
 * (createLogger), so a path with `?access_token=` or `_state=`, an Authorization header, a
 * password or robot secret field, or a token quoted in an error is redacted before it is written,
 * at any depth.
 *
 * pino's own `redact` paths are not used: they named a subset of the same keys (redactValue
 * matches them at any depth, in any case), and cost 12 µs of the 28 µs that one audit line took,
 * on every request (issue 18; bench/README.md, session 5).
 */
function loggerOptions(level: string): LoggerOptions {
  return {
    ...plainOptions(level),
    hooks: {
      logMethod(args, method) {
        const out = (args as unknown[]).map((a, i) =>
          typeof a === 'string' ? redactText(a) : i === 0 ? redactValue(a) : a,
        );
        method.apply(this, out as Parameters<typeof method>);
      },
    },
  };
}

function plainOptions(level: string): LoggerOptions {
  return { level, base: { svc: 'trustgate' } };
}

/** Structured JSON logs (see loggerOptions for what is redacted). */
export function createLogger(
  level: string,
  destination?: NodeJS.WritableStream | pino.DestinationStream,
): Logger {
  const root = pino(loggerOptions(level), destination as pino.DestinationStream | undefined);
  // pino writes a child's bindings once, when the child is made, and never through
  // hooks.logMethod (nor formatters.bindings, which it resets for children): they are redacted
  // here. Children are made with Object.create(parent), so every descendant inherits this child().
  const pinoChild = root.child;
  root.child = function (this: Logger, bindings, options) {
    return pinoChild.call(this, redactValue(bindings) as pino.Bindings, options);
  } as typeof root.child;
  return root;
}

/**
 * The audit records' logger (server/audit.ts): the same JSON lines at info as createLogger's, but
 * without its per-call walk over the logged object. Policy: only Audit writes to it, and Audit
 * redacts each record itself, field by field, before it logs it (the walk cost about 25 µs of
 * CPU on every request under load; issue 18). On the main log's stream the records are told
 * apart by `stream: "audit"`; the lines of an audit file (log.auditFile) carry no such field.
 */
export function createAuditLogger(
  to: { file: pino.DestinationStream } | { mainLogStream: pino.DestinationStream | undefined },
): AuditLogger {
  if ('file' in to) return { logger: pino(plainOptions('info'), to.file) };
  return { logger: pino(plainOptions('info'), to.mainLogStream).child({ stream: 'audit' }) };
}

/** A logger only Audit may write to (its records are redacted by Audit, not by the logger). */
export interface AuditLogger {
  readonly logger: Logger;
}
