// JSON as the Go programs behind trustgate read it, for the fuzz oracle: a writer that can emit
// duplicate keys, a key scanner, the two ways Go's encoding/json folds field names, and Go's
// reading of a Content-Type (mime.ParseMediaType) for form bodies. Independent of src/: the
// oracle must not share trustgate's own parser.
import { Buffer } from 'node:buffer';
import { TextDecoder } from 'node:util';

/** An object whose keys may repeat: `obj([k, v], [k, v], ...)`. */
export class Obj {
  constructor(pairs) {
    this.pairs = pairs;
  }
  get(k) {
    return this.pairs.findLast(([key]) => key === k)?.[1];
  }
  set(k, v) {
    const i = this.pairs.findIndex(([key]) => key === k);
    if (i === -1) this.pairs.push([k, v]);
    else this.pairs[i] = [k, v];
    return this;
  }
  rename(k, to) {
    for (const p of this.pairs) if (p[0] === k) p[0] = to;
    return this;
  }
  without(k) {
    this.pairs = this.pairs.filter(([key]) => key !== k);
    return this;
  }
}
export const obj = (...pairs) => new Obj(pairs);

/** Plain JS value -> Obj tree (so it can be mutated with repeated keys). */
export function toObj(v) {
  if (Array.isArray(v)) return v.map(toObj);
  if (v !== null && typeof v === 'object' && !(v instanceof Obj)) {
    return new Obj(Object.entries(v).map(([k, x]) => [k, toObj(x)]));
  }
  return v;
}

export function deepClone(v) {
  if (Array.isArray(v)) return v.map(deepClone);
  if (v instanceof Obj) return new Obj(v.pairs.map(([k, x]) => [k, deepClone(x)]));
  return v;
}

/** Serialises; `ws` is inserted around structural characters (JSON whitespace or anything else). */
export function ser(v, ws = '') {
  if (v instanceof Obj) {
    return `{${ws}${v.pairs.map(([k, x]) => `${JSON.stringify(k)}${ws}:${ws}${ser(x, ws)}`).join(`,${ws}`)}${ws}}`;
  }
  if (Array.isArray(v)) return `[${ws}${v.map((x) => ser(x, ws)).join(`,${ws}`)}${ws}]`;
  if (v && typeof v === 'object' && 'raw' in v) return v.raw; // pre-serialised fragment
  return JSON.stringify(v);
}
export const raw = (text) => ({ raw: text });

// ---------------------------------------------------------------------------------------------
// Go's folding of JSON object keys onto struct field names
// ---------------------------------------------------------------------------------------------

/**
 * Go <= 1.20 (registry 2.8.2 here is built with go1.19): a key matches a field if equal under
 * ASCII case folding, plus the two special runes U+017F (long s ~ s) and U+212A (Kelvin ~ k).
 * Any other non-ASCII rune never matches an ASCII field name.
 */
export function foldGo119(key) {
  let out = '';
  for (const ch of key) {
    const cp = ch.codePointAt(0);
    if (cp < 0x80) out += ch.toUpperCase();
    else if (cp === 0x17f) out += 'S';
    else if (cp === 0x212a) out += 'K';
    else out += ch;
  }
  return out;
}

function simpleLower(cp) {
  if (cp === 0x130) return 0x69; // Go: unicode.ToLower('İ') == 'i' (simple mapping)
  const s = String.fromCodePoint(cp).toLowerCase();
  return [...s].length === 1 ? s.codePointAt(0) : cp;
}
function simpleUpper(cp) {
  const s = String.fromCodePoint(cp).toUpperCase();
  return [...s].length === 1 ? s.codePointAt(0) : cp;
}

/** Go >= 1.21 (docker, containerd and registry 3 builds): per rune ToUpper(ToLower(r)). */
export function foldGo121(key) {
  let out = '';
  for (const ch of key) out += String.fromCodePoint(simpleUpper(simpleLower(ch.codePointAt(0))));
  return out;
}

