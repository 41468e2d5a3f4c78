/**
 * docs/grafana-dashboard.json and the PromQL in docs/dashboards.md name only metrics (and labels)
 * that the server registers, so a renamed metric breaks this test rather than a dashboard.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { Metrics } from '../../src/server/metrics.js';
import { repoRoot } from '../helpers/fixtures.js';

const ROOT = repoRoot();

async function registered(): Promise<Map<string, Set<string>>> {
  const m = new Metrics();
  const out = new Map<string, Set<string>>();
  for (const metric of await m.registry.getMetricsAsJSON()) out.set(metric.name, new Set());
  // Label names come from the metric objects themselves.
  for (const v of Object.values(m)) {
    const o = v as { name?: string; labelNames?: readonly string[] };
    if (typeof o?.name === 'string' && out.has(o.name))
      for (const l of o.labelNames ?? []) out.get(o.name)!.add(l);
  }
  return out;
}

/** Every `trustgate_*` name in a query, with histogram suffixes removed, and its `by (…)` labels. */
function used(text: string): Array<{ metric: string; labels: string[] }> {
  const out: Array<{ metric: string; labels: string[] }> = [];
  for (const line of text.split('\n')) {
    const labels = [...line.matchAll(/by \(([^)]*)\)/g)].flatMap((m) =>
      m[1]!.split(',').map((s) => s.trim()),
    );
    const selectorLabels = [...line.matchAll(/\{([^}]*)\}/g)].flatMap((m) =>
      m[1]!
        .split(',')
        .map((s) => s.split(/[=!~]/)[0]!.trim())
        .filter((s) => /^[a-z_]+$/.test(s)),
    );
    for (const m of line.matchAll(/\btrustgate_[a-z_]+/g))
      out.push({
        metric: m[0].replace(/_(bucket|count|sum)$/, ''),
        labels: [...labels, ...selectorLabels].filter((l) => l !== 'le' && l !== 'instance'),
      });
  }
  return out;
}

describe('dashboards', () => {
  it('the Grafana dashboard is valid JSON and queries only registered metrics and labels', async () => {
    const known = await registered();
    const dash = JSON.parse(readFileSync(path.join(ROOT, 'docs', 'grafana-dashboard.json'), 'utf8')) as {
      panels: Array<{ title: string; targets: Array<{ expr: string }> }>;
    };
    assert.ok(dash.panels.length >= 10);
    const problems: string[] = [];
    for (const p of dash.panels)
      for (const t of p.targets)
        for (const u of used(t.expr)) {
          const labels = known.get(u.metric);
          if (!labels) problems.push(`${p.title}: unknown metric ${u.metric}`);
          else
            for (const l of u.labels)
              if (!labels.has(l)) problems.push(`${p.title}: ${u.metric} has no label ${l}`);
        }
    assert.deepEqual(problems, []);
  });

  it('docs/dashboards.md names only registered metrics, and documents every one', async () => {
    const known = await registered();
    const md = readFileSync(path.join(ROOT, 'docs', 'dashboards.md'), 'utf8');
    const names = new Set(used(md).map((u) => u.metric));
    assert.deepEqual(
      [...names].filter((n) => !known.has(n)),
      [],
    );
    assert.deepEqual(
      [...known.keys()].filter((n) => n.startsWith('trustgate_') && !names.has(n)),
      [],
    );
  });
});
