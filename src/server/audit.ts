import type { Logger } from './log.js';
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
    private readonly log: Logger,
    private readonly metrics?: Metrics,
  ) {}

  decision(e: AuditEvent): void {
    this.metrics?.decisions.inc({ verdict: e.verdict, reason: e.reason });
    this.metrics?.requests.inc({ route: e.route, method: e.method ?? '', status: String(e.status ?? 0) });
    if (e.latencyMs !== undefined)
      this.metrics?.requestDuration.observe({ route: e.route }, e.latencyMs / 1000);
    this.log.info({ audit: 'decision', ...e }, `${e.verdict} ${e.action} ${e.repo ?? ''}`.trim());
  }

  adminChange(e: {
    requestId: string;
    identity: string;
    change: string;
    target: string;
    detail?: unknown;
  }): void {
    this.log.info({ audit: 'admin', ...e }, `admin ${e.change} ${e.target}`);
  }
}