/** Struct fields registry 2.8's manifest types read (ocischema, schema2, manifestlist, Descriptor, Platform). */
export const REGISTRY_FIELDS = [
  'schemaVersion',
  'mediaType',
  'config',
  'layers',
  'manifests',
  'annotations',
  'digest',
  'size',
  'urls',
  'platform',
  'architecture',
  'os',
  'os.version',
  'os.features',
  'variant',
  'features',
];
const FIELD_BY_FOLD = new Map(REGISTRY_FIELDS.map((f) => [foldGo119(f), f]));
/** Objects under these keys are Go maps (exact keys), not structs. */
const MAP_VALUED = new Set(['ANNOTATIONS']);

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Scans a JSON document and lists its objects with their keys in order. Returns null if it is
 * not JSON for JavaScript (JSON.parse) or not valid UTF-8. Iterative (deep documents are fine).
 */
export function scanObjects(bytes) {
  let text;
  try {
    text = typeof bytes === 'string' ? bytes : utf8.decode(bytes);
    JSON.parse(text);
  } catch {
    return null;
  }
  const objects = [];
  const stack = [];
  let pendingKey = null; // the key whose value comes next, in the innermost object
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      let escaped = false;
      while (text[j] !== '"') {
        if (text[j] === '\\') {
          escaped = true;
          j += 2;
        } else j++;
      }
      const s = escaped ? JSON.parse(text.slice(i, j + 1)) : text.slice(i + 1, j);
      i = j + 1;
      const top = stack.at(-1);
      if (top && top.type === 'obj' && top.expectKey) {
        top.keys.push(s);
        top.expectKey = false;
        pendingKey = s;
      }
      continue;
    }
    if (c === '{' || c === '[') {
      const top = stack.at(-1);
      const parentKey = top ? (top.type === 'obj' ? pendingKey : top.parentKey) : null;
      const entry = { type: c === '{' ? 'obj' : 'arr', parentKey, keys: [], expectKey: c === '{' };
      if (entry.type === 'obj') objects.push({ parentKey, keys: entry.keys, depth: stack.length });
      stack.push(entry);
    } else if (c === '}' || c === ']') {
      stack.pop();
    } else if (c === ',') {
      const top = stack.at(-1);
      if (top && top.type === 'obj') top.expectKey = true;
    }
    i++;
  }
  return objects;
}

/**
 * The reasons two JSON readers could read different documents out of these bytes (I2), as
 * [{rule, detail}]. Empty: unambiguous. null: not JSON at all.
 */
export function ambiguities(bytes) {
  const objects = scanObjects(bytes);
  if (objects === null) return null;
  const out = [];
  for (const o of objects) {
    const isMap = o.parentKey !== null && MAP_VALUED.has(foldGo119(o.parentKey));
    const seen = new Map();
    const seen119 = new Map();
    const seen121 = new Map();
    for (const k of o.keys) {
      if (seen.has(k)) out.push({ rule: 'duplicate-key', detail: k });
      seen.set(k, true);
      if (isMap) continue; // Go keeps map keys exact: no folding
      const f119 = foldGo119(k);
      const f121 = foldGo121(k);
      const p119 = seen119.get(f119);
      if (p119 !== undefined && p119 !== k) out.push({ rule: 'go-fold-key', detail: `${p119} ~ ${k}` });
      else {
        const p121 = seen121.get(f121);
        if (p121 !== undefined && p121 !== k) out.push({ rule: 'go1.21-fold-key', detail: `${p121} ~ ${k}` });
      }
      seen119.set(f119, k);
      seen121.set(f121, k);
      const field = FIELD_BY_FOLD.get(f119);
      if (field !== undefined && field !== k && !o.keys.includes(field)) {
        out.push({ rule: 'lone-variant-key', detail: `${k} (read as ${field})` });
      }
    }
  }
  // one finding per (rule, detail)
  return [...new Map(out.map((a) => [`${a.rule}|${a.detail}`, a])).values()];
}

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const SIMPLESIGNING = 'application/vnd.dev.cosign.simplesigning.v1+json';
export const COSIGN_SIG = 'dev.cosignproject.cosign/signature';

