/**
 * The cosign / containers "simple signing" payload: the JSON document a signature is made over.
 *
 * Parsed as strictly as containers/image does (signature/internal/sigstore_payload.go): exactly
 * `critical` and `optional` at the top (both present; `optional` may be null, which is what cosign
 * writes), exactly `type`, `image`, `identity` inside `critical`, exactly one field in `image` and in
 * `identity`, no duplicate keys. Callers must verify the signature over the raw bytes BEFORE parsing.
 */
import { tryParseDockerReference } from '../reference.js';
import { GateError } from '../errors.js';
import { isJsonObject, parseStrictJson } from '../json-strict.js';
import { isValidDigest } from '../manifest.js';

export const SIMPLE_SIGNING_TYPE = 'cosign container image signature';

export interface SimpleSigningPayload {
  dockerReference: string;
  manifestDigest: string;
  optional: Record<string, unknown> | null;
}

function bad(msg: string): never {
  throw new GateError('MANIFEST_INVALID', `signature payload invalid: ${msg}`);
}

function exactFields(v: unknown, fields: readonly string[], where: string): Record<string, unknown> {
  if (!isJsonObject(v)) return bad(`${where} must be a JSON object`);
  const keys = Object.keys(v);
  for (const k of keys) {
    if (!fields.includes(k)) bad(`unexpected field ${JSON.stringify(k)} in ${where}`);
  }
  for (const f of fields) {
    if (!Object.prototype.hasOwnProperty.call(v, f)) bad(`missing field ${JSON.stringify(f)} in ${where}`);
  }
  return v;
}

/** Parses a simple-signing payload strictly. Throws GateError('MANIFEST_INVALID'). */
export function parseSimpleSigningPayload(bytes: Uint8Array | string): SimpleSigningPayload {
  const doc = exactFields(
    parseStrictJson(bytes, 'signature payload', 'MANIFEST_INVALID'),
    ['critical', 'optional'],
    'the payload',
  );

  let optional: Record<string, unknown> | null = null;
  if (doc.optional !== null) {
    if (!isJsonObject(doc.optional)) bad('"optional" must be an object or null');
    optional = doc.optional;
    // Same typing as containers/image: creator is a string, timestamp an integer (seconds).
    if ('creator' in optional && typeof optional.creator !== 'string')
      bad('optional.creator must be a string');
    if ('timestamp' in optional) {
      const ts = optional.timestamp;
      if (typeof ts !== 'number' || !Number.isSafeInteger(ts)) bad('optional.timestamp must be an integer');
    }
  }

  const critical = exactFields(doc.critical, ['type', 'image', 'identity'], '"critical"');
  if (critical.type !== SIMPLE_SIGNING_TYPE) {
    bad(`unrecognised signature type ${JSON.stringify(critical.type)}`);
  }
  const image = exactFields(critical.image, ['docker-manifest-digest'], 'critical.image');
  const manifestDigest = image['docker-manifest-digest'];
  if (!isValidDigest(manifestDigest)) bad(`invalid docker-manifest-digest ${JSON.stringify(manifestDigest)}`);
  const identity = exactFields(critical.identity, ['docker-reference'], 'critical.identity');
  const dockerReference = identity['docker-reference'];
  if (typeof dockerReference !== 'string' || dockerReference === '') {
    bad('critical.identity.docker-reference must be a non-empty string');
  }
  return { dockerReference: dockerReference as string, manifestDigest: manifestDigest as string, optional };
}

export interface BuildPayloadInput {
  /** Full reference; `trustgate sign` passes HOST/REPO:TAG, skopeo-style. */
  dockerReference: string;
  manifestDigest: string;
  creator?: string;
  /** Unix seconds (integer). The clock is the caller's. */
  timestamp?: number;
}

/**
 * Builds the payload bytes `trustgate sign` signs, in the key order Go's encoding/json writes
 * (maps are sorted), so our payloads look like cosign's and skopeo's.
 */
export function buildSimpleSigningPayload(input: BuildPayloadInput): Uint8Array {
  if (tryParseDockerReference(input.dockerReference) === null) {
    throw new TypeError(`invalid docker reference ${JSON.stringify(input.dockerReference)}`);
  }
  if (!isValidDigest(input.manifestDigest)) {
    throw new TypeError(`invalid manifest digest ${JSON.stringify(input.manifestDigest)}`);
  }
  if (input.timestamp !== undefined && !Number.isSafeInteger(input.timestamp)) {
    throw new TypeError('timestamp must be an integer number of seconds');
  }
  let optional: Record<string, unknown> | null = null;
  if (input.creator !== undefined || input.timestamp !== undefined) {
    optional = {};
    if (input.creator !== undefined) optional.creator = input.creator;
    if (input.timestamp !== undefined) optional.timestamp = input.timestamp;
  }
  const doc = {
    critical: {
      identity: { 'docker-reference': input.dockerReference },
      image: { 'docker-manifest-digest': input.manifestDigest },
      type: SIMPLE_SIGNING_TYPE,
    },
    optional,
  };
  return new TextEncoder().encode(JSON.stringify(doc));
}
