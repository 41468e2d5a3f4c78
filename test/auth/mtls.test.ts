import assert from 'node:assert/strict';
import type { PeerCertificate } from 'node:tls';
import { describe, it } from 'node:test';
import { identityFromPeerCertificate } from '../../src/auth/mtls.js';

const cert = (subject: Record<string, string | string[]>) => ({ subject }) as unknown as PeerCertificate;

describe('identityFromPeerCertificate', () => {
  it('maps a verified certificate to mtls:CN=… or the whole escaped subject', () => {
    assert.deepEqual(identityFromPeerCertificate(cert({ O: 'acme', CN: 'build-01' }), true, 'CN'), {
      subject: 'mtls:CN=build-01',
      kind: 'mtls',
      groups: [],
    });
    assert.equal(
      identityFromPeerCertificate(cert({ C: 'DE', O: 'acme', CN: 'build-01' }), true, 'subject')?.subject,
      'mtls:C=DE,O=acme,CN=build-01',
    );
  });

  it('names nobody unless the TLS layer verified the chain', () => {
    assert.equal(identityFromPeerCertificate(cert({ CN: 'root' }), false, 'CN'), null);
    assert.equal(identityFromPeerCertificate(undefined, true, 'CN'), null);
    assert.equal(identityFromPeerCertificate({} as PeerCertificate, true, 'CN'), null); // no certificate sent
  });

  it('ambiguous or hostile subjects name nobody or cannot forge another subject', () => {
    assert.equal(identityFromPeerCertificate(cert({ CN: ['a', 'b'] }), true, 'CN'), null);
    assert.equal(identityFromPeerCertificate(cert({ O: 'x' }), true, 'CN'), null);
    assert.equal(identityFromPeerCertificate(cert({ CN: 'a\u0000b' }), true, 'CN'), null);
    assert.equal(identityFromPeerCertificate(cert({ CN: 'x'.repeat(2000) }), true, 'CN'), null);
    // A CN that spells out another DN stays one escaped value.
    const forged = identityFromPeerCertificate(cert({ CN: 'x,O=admins' }), true, 'subject');
    assert.equal(forged?.subject, 'mtls:CN=x\\,O\\=admins');
    assert.notEqual(
      forged?.subject,
      identityFromPeerCertificate(cert({ CN: 'x', O: 'admins' }), true, 'subject')?.subject,
    );
  });
});
