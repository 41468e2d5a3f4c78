import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { ConfigError, loadConfigFile, parseConfig } from '../../src/config/load.js';
import { sigstoreSourcesOf } from '../../src/config/schema.js';

const minimal = {
  tls: { cert: 'c.pem', key: 'k.pem' },
  upstream: { url: 'http://127.0.0.1:5000' },
};

describe('config loading', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tg-config-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, text: string): string => {
    const f = path.join(dir, name);
    writeFileSync(f, text);
    return f;
  };

  it('a minimal config gets the documented defaults and paths relative to the file', () => {
    const c = loadConfigFile(
      write('min.yaml', 'tls: {cert: c.pem, key: k.pem}\nupstream: {url: "http://127.0.0.1:5000"}\n'),
      {},
    );
    assert.equal(c.listen.port, 5443);
    assert.equal(c.listen.host, '127.0.0.1');
    assert.equal(c.tls.minVersion, 'TLSv1.2');
    assert.equal(c.tls.cert, path.join(dir, 'c.pem'));
    assert.equal(c.trust.keysDir, path.join(dir, 'keys/trusted'));
    assert.equal(c.auth.tokenTtlSeconds, 300);
    assert.equal(c.cache.negativeTtlSeconds, 5);
    assert.equal(c.shutdownGraceSeconds, 30);
  });

  it('errors name the key path and the problem, all at once', () => {
    try {
      parseConfig({ ...minimal, listen: { port: 'x' }, upstream: { url: 'not a url' }, bogus: 1 });
      assert.fail('accepted');
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /listen\.port/);
      assert.match(err.message, /upstream\.url/);
      assert.match(err.message, /bogus/);
    }
  });

  it('limits: documented defaults, blob relays half the upstream pool, and below it', () => {
    const c = parseConfig(minimal);
    assert.deepEqual(c.limits, {
      writeIdleSeconds: 30,
      blobRelays: 128,
      blobRelaysPerIdentity: 32,
      blobRelaysPerAddress: 32,
    });
    assert.equal(
      parseConfig({ ...minimal, upstream: { ...minimal.upstream, maxSockets: 9 } }).limits.blobRelays,
      4,
    );
    assert.throws(
      () =>
        parseConfig({
          ...minimal,
          upstream: { ...minimal.upstream, maxSockets: 16 },
          limits: { blobRelays: 16 },
        }),
      /limits\.blobRelays: limits\.blobRelays must be below upstream\.maxSockets/,
    );
    assert.throws(
      () => parseConfig({ ...minimal, limits: { writeIdleSeconds: 0 } }),
      /limits\.writeIdleSeconds/,
    );
  });

  it('trust.sigstore: files and TUF sources, names and defaults filled in, paths relative to the file', () => {
    const c = parseConfig(
      {
        ...minimal,
        trust: {
          trustedRoot: 'legacy.json',
          sigstore: [
            { trustedRoot: 'roots/offline.json' },
            { tuf: { mirror: 'https://tuf-repo-cdn.sigstore.dev/', root: 'pg/root.json' } },
            { name: 'acme', tuf: { mirror: 'mirror/acme', root: 'acme.json', refreshSeconds: 600 } },
          ],
          rules: [{ repos: ['**'], tlog: 'required' }],
        },
      },
      {},
      dir,
    );
    assert.deepEqual(sigstoreSourcesOf(c.trust), [
      { kind: 'file', name: 'trustedRoot', trustedRoot: path.join(dir, 'legacy.json') },
      { kind: 'file', name: 'offline.json', trustedRoot: path.join(dir, 'roots/offline.json') },
      {
        kind: 'tuf',
        name: 'tuf-repo-cdn.sigstore.dev',
        mirror: 'https://tuf-repo-cdn.sigstore.dev/',
        root: path.join(dir, 'pg/root.json'),
        cacheDir: path.join(dir, 'tuf-cache/tuf-repo-cdn.sigstore.dev'),
        target: 'trusted_root.json',
        refreshSeconds: 3600,
        timeoutSeconds: 30,
      },
      {
        kind: 'tuf',
        name: 'acme',
        mirror: path.join(dir, 'mirror/acme'),
        root: path.join(dir, 'acme.json'),
        cacheDir: path.join(dir, 'tuf-cache/acme'),
        target: 'trusted_root.json',
        refreshSeconds: 600,
        timeoutSeconds: 30,
      },
    ]);
  });

  it('trust.sigstore errors name the key: neither or both kinds, duplicate names, tlog required with no root', () => {
    const problems = (trust: unknown): string[] => {
      try {
        parseConfig({ ...minimal, trust });
      } catch (err) {
        assert.ok(err instanceof ConfigError);
        return err.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
      }
      return [];
    };
    assert.match(
      problems({ sigstore: [{ name: 'x' }] }).join('\n'),
      /trust\.sigstore\.0: .*exactly one of trustedRoot/,
    );
    assert.match(
      problems({ sigstore: [{ trustedRoot: 'a', tuf: { mirror: 'm', root: 'r' } }] }).join('\n'),
      /trust\.sigstore\.0: .*exactly one/,
    );
    assert.match(
      problems({ sigstore: [{ tuf: { mirror: 'm' } }] }).join('\n'),
      /trust\.sigstore\.0\.tuf\.root/,
    );
    assert.match(
      problems({ sigstore: [{ tuf: { mirror: 'ftp://mirror.example', root: 'r' } }] }).join('\n'),
      /trust\.sigstore\.0\.tuf\.mirror: a mirror is an http\(s\) URL or a directory/,
    );
    assert.match(
      problems({ sigstore: [{ tuf: { mirror: 'm', root: 'r', refreshSeconds: 5 } }] }).join('\n'),
      /trust\.sigstore\.0\.tuf\.refreshSeconds/,
    );
    assert.match(
      problems({ sigstore: [{ trustedRoot: 'a/root.json' }, { trustedRoot: 'b/root.json' }] }).join('\n'),
      /trust\.sigstore\.1\.name: source name root\.json is also the name of trust\.sigstore\[0\]/,
    );
    assert.match(
      problems({ rules: [{ repos: ['**'] }, { repos: ['x/**'], tlog: 'required' }] }).join('\n'),
      /trust\.rules\.1\.tlog: .*needs a Sigstore trusted root: configure trust\.sigstore/,
    );
  });

  it('a missing required key is named', () => {
    assert.throws(() => parseConfig({ upstream: minimal.upstream }), /tls/);
  });

  it('redisUrl without an HMAC secret is refused', () => {
    assert.throws(
      () => parseConfig({ ...minimal, cache: { redisUrl: 'redis://127.0.0.1:6379' } }),
      /cache\.hmacSecret/,
    );
    assert.throws(
      () => parseConfig({ ...minimal, cache: { redisUrl: 'redis://127.0.0.1:6379', hmacSecret: 'short' } }),
      /hmacSecret/,
    );
  });

  it('a trust rule with an unknown mode or a threshold of 0 is refused', () => {
    assert.throws(
      () => parseConfig({ ...minimal, trust: { rules: [{ repos: ['a/**'], mode: 'warn' }] } }),
      /trust\.rules\.0\.mode/,
    );
    assert.throws(
      () => parseConfig({ ...minimal, trust: { rules: [{ repos: ['a/**'], threshold: 0 }] } }),
      /threshold/,
    );
  });

  it('environment overrides set ports and secrets, and reject a non-numeric port', () => {
    const c = parseConfig(minimal, {
      TRUSTGATE_LISTEN_PORT: '6000',
      TRUSTGATE_UPSTREAM_URL: 'http://registry:5000',
      TRUSTGATE_REDIS_URL: 'redis://redis:6379',
      TRUSTGATE_CACHE_HMAC_SECRET: 's'.repeat(40),
    });
    assert.equal(c.listen.port, 6000);
    assert.equal(c.upstream.url, 'http://registry:5000');
    assert.equal(c.cache.redisUrl, 'redis://redis:6379');
    assert.throws(() => parseConfig(minimal, { TRUSTGATE_LISTEN_PORT: '60x' }), /TRUSTGATE_LISTEN_PORT/);
  });

  it('duplicate YAML keys are refused (which one would win is not a guess we make)', () => {
    const f = write(
      'dup.yaml',
      'tls: {cert: c.pem, key: k.pem}\nupstream: {url: "http://a:5000"}\nupstream: {url: "http://b:5000"}\n',
    );
    assert.throws(() => loadConfigFile(f, {}), /upstream|duplicate|unique/i);
  });

  it('an unreadable file is a clear error', () => {
    assert.throws(() => loadConfigFile(path.join(dir, 'nope.yaml'), {}), /cannot read config file/);
  });

  it('the shipped example config is valid', () => {
    const c = loadConfigFile(path.resolve('config/trustgate.yaml'), {});
    assert.ok(c.trust.rules.length > 0);
  });
});
