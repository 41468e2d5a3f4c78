/**
 * Strict JSON: the one JSON reader for bytes whose meaning must be the same for trustgate and for
 * the Go programs behind it (registry:2, cosign, containers/image).
 *
 * `JSON.parse` silently keeps the last of two duplicate keys, while Go's encoding/json also keeps the
 * last one but matches struct fields case-insensitively, so `{"mediaType":"a","MediaType":"b"}` is
 * read as "a" by JavaScript and as "b" by registry:2 (invariant I2). This parser refuses every such
 * ambiguity instead of picking a side.
 */
import { GateError, type OciErrorCode } from './errors.js';

/** Policy: nesting deeper than this is refused (Go's encoding/json stops at 10000; manifests need < 10). */
export const MAX_JSON_DEPTH = 256;

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
// A lone surrogate (only reachable through a \uXXXX escape) matches this with the `u` flag.
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/**
 * Go folds keys with Unicode simple folding, so e.g. the Kelvin sign folds onto `K` and `ſ` onto
 * `S`. Policy: we fold with JavaScript's full case mapping, which folds at least as much (it also
 * maps e.g. ß to SS), and map U+0130 (İ) to `I` first: JavaScript lowercases it to two code points,
 * while Go's unicode.ToLower (used by its SimpleFold fallback) maps it to `i`. Folding too much
 * only refuses more, never less.
 */
function foldKey(key: string): string {
  return key.replaceAll('\u0130', 'I').toLowerCase().toUpperCase();
}

class Parser {
  private pos = 0;
  constructor(
    private readonly text: string,
    private readonly fail: (msg: string) => never,
  ) {}

  parseDocument(): unknown {
    this.skipWs();
    const value = this.parseValue(0);
    this.skipWs();
    if (this.pos !== this.text.length)
      this.fail(`unexpected data after the JSON value at offset ${this.pos}`);
    return value;
  }

