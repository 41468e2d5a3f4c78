import { z } from 'zod';

/**
 * What a SIGHUP does with each configuration key. Every leaf key of the schema (src/config/schema.ts)
 * carries one declaration, written where the key is defined:
 *
 *   tokenTtlSeconds: reloadable(z.number()…, 'new tokens get the new lifetime'),
 *   port: restartOnly(z.number()…, 'the listener is bound at start'),
 *
 * A leaf is a key whose schema is not an object: a scalar, an array (trust.rules) or a record
 * (policy.groups) is declared as a whole. An object may be declared as a whole too (its keys then
 * share the rule); an undeclared object is walked into. test/config/reloads.test.ts walks every leaf and fails on
 * one without a declaration.
 *
 * - `reloadable`: a SIGHUP applies the new value; the running process reads it through the one
 *   holder of live values (src/server/live.ts) or reconfigures the part that uses it.
 * - `restart-only`: the part that uses it is built at start. A SIGHUP that changes it keeps the
 *   running value, applies the other keys, and logs a warning naming the key.
 */
export type ReloadRule = { reload: 'reloadable'; how: string } | { reload: 'restart-only'; why: string };

const rules = z.registry<ReloadRule>();

/** Declares `schema` (a key's whole schema, outermost) as applied by a SIGHUP; `how` says how. */
export function reloadable<T extends z.ZodType>(schema: T, how: string): T {
  rules.add(schema, { reload: 'reloadable', how });
  return schema;
}

/** Declares `schema` (a key's whole schema, outermost) as read at start only; `why` says why. */
export function restartOnly<T extends z.ZodType>(schema: T, why: string): T {
  rules.add(schema, { reload: 'restart-only', why });
  return schema;
}

export interface ConfigLeaf {
  /** Key path, e.g. ['auth', 'tokenTtlSeconds']. */
  path: readonly string[];
  /** undefined when the key has no declaration (a bug the walking test reports). */
  rule: ReloadRule | undefined;
}

/**
 * The wrapped schema of a wrapper (default, optional, …) or of the input side of a pipe (a
 * `.transform`); undefined for anything else.
 */
function inner(s: z.ZodType): z.ZodType | undefined {
  if (
    s instanceof z.ZodOptional ||
    s instanceof z.ZodNullable ||
    s instanceof z.ZodDefault ||
    s instanceof z.ZodPrefault ||
    s instanceof z.ZodReadonly ||
    s instanceof z.ZodCatch
  ) {
    return s.def.innerType as z.ZodType;
  }
  if (s instanceof z.ZodPipe) return s.def.in as z.ZodType;
  return undefined;
}

/** Every leaf key of an object schema, with its declaration (looked up through wrappers). */
export function configLeaves(schema: z.ZodType): ConfigLeaf[] {
  const out: ConfigLeaf[] = [];
  const walk = (s: z.ZodType, path: string[]): void => {
    let rule: ReloadRule | undefined;
    let core: z.ZodType | undefined = s;
    for (let layer: z.ZodType | undefined = s; layer; layer = inner(layer)) {
      rule ??= rules.get(layer);
      core = layer;
    }
    if (core instanceof z.ZodObject && rule === undefined) {
      for (const [key, child] of Object.entries(core.shape as Record<string, z.ZodType>)) {
        walk(child, [...path, key]);
      }
      return;
    }
    out.push({ path, rule });
  };
  walk(schema, []);
  return out;
}

function valueAt(obj: unknown, path: readonly string[]): unknown {
  let cur = obj;
  for (const key of path) {
    if (cur === undefined || cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
}

function setAt(obj: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let cur = obj;
  for (const key of path.slice(0, -1)) {
    const next = cur[key];
    // A section absent on one side (metrics unset) is created to hold the running value.
    cur[key] = next !== undefined && next !== null && typeof next === 'object' ? { ...next } : {};
    cur = cur[key] as Record<string, unknown>;
  }
  const last = path[path.length - 1]!;
  if (value === undefined) delete cur[last];
  else cur[last] = value;
}

/** Sections left empty by setAt (an optional section on neither side) are removed again. */
function pruneEmpty(obj: Record<string, unknown>, path: readonly string[]): void {
  for (let n = path.length - 1; n > 0; n--) {
    const section = valueAt(obj, path.slice(0, n));
    if (typeof section !== 'object' || section === null || Object.keys(section).length > 0) return;
    const parent = n === 1 ? obj : (valueAt(obj, path.slice(0, n - 1)) as Record<string, unknown>);
    delete parent[path[n - 1]!];
  }
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

export interface ReloadPlan<C> {
  /** The configuration in force after the reload: the new one, with restart-only keys as running. */
  effective: C;
  /** Reloadable keys whose value changes (dotted paths). */
  applied: string[];
  /** Restart-only keys whose new value waits for a restart (dotted paths). */
  needRestart: string[];
  /** Keys without a declaration (only before the walking test caught them): treated as restart-only. */
  undeclared: string[];
}

/**
 * Compares the running configuration with a newly loaded one, key by key. Policy: a key that is
 * not declared reloadable keeps its running value (what is in force is what `effective` says),
 * and is reported by name so an operator never believes a change took effect when it did not.
 */
export function planReload<C extends object>(schema: z.ZodType, running: C, next: C): ReloadPlan<C> {
  const effective = structuredClone(next) as Record<string, unknown>;
  const plan: ReloadPlan<C> = { effective: effective as C, applied: [], needRestart: [], undeclared: [] };
  for (const leaf of configLeaves(schema)) {
    const was = valueAt(running, leaf.path);
    if (same(was, valueAt(next, leaf.path))) continue;
    const name = leaf.path.join('.');
    if (leaf.rule?.reload === 'reloadable') {
      plan.applied.push(name);
      continue;
    }
    (leaf.rule ? plan.needRestart : plan.undeclared).push(name);
    setAt(effective, leaf.path, structuredClone(was));
    pruneEmpty(effective, leaf.path);
  }
  return plan;
}
