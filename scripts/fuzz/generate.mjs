// The request generator. Every choice comes from the seeded stream, and nothing here reads a
// response, so one seed gives one sequence of inputs. Tokens and upload ids are symbolic
// ({cred}, {UUID}, {STATE}) and filled in when the request is sent.
//
// Most requests start as a well-formed request a real client would send for one of the fuzz
// identities (so a large share gets past authentication and reaches the authorised paths), and
// then get zero to three mutations of the route, query, headers, credential or body.
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import {
  OCI_CONFIG,
  OCI_INDEX,
  OCI_MANIFEST,
  SIMPLESIGNING,
  COSIGN_SIG,
  Obj,
  obj,
  ser,
} from './json-model.mjs';

const sha = (b) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';

export const FORM_CONTENT_TYPES = [
  'application/x-www-form-urlencoded',
  'APPLICATION/X-WWW-FORM-URLENCODED',
  'Application/X-Www-Form-Urlencoded; charset=utf-8',
  'appl\u0130cation/x-www-form-urlencoded',
  'applicat\u0130on/x-www-form-urlencoded',
  'APPL\u0130CAT\u0130ON/X-WWW-FORM-URLENCODED',
  'application/x-www-form-urlencoded\u00a0',
  '\u00a0application/x-www-form-urlencoded',
  '\u0085application/x-www-form-urlencoded',
  'application/x-www-form-urlencoded\u0085; charset=utf-8',
  '\u2003appl\u0130cation/x-www-form-urlencoded',
  'application/x-www-form-urlencoded;',
  'application/x-www-form-urlencoded ; a=b',
  'multipart/form-data; boundary=fz',
  'MULTIPART/FORM-DATA; boundary=fz',
  'mult\u0130part/form-data; boundary=fz',
  '\u00a0multipart/form-data; boundary=fz',
  'application/x-www-form-urlencoded, text/plain',
  'application/x-www-form-urlencodedx',
  'x-www-form-urlencoded',
  'application/x\u2010www-form-urlencoded',
  'application/\uff58-www-form-urlencoded',
];
const OTHER_CONTENT_TYPES = [
  'application/octet-stream',
  'text/plain',
  'application/json',
  '',
  'application/vnd.oci.image.manifest.v1+json',
  'APPLICATION/VND.OCI.IMAGE.MANIFEST.V1+JSON',
  'application/vnd.oci.image.manifest.v1+json; charset=utf-8',
  'application/vnd.oci.image.index.v1+json',
  DOCKER_MANIFEST,
  DOCKER_LIST,
  'application/vnd.docker.distribution.manifest.v1+prettyjws',
  'application/vnd.oci.image.manifest.v1+json\u00a0',
  '\u0085application/vnd.oci.image.manifest.v1+json',
];
const ACCEPTS = [
  undefined,
  undefined,
  '*/*',
  OCI_MANIFEST,
  OCI_INDEX,
  `${OCI_MANIFEST}, ${OCI_INDEX}, ${DOCKER_MANIFEST}, ${DOCKER_LIST}`,
  DOCKER_MANIFEST,
  'application/vnd.docker.distribution.manifest.v1+prettyjws',
  'application/json',
  `${OCI_INDEX};q=0, ${OCI_MANIFEST}`,
  'application/*',
  '',
  'APPLICATION/VND.OCI.IMAGE.MANIFEST.V1+JSON',
  `${OCI_MANIFEST}\u00a0`,
];
const PATH_JUNK = [
  '%2f',
  '%2F',
  '%2e%2e',
  '%2e',
  '/.',
  '/..',
  '//',
  ';',
  ';x=1',
  '\\',
  '%00',
  '%',
  '%zz',
  '\u00e9',
  '\u0130',
  '\u017f',
  '\u00a0',
  '\u0085',
  '+',
  '#',
  '?',
  '%252f',
  '\t',
  '~',
  '*',
  ':',
  '@',
  '!',
];
const SCHEMES = ['Bearer ', 'bearer ', 'BEARER ', 'Bearer  ', 'Bearer\t', 'Bearer\u00a0'];
const TAMPERS = ['payload', 'alg-none', 'sig-flip', 'truncate', 'kid', 'jku', 'typ-refresh'];
const CRED_NAMES = ['consumer', 'consumer-narrow', 'consumer-greedy', 'publisher', 'outsider'];