  private skipWs(): void {
    const t = this.text;
    let p = this.pos;
    for (;;) {
      const c = t.charCodeAt(p);
      // Policy: only the four JSON whitespace characters (RFC 8259); a BOM or NBSP is an error, as in Go.
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) p++;
      else break;
    }
    this.pos = p;
  }

  private parseValue(depth: number): unknown {
    const c = this.text.charCodeAt(this.pos);
    switch (c) {
      case 0x7b: // {
        return this.parseObject(depth + 1);
      case 0x5b: // [
        return this.parseArray(depth + 1);
      case 0x22: // "
        return this.parseString();
      case 0x74: // t
        return this.literal('true', true);
      case 0x66: // f
        return this.literal('false', false);
      case 0x6e: // n
        return this.literal('null', null);
      default:
        if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return this.parseNumber();
        return this.fail(
          Number.isNaN(c) ? 'unexpected end of JSON input' : `unexpected character at offset ${this.pos}`,
        );
    }
  }

  private literal<T>(word: string, value: T): T {
    if (!this.text.startsWith(word, this.pos)) this.fail(`invalid literal at offset ${this.pos}`);
    this.pos += word.length;
    return value;
  }

  private static readonly NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;

  private parseNumber(): number {
    const re = Parser.NUMBER;
    re.lastIndex = this.pos;
    const m = re.exec(this.text);
    if (m === null) return this.fail(`invalid number at offset ${this.pos}`);
    this.pos += m[0].length;
    const n = Number(m[0]);
    // Policy: a number that overflows float64 is refused (Go's encoding/json refuses it too).
    if (!Number.isFinite(n)) this.fail(`number out of range at offset ${this.pos - m[0].length}`);
    return n;
  }

  private parseString(): string {
    const t = this.text;
    const start = this.pos; // at the opening quote
    let p = start + 1;
    let escaped = false;
    for (;;) {
      const c = t.charCodeAt(p);
      if (Number.isNaN(c)) this.fail('unterminated string');
      if (c === 0x22) break;
      if (c < 0x20) this.fail(`control character in string at offset ${p}`);
      if (c === 0x5c) {
        escaped = true;
        p += 2;
        continue;
      }
      p++;
    }
    this.pos = p + 1;
    if (!escaped) return t.slice(start + 1, p);
    let s: string;
    try {
      // The slice is a complete JSON string literal; JSON.parse validates and decodes its escapes.
      s = JSON.parse(t.slice(start, p + 1)) as string;
    } catch {
      return this.fail(`invalid escape in string at offset ${start}`);
    }
    // Policy: Go replaces a lone surrogate with U+FFFD, which can make two distinct keys equal for Go.
    if (LONE_SURROGATE.test(s)) this.fail(`lone surrogate escape in string at offset ${start}`);
    return s;
  }

  private parseArray(depth: number): unknown[] {
    if (depth > MAX_JSON_DEPTH) this.fail(`nesting deeper than ${MAX_JSON_DEPTH}`);
    this.pos++; // [
    const out: unknown[] = [];
    this.skipWs();
    if (this.text.charCodeAt(this.pos) === 0x5d) {
      this.pos++;
      return out;
    }
    for (;;) {
      this.skipWs();
      out.push(this.parseValue(depth));
      this.skipWs();
      const c = this.text.charCodeAt(this.pos);
      this.pos++;
      if (c === 0x2c) continue;
      if (c === 0x5d) return out;
      return this.fail(`expected ',' or ']' at offset ${this.pos - 1}`);
    }
  }

  private parseObject(depth: number): Record<string, unknown> {
    if (depth > MAX_JSON_DEPTH) this.fail(`nesting deeper than ${MAX_JSON_DEPTH}`);
    this.pos++; // {
    const out: Record<string, unknown> = {};
    const folded = new Map<string, string>();
    this.skipWs();
    if (this.text.charCodeAt(this.pos) === 0x7d) {
      this.pos++;
      return out;
    }
    for (;;) {
      this.skipWs();
      if (this.text.charCodeAt(this.pos) !== 0x22) this.fail(`expected a string key at offset ${this.pos}`);
      const key = this.parseString();
      // Policy (I2): a duplicate key, or two keys equal under Go's case folding, is refused at any depth.
      const fk = foldKey(key);
      const prior = folded.get(fk);
      if (prior !== undefined) {
        this.fail(
          prior === key
            ? `duplicate key ${JSON.stringify(key)}`
            : `keys ${JSON.stringify(prior)} and ${JSON.stringify(key)} differ only by case`,
        );
      }
      folded.set(fk, key);
      this.skipWs();
      if (this.text.charCodeAt(this.pos) !== 0x3a) this.fail(`expected ':' at offset ${this.pos}`);
      this.pos++;
      this.skipWs();
      const value = this.parseValue(depth);
      if (key === '__proto__') {
        // Same result as JSON.parse: an own data property, never a prototype change.
        Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
      } else {
        out[key] = value;
      }
      this.skipWs();
      const c = this.text.charCodeAt(this.pos);
      this.pos++;
      if (c === 0x2c) continue;
      if (c === 0x7d) return out;
      return this.fail(`expected ',' or '}' at offset ${this.pos - 1}`);
    }
  }
}

/**
 * Parses JSON strictly: invalid UTF-8, a BOM, duplicate keys, keys that differ only by case (in the
 * same object), lone surrogates and trailing data are refused with a GateError.
 *
 * @param what names the document in the error message, e.g. `manifest` or `signature payload`.
 * @param code the GateError code to throw (default MANIFEST_INVALID).
 */
export function parseStrictJson(
  input: Uint8Array | string,
  what: string,
  code: OciErrorCode = 'MANIFEST_INVALID',
): unknown {
  const fail = (msg: string): never => {
    throw new GateError(code, `${what} is not strict JSON: ${msg}`);
  };
  let text: string;
  if (typeof input === 'string') {
    // A JS string may hold a raw lone surrogate, which has no UTF-8 encoding.
    if (LONE_SURROGATE.test(input)) return fail('lone surrogate');
    text = input;
  } else {
    try {
      text = utf8.decode(input);
    } catch {
      return fail('invalid UTF-8');
    }
  }
  return new Parser(text, fail).parseDocument();
}

/**
 * A key of `obj` that Go reads into one of the fields `names` but that is spelled otherwise, as
 * `[key, name]`, or undefined. Go's encoding/json matches keys to struct fields case-insensitively,
 * so `{"URLs": […]}` fills the field `urls` for registry:2 while a JavaScript reader sees no `urls`.
 */
export function caseVariantKey(
  obj: Record<string, unknown>,
  names: readonly string[],
): [string, string] | undefined {
  for (const key of Object.keys(obj)) {
    if (names.includes(key)) continue;
    const name = names.find((n) => foldKey(n) === foldKey(key));
    if (name !== undefined) return [key, name];
  }
  return undefined;
}

/** True for a plain JSON object (not an array, not null). */
export function isJsonObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
