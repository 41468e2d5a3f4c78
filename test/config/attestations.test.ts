/** trust.attestations in the config schema: typed, validated, errors naming the key. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, parseConfig } from '../../src/config/load.js';

const minimal = {
  tls: { cert: 'c.pem', key: 'k.pem' },
  upstream: { url: 'http://127.0.0.1:5000' },
};
const withRules = (attestations: unknown[]) =>
  parseConfig({ ...minimal, trust: { attestations } }, {}, '/cfg');

describe('config: trust.attestations', () => {
  it('a rule gets its defaults; the exceptions file sits next to the keys', () => {
    const c = withRules([
      { repos: ['prod/**'], keys: ['scanner'], vulnerabilities: { maxSeverity: 'HIGH' } },
    ]);
    const r = c.trust.attestations[0]!;
    assert.equal(r.mode, 'enforce');
    assert.deepEqual(r.require, []);
    assert.equal(c.trust.exceptionsFile, '/cfg/keys/exceptions.json');
    assert.deepEqual(withRules([]).trust.attestations, []);
  });

  it('errors name the key path: unknown severity, unknown field, bad predicate type, no keys', () => {
    const cases: Array<[unknown, RegExp]> = [
      [
        { repos: ['a'], keys: ['k'], vulnerabilities: { maxSeverity: 'SEVERE' } },
        /trust\.attestations\.0\.vulnerabilities\.maxSeverity/,
      ],
      [{ repos: ['a'], keys: ['k'], sbom: { deniedPackage: ['x'] } }, /trust\.attestations\.0\.sbom/],
      [
        { repos: ['a'], keys: ['k'], require: ['cosign.sigstore.dev/attestation/vuln/v1'] },
        /trust\.attestations\.0\.require\.0: a predicate type is an https URI/,
      ],
      [{ repos: ['a'], keys: [] }, /trust\.attestations\.0\.keys/],
      [{ repos: ['a'], keys: ['k'], mode: 'off' }, /trust\.attestations\.0\.mode/],
      [{ repos: ['a'], keys: ['k'], script: 'return true' }, /trust\.attestations\.0/],
    ];
    for (const [rule, re] of cases) {
      assert.throws(
        () => withRules([rule]),
        (err: unknown) => err instanceof ConfigError && re.test(err.message),
        JSON.stringify(rule),
      );
    }
  });
});
