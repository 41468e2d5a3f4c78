/**
 * Issue 17, part 2: every configuration key says what a SIGHUP does with it. The walk covers every
 * leaf key of the schema, so a key added without a declaration fails here, with the line to add.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { configLeaves, planReload } from '../../src/config/reloads.js';
import { configSchema, type Config } from '../../src/config/schema.js';

const base = (): Config =>
  configSchema.parse({
    tls: { cert: '/c.pem', key: '/k.pem' },
    upstream: { url: 'http://127.0.0.1:5000' },
  });

const leaves = configLeaves(configSchema);

describe('config reload rules (issue 17, composition root)', () => {
  it('every key of the schema declares reloadable or restart-only', () => {
    const missing = leaves.filter((l) => l.rule === undefined).map((l) => l.path.join('.'));
    assert.deepEqual(
      missing,
      [],
      `config keys without a reload rule: ${missing.join(', ')}.\n` +
        "In src/config/schema.ts wrap each key's whole schema (outermost, after .default/.optional/.refine) in\n" +
        "  reloadable(z…, 'how a SIGHUP applies it')   when the running process reads it through src/server/live.ts\n" +
        '                                              (or is reconfigured in reload() in src/server/main.ts), or\n' +
        "  restartOnly(z…, 'why it needs a restart')   when the part that uses it is built at start\n" +
        '(a whole new section, e.g. trust.sigstore, may be declared at once the same way: its keys then share the rule),\n' +
        'add a test that a SIGHUP changing a reloadable key takes effect (test/server/reload.test.ts), and\n' +
        'list it in docs/operating.md, "Signals: reload and drain".',
    );
    assert.ok(leaves.length > 40, `walked only ${leaves.length} keys`);
  });

  it('docs/operating.md lists every key with what a SIGHUP does with it', () => {
    const docs = readFileSync('docs/operating.md', 'utf8');
    const section = docs.slice(docs.indexOf('## Signals: reload and drain'));
    const rows = section.split('\n').filter((l) => l.startsWith('| `'));
    const missing: string[] = [];
    for (const leaf of leaves) {
      const name = leaf.path.join('.');
      const row = rows.find((r) => r.split('|')[1]!.includes(`\`${name}\``));
      if (
        !row
          ?.split('|')[2]!
          .trim()
          .startsWith(leaf.rule?.reload ?? '?')
      )
        missing.push(`${name} (${leaf.rule?.reload})`);
    }
    assert.deepEqual(
      missing,
      [],
      `keys missing from the table in docs/operating.md, "Signals: reload and drain", or under the wrong rule: ${missing.join(', ')}. ` +
        'Add each to the row of keys of the same kind, or a row of its own: | `the.key` | reloadable: how | or | `the.key` | restart-only: why |',
    );
  });

  it('the walk reaches nested keys and stops at lists and maps, which are declared whole', () => {
    const names = leaves.map((l) => l.path.join('.'));
    for (const k of ['listen.port', 'auth.tokenTtlSeconds', 'manifests.layerUrls.allow', 'metrics.port']) {
      assert.ok(names.includes(k), k);
    }
    for (const k of ['trust.rules', 'policy.groups', 'policy.access']) assert.ok(names.includes(k), k);
    assert.ok(!names.some((n) => n.startsWith('trust.rules.') || n.startsWith('policy.groups.')));
  });

  it('decisions: the keys a SIGHUP used to ignore silently are now applied or named (docs/operating.md)', () => {
    const rule = (k: string): string | undefined => leaves.find((l) => l.path.join('.') === k)?.rule?.reload;
    for (const k of [
      'auth.tokenTtlSeconds',
      'auth.refreshTtlSeconds',
      'auth.issuer',
      'auth.service',
      'trust.keysDir',
      'publicUrl',
      'log.level',
      'shutdownGraceSeconds',
    ]) {
      assert.equal(rule(k), 'reloadable', k);
    }
    for (const k of [
      'metrics.host',
      'metrics.port',
      'log.auditFile',
      'auth.tokenKeyDir',
      'auth.signingKid',
    ]) {
      assert.equal(rule(k), 'restart-only', k);
    }
  });

  it('changing any one key: the plan names exactly that key, and keeps the running value of a restart-only one', () => {
    for (const leaf of leaves) {
      const running = base();
      const next = structuredClone(running) as unknown as Record<string, unknown>;
      // A value no key holds; the plan compares values, it does not validate them.
      let section = next;
      for (const k of leaf.path.slice(0, -1)) {
        section[k] ??= {};
        section = section[k] as Record<string, unknown>;
      }
      const marker = `changed:${leaf.path.join('.')}`;
      section[leaf.path[leaf.path.length - 1]!] = marker;
      const plan = planReload(configSchema, running, next as unknown as Config);
      const name = leaf.path.join('.');
      const got = leaf.path.reduce<unknown>(
        (o, k) => (o as Record<string, unknown> | undefined)?.[k],
        plan.effective,
      );
      if (leaf.rule?.reload === 'reloadable') {
        assert.deepEqual([plan.applied, plan.needRestart], [[name], []], name);
        assert.equal(got, marker, `${name}: the new value is in force`);
      } else {
        assert.deepEqual([plan.applied, plan.needRestart], [[], [name]], name);
        assert.deepEqual(
          got,
          leaf.path.reduce<unknown>((o, k) => (o as Record<string, unknown>)?.[k], running),
          name,
        );
      }
    }
  });

  it('metrics turned on by a reload: both keys named, the running config keeps no metrics section', () => {
    const running = base();
    const next = { ...running, metrics: { host: '127.0.0.1', port: 9100 }, publicUrl: 'https://r.example' };
    const plan = planReload(configSchema, running, next);
    assert.deepEqual(plan.needRestart.sort(), ['metrics.host', 'metrics.port']);
    assert.deepEqual(plan.applied, ['publicUrl']);
    assert.equal(plan.effective.metrics, undefined);
    assert.equal(plan.effective.publicUrl, 'https://r.example');
    assert.deepEqual(
      configSchema.parse(plan.effective),
      plan.effective,
      'the effective config is valid as it is',
    );
  });

  it('an unchanged file plans nothing', () => {
    const plan = planReload(configSchema, base(), base());
    assert.deepEqual([plan.applied, plan.needRestart, plan.undeclared], [[], [], []]);
  });
});
