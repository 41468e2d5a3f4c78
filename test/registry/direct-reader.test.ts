/**
 * parseResponseHead: the only HTTP parsing the direct blob reader does. What it accepts it relays
 * itself; everything else must throw, so the request goes to Node's http client instead.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseResponseHead } from '../../src/registry/http1.js';

const ok = 'HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 12';

describe('blob reader: response head parsing', () => {
  it('a plain 200: status, length, keep-alive, headers lower-cased, hop-by-hop removed', () => {
    const h = parseResponseHead(`${ok}\r\nKeep-Alive: timeout=5\r\nDocker-Content-Digest: sha256:ab`, 'GET');
    assert.equal(h.status, 200);
    assert.equal(h.length, 12);
    assert.equal(h.keepAlive, true);
    assert.equal(h.headers['docker-content-digest'], 'sha256:ab');
    assert.equal(h.headers['keep-alive'], undefined);
  });

  it('HEAD, 204 and 304 carry no body whatever Content-Length says', () => {
    assert.equal(parseResponseHead(ok, 'HEAD').length, 0);
    assert.equal(parseResponseHead('HTTP/1.1 204 No Content', 'GET').length, 0);
    assert.equal(parseResponseHead('HTTP/1.1 304 Not Modified', 'GET').length, 0);
  });

  it('Connection: close, or HTTP/1.0, is not kept alive; a header named in Connection is dropped', () => {
    assert.equal(parseResponseHead(`${ok}\r\nConnection: close`, 'GET').keepAlive, false);
    assert.equal(parseResponseHead(ok.replace('1.1', '1.0'), 'GET').keepAlive, false);
    const h = parseResponseHead(`${ok}\r\nConnection: x-secret\r\nX-Secret: 1`, 'GET');
    assert.equal(h.headers['x-secret'], undefined);
  });

  for (const [why, head] of [
    ['chunked', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked'],
    ['chunked and a length', `${ok}\r\nTransfer-Encoding: chunked`],
    ['no length on a GET 200', 'HTTP/1.1 200 OK\r\nContent-Type: x/y'],
    ['two lengths', `${ok}\r\nContent-Length: 12`],
    ['a signed length', 'HTTP/1.1 200 OK\r\nContent-Length: +12'],
    ['a length list', 'HTTP/1.1 200 OK\r\nContent-Length: 12, 12'],
    ['a huge length', 'HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456'],
    ['an interim 100', 'HTTP/1.1 100 Continue'],
    ['HTTP/2 status line', 'HTTP/2 200'],
    ['a bad status', 'HTTP/1.1 2000 OK\r\nContent-Length: 1'],
    ['obs-fold', `${ok}\r\n continued`],
    ['space before the colon', `${ok}\r\nX-A : b`],
    ['no colon', `${ok}\r\nnonsense`],
    ['a NUL in a value', `${ok}\r\nX-A: a\x00b`],
    ['a bare CR in a value', `${ok}\r\nX-A: a\rb`],
  ] as const) {
    it(`refused (falls back): ${why}`, () => {
      assert.throws(() => parseResponseHead(head, 'GET'));
    });
  }
});
