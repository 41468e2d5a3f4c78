/**
 * A TEST TUF repository: root, targets, snapshot and timestamp metadata made with @tufjs/models and
 * signed with Ed25519 keys created here (tuf-js has no repository writer). It lays the files out
 * like the Sigstore CDN (consistent snapshots: `N.root.json`, `timestamp.json`, `N.snapshot.json`,
 * `N.targets.json`, `targets/<sha256>.<name>`) in a directory, which the tests read as a directory
 * mirror and serve over loopback HTTP. Nothing here is a fake of tuf-js: the client under test is
 * the real updater, verifying real signatures.
 */
import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { readFile } from 'node:fs/promises';
import {
  Key,
  Metadata,
  MetaFile,
  Root,
  Signature,
  Snapshot,
  TargetFile,
  Targets,
  Timestamp,
} from '@tufjs/models';

export interface TufKey {
  id: string;
  key: Key;
  privateKey: KeyObject;
}

export function makeTufKey(): TufKey {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const raw = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32).toString('hex');
  const id = createHash('sha256').update(raw).digest('hex');
  return {
    id,
    privateKey,
    key: new Key({ keyID: id, keyType: 'ed25519', scheme: 'ed25519', keyVal: { public: raw } }),
  };
}

type Signable = Metadata<Root> | Metadata<Targets> | Metadata<Snapshot> | Metadata<Timestamp>;

function signWith(md: Signable, keys: readonly TufKey[]): void {
  for (const k of keys) {
    md.sign((data) => new Signature({ keyID: k.id, sig: sign(null, data, k.privateKey).toString('hex') }));
  }
}

