/**
 * What a gate without Redis loads at start: the server and config modules, imported in a fresh
 * Node process whose resolutions are recorded, never load node-redis (about 10 MiB of idle RSS on
 * Node 24; it is loaded by the first RedisVerdictCache, test/cache/redis-cache.test.ts uses it).
 * Memory itself is measured by bench/rss.ts.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { it } from 'node:test';
import { repoRoot } from '../helpers/fixtures.js';

it('importing the server and its config loader resolves no module of node-redis', () => {
  const dist = path.join(repoRoot(), 'dist', 'src');
  const script = `
    import { registerHooks } from 'node:module';
    const seen = [];
    registerHooks({ resolve(spec, ctx, next) { const r = next(spec, ctx); seen.push(r.url); return r; } });
    await import(${JSON.stringify(pathToFileURL(path.join(dist, 'server', 'main.js')).href)});
    await import(${JSON.stringify(pathToFileURL(path.join(dist, 'config', 'load.js')).href)});
    process.stdout.write(JSON.stringify(seen));
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const seen = JSON.parse(r.stdout) as string[];
  // The recording works: the server's own modules and its always-needed libraries are there.
  assert.ok(seen.some((u) => u.endsWith('/dist/src/cache/redis-cache.js')));
  assert.ok(seen.some((u) => u.includes('/node_modules/pino/')));
  const redis = seen.filter((u) => /\/node_modules\/(redis|@redis\/[^/]+)\//.test(u));
  assert.deepEqual(redis, []);
});
