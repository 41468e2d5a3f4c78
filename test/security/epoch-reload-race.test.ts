/**
 * Issue 12, finding 5: "A verdict computed under old trust rules, cached under the new epoch". A
 * pull in flight while a SIGHUP removed the only trusted key from a rule finished with the old rule
 * and stored an allow under the NEW epoch, for positiveTtlSeconds, on every replica; the blobs it
 * admitted were stored under the new epoch too.
 *
 * The registry here is real; the only fault injected is a slow answer to the signature read (the
 * window in which the reload lands), by holding that one upstream request until the test lets go.
 * Siblings: the rule changed by a config reload, and the trusted key removed from disk.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateKeyPair } from '../../src/core/signature/sign.js';
import type { EvidenceReader } from '../../src/trust/evidence.js';
import { startRegistry, type RegistryHandle } from '../helpers/stack.js';
import { startTestGate, type TestGate } from '../helpers/trustgate.js';
import { assertBlobNotAdmitted, bearer, getToken, request, type Reply } from '../helpers/http.js';
import { pushRandomImage } from '../helpers/registry-direct.js';
import { signDirect } from '../helpers/sign.js';

const OCI = 'application/vnd.oci.image.manifest.v1+json';

describe('security: a reload during verification (issue 12, finding 5)', { timeout: 120_000 }, () => {
  let registry: RegistryHandle;
  let gate: TestGate;
  const release = generateKeyPair('ecdsa-p256');
  const users = { consumer: 'consumer-password' };
  /** Set while a test wants the next signature read held. */
  let hold: { reached: () => void; release: Promise<void> } | undefined;

  before(async () => {
    registry = await startRegistry();
    gate = await startTestGate({
      registryUrl: registry.url,
      users,
      configFile: true,
      policy: { access: [{ repos: ['**'], pull: ['consumer'], push: [], delete: [] }] },
      trustRules: [{ repos: ['race/**'], keys: ['release'] }],
      trustedKeys: { release: release.publicKeyPem },
    });
    // Fault injection: the trust service's signature read waits while `hold` is set.
    const reader = (gate.tg.trust as unknown as { o: { evidence: EvidenceReader } }).o.evidence;
    const original = reader.manifest.bind(reader);
    reader.manifest = async (repo, ref) => {
      const h = hold;
      if (h && ref.endsWith('.sig')) {
        hold = undefined;
        h.reached();
        await h.release;
      }
      return original(repo, ref);
    };
  });
  after(async () => {
    await gate?.close();
    await registry?.stop();
  });

  const pull = async (repo: string, ref: string): Promise<Reply> =>
    request(gate.url, gate.ca, {
      path: `/v2/${repo}/${ref}`,
      headers: {
        ...bearer(await getToken(gate.url, gate.ca, 'consumer', users.consumer, [`repository:${repo}:pull`])),
        accept: OCI,
      },
    });

  /** Starts a pull, runs `change` while its signature read is held, then lets it finish. */
  async function pullAcross(repo: string, change: () => Promise<void>): Promise<Reply> {
    let reached!: () => void;
    const atRead = new Promise<void>((r) => (reached = r));
    let let_go!: () => void;
    hold = { reached, release: new Promise<void>((r) => (let_go = r)) };
    const inFlight = pull(repo, 'manifests/v1');
    await atRead;
    await change();
    let_go();
    return inFlight;
  }

  it('a rule that stops trusting the key during the signature read: nothing is cached under the new rules', async () => {
    const repo = 'race/rule';
    const img = await pushRandomImage(registry.url, repo, 'v1');
    await signDirect(registry.url, repo, img.digest, release.pkcs8Der);
    const first = await pullAcross(repo, async () => {
      gate.rewriteConfig((raw) => {
        (raw['trust'] as { rules: unknown[] }).rules = [{ repos: ['race/**'], keys: [] }];
      });
      assert.equal(await gate.tg.reload(), true, 'the reload was refused');
    });
    // The pull began under the old rules; it may finish with them. What it leaves behind may not.
    assert.ok(first.status === 200 || first.status === 403, `${first.status}`);
    const again = await pull(repo, 'manifests/v1');
    assert.equal(again.status, 403, `served under the new rules: ${again.body.toString()}`);
    for (const b of img.blobs) {
      assertBlobNotAdmitted(await pull(repo, `blobs/${b}`), `blob ${b} admitted under the new rules`);
    }
    // Restore for the next case.
    gate.rewriteConfig((raw) => {
      (raw['trust'] as { rules: unknown[] }).rules = [{ repos: ['race/**'], keys: ['release'] }];
    });
    assert.equal(await gate.tg.reload(), true);
  });

  it('the trusted key removed from disk during the signature read: nothing is cached under the new key set', async () => {
    const repo = 'race/key';
    const img = await pushRandomImage(registry.url, repo, 'v1');
    await signDirect(registry.url, repo, img.digest, release.pkcs8Der);
    const first = await pullAcross(repo, async () => {
      rmSync(path.join(gate.keysDir, 'release.pub'));
      gate.tg.keyring.reload();
    });
    assert.ok(first.status === 200 || first.status === 403, `${first.status}`);
    const again = await pull(repo, 'manifests/v1');
    assert.equal(again.status, 403, `served without the key: ${again.body.toString()}`);
    for (const b of img.blobs) {
      assertBlobNotAdmitted(await pull(repo, `blobs/${b}`), `blob ${b} admitted without the key`);
    }
  });
});
