import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls, { type PeerCertificate } from 'node:tls';
import { describe, it } from 'node:test';
import { ClientCaAnchors, identityFromPeerCertificate } from '../../src/auth/mtls.js';

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

describe('ClientCaAnchors', () => {
  /**
   * Two client CAs with the same name (a re-keyed CA) and a leaf of the old one, without key
   * identifiers, made by openssl: Node then links a certificate to any sent certificate of its
   * issuer's name, and only the signature tells the two CAs apart.
   */
  function rotatedCas(
    dir: string,
  ): Record<'oldCa' | 'newCa' | 'leaf' | 'leafKey' | 'srv' | 'srvKey', Buffer> {
    const f = (n: string): string => path.join(dir, n);
    writeFileSync(
      f('x.cnf'),
      [
        '[req]',
        'distinguished_name=dn',
        '[dn]',
        '[ca]',
        'basicConstraints=critical,CA:TRUE',
        'keyUsage=keyCertSign',
        'subjectKeyIdentifier=none',
        'authorityKeyIdentifier=none',
        '[leaf]',
        'basicConstraints=CA:FALSE',
        'extendedKeyUsage=clientAuth',
        'subjectKeyIdentifier=none',
        'authorityKeyIdentifier=none',
        '',
      ].join('\n'),
    );
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2'];
    const ssl = (...args: string[]): void => void execFileSync('openssl', args, { stdio: 'pipe' });
    for (const n of ['old', 'new']) {
      ssl(
        'req',
        '-x509',
        ...ec,
        '-keyout',
        f(`${n}.key`),
        '-out',
        f(`${n}.crt`),
        '-subj',
        '/CN=Corp Client CA',
        '-config',
        f('x.cnf'),
        '-extensions',
        'ca',
      );
    }
    ssl(
      'req',
      ...ec.slice(0, -2),
      '-keyout',
      f('leaf.key'),
      '-out',
      f('leaf.csr'),
      '-subj',
      '/CN=build-01',
      '-config',
      f('x.cnf'),
    );
    ssl(
      'x509',
      '-req',
      '-in',
      f('leaf.csr'),
      '-CA',
      f('old.crt'),
      '-CAkey',
      f('old.key'),
      '-CAcreateserial',
      '-out',
      f('leaf.crt'),
      '-days',
      '2',
      '-extfile',
      f('x.cnf'),
      '-extensions',
      'leaf',
    );
    ssl(
      'req',
      '-x509',
      ...ec,
      '-keyout',
      f('srv.key'),
      '-out',
      f('srv.crt'),
      '-subj',
      '/CN=127.0.0.1',
      '-config',
      f('x.cnf'),
    );
    const r = (n: string): Buffer => readFileSync(f(n));
    return {
      oldCa: r('old.crt'),
      newCa: r('new.crt'),
      leaf: r('leaf.crt'),
      leafKey: r('leaf.key'),
      srv: r('srv.crt'),
      srvKey: r('srv.key'),
    };
  }

  it('a client of a removed CA that sends the public certificate of a same-named CA in force is not anchored (the link is checked by signature)', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tg-mtls-'));
    try {
      const c = rotatedCas(dir);
      const anchors = new ClientCaAnchors();
      const connect = (ca: Buffer, chain: Buffer): Promise<{ authorized: boolean; anchored: boolean }> =>
        new Promise((resolve, reject) => {
          const server = tls.createServer(
            { key: c.srvKey, cert: c.srv, ca, requestCert: true, rejectUnauthorized: false },
            (s) => {
              resolve({ authorized: s.authorized, anchored: anchors.anchors(s) });
              s.end();
              server.close();
            },
          );
          server.listen(0, '127.0.0.1', () => {
            const port = (server.address() as AddressInfo).port;
            const client = tls.connect({
              host: '127.0.0.1',
              port,
              ca: c.srv,
              key: c.leafKey,
              cert: chain,
              checkServerIdentity: () => undefined,
            });
            client
              .on('data', () => undefined)
              .on('end', () => client.end())
              .on('error', reject);
          });
        });
      // Control: under the old CA, the leaf is anchored.
      anchors.replace(c.oldCa);
      assert.deepEqual(await connect(c.oldCa, c.leaf), { authorized: true, anchored: true });
      // The operator re-keys the CA (same name) and reloads: the old connection's leaf, sent with
      // a copy of the new CA's public certificate, names nobody.
      anchors.replace(c.newCa);
      assert.deepEqual(await connect(c.oldCa, c.leaf), { authorized: true, anchored: false });
      assert.deepEqual(await connect(c.oldCa, Buffer.concat([c.leaf, c.newCa])), {
        authorized: true,
        anchored: false,
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