export function createGenerator(rng, F) {
  const refsOf = (repo) => F.refs.get(repo) ?? [];
  const allRepos = ['prod/app', 'dev/app', 'team/secret'];
  const allBlobs = allRepos.flatMap((r) => F.repoBlobs.get(r) ?? []);
  const devDescs = () =>
    F.devBlobs.map((b) => obj(['mediaType', b.mediaType], ['digest', b.digest], ['size', b.size]));

  function pickRef(repo) {
    const r = rng.float();
    if (r < 0.12) return pickRef(rng.pick(allRepos.filter((x) => x !== repo)) ?? 'prod/app');
    if (r < 0.17)
      return rng.pick([
        'latest',
        'V1',
        'v1 ',
        'a'.repeat(129),
        '-x',
        '.x',
        'sha256:abc',
        `sha256:${'A'.repeat(64)}`,
        `sha384:${'a'.repeat(96)}`,
        'sha256-x.sig',
      ]);
    const refs = refsOf(repo);
    if (refs.length === 0) return rng.pick(['v1', 'p1', 'latest']);
    return rng.weighted(refs.map((x) => [x.weight, x.ref]));
  }
  function pickBlob(repo) {
    const own = F.repoBlobs.get(repo) ?? [];
    const r = rng.float();
    if (r < 0.25 || own.length === 0) return rng.pick(allBlobs);
    if (r < 0.3) return `sha256:${rng.hex(64)}`;
    return rng.pick(own);
  }
  function pickRepo(cred) {
    const who = cred.name ?? cred.a?.name ?? 'x';
    if (who === 'publisher')
      return rng.weighted([
        [55, 'dev/app'],
        [10, 'dev/other'],
        [15, 'team/secret'],
        [15, 'prod/app'],
        [5, `dev/new${rng.int(4)}`],
      ]);
    if (who.startsWith('consumer'))
      return rng.weighted([
        [50, 'prod/app'],
        [25, 'dev/app'],
        [15, 'team/secret'],
        [5, 'dev/other'],
        [2, 'prod/app/sub'],
        [3, 'library/x'],
      ]);
    return rng.weighted([
      [40, 'prod/app'],
      [25, 'dev/app'],
      [25, 'team/secret'],
      [10, 'dev/other'],
    ]);
  }

  function pickCred() {
    return rng.weighted([
      [30, () => ({ k: 'token', name: 'consumer', scheme: 'Bearer ' })],
      [6, () => ({ k: 'token', name: 'consumer-narrow', scheme: 'Bearer ' })],
      [5, () => ({ k: 'token', name: 'consumer-greedy', scheme: 'Bearer ' })],
      [26, () => ({ k: 'token', name: 'publisher', scheme: 'Bearer ' })],
      [7, () => ({ k: 'token', name: 'outsider', scheme: 'Bearer ' })],
      [7, () => ({ k: 'none' })],
      [3, () => ({ k: 'token', name: rng.pick(CRED_NAMES), scheme: rng.pick(SCHEMES) })],
      [4, () => ({ k: 'tampered', name: rng.pick(CRED_NAMES), how: rng.pick(TAMPERS) })],
      [3, () => ({ k: 'stale', name: rng.pick(CRED_NAMES) })],
      [2, () => ({ k: 'refresh', name: rng.pick(CRED_NAMES) })],
      [
        2,
        () => ({
          k: 'basic',
          user: rng.pick(['consumer', 'publisher']),
          pass: rng.pick(['consumer-password', 'publisher-password', 'x']),
        }),
      ],
      [
        2,
        () => ({
          k: 'dup',
          a: { k: 'token', name: 'publisher', scheme: 'Bearer ' },
          b: { k: 'token', name: rng.pick(CRED_NAMES), scheme: 'Bearer ' },
        }),
      ],
      [
        2,
        () => ({
          k: 'garbage',
          value: rng.pick([
            'Bearer',
            'Bearer ',
            'Token abc',
            'Bearer a.b.c',
            `Bearer ${'A'.repeat(9000)}`,
            'Basic',
            'Bearer eyJhbGciOiJub25lIn0.e30.',
            'Negotiate x',
          ]),
        }),
      ],
    ])();
  }

  // ---- bodies ------------------------------------------------------------------------------

  function formBody(labels) {
    const from = rng.pick([
      'team/secret',
      'team%2Fsecret',
      'prod/app',
      'dev/app',
      'team/secret&from=dev/app',
    ]);
    const blob = rng.pick([
      ...(F.repoBlobs.get('team/secret') ?? []),
      ...(F.repoBlobs.get('prod/app') ?? []).slice(0, 6),
      ...F.devBlobs.map((b) => b.digest),
    ]);
    const kind = rng.weighted([
      [6, 'mount'],
      [2, 'digest'],
      [1, 'state'],
      [1, 'mount-multipart'],
    ]);
    labels.push(`body:form-${kind}`);
    if (kind === 'mount') return Buffer.from(`mount=${encodeMaybe(blob)}&from=${from}`);
    if (kind === 'digest') return Buffer.from(`digest=${rng.pick(allBlobs)}`);
    if (kind === 'state') return Buffer.from('_state=abc');
    return Buffer.from(
      `--fz\r\nContent-Disposition: form-data; name="mount"\r\n\r\n${blob}\r\n--fz\r\nContent-Disposition: form-data; name="from"\r\n\r\n${from.replace('%2F', '/')}\r\n--fz--\r\n`,
    );
  }
  const encodeMaybe = (s) => (rng.chance(0.2) ? s.replace(':', '%3A') : s);

  /** A manifest body for PUT: a valid one over dev/app blobs, then maybe a mutation. */
  function manifestBody(labels) {
    const kind = rng.weighted([
      [6, 'image'],
      [2, 'index'],
      [1, 'docker'],
      [2, 'sig'],
      [1, 'bytes'],
    ]);
    let m;
    if (kind === 'image' || kind === 'docker') {
      const layers = devDescs().slice(0, 1 + rng.int(3));
      m = obj(
        ['schemaVersion', 2],
        ['mediaType', kind === 'docker' ? DOCKER_MANIFEST : OCI_MANIFEST],
        [
          'config',
          obj(
            ['mediaType', kind === 'docker' ? 'application/vnd.docker.container.image.v1+json' : OCI_CONFIG],
            ['digest', F.devConfig.digest],
            ['size', F.devConfig.size],
          ),
        ],
        ['layers', layers],
      );
      if (kind === 'docker')
        m.pairs.forEach(
          (p) =>
            p[0] === 'layers' &&
            p[1].forEach((l) => l.set('mediaType', 'application/vnd.docker.image.rootfs.diff.tar.gzip')),
        );
    } else if (kind === 'index') {
      m = obj(
        ['schemaVersion', 2],
        ['mediaType', OCI_INDEX],
        [
          'manifests',
          F.devImages.map((d) =>
            obj(
              ['mediaType', OCI_MANIFEST],
              ['digest', d.digest],
              ['size', d.bytes.length],
              ['platform', obj(['architecture', 'amd64'], ['os', 'linux'])],
            ),
          ),
        ],
      );
    } else if (kind === 'sig') {
      const v = JSON.parse(F.devSig.bytes.toString());
      m = obj(
        ['schemaVersion', 2],
        ['mediaType', OCI_MANIFEST],
        ['config', obj(['mediaType', OCI_CONFIG], ['digest', v.config.digest], ['size', v.config.size])],
        [
          'layers',
          v.layers.map((l) =>
            obj(
              ['mediaType', l.mediaType],
              ['digest', l.digest],
              ['size', l.size],
              ['annotations', obj([COSIGN_SIG, l.annotations[COSIGN_SIG]])],
            ),
          ),
        ],
      );
      const how = rng.weighted([
        [3, 'exact'],
        [2, 'flipped-signature'],
        [2, 'extra-layer'],
        [1, 'unsigned-layer'],
      ]);
      labels.push(`manifest:sig-${how}`);
      const l0 = m.get('layers')[0];
      if (how === 'flipped-signature') {
        const s = l0.get('annotations').get(COSIGN_SIG);
        l0.get('annotations').set(
          COSIGN_SIG,
          (s[5] === 'A' ? 'B' : 'A').padStart(6, s.slice(0, 5)) + s.slice(6),
        );
      } else if (how === 'extra-layer') {
        m.get('layers').push(
          obj(
            ['mediaType', SIMPLESIGNING],
            ['digest', F.devBlobs[0].digest],
            ['size', F.devBlobs[0].size],
            ['annotations', obj([COSIGN_SIG, 'AAAA'])],
          ),
        );
      } else if (how === 'unsigned-layer') {
        m.get('layers').push(
          obj(['mediaType', SIMPLESIGNING], ['digest', F.devBlobs[1].digest], ['size', F.devBlobs[1].size]),
        );
      }
      if (how === 'exact') return { body: Buffer.from(F.devSig.bytes), mediaType: OCI_MANIFEST, sig: true };
      return { body: Buffer.from(ser(m)), mediaType: OCI_MANIFEST, sig: true };
    } else {
      labels.push('manifest:random-bytes');
      return { body: rng.bytes(rng.int(3000)), mediaType: rng.pick(OTHER_CONTENT_TYPES) };
    }
    labels.push(`manifest:${kind}`);
    const mediaType = m.get('mediaType');
    const mut = rng.weighted([
      [30, 'none'],
      [4, 'dup-key'],
      [4, 'case-variant'],
      [4, 'case-variant-alone'],
      [4, 'fold-s'],
      [3, 'fold-s-alone'],
      [3, 'fold-i-go121'],
      [2, 'kelvin'],
      [3, 'huge-count'],
      [2, 'nested-index'],
      [3, 'urls'],
      [2, 'deep'],
      [2, 'truncate'],
      [2, 'byte-flip'],
      [1, 'bom'],
      [1, 'whitespace'],
      [1, 'oversize'],
      [2, 'schema1'],
      [1, 'no-mediatype'],
    ]);
    labels.push(`manifest-mut:${mut}`);
    const keyNames = (o) => (o instanceof Obj ? o.pairs.map((p) => p[0]) : []);
    const target = () => {
      const inner = rng.chance(0.4) ? (m.get('layers') ?? m.get('manifests'))?.[0] : undefined;
      return inner instanceof Obj ? inner : m;
    };
    let text;
    switch (mut) {
      case 'dup-key': {
        const t = target();
        const k = rng.pick(keyNames(t));
        const v = t.get(k);
        t.pairs.splice(rng.int(t.pairs.length + 1), 0, [k, rng.pick([v, 1, null, 'x', [], OCI_INDEX])]);
        break;
      }
      case 'case-variant':
      case 'case-variant-alone': {
        const t = target();
        const k = rng.pick(keyNames(t));
        const variant = rng.pick([
          k.toUpperCase(),
          k[0].toUpperCase() + k.slice(1),
          k.replace(/.$/, (c) => c.toUpperCase()),
        ]);
        if (variant === k) break;
        if (mut === 'case-variant') t.pairs.push([variant, rng.pick([t.get(k), null, 1])]);
        else t.rename(k, variant);
        break;
      }
      case 'fold-s':
      case 'fold-s-alone': {
        const t = target();
        const withS = keyNames(t).filter((k) => k.includes('s'));
        if (withS.length === 0) break;
        const k = rng.pick(withS);
        const variant = k.replace('s', '\u017f');
        if (mut === 'fold-s') t.pairs.push([variant, rng.pick([t.get(k), [], null])]);
        else t.rename(k, variant);
        break;
      }
      case 'fold-i-go121': {
        const t = target();
        const withI = keyNames(t).filter((k) => k.includes('i'));
        if (withI.length === 0) break;
        const k = rng.pick(withI);
        t.pairs.push([k.replace('i', '\u0130'), rng.pick([t.get(k), OCI_INDEX, null])]);
        break;
      }
      case 'kelvin':
        m.pairs.push(['\u212Aind', 'x']);
        break;
      case 'huge-count': {
        const n = rng.pick([1000, 5000, 20000]);
        const list = m.get('layers') ?? m.get('manifests');
        if (list?.length)
          m.set(
            m.get('layers') ? 'layers' : 'manifests',
            Array.from({ length: n }, () => list[0]),
          );
        break;
      }
      case 'nested-index':
        m = obj(
          ['schemaVersion', 2],
          ['mediaType', OCI_INDEX],
          [
            'manifests',
            [
              obj(
                ['mediaType', OCI_INDEX],
                ['digest', F.devImages[0].digest],
                ['size', F.devImages[0].bytes.length],
              ),
            ],
          ],
        );
        break;
      case 'urls': {
        const l = m.get('layers')?.[0];
        if (l) {
          l.set('urls', [
            rng.pick(['http://example.invalid/x', 'file:///etc/passwd', 'https://127.0.0.1:1/x']),
          ]);
          if (rng.chance(0.5))
            l.set(
              'mediaType',
              rng.pick([
                'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
                'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
              ]),
            );
        }
        break;
      }
      case 'deep':
        text = ser(m).replace(/}$/, `,"x":${'['.repeat(rng.pick([100, 257, 5000]))}${']'.repeat(0)}`);
        text = text.replace(/\[+$/, (s) => s + ']'.repeat(s.length) + '}');
        break;
      case 'schema1':
        m.set('schemaVersion', 1);
        break;
      case 'no-mediatype':
        m.without('mediaType');
        break;
      default:
        break;
    }
    text ??= ser(m, mut === 'whitespace' ? rng.pick([' ', '\n', '\t', '\u00a0']) : '');
    let body = Buffer.from(text);
    if (mut === 'truncate') body = body.subarray(0, rng.int(body.length));
    if (mut === 'byte-flip') {
      body = Buffer.from(body);
      for (let i = 0; i < 1 + rng.int(4); i++) body[rng.int(body.length)] = rng.int(256);
    }
    if (mut === 'bom') body = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), body]);
    if (mut === 'oversize') body = Buffer.concat([body, Buffer.alloc(4 * 1024 * 1024 + 10, 0x20)]);
    return { body, mediaType: typeof mediaType === 'string' ? mediaType : OCI_MANIFEST };
  }

  // ---- mutations ---------------------------------------------------------------------------

  function mutatePath(path, labels) {
    const op = rng.weighted([
      [5, 'insert'],
      [2, 'upper'],
      [2, 'encode'],
      [1, 'trailing'],
      [1, 'double-slash'],
      [1, 'dot'],
      [1, 'v2-case'],
      [1, 'absolute'],
      [1, 'segment-case'],
    ]);
    labels.push(`path:${op}`);
    switch (op) {
      case 'insert': {
        const i = 1 + rng.int(path.length);
        return path.slice(0, i) + rng.pick(PATH_JUNK) + path.slice(i);
      }
      case 'upper':
        return path.replace(/\/v2\/([a-z]+)/, (m0, r) => `/v2/${r.toUpperCase()}`);
      case 'encode': {
        const i = 4 + rng.int(Math.max(1, path.length - 4));
        const c = path[i] ?? 'a';
        return path.slice(0, i) + `%${c.charCodeAt(0).toString(16).padStart(2, '0')}` + path.slice(i + 1);
      }
      case 'trailing':
        return path.endsWith('/') ? path.slice(0, -1) : `${path}/`;
      case 'double-slash':
        return path.replace('/', '//').replace(/\/(?=[^/]*$)/, rng.chance(0.5) ? '//' : '/');
      case 'dot':
        return path.replace(/\/([^/]+)$/, rng.pick(['/./$1', '/x/../$1', '/$1/.', '/$1/..']));
      case 'v2-case':
        return path.replace('/v2/', rng.pick(['/V2/', '/v2//', '//v2/', '/v3/', '/v2%2f']));
      case 'absolute':
        return rng.pick([`https://127.0.0.1${path}`, `http://evil${path}`, path.slice(1), '*']);
      case 'segment-case':
        return path.replace(/(manifests|blobs|tags|uploads|list)/, (s) =>
          rng.pick([s.toUpperCase(), s[0].toUpperCase() + s.slice(1)]),
        );
      default:
        return path;
    }
  }

  function mutateQuery(params, labels) {
    // params: [[key, value]] (raw, already encoded)
    const op = rng.weighted([
      [3, 'dup'],
      [3, 'dup-case'],
      [2, 'semicolon'],
      [2, 'plus'],
      [2, 'encode-value'],
      [2, 'encode-key'],
      [1, 'bad-percent'],
      [1, 'empty-pair'],
      [1, 'no-equals'],
      [1, 'unicode'],
      [1, 'long'],
      [2, 'n'],
      [2, 'mount'],
      [1, 'last'],
    ]);
    labels.push(`query:${op}`);
    const p = params.map(([k, v]) => [k, v ?? '']);
    const anyKey = () => (p.length ? rng.pick(p)[0] : rng.pick(['n', 'mount', 'digest', 'from', 'last']));
    switch (op) {
      case 'dup': {
        const k = anyKey();
        p.push([k, rng.pick(['1', 'team/secret', `sha256:${'0'.repeat(64)}`, ''])]);
        break;
      }
      case 'dup-case': {
        const k = anyKey();
        p.push([k.toUpperCase() === k ? k.toLowerCase() : k.toUpperCase(), rng.pick(['1', 'team/secret'])]);
        break;
      }
      case 'semicolon':
        return p.map(([k, v]) => `${k}=${v}`).join(';') + (rng.chance(0.5) ? ';n=1' : '');
      case 'plus':
        if (p.length) p[0][1] = `${p[0][1]}+x`;
        else p.push(['n', '1+1']);
        break;
      case 'encode-value':
        if (p.length) p[0][1] = p[0][1].replace(/[/:]/g, (c) => (c === '/' ? '%2F' : '%3A'));
        else p.push(['n', '%31']);
        break;
      case 'encode-key':
        if (p.length) p[0][0] = p[0][0].replace(/[a-z]/, (c) => `%${c.charCodeAt(0).toString(16)}`);
        else p.push(['%6e', '1']);
        break;
      case 'bad-percent':
        p.push([anyKey(), '%zz']);
        break;
      case 'empty-pair':
        return `${p.map(([k, v]) => `${k}=${v}`).join('&')}&&`;
      case 'no-equals':
        p.push([anyKey(), null]);
        break;
      case 'unicode':
        p.push(['x', rng.pick(['\u00e9', '\u0130', '\u00a0', '%C3%A9'])]);
        break;
      case 'long':
        p.push(['x', 'a'.repeat(rng.pick([100, 5000]))]);
        break;
      case 'n':
        p.push(['n', rng.pick(['0', '-1', '01', '1e3', '99999999999', '1', '2', ' 1'])]);
        break;
      case 'mount':
        p.push(
          ['mount', rng.pick(allBlobs)],
          ['from', rng.pick(['team/secret', 'prod/app', 'dev/app', 'team%2Fsecret', 'TEAM/secret'])],
        );
        break;
      case 'last':
        p.push(['last', rng.pick(['team/secret', 'prod', 'team', 'zzz'])]);
        break;
    }
    return p.map(([k, v]) => (v === null ? k : `${k}=${v}`)).join('&');
  }

  // ---- the request ---------------------------------------------------------------------------

  function next() {
    const labels = [];
    const cred = pickCred();
    labels.push(`cred:${cred.k}${cred.k === 'token' ? `:${cred.name}` : ''}`);
    const who = cred.name ?? cred.a?.name ?? 'none';
    const publisher = who === 'publisher';
    const kind = rng.weighted([
      [publisher ? 16 : 34, 'manifest-get'],
      [publisher ? 10 : 22, 'blob-get'],
      [4, 'tags'],
      [4, 'catalog'],
      [2, 'base'],
      [publisher ? 20 : 5, 'manifest-put'],
      [publisher ? 20 : 6, 'upload-start'],
      [publisher ? 12 : 3, 'upload-chunk'],
      [3, 'delete'],
      [4, 'token'],
      [2, 'other'],
    ]);
    labels.push(`route:${kind}`);
    const repo = pickRepo(cred);
    let method = 'GET';
    let path;
    let params = [];
    let body;
    let contentType;
    let accept;
    let uploadOwner;
    switch (kind) {
      case 'manifest-get':
        method = rng.chance(0.35) ? 'HEAD' : 'GET';
        path = `/v2/${repo}/manifests/${pickRef(repo)}`;
        accept = rng.pick(ACCEPTS);
        break;
      case 'blob-get':
        method = rng.chance(0.3) ? 'HEAD' : 'GET';
        path = `/v2/${repo}/blobs/${pickBlob(repo)}`;
        if (rng.chance(0.1)) labels.push('hdr:range');
        break;
      case 'tags':
        path = `/v2/${repo}/tags/list`;
        if (rng.chance(0.3)) params.push(['n', String(1 + rng.int(3))]);
        break;
      case 'catalog':
        path = '/v2/_catalog';
        if (rng.chance(0.4)) params.push(['n', String(1 + rng.int(4))]);
        if (rng.chance(0.2)) params.push(['last', rng.pick(['dev/app', 'prod/app', 'team/secret', 'a'])]);
        break;
      case 'base':
        method = rng.chance(0.3) ? 'HEAD' : 'GET';
        path = rng.pick(['/v2/', '/v2/', '/v2']);
        break;
      case 'manifest-put': {
        method = 'PUT';
        const mb = manifestBody(labels);
        body = mb.body;
        contentType = rng.chance(0.85)
          ? mb.mediaType
          : rng.pick([...OTHER_CONTENT_TYPES, ...FORM_CONTENT_TYPES]);
        let ref;
        const r = rng.float();
        if (mb.sig && r < 0.6) ref = F.devSig.tag;
        else if (r < 0.45) ref = sha(body);
        else if (r < 0.5) ref = `sha256:${rng.hex(64)}`;
        else
          ref = rng.pick([
            't1',
            't2',
            't3',
            'latest',
            'p1',
            `sha256-${F.devImages[0].digest.slice(7)}.sig`,
            'ps',
          ]);
        path = `/v2/${repo}/manifests/${ref}`;
        break;
      }
      case 'upload-start': {
        method = 'POST';
        path = `/v2/${repo}/blobs/uploads/`;
        const how = rng.weighted([
          [4, 'plain'],
          [4, 'mount'],
          [2, 'monolithic'],
          [3, 'form'],
        ]);
        labels.push(`upload:${how}`);
        if (how === 'mount') {
          params.push(['mount', rng.pick([...allBlobs, ...F.devBlobs.map((b) => b.digest)])]);
          params.push([
            'from',
            rng.pick(['team/secret', 'prod/app', 'dev/app', 'dev/other', 'team%2Fsecret', 'prod%2Fapp']),
          ]);
        } else if (how === 'monolithic') {
          body = rng.bytes(1 + rng.int(600));
          params.push(['digest', rng.chance(0.85) ? sha(body) : `sha256:${rng.hex(64)}`]);
          contentType = 'application/octet-stream';
        } else if (how === 'form') {
          contentType = rng.pick(FORM_CONTENT_TYPES);
          labels.push(`ct:${JSON.stringify(contentType)}`);
          body = formBody(labels);
        }
        uploadOwner = who;
        break;
      }
      case 'upload-chunk': {
        method = rng.weighted([
          [4, 'PUT'],
          [3, 'PATCH'],
          [2, 'GET'],
          [1, 'DELETE'],
        ]);
        path = `/v2/${repo}/blobs/uploads/{UUID}`;
        params.push(['{STATE}', null]);
        if (method === 'PUT' || method === 'PATCH') {
          body = rng.bytes(1 + rng.int(800));
          contentType = rng.chance(0.75) ? 'application/octet-stream' : rng.pick(FORM_CONTENT_TYPES);
          if (contentType !== 'application/octet-stream' && rng.chance(0.6)) body = formBody(labels);
          if (method === 'PUT') params.push(['digest', rng.chance(0.85) ? sha(body) : rng.pick(allBlobs)]);
        }
        uploadOwner = who;
        break;
      }
      case 'delete':
        method = 'DELETE';
        path = rng.chance(0.5)
          ? `/v2/${repo}/manifests/${pickRef(repo)}`
          : `/v2/${repo}/blobs/${pickBlob(repo)}`;
        break;
      case 'token': {
        const scopes = Array.from({ length: 1 + rng.int(3) }, () =>
          rng.pick([
            'repository:prod/app:pull',
            'repository:prod/app:pull,push,delete',
            'repository:team/secret:pull',
            'repository:team/secret:*',
            'repository:dev/app:pull,push',
            'repository:dev/*:pull',
            'repository:dev/app:*',
            'registry:catalog:*',
            'repository:PROD/app:pull',
            'repository:prod/app/../../team/secret:pull',
            'repository(plugin):team/secret:pull',
            'repository:team/secret:pull,pull',
            'repository:team%2Fsecret:pull',
            'repository:dev/app:push,pull:x',
            'repository::pull',
            'repository:prod/app:PULL',
          ]),
        );
        method = rng.chance(0.8) ? 'GET' : 'POST';
        path = '/token';
        const user = rng.weighted([
          [4, 'consumer'],
          [4, 'publisher'],
          [2, 'outsider'],
          [1, null],
        ]);
        const tcred = user ? { k: 'basic', user, pass: `${user}-password` } : { k: 'none' };
        labels.push(`token:${method}:${user ?? 'anonymous'}`);
        if (method === 'GET') {
          params.push(['service', rng.chance(0.95) ? 'trustgate' : 'other']);
          for (const s of scopes) params.push(['scope', encodeURIComponent(s)]);
          if (rng.chance(0.2)) params.push(['scope', scopes.map(encodeURIComponent).join('+')]);
          if (rng.chance(0.1)) params.push(['account', rng.pick(['consumer', 'publisher', 'admin'])]);
          return finish({ method, path, params, cred: tcred, labels, tokenUser: user });
        }
        body = Buffer.from(
          `grant_type=password&service=trustgate&client_id=fuzz&username=${user ?? 'nobody'}&password=${user ?? 'nobody'}-password&scope=${encodeURIComponent(scopes.join(' '))}`,
        );
        contentType = rng.chance(0.9) ? 'application/x-www-form-urlencoded' : rng.pick(FORM_CONTENT_TYPES);
        return finish({
          method,
          path,
          params,
          cred: { k: 'none' },
          labels,
          body,
          contentType,
          tokenUser: user,
        });
      }
      default:
        method = rng.pick(['GET', 'POST', 'DELETE', 'OPTIONS', 'PUT']);
        path = rng.pick([
          '/admin/users',
          '/admin/keys',
          '/admin/policy',
          '/healthz',
          '/readyz',
          '/metrics',
          '/',
          '/token/x',
          '/v1/',
          '/admin/../v2/',
        ]);
        break;
    }
    // odd methods
    if (rng.chance(0.03)) {
      method = rng.pick([
        'get',
        'Get',
        'OPTIONS',
        'PROPFIND',
        'TRACE',
        'PATCH',
        'POST',
        'PURGE',
        'M-SEARCH',
        'HEAD',
        'DELETE',
      ]);
      labels.push(`method:${method}`);
    }
    const nMut = rng.weighted([
      [45, 0],
      [35, 1],
      [15, 2],
      [5, 3],
    ]);
    const extraHeaders = [];
    for (let i = 0; i < nMut; i++) {
      const fam = rng.weighted([
        [25, 'path'],
        [20, 'query'],
        [30, 'header'],
        [10, 'body'],
        [15, 'ctype'],
      ]);
      if (fam === 'path') path = mutatePath(path, labels);
      else if (fam === 'query') params = [[mutateQuery(params, labels), null]];
      else if (fam === 'body') {
        const b = rng.weighted([
          [2, 'random'],
          [2, 'form'],
          [1, 'empty'],
          [1, 'manifest'],
          [1, 'chunked'],
        ]);
        labels.push(`body:${b}`);
        if (b === 'random') body = rng.bytes(rng.int(2000));
        else if (b === 'form') body = formBody(labels);
        else if (b === 'empty') body = Buffer.alloc(0);
        else if (b === 'manifest') body = manifestBody(labels).body;
        else {
          extraHeaders.push(['x-fuzz-chunked', '1']); // framing added when sent
          body ??= Buffer.alloc(0);
        }
      } else if (fam === 'ctype') {
        contentType = rng.pick([...FORM_CONTENT_TYPES, ...OTHER_CONTENT_TYPES]);
        labels.push(`ct:${JSON.stringify(contentType)}`);
      } else {
        const h = rng.weighted([
          [3, 'dup-ctype'],
          [2, 'dup-accept'],
          [2, 'name-case'],
          [2, 'nel-value'],
          [1, 'host'],
          [1, 'xfp'],
          [1, 'te-cl'],
          [1, 'dup-cl'],
          [1, 'expect'],
          [1, 'non-ascii'],
          [1, 'range'],
          [1, 'if-none-match'],
          [1, 'obs-fold'],
        ]);
        labels.push(`hdr:${h}`);
        if (h === 'dup-ctype') extraHeaders.push(['Content-Type', rng.pick(FORM_CONTENT_TYPES)]);
        else if (h === 'dup-accept') extraHeaders.push(['Accept', rng.pick(ACCEPTS.filter(Boolean))]);
        else if (h === 'name-case') extraHeaders.push(['x-name-case', '1']);
        else if (h === 'nel-value') extraHeaders.push(['X-Note', rng.pick(['a\u0085b', '\u00a0', '\u2028'])]);
        else if (h === 'host')
          extraHeaders.push(['Host', rng.pick(['evil.example', 'localhost:1', '127.0.0.1'])]);
        else if (h === 'xfp')
          extraHeaders.push(
            ['X-Forwarded-Proto', rng.pick(['http', 'gopher', 'https, http'])],
            ['X-Forwarded-For', '10.0.0.1'],
          );
        else if (h === 'te-cl') {
          extraHeaders.push(['x-fuzz-te-cl', '1']); // Transfer-Encoding and Content-Length, added when sent
          body ??= Buffer.from('x');
        } else if (h === 'dup-cl') extraHeaders.push(['x-fuzz-dup-cl', '1']);
        else if (h === 'expect') extraHeaders.push(['Expect', '100-continue']);
        else if (h === 'non-ascii') extraHeaders.push(['X-\u00e9', 'v']);
        else if (h === 'range')
          extraHeaders.push(['Range', rng.pick(['bytes=0-3', 'bytes=5-1', 'bytes=0-0,2-3', 'bytes=-1'])]);
        else if (h === 'if-none-match')
          extraHeaders.push(['If-None-Match', rng.pick(['*', `"${rng.pick(allBlobs)}"`])]);
        else extraHeaders.push(['X-Fold', 'a\r\n b']);
      }
    }
    return finish({
      method,
      path,
      params,
      cred,
      labels,
      body,
      contentType,
      accept,
      extraHeaders,
      uploadOwner,
    });
  }

  function finish(o) {
    const q = (o.params ?? []).map(([k, v]) => (v === null ? k : `${k}=${v}`)).join('&');
    const target = q ? `${o.path}?${q}` : o.path;
    const nameCase = (o.extraHeaders ?? []).some(([k]) => k === 'x-name-case');
    const hn = (n) => (nameCase ? rng.pick([n.toUpperCase(), n.toLowerCase(), n]) : n);
    const headers = [['Host', 'localhost']];
    if (o.accept !== undefined) headers.push([hn('Accept'), o.accept]);
    if (o.contentType !== undefined) headers.push([hn('Content-Type'), o.contentType]);
    for (const [k, v] of o.extraHeaders ?? []) {
      if (k.startsWith('x-fuzz-') || k === 'x-name-case') continue;
      if (k === 'Host') headers[0] = [k, v];
      else headers.push([k, v]);
    }
    return {
      method: o.method,
      target,
      headers,
      cred: o.cred,
      authHeaderName: hn('Authorization'),
      body: o.body,
      chunked: (o.extraHeaders ?? []).some(([k]) => k === 'x-fuzz-chunked'),
      teAndCl: (o.extraHeaders ?? []).some(([k]) => k === 'x-fuzz-te-cl'),
      dupCl: (o.extraHeaders ?? []).some(([k]) => k === 'x-fuzz-dup-cl'),
      uploadOwner: o.uploadOwner,
      tokenUser: o.tokenUser,
      labels: o.labels,
    };
  }

  return { next };
}
