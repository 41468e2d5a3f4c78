// Runs every compiled test file under dist/test with node's own test runner.
// Node 20's --test takes no globs, so the file list is built here.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

function find(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...find(p));
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const only = process.argv.slice(2);
const files = find('dist/test')
  .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
  .sort();
if (files.length === 0) {
  console.error('no test files found under dist/test');
  process.exit(1);
}
// Safety nets so a stuck test can never hold CI: each test has at most 10 minutes and the whole
// run is killed after 30 minutes (a normal run takes about 2). Not --test-force-exit: on Node 20
// it ended a file while tests were still pending (3 route property tests silently did not run).
const r = spawnSync(
  process.execPath,
  ['--test', '--test-concurrency=2', '--test-reporter=spec', '--test-timeout=600000', ...files],
  { stdio: 'inherit', timeout: 30 * 60 * 1000, killSignal: 'SIGKILL' },
);
if (r.error) console.error(`test run stopped: ${r.error.message}`);
process.exit(r.status ?? 1);
