// Writes docs/grafana-dashboard.json from the panel queries of docs/dashboards.md.
// Run: node scripts/make-grafana-dashboard.mjs
import { writeFileSync } from 'node:fs';

const ds = { type: 'prometheus', uid: '${DS_PROMETHEUS}' };
let id = 0;
const panels = [];
let y = 0;
function panel(title, targets, o = {}) {
  const w = o.w ?? 12;
  const x = o.x ?? 0;
  panels.push({
    id: ++id,
    title,
    type: o.type ?? 'timeseries',
    datasource: ds,
    gridPos: { h: o.h ?? 8, w, x, y },
    fieldConfig: { defaults: { unit: o.unit ?? 'short', ...(o.defaults ?? {}) }, overrides: [] },
    options: o.options ?? { legend: { displayMode: 'table', placement: 'right', calcs: ['lastNotNull'] } },
    targets: targets.map(([expr, legendFormat], i) => ({
      datasource: ds,
      refId: String.fromCharCode(65 + i),
      expr,
      legendFormat,
    })),
  });
  if (x + w >= 24) y += o.h ?? 8;
}
const q = (p, m, by) =>
  `histogram_quantile(${p}, sum by (le${by ? ', ' + by : ''}) (rate(${m}_bucket[$__rate_interval])))`;

panel('Registry reachable (min over replicas)', [['min(trustgate_upstream_up)', 'registry']], {
  type: 'stat',
  w: 6,
  h: 4,
  unit: 'bool_yes_no',
  options: { reduceOptions: { calcs: ['lastNotNull'] } },
});
panel('Redis reachable (min over replicas)', [['min(trustgate_redis_up)', 'redis']], {
  type: 'stat',
  w: 6,
  h: 4,
  x: 6,
  unit: 'bool_yes_no',
  options: { reduceOptions: { calcs: ['lastNotNull'] } },
});
panel('Requests/s', [['sum(rate(trustgate_requests_total[$__rate_interval]))', 'req/s']], {
  type: 'stat',
  w: 6,
  h: 4,
  x: 12,
  unit: 'reqps',
  options: { reduceOptions: { calcs: ['lastNotNull'] } },
});
panel(
  '5xx ratio',
  [
    [
      'sum(rate(trustgate_requests_total{status=~"5.."}[$__rate_interval])) / sum(rate(trustgate_requests_total[$__rate_interval]))',
      '5xx',
    ],
  ],
  {
    type: 'stat',
    w: 6,
    h: 4,
    x: 18,
    unit: 'percentunit',
    options: { reduceOptions: { calcs: ['lastNotNull'] } },
  },
);
panel(
  'Request rate by route and status',
  [['sum by (route, status) (rate(trustgate_requests_total[$__rate_interval]))', '{{route}} {{status}}']],
  { unit: 'reqps' },
);
panel(
  'Request latency by route (p50, p99)',
  [
    [q(0.5, 'trustgate_request_duration_seconds', 'route'), 'p50 {{route}}'],
    [q(0.99, 'trustgate_request_duration_seconds', 'route'), 'p99 {{route}}'],
  ],
  { x: 12, unit: 's' },
);
panel(
  'Decisions by verdict and reason',
  [
    [
      'sum by (verdict, reason) (rate(trustgate_decisions_total[$__rate_interval]))',
      '{{verdict}} {{reason}}',
    ],
  ],
  { unit: 'ops' },
);
panel(
  'Verification latency (cold) and rate',
  [
    [q(0.5, 'trustgate_verify_duration_seconds'), 'p50'],
    [q(0.99, 'trustgate_verify_duration_seconds'), 'p99'],
    ['sum(rate(trustgate_verify_duration_seconds_count[$__rate_interval]))', 'verifications/s'],
  ],
  { x: 12, unit: 's', defaults: {} },
);
panel(
  'Upstream latency by kind (p50, p99)',
  [
    [q(0.5, 'trustgate_upstream_duration_seconds', 'kind'), 'p50 {{kind}}'],
    [q(0.99, 'trustgate_upstream_duration_seconds', 'kind'), 'p99 {{kind}}'],
  ],
  { unit: 's' },
);
panel(
  'Cache hit ratio per tier',
  [
    [
      'sum by (tier) (rate(trustgate_cache_requests_total{result="hit"}[$__rate_interval])) / sum by (tier) (rate(trustgate_cache_requests_total[$__rate_interval]))',
      '{{tier}}',
    ],
  ],
  { x: 12, unit: 'percentunit', defaults: { min: 0, max: 1 } },
);
panel(
  'Cache lookups by tier and result',
  [['sum by (tier, result) (rate(trustgate_cache_requests_total[$__rate_interval]))', '{{tier}} {{result}}']],
  { unit: 'ops' },
);
panel(
  'Redis and registry health per replica',
  [
    ['min by (instance) (trustgate_redis_up)', 'redis {{instance}}'],
    ['min by (instance) (trustgate_upstream_up)', 'registry {{instance}}'],
  ],
  { x: 12, unit: 'short', defaults: { min: 0, max: 1 } },
);
panel(
  'Bytes streamed by direction',
  [['sum by (direction) (rate(trustgate_bytes_streamed_total[$__rate_interval]))', '{{direction}}']],
  { w: 24, unit: 'Bps' },
);

const dashboard = {
  __inputs: [
    {
      name: 'DS_PROMETHEUS',
      label: 'Prometheus',
      type: 'datasource',
      pluginId: 'prometheus',
      pluginName: 'Prometheus',
    },
  ],
  __requires: [{ type: 'datasource', id: 'prometheus', name: 'Prometheus', version: '1.0.0' }],
  title: 'trustgate',
  uid: 'trustgate',
  description: 'trustgate: requests, trust decisions, verification, cache, upstream (docs/dashboards.md)',
  tags: ['trustgate', 'registry'],
  timezone: 'browser',
  schemaVersion: 39,
  version: 1,
  editable: true,
  refresh: '30s',
  time: { from: 'now-6h', to: 'now' },
  templating: { list: [] },
  annotations: { list: [] },
  panels,
};
writeFileSync(
  new URL('../docs/grafana-dashboard.json', import.meta.url),
  JSON.stringify(dashboard, null, 2) + '\n',
);
