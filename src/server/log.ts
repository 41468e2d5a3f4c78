import { pino, type Logger, type LoggerOptions } from 'pino';
import { redactText, redactValue } from '../core/redact.js';

export type { Logger };

/**
 * The options of every trustgate logger (the main one and the audit file's). Policy: credentials
 * never reach a log line, whichever module logs them: every log call goes through core/redact.ts
 * at the logger itself (the merged object and the message), so a path with `?access_token=` or
 * `_state=`, an Authorization header, a password or robot secret field, or a token quoted in an
 * error is redacted before it is written. The pino `redact` paths stay as a second net.
 */
export function loggerOptions(level: string): LoggerOptions {
  return {
    level,
    base: { svc: 'trustgate' },
    hooks: {
      logMethod(args, method) {
        const out = (args as unknown[]).map((a, i) =>
          typeof a === 'string' ? redactText(a) : i === 0 ? redactValue(a) : a,
        );
        method.apply(this, out as Parameters<typeof method>);
      },
    },
    redact: {
      paths: [
        'req.headers.authorization',
        'req.headers.cookie',
        'headers.authorization',
        'headers["proxy-authorization"]',
        'password',
        'token',
        'access_token',
        'refresh_token',
        'client_secret',
        'secret',
        'hmacSecret',
        '*.password',
        '*.token',
        '*.secret',
        '*.hmacSecret',
      ],
      censor: '[redacted]',
    },
  };
}

/** Structured JSON logs (see loggerOptions for what is redacted). */
export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(loggerOptions(level), destination as pino.DestinationStream | undefined);
}