/** JavaScript's (last key wins) view of a manifest, or null. */
export function jsView(bytes) {
  try {
    const v = JSON.parse(Buffer.from(bytes).toString('utf8'));
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? v : null;
  } catch {
    return null;
  }
}

/** A cosign signature artifact by its media types (DESIGN I1, third case). */
export function isSigArtifactShape(v) {
  return (
    v !== null &&
    (v.mediaType === undefined || v.mediaType === OCI_MANIFEST) &&
    v.config?.mediaType === OCI_CONFIG &&
    Array.isArray(v.layers) &&
    v.layers.length >= 1 &&
    v.layers.every((l) => l?.mediaType === SIMPLESIGNING)
  );
}

// ---------------------------------------------------------------------------------------------
// Go's reading of Content-Type for request.FormValue (net/http parsePostForm, mime.ParseMediaType)
// ---------------------------------------------------------------------------------------------

const GO_SPACE = new Set([
  0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005,
  0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000,
]);
const TOKEN = /^[!#$%&'*+\-.0-9A-Z^_`a-z|~]+$/;

/** The media type Go's mime.ParseMediaType returns for these header bytes ('' if invalid). */
export function goMediaType(headerValue) {
  const bytes = Buffer.from(headerValue, 'utf8');
  const s = bytes.toString('utf8'); // invalid sequences become U+FFFD, as Go's ToLower makes them
  const base = s.split(';')[0];
  let lower = '';
  for (const ch of base) {
    const cp = ch.codePointAt(0);
    lower += String.fromCodePoint(cp < 0x80 ? ch.toLowerCase().codePointAt(0) : simpleLower(cp));
  }
  const cps = [...lower];
  let a = 0;
  let b = cps.length;
  while (a < b && GO_SPACE.has(cps[a].codePointAt(0))) a++;
  while (b > a && GO_SPACE.has(cps[b - 1].codePointAt(0))) b--;
  const mt = cps.slice(a, b).join('');
  const slash = mt.indexOf('/');
  if (slash === -1) return TOKEN.test(mt) ? mt : '';
  return TOKEN.test(mt.slice(0, slash)) && TOKEN.test(mt.slice(slash + 1)) ? mt : '';
}

/** True when registry:2 (Go) would read this request body as a form (FormValue on POST/PUT/PATCH). */
export function goReadsForm(contentType) {
  if (contentType === undefined) return false;
  const mt = goMediaType(contentType);
  if (mt === 'application/x-www-form-urlencoded') return true;
  return mt === 'multipart/form-data' && /boundary=/i.test(contentType);
}

/** Go's url.ParseQuery of a form body / query: first value per key, `+` is space; `;` pairs dropped. */
export function goParseQuery(s) {
  const out = new Map();
  for (const pair of s.split('&')) {
    if (pair === '' || pair.includes(';')) continue;
    const eq = pair.indexOf('=');
    const dec = (x) => {
      try {
        return decodeURIComponent(x.replace(/\+/g, ' '));
      } catch {
        return null;
      }
    };
    const k = dec(eq === -1 ? pair : pair.slice(0, eq));
    const v = dec(eq === -1 ? '' : pair.slice(eq + 1));
    if (k === null || v === null) continue;
    if (!out.has(k)) out.set(k, v);
  }
  return out;
}

/** The fields Go's multipart reader would find in a body with this boundary (name -> first value). */
export function goMultipartFields(body, contentType) {
  const m = /boundary=([^;\s]+)/i.exec(contentType);
  const out = new Map();
  if (!m) return out;
  const text = Buffer.from(body).toString('latin1');
  for (const part of text.split(`--${m[1]}`)) {
    const nm = /name="([^"]*)"\r\n\r\n([\s\S]*?)\r\n$/.exec(part);
    if (nm && !out.has(nm[1])) out.set(nm[1], nm[2]);
  }
  return out;
}
