/**
 * The CLI's evidence reader keeps the seam's contract (I3): only absence (404), a blob over the
 * bound or bytes that do not hash are "no evidence"; any other registry failure fails the read.
 * Fault injection: a stand-in client whose getBlob throws the error a real client would throw for
 * that answer (a real registry:2 cannot be made to answer 500 on demand).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clientEvidenceReader } from '../../src/cli/evidence-reader.js';
import { BodyTooLargeError, RegistryError, type RegistryClient } from '../../src/cli/registry-client.js';

const DIGEST = `sha256:${'a'.repeat(64)}`;

function failingClient(err: Error): RegistryClient {
  return {
    getBlob: () => Promise.reject(err),
  } as unknown as RegistryClient;
}

test('a blob that is absent, too large or not the named bytes is no evidence', async () => {
  for (const err of [
    new RegistryError(`GET blob r@${DIGEST}`, 404, []),
    new RegistryError(`GET blob r@${DIGEST}`, 200, [], 'the registry sent bytes that hash to …'),
    new BodyTooLargeError('blob is larger than the 65536 bytes allowed'),
  ]) {
    assert.equal(await clientEvidenceReader(failingClient(err)).blob('r', DIGEST, 65536), undefined);
  }
});

test('a registry failure on a signature blob fails the read (never a quiet "no signature")', async () => {
  for (const err of [
    new RegistryError(`GET blob r@${DIGEST}`, 500, []),
    new RegistryError(`GET blob r@${DIGEST}`, 401, []),
    new RegistryError(`GET blob r@${DIGEST}`, 0, [], 'connection reset'),
  ]) {
    await assert.rejects(clientEvidenceReader(failingClient(err)).blob('r', DIGEST, 65536), err);
  }
});
