/**
 * The Sigstore trusted-root supply (issue 15) against real TUF repositories: a test repository
 * (test/helpers/tuf-repo.ts: metadata signed with keys made here) served over loopback HTTP and
 * read as a directory, updated by the real tuf-js client. Proves: an update succeeds; a tampered
 * target, an expired timestamp, a root not signed by the old root's keys and a mirror that is down
 * are refused and the last good root stays; a rotation signed through the chain is followed; a
 * restart keeps the last verified root; with nothing valid, a tlog-required rule denies.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { Metadata, MetadataKind, type Root } from '@tufjs/models';
import type { SigstoreSource } from '../../src/config/schema.js';
import { loadTrustedRoot } from '../../src/core/evidence/trusted-root.js';
import { evaluateTrust } from '../../src/core/trust.js';
import { parsePublicKeyPem } from '../../src/core/signature/keys.js';
import { SigstoreRoots, SigstoreRootsError, type RefreshEvent } from '../../src/trust/sigstore-roots.js';
import { sigstoreCommand } from '../../src/cli/sigstore.js';
import { readShared } from '../helpers/fixtures.js';
import { TestTufRepository } from '../helpers/tuf-repo.js';
import { memoryIo } from '../cli/support.js';

const PUBLIC_GOOD = readShared('fixtures/sigstore-public-good/trusted_root.json');
const STAGING = readShared('fixtures/sigstore-public-good/staging/trusted_root.json');
const CONF = 'fixtures/sigstore-conformance/bundle-verify/managed-key-and-trusted-root';
const MANAGED_ROOT = readShared(`${CONF}/trusted_root.json`);
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

const quiet = { info: () => {}, warn: () => {}, error: () => {} };
const temps: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'trustgate-test-tuf-'));
  temps.push(d);
  return d;
}
after(() => {
  for (const d of temps) rmSync(d, { recursive: true, force: true });
});

/** A repository holding `target` as trusted_root.json, its pinned root written to a file. */
function repository(target: Buffer = PUBLIC_GOOD): { repo: TestTufRepository; pin: string } {
  const repo = new TestTufRepository();
  temps.push(repo.dir);
  repo.setTarget('trusted_root.json', target);
  const pin = path.join(tempDir(), 'root.json');
  writeFileSync(pin, repo.pinnedRoot);
  return { repo, pin };
}

function tufSource(
  mirror: string,
  pin: string,
  cacheDir = tempDir(),
  name = 'test-repo',
): Extract<SigstoreSource, { kind: 'tuf' }> {
  return {
    kind: 'tuf',
    name,
    mirror,
    root: pin,
    cacheDir,
    target: 'trusted_root.json',
    refreshSeconds: 3600,
    timeoutSeconds: 5,
  };
}

function supply(sources: SigstoreSource[]): {
  roots: SigstoreRoots;
  events: RefreshEvent[];
  changes: number[];
} {
  const events: RefreshEvent[] = [];
  const changes: number[] = [];
  const roots = new SigstoreRoots(sources, { log: quiet, observe: (e) => events.push(e) });
  roots.onChange((r) => changes.push(r.length));
  return { roots, events, changes };
}

/**
 * A restart from `cacheDir` while the mirror gives nothing new: the public-good root verified last
 * time is in force, and the start's refresh is reported failed.
 */
async function restartKeepsLastGood(mirror: string, pin: string, cacheDir: string): Promise<void> {
  const again = supply([tufSource(mirror, pin, cacheDir)]);
  try {
    await again.roots.start();
    assert.equal(again.roots.status()[0]?.sha256, sha(PUBLIC_GOOD));
    assert.equal(again.events.at(-1)?.outcome, 'failed');
  } finally {
    await again.roots.stop();
  }
}

