import { readFileSync } from 'node:fs';
import path from 'node:path';
import YAML, { isMap, isScalar, isSeq, LineCounter, type Document, type ErrorCode, type Node } from 'yaml';
import { z } from 'zod';
import { isSecretKey } from '../core/redact.js';
import { configSchema, isMirrorUrl, type Config } from './schema.js';

/**
 * Environment overrides: secrets and ports can come from the environment so that config files
 * can be committed. Each variable sets one key path.
 */
export const ENV_OVERRIDES: Array<[string, string[], 'string' | 'number']> = [
  ['TRUSTGATE_LISTEN_HOST', ['listen', 'host'], 'string'],
  ['TRUSTGATE_LISTEN_PORT', ['listen', 'port'], 'number'],
  ['TRUSTGATE_PUBLIC_URL', ['publicUrl'], 'string'],
  ['TRUSTGATE_UPSTREAM_URL', ['upstream', 'url'], 'string'],
  ['TRUSTGATE_TLS_CERT', ['tls', 'cert'], 'string'],
  ['TRUSTGATE_TLS_KEY', ['tls', 'key'], 'string'],
  ['TRUSTGATE_REDIS_URL', ['cache', 'redisUrl'], 'string'],
  ['TRUSTGATE_CACHE_HMAC_SECRET', ['cache', 'hmacSecret'], 'string'],
  ['TRUSTGATE_LOG_LEVEL', ['log', 'level'], 'string'],
  ['TRUSTGATE_AUTH_SIGNING_KID', ['auth', 'signingKid'], 'string'],
];

/** One problem in a configuration: where (key path) and what, never the value found there. */
export interface ConfigIssue {
  path: ReadonlyArray<string | number>;
  message: string;
}

/**
 * A configuration that does not load. Policy: the message names key paths, lines and columns and
 * the problem only; it never quotes the file (the yaml library's code frame would print the line,
 * `cache.hmacSecret: …` included) nor a value, so it is safe on a terminal and in the log of a
 * refused SIGHUP.
 */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    message: string,
    readonly issues: readonly ConfigIssue[] = [],
  ) {
    super(message);
  }
}

/** Key paths whose values are secrets (besides keys isSecretKey names): a URL may carry a password. */
const SECRET_CONFIG_PATHS: ReadonlySet<string> = new Set(['cache.redisUrl', 'cache.hmacSecret']);
/** zod issue codes whose messages name only types and bounds, never the value. */
const VALUE_FREE_CODES: ReadonlySet<string> = new Set(['invalid_type', 'too_small', 'too_big', 'custom']);

const isSecretPath = (p: ReadonlyArray<string | number>): boolean =>
  SECRET_CONFIG_PATHS.has(p.join('.')) || p.some((k) => typeof k === 'string' && isSecretKey(k));

const showPath = (p: ReadonlyArray<string | number>): string => p.join('.') || '(top)';

function setPath(obj: Record<string, unknown>, keys: string[], value: unknown): void {
  let cur = obj;
  for (const k of keys.slice(0, -1)) {
    const next = cur[k];
    if (next === undefined || next === null) cur[k] = {};
    else if (typeof next !== 'object') throw new ConfigError(`${keys.join('.')}: ${k} is not a mapping`);
    cur = cur[k] as Record<string, unknown>;
  }
  cur[keys[keys.length - 1]!] = value;
}

/** Validates a plain object; errors name each key path and its problem. */
export function parseConfig(raw: unknown, env: NodeJS.ProcessEnv = {}, baseDir = process.cwd()): Config {
  const obj = (raw ?? {}) as Record<string, unknown>;
  if (typeof obj !== 'object' || Array.isArray(obj))
    throw new ConfigError('config: the file must be a mapping');
  for (const [name, keys, type] of ENV_OVERRIDES) {
    const v = env[name];
    if (v === undefined || v === '') continue;
    if (type === 'number') {
      if (!/^\d+$/.test(v)) throw new ConfigError(`${name}: expected a whole number`);
      setPath(obj, keys, Number(v));
    } else setPath(obj, keys, v);
  }
  const result = configSchema.safeParse(obj);
  if (!result.success) {
    const issues: ConfigIssue[] = result.error.issues.map((i) => {
      const p = i.path.filter((k): k is string | number => typeof k !== 'symbol');
      // Policy: for a secret key, only messages that cannot carry the value are shown.
      const message =
        isSecretPath(p) && !VALUE_FREE_CODES.has(i.code)
          ? 'invalid value (not shown: this key holds a secret)'
          : i.message;
      return { path: p, message };
    });
    const lines = issues.map((i) => `  ${showPath(i.path)}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`, issues);
  }
  return resolvePaths(result.data, baseDir);
}

