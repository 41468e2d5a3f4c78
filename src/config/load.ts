import { readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { z } from 'zod';
import { configSchema, type Config } from './schema.js';

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

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

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
      if (!/^\d+$/.test(v))
        throw new ConfigError(`${name}: expected a whole number, got ${JSON.stringify(v)}`);
      setPath(obj, keys, Number(v));
    } else setPath(obj, keys, v);
  }
  const result = configSchema.safeParse(obj);
  if (!result.success) {
    const lines = result.error.issues.map((i) => `  ${i.path.join('.') || '(top)'}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
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
    trust: { ...c.trust, keysDir: r(c.trust.keysDir) },
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
  const doc = YAML.parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(`${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
  }
  try {
    return parseConfig(doc.toJS(), env, path.dirname(path.resolve(file)));
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError(`${file}: ${err.message}`);
    throw err;
  }
}

export { z };
