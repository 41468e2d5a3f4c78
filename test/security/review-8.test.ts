/**
 * Review 8: adversarial review of the Sigstore trusted-root supply (issue 15: trust.sigstore,
 * src/trust/sigstore-roots.ts, `trustgate sigstore refresh`). Each attack is a test named HELD (the
 * defence stood) or fixed (…) (it failed on main 15fb429 and a fix is on this branch).
 *
 * The TUF repository is the TEST repository of test/helpers/tuf-repo.ts (metadata signed with
 * Ed25519 keys made in the test), served over loopback HTTP or read as a directory mirror; the
 * client is the real tuf-js updater inside SigstoreRoots. The only fakes are fault servers (an
 * endless timestamp), and they say so.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { parseConfig, ConfigError } from '../../src/config/load.js';
import type { SigstoreSource } from '../../src/config/schema.js';
import { SigstoreRoots } from '../../src/trust/sigstore-roots.js';
import { sigstoreCommand } from '../../src/cli/sigstore.js';
import { readShared } from '../helpers/fixtures.js';
import { TestTufRepository } from '../helpers/tuf-repo.js';
import { memoryIo } from '../cli/support.js';

const PUBLIC_GOOD = readShared('fixtures/sigstore-public-good/trusted_root.json');
const STAGING = readShared('fixtures/sigstore-public-good/staging/trusted_root.json');
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const quiet = { info: () => {}, warn: () => {}, error: () => {} };

const temps: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'trustgate-test-review8-'));
  temps.push(d);
  return d;
}
after(() => {
  for (const d of temps) rmSync(d, { recursive: true, force: true });
});

function repository(
  target: Buffer = PUBLIC_GOOD,
  name = 'trusted_root.json',
): { repo: TestTufRepository; pin: string } {
  const repo = new TestTufRepository();
  temps.push(repo.dir);
  repo.setTarget(name, target);
  const pin = path.join(tempDir(), 'root.json');
  writeFileSync(pin, repo.pinnedRoot);
  return { repo, pin };
}

type TufSource = Extract<SigstoreSource, { kind: 'tuf' }>;
function tufSource(mirror: string, pin: string, over: Partial<TufSource> = {}): TufSource {
  return {
    kind: 'tuf',
    name: 'review8',
    mirror,
    root: pin,
    cacheDir: tempDir(),
    target: 'trusted_root.json',
    refreshSeconds: 3600,
    timeoutSeconds: 5,
    ...over,
  };
}

/**
 * A guard so that a regression that hangs fails this test instead of hanging the suite (not a
 * timing measure: a correct refresh of a local directory ends at once).
 */
async function settlesWithin<T>(p: Promise<T>, ms: number): Promise<T | 'hung'> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<'hung'>((r) => {
    timer = setTimeout(() => r('hung'), ms);
  });
  try {
    return await Promise.race([p, hung]);
  } finally {
    clearTimeout(timer);
  }
}