const bytesOf = (md: Signable): Buffer => Buffer.from(JSON.stringify(md.toJSON(), null, 1));
const inDays = (days: number): string =>
  new Date(Date.now() + days * 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z');

export class TestTufRepository {
  readonly dir: string;
  rootKeys: TufKey[] = [makeTufKey(), makeTufKey()];
  rootThreshold = 2;
  readonly onlineKey = makeTufKey();
  readonly targetsKey = makeTufKey();
  private rootVersion = 0;
  private targetsVersion = 0;
  private snapshotVersion = 0;
  private timestampVersion = 0;
  private readonly targets = new Map<string, Buffer>();
  /** The bytes of root.json version 1: what a client pins. */
  pinnedRoot!: Buffer;

  constructor() {
    this.dir = mkdtempSync(path.join(os.tmpdir(), 'trustgate-test-tuf-repo-'));
    mkdirSync(path.join(this.dir, 'targets'));
    this.pinnedRoot = this.writeRoot(this.rootKeys, this.rootKeys);
  }

  /** Writes root version N+1 listing `keys` as root keys, signed by `signers`. */
  private writeRoot(keys: readonly TufKey[], signers: readonly TufKey[], expires = inDays(365)): Buffer {
    this.rootVersion++;
    const all = [...keys, this.targetsKey, this.onlineKey];
    const root = Root.fromJSON({
      _type: 'root',
      spec_version: '1.0.31',
      version: this.rootVersion,
      expires,
      consistent_snapshot: true,
      keys: Object.fromEntries(all.map((k) => [k.id, k.key.toJSON()])),
      roles: {
        root: { keyids: keys.map((k) => k.id), threshold: this.rootThreshold },
        targets: { keyids: [this.targetsKey.id], threshold: 1 },
        snapshot: { keyids: [this.onlineKey.id], threshold: 1 },
        timestamp: { keyids: [this.onlineKey.id], threshold: 1 },
      },
    });
    const md = new Metadata(root);
    signWith(md, signers);
    const bytes = bytesOf(md);
    writeFileSync(path.join(this.dir, `${this.rootVersion}.root.json`), bytes);
    return bytes;
  }

  /**
   * A root rotation: version N+1 names new root keys. `signedBy: 'old-and-new'` is a rotation
   * made through the chain (the old keys' threshold and the new keys' threshold sign it);
   * `'new-only'` is a root the old keys never approved (it must be refused).
   */
  rotateRoot(signedBy: 'old-and-new' | 'new-only'): void {
    const next = [makeTufKey(), makeTufKey()];
    this.writeRoot(next, signedBy === 'old-and-new' ? [...this.rootKeys, ...next] : next);
    if (signedBy === 'old-and-new') this.rootKeys = next;
    // The online roles re-sign under the new root.
    this.publish();
  }

  /** Adds or replaces a target and publishes new targets, snapshot and timestamp metadata. */
  setTarget(name: string, bytes: Buffer): void {
    this.targets.set(name, bytes);
    this.publish();
  }

  /**
   * Publishes new metadata listing `name` with `listed` bytes' length and hashes, but serves
   * `served` under that hash's file name (a tampered target on the mirror).
   */
  setTamperedTarget(name: string, listed: Buffer, served: Buffer): void {
    this.targets.set(name, listed);
    this.publish();
    writeFileSync(path.join(this.dir, 'targets', `${sha256Hex(listed)}.${name}`), served);
  }

  /** Publishes a new timestamp (same snapshot) that expired yesterday. */
  expireTimestamp(): void {
    this.writeTimestamp(inDays(-1));
  }

  /** Publishes targets, snapshot and timestamp for the current targets. */
  publish(timestampExpires = inDays(7)): void {
    const targets = new Targets({
      version: ++this.targetsVersion,
      specVersion: '1.0.31',
      expires: inDays(365),
    });
    for (const [name, bytes] of this.targets) {
      targets.addTarget(
        new TargetFile({ path: name, length: bytes.length, hashes: { sha256: sha256Hex(bytes) } }),
      );
      writeFileSync(path.join(this.dir, 'targets', `${sha256Hex(bytes)}.${name}`), bytes);
    }
    const tmd = new Metadata(targets);
    signWith(tmd, [this.targetsKey]);
    const tBytes = bytesOf(tmd);
    writeFileSync(path.join(this.dir, `${this.targetsVersion}.targets.json`), tBytes);

    const snapshot = new Snapshot({
      version: ++this.snapshotVersion,
      specVersion: '1.0.31',
      expires: inDays(30),
      meta: { 'targets.json': new MetaFile({ version: this.targetsVersion }) },
    });
    const smd = new Metadata(snapshot);
    signWith(smd, [this.onlineKey]);
    writeFileSync(path.join(this.dir, `${this.snapshotVersion}.snapshot.json`), bytesOf(smd));
    this.writeTimestamp(timestampExpires);
  }

  private writeTimestamp(expires: string): void {
    const ts = new Timestamp({
      version: ++this.timestampVersion,
      specVersion: '1.0.31',
      expires,
      snapshotMeta: new MetaFile({ version: this.snapshotVersion }),
    });
    const md = new Metadata(ts);
    signWith(md, [this.onlineKey]);
    writeFileSync(path.join(this.dir, 'timestamp.json'), bytesOf(md));
  }

  /** Serves the directory over loopback HTTP (404 for what is not there). */
  async serve(): Promise<{ url: string; requests: string[]; close(): Promise<void> }> {
    const requests: string[] = [];
    const server = http.createServer((req, res) => {
      const rel = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/^\/+/, '');
      requests.push(rel);
      const file = path.join(this.dir, rel);
      if (rel.includes('..') || !file.startsWith(this.dir)) {
        res.writeHead(404).end();
        return;
      }
      readFile(file).then(
        (b) => res.writeHead(200, { 'content-type': 'application/json' }).end(b),
        () => res.writeHead(404).end(),
      );
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    return {
      url: `http://127.0.0.1:${port}`,
      requests,
      close: () =>
        new Promise<void>((r) => {
          server.closeAllConnections();
          server.close(() => r());
        }),
    };
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export function sha256Hex(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}
