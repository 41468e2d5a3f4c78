/**
 * The distribution grammars for repository names, tags and digests, and the docker reference
 * (`HOST/REPO[:TAG][@DIGEST]`) as docker/distribution's `reference` package reads it.
 *
 * Written from the grammar in distribution `reference/regexp.go` (v2.8) and `reference/normalize.go`.
 * Every regex here is anchored and free of nested ambiguous quantifiers, so matching stays linear
 * on hostile input.
 */
import { GateError } from './errors.js';

/** distribution's NameTotalLengthMax. */
export const NAME_MAX_LENGTH = 255;

/**
 * One path component: `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`. (regexp.go in v2.8 writes the dash
 * separator as `[-]*`; the language is the same, and `[-]+` avoids catastrophic backtracking.)
 */
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;

/** `[\w][\w.-]{0,127}`; `\w` is ASCII-only both in Go RE2 and in a JS regex without the `u` flag. */
const TAG = /^\w[\w.-]{0,127}$/;

/**
 * Policy: only sha256 and sha512, with lowercase hex of the exact length. go-digest's grammar allows
 * any algorithm name and registry:2 would treat an unparseable `sha256:ABC…` reference as a tag; we
 * refuse everything that is not one canonical spelling, so one digest has one string.
 */
const DIGEST = /^(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;

/** domainNameComponent(\.domainNameComponent)* | [ipv6], then an optional :port. */
const DOMAIN =
  /^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$/;

/**
 * A repository name: path components joined by `/`, at most 255 characters. Policy: no domain
 * component (`localhost:5000/x`): registry:2's route regex would accept one, but names in this
 * registry never carry a host, and a `:` or uppercase letter in a name only invites misreadings.
 */
export function isValidRepoName(name: string): boolean {
  if (name.length === 0 || name.length > NAME_MAX_LENGTH) return false;
  return name.split('/').every((c) => PATH_COMPONENT.test(c));
}

export function isValidTag(tag: string): boolean {
  return TAG.test(tag);
}

export function isValidDigest(d: string): boolean {
  return DIGEST.test(d);
}

/**
 * The cosign "legacy" signature tag for a manifest digest: `sha256-<hex>.sig`.
 * Policy: sha256 only. A sha512 digest would give a 139-character tag, longer than the tag grammar
 * allows (128), so no registry can hold it: refuse rather than build an unusable reference.
 */
export function signatureTagFor(digest: string): string {
  if (!/^sha256:[a-f0-9]{64}$/.test(digest)) {
    throw new GateError('DIGEST_INVALID', 'signature tags exist only for sha256 manifest digests', {
      logDetail: { digest },
    });
  }
  return `sha256-${digest.slice('sha256:'.length)}.sig`;
}

export interface DockerReference {
  host?: string;
  repo: string;
  tag?: string;
  digest?: string;
}

/**
 * Splits `HOST/REPO[:TAG][@DIGEST]` the way docker/distribution does. The first component is a host
 * only if it contains `.` or `:` or is exactly `localhost` (normalize.go's splitDockerDomain rule);
 * otherwise the whole name is the repository. No normalisation: `ubuntu` stays `ubuntu`, without
 * `docker.io/library/`. Throws GateError (NAME_INVALID, MANIFEST_INVALID for a bad tag,
 * DIGEST_INVALID) on anything outside the grammar.
 */
export function parseDockerReference(s: string): DockerReference {
  let rest = s;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at !== -1) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    // One `@` at most; the digest check below refuses a second one (and every other bad digest).
    if (!isValidDigest(digest)) throw new GateError('DIGEST_INVALID', 'invalid digest in reference');
  }
  let tag: string | undefined;
  // The tag separator is the last `:` after the last `/` (a `:` before it belongs to HOST:PORT).
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!isValidTag(tag)) throw new GateError('MANIFEST_INVALID', 'invalid tag in reference');
  }
  // distribution checks the length of the whole name, host included.
  if (rest.length === 0 || rest.length > NAME_MAX_LENGTH) {
    throw new GateError('NAME_INVALID', 'invalid repository name in reference');
  }
  let host: string | undefined;
  let repo = rest;
  const slash = rest.indexOf('/');
  if (slash !== -1) {
    const first = rest.slice(0, slash);
    if (first.includes('.') || first.includes(':') || first === 'localhost') {
      host = first;
      repo = rest.slice(slash + 1);
      if (!DOMAIN.test(host)) throw new GateError('NAME_INVALID', 'invalid registry host in reference');
    }
  }
  if (!isValidRepoName(repo)) throw new GateError('NAME_INVALID', 'invalid repository name in reference');
  const out: DockerReference = { repo };
  if (host !== undefined) out.host = host;
  if (tag !== undefined) out.tag = tag;
  if (digest !== undefined) out.digest = digest;
  return out;
}

/** parseDockerReference, or null where it throws (a reference inside signed data, user input). */
export function tryParseDockerReference(s: string): DockerReference | null {
  try {
    return parseDockerReference(s);
  } catch {
    return null;
  }
}