describe('review 8: Sigstore trusted roots through TUF', () => {
  test('HELD rollback: an older, validly signed timestamp served after a newer one is refused; the newer root stays', async () => {
    const { repo, pin } = repository();
    const server = await repo.serve();
    const roots = new SigstoreRoots([tufSource(server.url, pin)], { log: quiet });
    try {
      await roots.start();
      assert.equal(roots.status()[0]?.sha256, sha(PUBLIC_GOOD));
      // The mirror's version-1 timestamp/snapshot/targets, kept aside.
      const oldTimestamp = readFileSync(path.join(repo.dir, 'timestamp.json'));
      repo.setTarget('trusted_root.json', STAGING);
      assert.deepEqual(await roots.refresh(), ['updated']);
      assert.equal(roots.status()[0]?.sha256, sha(STAGING));
      const version = roots.version();
      // The attacker serves the old (validly signed, unexpired) timestamp pointing at the old
      // snapshot and targets that list PUBLIC_GOOD.
      writeFileSync(path.join(repo.dir, 'timestamp.json'), oldTimestamp);
      assert.deepEqual(await roots.refresh(), ['failed']);
      assert.match(roots.status()[0]?.lastError ?? '', /version/i);
      assert.equal(roots.status()[0]?.sha256, sha(STAGING));
      assert.equal(roots.version(), version);
    } finally {
      await roots.stop();
      await server.close();
    }
  });

  test('HELD rollback through the cache: an older trusted_root.json planted as the last good copy is replaced by the TUF chain at start', async () => {
    const { repo, pin } = repository(STAGING);
    const server = await repo.serve();
    const source = tufSource(server.url, pin);
    // A first run keeps the verified copy; the attacker swaps in an older (valid) trusted root.
    const first = new SigstoreRoots([source], { log: quiet });
    await first.start();
    await first.stop();
    const cached = readdirSync(source.cacheDir).map((d) => path.join(source.cacheDir, d));
    const lastGood = path.join(cached[0]!, 'last-good.trusted_root.json');
    assert.deepEqual(readFileSync(lastGood), STAGING);
    writeFileSync(lastGood, PUBLIC_GOOD);
    const second = new SigstoreRoots([source], { log: quiet });
    try {
      await second.start();
      assert.equal(second.status()[0]?.sha256, sha(STAGING));
    } finally {
      await second.stop();
      await server.close();
    }
    // Policy (documented): with the mirror down, the cache directory is trusted like the config
    // (it holds the TUF root the chain continues from), so the planted copy would be used until
    // the next successful refresh; the cache must be as protected as the config (mode 0700).
  });

  test('HELD freeze (documented, unbounded): a mirror serving an expired timestamp fails every refresh; the last good root stays and the failure is visible', async () => {
    const { repo, pin } = repository();
    const server = await repo.serve();
    const events: string[] = [];
    const roots = new SigstoreRoots([tufSource(server.url, pin)], {
      log: quiet,
      observe: (e) => events.push(e.outcome),
    });
    try {
      await roots.start();
      const lastSuccess = roots.status()[0]?.lastSuccess;
      repo.expireTimestamp();
      assert.deepEqual(await roots.refresh(), ['failed']);
      assert.deepEqual(await roots.refresh(), ['failed']);
      const st = roots.status()[0];
      assert.equal(st?.ok, true);
      assert.match(st?.lastError ?? '', /expired/i);
      // lastSuccess does not move while frozen: the documented alert on
      // trustgate_sigstore_root_last_success_timestamp_seconds fires after a day.
      assert.equal(st?.lastSuccess, lastSuccess);
      assert.deepEqual(events, ['updated', 'failed', 'failed']);
    } finally {
      await roots.stop();
      await server.close();
    }
  });

  test("HELD huge metadata: an endless timestamp.json over HTTP is cut at tuf-js's length limit and the refresh fails (FAULT server)", async () => {
    const { pin } = repository();
    let written = 0;
    // A FAULT server: timestamp.json is an endless stream (bounded here at 64 MiB so the test
    // itself is bounded); everything else is 404.
    const server = http.createServer((req, res) => {
      if (!req.url?.endsWith('timestamp.json')) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      const pump = (): void => {
        while (written < 64 * 1024 * 1024) {
          written += chunk.length;
          if (!res.write(chunk)) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const roots = new SigstoreRoots([tufSource(url, pin)], { log: quiet });
    try {
      await roots.start();
      assert.equal(roots.status()[0]?.ok, false);
      assert.match(roots.status()[0]?.lastError ?? '', /length|exceed|max/i);
    } finally {
      await roots.stop();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  test('fixed (directory mirror reads a FIFO or device forever): a timestamp.json that is not a regular file is refused; the refresh ends and the last good root stays', async () => {
    const { repo, pin } = repository();
    const roots = new SigstoreRoots([tufSource(repo.dir, pin)], { log: quiet });
    try {
      await roots.start();
      assert.equal(roots.status()[0]?.sha256, sha(PUBLIC_GOOD));
      // The mirror's timestamp.json becomes a FIFO nobody writes to (or, the same bug, a symlink
      // to /dev/zero: size 0 at stat, then endless reads): before the fix open() blocked forever,
      // the refresh never ended, no later refresh ran (one at a time) and stop() hung.
      rmSync(path.join(repo.dir, 'timestamp.json'));
      execFileSync('mkfifo', [path.join(repo.dir, 'timestamp.json')]);
      const outcome = await settlesWithin(roots.refresh(), 20_000);
      assert.deepEqual(outcome, ['failed']);
      assert.match(roots.status()[0]?.lastError ?? '', /regular file/);
      assert.equal(roots.status()[0]?.sha256, sha(PUBLIC_GOOD));
      rmSync(path.join(repo.dir, 'timestamp.json'));
      symlinkSync('/dev/zero', path.join(repo.dir, 'timestamp.json'));
      assert.deepEqual(await settlesWithin(roots.refresh(), 20_000), ['failed']);
      assert.match(roots.status()[0]?.lastError ?? '', /regular file/);
    } finally {
      // The FIFO is gone before stop() so a broken build cannot hang here.
      rmSync(path.join(repo.dir, 'timestamp.json'), { force: true });
      await settlesWithin(roots.stop(), 20_000);
    }
  });

  test('HELD symlink out of the directory mirror: a target linked to a file outside is still checked against the signed hash', async () => {
    const { repo, pin } = repository();
    const roots = new SigstoreRoots([tufSource(repo.dir, pin)], { log: quiet });
    try {
      await roots.start();
      repo.setTarget('trusted_root.json', STAGING);
      const outside = path.join(tempDir(), 'evil.json');
      writeFileSync(outside, PUBLIC_GOOD);
      const served = path.join(repo.dir, 'targets', `${sha(STAGING)}.trusted_root.json`);
      rmSync(served);
      symlinkSync(outside, served);
      assert.deepEqual(await roots.refresh(), ['failed']);
      assert.equal(roots.status()[0]?.sha256, sha(PUBLIC_GOOD));
    } finally {
      await roots.stop();
    }
  });

  test('HELD path traversal: a target named ../../escape in signed targets metadata and in the config writes nothing outside cacheDir', async () => {
    const name = '../../escape';
    const { repo, pin } = repository(PUBLIC_GOOD, name);
    const server = await repo.serve();
    const outer = tempDir();
    const cacheDir = path.join(outer, 'a', 'b', 'cache');
    mkdirSync(cacheDir, { recursive: true });
    for (const mirror of [server.url, repo.dir]) {
      const roots = new SigstoreRoots([tufSource(mirror, pin, { cacheDir, target: name })], { log: quiet });
      try {
        await roots.start();
        // Whatever the outcome (the hash-named URL leaves targets/), no file lands outside cacheDir.
        const stray = readdirSync(outer, { recursive: true })
          .map(String)
          .filter((f) => !f.startsWith(path.join('a', 'b')) && f !== 'a');
        assert.deepEqual(stray, []);
        assert.deepEqual(readdirSync(path.join(outer, 'a')), ['b']);
        assert.deepEqual(readdirSync(path.join(outer, 'a', 'b')), ['cache']);
        const st = roots.status()[0];
        if (st?.ok) assert.equal(st.sha256, sha(PUBLIC_GOOD));
      } finally {
        await roots.stop();
      }
    }
    await server.close();
  });

  test('HELD widening through the chain: a signed trusted_root.json whose tlog has no validFor.start is refused; the last good stays', async () => {
    const { repo, pin } = repository();
    const server = await repo.serve();
    const roots = new SigstoreRoots([tufSource(server.url, pin)], { log: quiet });
    try {
      await roots.start();
      const doc = JSON.parse(STAGING.toString('utf8')) as {
        tlogs: Array<{ publicKey: { validFor?: unknown } }>;
      };
      delete doc.tlogs[0]!.publicKey.validFor;
      repo.setTarget('trusted_root.json', Buffer.from(JSON.stringify(doc)));
      assert.deepEqual(await roots.refresh(), ['failed']);
      assert.match(roots.status()[0]?.lastError ?? '', /validFor\.start/);
      assert.equal(roots.status()[0]?.sha256, sha(PUBLIC_GOOD));
    } finally {
      await roots.stop();
      await server.close();
    }
  });

  test('HELD replicas sharing Redis: a root updated on one replica only gives it another roots version (so another verdict-cache epoch); both converge once both refresh', async () => {
    const { repo, pin } = repository();
    const server = await repo.serve();
    // Two replicas: same configuration, each its own cache folder (a volume per pod).
    const a = new SigstoreRoots([tufSource(server.url, pin)], { log: quiet });
    const b = new SigstoreRoots([tufSource(server.url, pin)], { log: quiet });
    try {
      await a.start();
      await b.start();
      assert.equal(a.version(), b.version());
      repo.setTarget('trusted_root.json', STAGING);
      assert.deepEqual(await a.refresh(), ['updated']);
      // TrustService.epoch() hashes this version in: A's verdicts (new root) and B's (old root)
      // are stored under different epochs, so neither replica reads the other's.
      assert.notEqual(a.version(), b.version());
      assert.deepEqual(await b.refresh(), ['updated']);
      // The version is a hash of (source name, root sha256), not a counter: replicas that agree on
      // the root share one epoch (and their cached verdicts) again.
      assert.equal(a.version(), b.version());
    } finally {
      await a.stop();
      await b.stop();
      await server.close();
    }
  });

  test('fixed (a SIGHUP refresh after close): once stop() has run, refresh() checks nothing and changes nothing', async () => {
    const { repo, pin } = repository();
    const server = await repo.serve();
    const roots = new SigstoreRoots([tufSource(server.url, pin)], { log: quiet });
    try {
      await roots.start();
      const version = roots.version();
      // main.ts: close() stops the supply; a SIGHUP arriving during the rest of the shutdown calls
      // refresh(). Before the fix it ran a whole TUF update after stop() (writing the cache
      // folder a successor process may already use, publishing to a closed service).
      await roots.stop();
      repo.setTarget('trusted_root.json', STAGING);
      const before = server.requests.length;
      assert.deepEqual(await roots.refresh(), []);
      assert.equal(server.requests.length, before);
      assert.equal(roots.version(), version);
    } finally {
      await server.close();
    }
  });

  test('fixed (two sources share one cache directory): the config refuses two TUF sources whose cacheDir is the same folder', () => {
    const minimal = { tls: { cert: 'c.pem', key: 'k.pem' }, upstream: { url: 'http://127.0.0.1:5000' } };
    const problems = (sigstore: unknown[]): string => {
      try {
        parseConfig({ ...minimal, trust: { sigstore } }, {}, '/etc/trustgate');
      } catch (err) {
        assert.ok(err instanceof ConfigError);
        return err.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('\n');
      }
      return '';
    };
    // Before the fix: accepted. Both sources then read and write one metadata folder (one's
    // newer versions make the other's refresh fail as a rollback, two refreshes race on the same
    // files) and, with the same pin and target, the second source loads the first's last good
    // root at start as its own.
    assert.match(
      problems([
        { name: 'a', tuf: { mirror: 'https://a.example/', root: 'r.json', cacheDir: 'cache' } },
        { name: 'b', tuf: { mirror: 'https://b.example/', root: 'r.json', cacheDir: './cache/' } },
      ]),
      /trust\.sigstore\.1\.tuf\.cacheDir: .*cache directory of trust\.sigstore\[0\]/,
    );
    // The default (tuf-cache/<name>) collides with an explicit one too.
    assert.match(
      problems([
        { name: 'a', tuf: { mirror: 'https://a.example/', root: 'r.json' } },
        { name: 'b', tuf: { mirror: 'https://b.example/', root: 'r.json', cacheDir: 'tuf-cache/a' } },
      ]),
      /trust\.sigstore\.1\.tuf\.cacheDir/,
    );
    assert.equal(
      problems([
        { name: 'a', tuf: { mirror: 'https://a.example/', root: 'r.json' } },
        { name: 'b', tuf: { mirror: 'https://b.example/', root: 'r.json' } },
      ]),
      '',
    );
  });

  test('fixed (refresh --out writes through a planted symlink): a symlink at the temporary file name is replaced, never written through', async () => {
    const { repo, pin } = repository();
    const out = tempDir();
    const victim = path.join(tempDir(), 'victim');
    writeFileSync(victim, 'precious');
    // Someone who can write to --out (a shared folder) plants the temporary names as symlinks.
    symlinkSync(victim, path.join(out, '.trusted_root.json.tmp'));
    symlinkSync(victim, path.join(out, '.root.json.tmp'));
    const io = memoryIo();
    const code = await sigstoreCommand(['refresh', '--mirror', repo.dir, '--root', pin, '--out', out], io.io);
    assert.equal(code, 0, io.err());
    assert.equal(readFileSync(victim, 'utf8'), 'precious');
    assert.deepEqual(readFileSync(path.join(out, 'trusted_root.json')), PUBLIC_GOOD);
    assert.equal(existsSync(path.join(out, '.trusted_root.json.tmp')), false);
  });
});
