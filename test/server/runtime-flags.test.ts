/**
 * The Node flags trustgate is started with (src/server/runtime-flags.ts): every place that starts
 * the service names exactly SERVE_NODE_FLAGS, this Node accepts them and they bound the young
 * generation, and `serve` can tell when it was started without them. Why the flag: the module's
 * comment and bench/README.md (session 5 memory); the memory itself is measured by bench/rss.ts.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { missingServeFlags, SERVE_NODE_FLAGS } from '../../src/server/runtime-flags.js';
import { repoRoot } from '../helpers/fixtures.js';

const root = repoRoot();
const read = (file: string): string => readFileSync(path.join(root, file), 'utf8');

describe('Node flags of the trustgate process', () => {
  it('the young-generation bound is among them', () => {
    assert.ok(SERVE_NODE_FLAGS.includes('--max-semi-space-size=2'));
  });

  it("the Dockerfile's ENTRYPOINT starts node with exactly these flags", () => {
    const m = /^ENTRYPOINT (\[.*\])$/m.exec(read('Dockerfile'));
    assert.ok(m, 'Dockerfile has an exec-form ENTRYPOINT');
    assert.deepEqual(JSON.parse(m[1]!), ['node', ...SERVE_NODE_FLAGS, 'dist/src/cli/main.js']);
  });

  it("the trustgate bin's shebang, in the source and in the build, passes them", () => {
    const shebang = `#!/usr/bin/env -S node ${SERVE_NODE_FLAGS.join(' ')}`;
    assert.equal(read('src/cli/main.ts').split('\n')[0], shebang);
    assert.equal(read('dist/src/cli/main.js').split('\n')[0], shebang);
  });

  it('npm start and the quickstart start serve with them', () => {
    const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string> };
    assert.equal(pkg.scripts['start'], `node ${SERVE_NODE_FLAGS.join(' ')} dist/src/cli/main.js serve`);
    const serveLines = read('scripts/quickstart.sh')
      .split('\n')
      .filter((l) => /dist\/src\/cli\/main\.js serve\b/.test(l));
    assert.equal(serveLines.length, 1);
    assert.ok(serveLines[0]!.startsWith(`node ${SERVE_NODE_FLAGS.join(' ')} dist/src/cli/main.js serve`));
  });

  it('this Node accepts them and they bound the young generation (2 semi-spaces of 2 MiB)', () => {
    // Allocates short-lived objects until V8 would have grown the young generation to its default
    // maximum (16 MiB semi-spaces on a machine with a few GiB), then reports its capacity.
    const script =
      "const v8 = require('node:v8'); let keep = []; " +
      'for (let i = 0; i < 3e6; i++) { const o = { i, a: [i] }; if (i % 64 === 0) keep.push(o); if (keep.length > 4096) keep = []; } ' +
      "const s = v8.getHeapSpaceStatistics().find((x) => x.space_name === 'new_space'); " +
      'process.stdout.write(String(s.space_size));';
    const r = spawnSync(process.execPath, [...SERVE_NODE_FLAGS, '-e', script], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.ok(Number(r.stdout) <= 4 * 1024 * 1024, `new space ${r.stdout} bytes`);
  });

  it('serve names the flags it was started without, and accepts an operator value', () => {
    assert.deepEqual(missingServeFlags([], undefined), ['--max-semi-space-size=2']);
    assert.deepEqual(missingServeFlags(['--enable-source-maps'], '--max-old-space-size=512'), [
      '--max-semi-space-size=2',
    ]);
    assert.deepEqual(missingServeFlags(['--max-semi-space-size=2'], undefined), []);
    assert.deepEqual(missingServeFlags([], '--trace-warnings --max-semi-space-size=4'), []);
    assert.deepEqual(missingServeFlags(['--max_semi_space_size=1'], ''), []);
  });
});