describe('Sigstore trusted roots through TUF', () => {
  it('over HTTP: the first update verifies the chain and puts the target in force', async () => {
    const { repo, pin } = repository();
    const server = await repo.serve();
    const { roots, events, changes } = supply([tufSource(server.url, pin)]);
    try {
      await roots.start();
      assert.equal(roots.current().length, 1);
      const [st] = roots.status();
      assert.equal(st?.ok, true);
      assert.equal(st?.sha256, sha(PUBLIC_GOOD));
      assert.equal(st?.tufRootVersion, 1);
      assert.deepEqual(
        events.map((e) => [e.outcome, e.hasRoot]),
        [['updated', true]],
      );
      assert.deepEqual(changes, [1]);
      // The client walked the TUF workflow: root probe, timestamp, versioned snapshot and
      // targets, then the target under its hash.
      assert.ok(server.requests.includes('2.root.json'));
      assert.ok(server.requests.includes('timestamp.json'));
      assert.ok(server.requests.includes('1.snapshot.json'));
      assert.ok(server.requests.includes('1.targets.json'));
      assert.ok(server.requests.includes(`targets/${sha(PUBLIC_GOOD)}.trusted_root.json`));
      const before = roots.version();
      // Nothing new: unchanged, same version (cached verdicts stay valid).
      assert.deepEqual(await roots.refresh(), ['unchanged']);
      assert.equal(roots.version(), before);
      // A new trusted root published through the chain: in force, and the version moves.
      repo.setTarget('trusted_root.json', STAGING);
      assert.deepEqual(await roots.refresh(), ['updated']);
      assert.equal(roots.status()[0]?.sha256, sha(STAGING));
      assert.notEqual(roots.version(), before);
      assert.deepEqual(changes, [1, 1]);
    } finally {
      await roots.stop();
      await server.close();
    }
  });

  it('from a directory mirror (air-gapped): the same chain, read from files', async () => {
    const { repo, pin } = repository();
    const { roots } = supply([tufSource(repo.dir, pin)]);
    try {
      await roots.start();
      assert.equal(roots.status()[0]?.sha256, sha(PUBLIC_GOOD));
      repo.setTarget('trusted_root.json', STAGING);
      assert.deepEqual(await roots.refresh(), ['updated']);
      assert.equal(roots.status()[0]?.sha256, sha(STAGING));
    } finally {
      await roots.stop();
    }
  });

  it('a tampered trusted_root.json target is refused and the last good root stays', async () => {
    const { repo, pin } = repository();
    const server = await repo.serve();
    const { roots, events, changes } = supply([tufSource(server.url, pin)]);
    try {
      await roots.start();
      const good = roots.version();
      // Same length, one byte changed: only the hash can tell.
      const tampered = Buffer.from(STAGING);
      tampered[tampered.indexOf('rekor')] = 'R'.charCodeAt(0);
      repo.setTamperedTarget('trusted_root.json', STAGING, tampered);
      assert.deepEqual(await roots.refresh(), ['failed']);
      const [st] = roots.status();
      assert.equal(st?.ok, true);
      assert.equal(st?.sha256, sha(PUBLIC_GOOD), 'the last good root is still in force');
      assert.match(st?.lastError ?? '', /hash|length/i);
      assert.equal(roots.version(), good);
      assert.equal(events.at(-1)?.outcome, 'failed');
      assert.equal(events.at(-1)?.hasRoot, true);
      assert.deepEqual(changes, [1]);
    } finally {
      await roots.stop();
      await server.close();
    }
  });

  it('a target the chain vouches for but that is no usable trusted root is refused too, also after a restart', async () => {
    const { repo, pin } = repository();
    const cacheDir = tempDir();
    const { roots } = supply([tufSource(repo.dir, pin, cacheDir)]);
    try {
      await roots.start();
      repo.setTarget('trusted_root.json', Buffer.from('{"mediaType":"not a trusted root"}'));
      assert.deepEqual(await roots.refresh(), ['failed']);
      assert.equal(roots.status()[0]?.sha256, sha(PUBLIC_GOOD));
      assert.match(roots.status()[0]?.lastError ?? '', /media type/);
    } finally {
      await roots.stop();
    }
    // tuf-js keeps the (hash-verified) junk as its cached target; the restart still starts from
    // the last root trustgate accepted.
    await restartKeepsLastGood(repo.dir, pin, cacheDir);
  });

  it('an expired timestamp is refused: the last good root stays, and a new client gets none', async () => {
    const { repo, pin } = repository();
    const server = await repo.serve();
    const { roots } = supply([tufSource(server.url, pin)]);
    try {
      await roots.start();
      repo.setTarget('trusted_root.json', STAGING);
      repo.expireTimestamp();
      assert.deepEqual(await roots.refresh(), ['failed']);
      assert.equal(roots.status()[0]?.sha256, sha(PUBLIC_GOOD));
      assert.match(roots.status()[0]?.lastError ?? '', /expired/i);
      // A client with no cache meets only the expired timestamp: no root at all.
      const fresh = supply([tufSource(server.url, pin)]);
      await fresh.roots.start();
      assert.equal(fresh.roots.current().length, 0);
      assert.equal(fresh.roots.version(), 'none');
      await fresh.roots.stop();
    } finally {
      await roots.stop();
      await server.close();
    }
  });

  it('a root rotation signed by the old root keys is followed; one they did not sign is refused', async () => {
    const { repo, pin } = repository();
    const server = await repo.serve();
    const { roots } = supply([tufSource(server.url, pin)]);
    try {
      await roots.start();
      repo.rotateRoot('old-and-new');
      repo.setTarget('trusted_root.json', STAGING);
      assert.deepEqual(await roots.refresh(), ['updated']);
      assert.equal(roots.status()[0]?.tufRootVersion, 2);
      assert.equal(roots.status()[0]?.sha256, sha(STAGING));
      // Version 3 names new keys that only they signed (the TUF chain is broken): refused, and
      // metadata signed under it is never reached; the last good root stays.
      repo.rotateRoot('new-only');
      repo.setTarget('trusted_root.json', MANAGED_ROOT);
      assert.deepEqual(await roots.refresh(), ['failed']);
      assert.equal(roots.status()[0]?.tufRootVersion, 2);
      assert.equal(roots.status()[0]?.sha256, sha(STAGING));
      assert.match(roots.status()[0]?.lastError ?? '', /root was signed by 0\/2 keys/);
    } finally {
      await roots.stop();
      await server.close();
    }
  });

  it('the mirror down keeps the last good root, and a restart loads it from the cache', async () => {
    const { pin, repo } = repository();
    const server = await repo.serve();
    const cacheDir = tempDir();
    const { roots, events } = supply([tufSource(server.url, pin, cacheDir)]);
    await roots.start();
    await server.close();
    try {
      assert.deepEqual(await roots.refresh(), ['failed']);
      assert.equal(roots.current().length, 1);
      assert.equal(events.at(-1)?.hasRoot, true);
      assert.match(roots.status()[0]?.lastError ?? '', /ECONNREFUSED|fetch failed/);
    } finally {
      await roots.stop();
    }
    // A restart while the mirror is still down: the root verified last time is in force.
    await restartKeepsLastGood(server.url, pin, cacheDir);
  });

  it('a slow mirror does not hold the start beyond one download timeout; its update finishes in the background', async () => {
    const { repo, pin } = repository();
    // Fault injection (the one fake here): a loopback server that answers each file of the real
    // test repository only after 400 ms, so a whole update (5 files) takes longer than the 1 s
    // the start waits, while no single download reaches its 1 s timeout.
    const slow = http.createServer((req, res) => {
      const rel = new URL(req.url ?? '/', 'http://x').pathname.replace(/^\/+/, '');
      setTimeout(() => {
        readFile(path.join(repo.dir, rel)).then(
          (b) => res.end(b),
          () => res.writeHead(404).end(),
        );
      }, 400);
    });
    await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(slow.address() as AddressInfo).port}`;
    const { roots } = supply([{ ...tufSource(url, pin), timeoutSeconds: 1 }]);
    try {
      await roots.start();
      assert.equal(roots.status()[0]?.ok, false, 'the start did not wait for the whole update');
      // The update under way is joined, not started again, and completes.
      assert.deepEqual(await roots.refresh(), ['updated']);
      assert.equal(roots.status()[0]?.sha256, sha(PUBLIC_GOOD));
    } finally {
      await roots.stop();
      slow.closeAllConnections();
      await new Promise<void>((r) => slow.close(() => r()));
    }
  });

  it('another pinned root starts from that pin, not from metadata cached under the old one', async () => {
    const a = repository();
    const b = repository(STAGING);
    const cacheDir = tempDir();
    const first = supply([tufSource(a.repo.dir, a.pin, cacheDir)]);
    await first.roots.start();
    await first.roots.stop();
    const second = supply([tufSource(b.repo.dir, b.pin, cacheDir)]);
    try {
      await second.roots.start();
      assert.equal(second.roots.status()[0]?.sha256, sha(STAGING));
    } finally {
      await second.roots.stop();
    }
  });

  it('an unusable pinned root or trusted-root file stops the start with the source named', async () => {
    const { repo } = repository();
    const bad = path.join(tempDir(), 'root.json');
    const md = JSON.parse(repo.pinnedRoot.toString('utf8')) as { signed: { version: number } };
    md.signed.version = 7; // the signatures no longer cover it
    writeFileSync(bad, JSON.stringify(md));
    await assert.rejects(
      supply([tufSource(repo.dir, bad, tempDir(), 'private')]).roots.start(),
      (e: Error) => e instanceof SigstoreRootsError && /source private: pinned TUF root/.test(e.message),
    );
    const file = path.join(tempDir(), 'trusted_root.json');
    writeFileSync(file, '{"mediaType":"x"}');
    await assert.rejects(
      supply([{ kind: 'file', name: 'offline', trustedRoot: file }]).roots.start(),
      /source offline: trusted root .* is unusable/,
    );
  });

  it('nothing valid at start: no root, and a tlog-required rule denies (fail closed)', async () => {
    const { pin } = repository();
    // A mirror nobody listens on (a port just closed).
    const { repo } = repository();
    const server = await repo.serve();
    const deadUrl = server.url;
    await server.close();
    const { roots } = supply([tufSource(deadUrl, pin)]);
    try {
      await roots.start();
      assert.deepEqual(roots.current(), []);
      assert.equal(roots.status()[0]?.ok, false);
      const input = managedKeyInput();
      const denied = evaluateTrust({
        ...input,
        bundleOptions: { tlog: 'required', trustedRoots: roots.current() },
      });
      assert.equal(denied.ok, false);
      assert.equal(denied.reason, 'no-trusted-root');
      assert.match(denied.message, /no Sigstore trusted root is available/);
      // The same bundle where a root is in force: it verifies.
      const allowed = evaluateTrust({
        ...input,
        bundleOptions: { tlog: 'required', trustedRoots: [loadTrustedRoot(MANAGED_ROOT)] },
      });
      assert.equal(allowed.ok, true, allowed.message);
    } finally {
      await roots.stop();
    }
  });

  it('several roots: a file and a TUF repository; an entry verifies under the one that trusts its log', async () => {
    const { repo, pin } = repository(MANAGED_ROOT);
    const file = path.join(tempDir(), 'public-good.json');
    writeFileSync(file, PUBLIC_GOOD);
    const { roots } = supply([
      { kind: 'file', name: 'public-good', trustedRoot: file },
      tufSource(repo.dir, pin, tempDir(), 'private'),
    ]);
    try {
      await roots.start();
      assert.equal(roots.current().length, 2);
      const input = managedKeyInput();
      const v = evaluateTrust({
        ...input,
        bundleOptions: { tlog: 'required', trustedRoots: roots.current() },
      });
      assert.equal(v.ok, true, v.message);
      // Under the public-good root alone its log is unknown: refused, never skipped.
      const only = evaluateTrust({
        ...input,
        bundleOptions: { tlog: 'optional', trustedRoots: roots.current().slice(0, 1) },
      });
      assert.equal(only.ok, false);
      assert.equal(only.reason, 'tlog-invalid');
    } finally {
      await roots.stop();
    }
  });
});

/** The conformance case signed by a managed key with a Rekor entry, as evaluateTrust input. */
function managedKeyInput() {
  const artifact = readShared('fixtures/sigstore-conformance/bundle-verify/a.txt');
  return {
    repo: 'conformance/a',
    digest: `sha256:${sha(artifact)}`,
    signatures: [],
    bundles: [readShared(`${CONF}/bundle.sigstore.json`)],
    artifact,
    keys: [{ name: 'managed', key: parsePublicKeyPem(readShared(`${CONF}/key.pub`).toString('utf8')) }],
    threshold: 1,
    tagBinding: false,
    now: new Date('2026-03-01T00:00:00Z'),
  };
}

describe('trustgate sigstore refresh', () => {
  it('writes the TUF root the chain reached and the verified trusted root', async () => {
    const { repo, pin } = repository();
    repo.rotateRoot('old-and-new');
    const server = await repo.serve();
    const out = path.join(tempDir(), 'out');
    const io = memoryIo();
    try {
      const code = await sigstoreCommand(
        ['refresh', '--mirror', server.url, '--root', pin, '--out', out],
        io.io,
      );
      assert.equal(code, 0, io.err());
      assert.deepEqual(readFileSync(path.join(out, 'trusted_root.json')), PUBLIC_GOOD);
      const root = JSON.parse(readFileSync(path.join(out, 'root.json'), 'utf8')) as {
        signed: { version: number };
      };
      assert.equal(root.signed.version, 2);
      assert.match(io.out(), /TUF root version 2/);
    } finally {
      await server.close();
    }
  });

  it('writes nothing when the chain does not verify', async () => {
    const { repo, pin } = repository();
    repo.setTamperedTarget('trusted_root.json', STAGING, Buffer.from(STAGING).fill(32, 10, 20));
    const out = path.join(tempDir(), 'out');
    const io = memoryIo();
    assert.equal(
      await sigstoreCommand(['refresh', '--mirror', repo.dir, '--root', pin, '--out', out], io.io),
      1,
    );
    assert.equal(existsSync(path.join(out, 'trusted_root.json')), false);
    assert.match(io.err(), /trustgate: /);
  });
});

describe('the shipped public-good data (config/sigstore/public-good)', () => {
  const shipped = (f: string): Buffer =>
    readFileSync(new URL(`../../../config/sigstore/public-good/${f}`, import.meta.url));
  const history = (n: number): Metadata<Root> =>
    Metadata.fromJSON(
      MetadataKind.Root,
      JSON.parse(
        readShared(`fixtures/sigstore-root-signing/metadata/root_history/${n}.root.json`).toString('utf8'),
      ),
    );

  it('root.json is reached from TUF root 1 through every rotation, each signed by the old and new keys', () => {
    const pinned = Metadata.fromJSON(MetadataKind.Root, JSON.parse(shipped('root.json').toString('utf8')));
    let trusted = history(1);
    trusted.verifyDelegate(MetadataKind.Root, trusted);
    for (let n = 2; n <= pinned.signed.version; n++) {
      const next = history(n);
      trusted.verifyDelegate(MetadataKind.Root, next);
      next.verifyDelegate(MetadataKind.Root, next);
      assert.equal(next.signed.version, n);
      trusted = next;
    }
    assert.ok(trusted.signed.equals(pinned.signed), 'the shipped root is the end of the chain');
  });

  it('trusted_root.json is the target that targets metadata (signed under that root) lists', () => {
    const root = Metadata.fromJSON(MetadataKind.Root, JSON.parse(shipped('root.json').toString('utf8')));
    const targets = Metadata.fromJSON(
      MetadataKind.Targets,
      JSON.parse(readShared('fixtures/sigstore-root-signing/metadata/targets.json').toString('utf8')),
    );
    root.verifyDelegate(MetadataKind.Targets, targets);
    const bytes = shipped('trusted_root.json');
    const info = targets.signed.targets['trusted_root.json'];
    assert.equal(info?.length, bytes.length);
    assert.equal(info?.hashes['sha256'], sha(bytes));
    assert.equal(loadTrustedRoot(bytes).tlogCount, 2);
  });
});