/** Relative file paths in the config are relative to the config file's folder. */
function resolvePaths(c: Config, baseDir: string): Config {
  const r = (p: string): string => path.resolve(baseDir, p);
  const o = (p: string | undefined): string | undefined => (p === undefined ? undefined : r(p));
  return {
    ...c,
    tls: { ...c.tls, cert: r(c.tls.cert), key: r(c.tls.key), clientCa: o(c.tls.clientCa) },
    auth: {
      ...c.auth,
      tokenKeyDir: r(c.auth.tokenKeyDir),
      htpasswd: o(c.auth.htpasswd),
      robotsFile: o(c.auth.robotsFile),
    },
    trust: {
      ...c.trust,
      keysDir: r(c.trust.keysDir),
      exceptionsFile: r(c.trust.exceptionsFile),
      ...(c.trust.trustedRoot ? { trustedRoot: r(c.trust.trustedRoot) } : {}),
      sigstore: c.trust.sigstore.map((s) => ({
        ...s,
        ...(s.trustedRoot !== undefined ? { trustedRoot: r(s.trustedRoot) } : {}),
        ...(s.tuf
          ? {
              tuf: {
                ...s.tuf,
                mirror: isMirrorUrl(s.tuf.mirror) ? s.tuf.mirror : r(s.tuf.mirror),
                root: r(s.tuf.root),
                ...(s.tuf.cacheDir !== undefined ? { cacheDir: r(s.tuf.cacheDir) } : {}),
              },
            }
          : {}),
      })),
    },
    log: { ...c.log, auditFile: o(c.log.auditFile) },
  };
}

export function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
  }
  const lineCounter = new LineCounter();
  const doc = YAML.parseDocument(text, { uniqueKeys: true, lineCounter });
  if (doc.errors.length > 0) {
    // Policy: the yaml library's messages end with a code frame quoting the line; only its error
    // code, our description of it, the position and the key path there are reported.
    const lines = doc.errors.map((e) => {
      const { line, col } = e.linePos?.[0] ?? lineCounter.linePos(e.pos[0]);
      const at = keyPathAt(doc, e.pos[0]);
      return `  line ${line}, column ${col}${at ? ` (in ${at})` : ''}: ${YAML_PROBLEMS[e.code] ?? 'YAML syntax error'} [${e.code}]`;
    });
    throw new ConfigError(`${file}: not valid YAML:\n${lines.join('\n')}`);
  }
  try {
    return parseConfig(doc.toJS(), env, path.dirname(path.resolve(file)));
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    if (err.issues.length === 0) throw new ConfigError(`${file}: ${err.message}`);
    const lines = err.issues.map((i) => {
      const node = doc.getIn(i.path, true) as Node | undefined;
      const at = node?.range ? lineCounter.linePos(node.range[0]) : undefined;
      return `  ${showPath(i.path)}${at ? ` (line ${at.line}, column ${at.col})` : ''}: ${i.message}`;
    });
    throw new ConfigError(`${file}: invalid configuration:\n${lines.join('\n')}`, err.issues);
  }
}

/** What each yaml error code means, in our words (the library's own messages may quote text). */
const YAML_PROBLEMS: Partial<Record<ErrorCode, string>> = {
  ALIAS_PROPS: 'an alias cannot have a tag or anchor',
  BAD_ALIAS: 'an alias names no anchor defined before it',
  BAD_DIRECTIVE: 'invalid directive',
  BAD_DQ_ESCAPE: 'invalid escape sequence in a double-quoted string',
  BAD_INDENT: 'wrong indentation',
  BAD_PROP_ORDER: 'anchor and tag in the wrong order',
  BAD_SCALAR_START: 'a plain value cannot start with this character (quote it)',
  BLOCK_AS_IMPLICIT_KEY: 'a block value cannot be a key',
  BLOCK_IN_FLOW: 'a block value inside a flow collection ({…} or […])',
  DUPLICATE_KEY: 'duplicate key (which one would win is not a guess we make)',
  KEY_OVER_1024_CHARS: 'a key longer than 1024 characters',
  MISSING_CHAR: 'a closing quote or bracket is missing',
  MULTILINE_IMPLICIT_KEY: 'a key spans several lines',
  MULTIPLE_ANCHORS: 'several anchors on one value',
  MULTIPLE_DOCS: 'more than one YAML document',
  MULTIPLE_TAGS: 'several tags on one value',
  NON_STRING_KEY: 'a key that is not a string',
  RESOURCE_EXHAUSTION: 'too many alias expansions',
  TAB_AS_INDENT: 'a tab used for indentation',
  TAG_RESOLVE_FAILED: 'a value does not match its tag',
  UNEXPECTED_TOKEN: 'unexpected text',
  BAD_COLLECTION_TYPE: 'a collection of the wrong type for its tag',
};

/**
 * The key path (`cache.hmacSecret`, `trust.rules.0`) of the innermost mapping entry or sequence
 * item that spans `offset`; components that do not look like config keys are shown as `?`.
 */
function keyPathAt(doc: Document, offset: number): string {
  const out: string[] = [];
  let node: unknown = doc.contents;
  const spans = (n: unknown): boolean => {
    const r = (n as Node | null)?.range;
    return r !== undefined && r !== null && r[0] <= offset && offset <= r[2];
  };
  for (let depth = 0; depth < 32; depth++) {
    if (isMap(node)) {
      const pair = node.items.find((p) => {
        const start = (p.key as Node | null)?.range?.[0];
        const end = (p.value as Node | null)?.range?.[2] ?? (p.key as Node | null)?.range?.[2];
        return start !== undefined && end !== undefined && start <= offset && offset <= end;
      });
      if (!pair) break;
      const k = isScalar(pair.key) ? String(pair.key.value) : '';
      out.push(/^[A-Za-z0-9_-]{1,64}$/.test(k) ? k : '?');
      node = pair.value;
    } else if (isSeq(node)) {
      const i = node.items.findIndex(spans);
      if (i === -1) break;
      out.push(String(i));
      node = node.items[i];
    } else break;
  }
  return out.join('.');
}

export { z };
