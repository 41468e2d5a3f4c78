import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Structured JSON logs. Policy: credentials never reach a log line, whichever module logs them:
 * these paths are redacted at the logger itself.
 */
export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { svc: 'trustgate' },
      redact: {
        paths: [
          'req.headers.authorization',
          'req.headers.cookie',
          'headers.authorization',
          'password',
          'token',
          'access_token',
          'refresh_token',
          '*.password',
          '*.token',
          '*.secret',
        ],
        censor: '[redacted]',
      },
    },
    destination as pino.DestinationStream | undefined,
  );
}
