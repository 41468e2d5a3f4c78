import { redactFlat, redactText, redactValue } from '../core/redact.js';
import type { AuditLogger } from './log.js';
import type { Metrics } from './metrics.js';

/** One audit event per decision: the record an auditor reads to see who got what and why. */
export interface AuditEvent {
  requestId: string;
  identity: string;
  client: string | undefined;
  action: string;
  method?: string;
  route: string;
  repo?: string;
  reference?: string;
  digest?: string;
  verdict: 'allow' | 'deny' | 'audit-allow' | 'error';
  reason: string;
  keys?: string[];
  status?: number;
  latencyMs?: number;
}

export class Audit {
  constructor(
    private readonly out: AuditLogger,
    private readonly metrics?: Metrics,
  ) {}

  decision(e: AuditEvent): void {
    this.metrics?.decisions.inc({ verdict: e.verdict, reason: e.reason });
    this.metrics?.requests.inc({ route: e.route, method: e.method ?? '', status: String(e.status ?? 0) });
    if (e.latencyMs !== undefined)
      this.metrics?.requestDuration.observe({ route: e.route }, e.latencyMs / 1000);
    // Policy: the audit logger does not redact (log.ts createAuditLogger): each record is redacted
    // here, by core/redact.ts's rules, before it is written.
    this.out.logger.info(
      redactFlat({ audit: 'decision', ...e }),
      redactText(`${e.verdict} ${e.action} ${e.repo ?? ''}`.trim()),
    );
  }

  adminChange(e: {
    requestId: string;
    identity: string;
    change: string;
    target: string;
    detail?: unknown;
  }): void {
    this.out.logger.info(
      redactValue({ audit: 'admin', ...e }) as Record<string, unknown>,
      redactText(`admin ${e.change} ${e.target}`),
    );
  }
}
