import type { Logger } from './log.js';

/** One audit event per decision: the record an auditor reads to see who got what and why. */
export interface AuditEvent {
  requestId: string;
  identity: string;
  client: string | undefined;
  action: string;
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
  constructor(private readonly log: Logger) {}

  decision(e: AuditEvent): void {
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
