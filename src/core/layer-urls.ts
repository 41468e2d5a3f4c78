/**
 * Layer URLs (`urls` on a descriptor: foreign, or non-distributable, layers that clients fetch
 * from somewhere other than the registry). Pure: a parsed manifest and the allowlist in, nothing
 * or a GateError('MANIFEST_INVALID') out.
 *
 * The URL rule mirrors registry:2's `validation.manifests.urls` (v2.8
 * registry/storage/ocimanifesthandler.go, schema2manifesthandler.go, handlers/app.go): every URL
 * must parse as http or https without a fragment, match one of the `allow` expressions and none of
 * the `deny` ones, each matched anywhere in the URL unless anchored (Go's MatchString). Where
 * trustgate differs, it is stricter:
 * - Policy: an empty `allow` refuses every URL, even when `deny` is set (registry:2 then allows
 *   all that `deny` does not match). To allow all, say so: `allow: ['^https?://']`.
 * - Policy: the rule applies to layers of every media type. registry:2 checks URLs only on its
 *   foreign and OCI tar/tar+gzip/non-distributable layer types; on any other type (a Docker
 *   `rootfs.diff.tar.gzip` layer, `tar+zstd`, a config) it accepts a descriptor with URLs without
 *   checking them, and without checking that its blob exists.
 * - Policy: `urls` are allowed on layers only. On a config, a subject or an index entry registry:2
 *   ignores them (or, for a config, skips the blob check), and no tool writes them, but a client
 *   such as containerd fetches any descriptor from its URLs: a pull would leave trustgate's path.
 * - Policy: a Docker foreign layer (`…rootfs.foreign.diff.tar.gzip`) without URLs is refused
 *   (registry:2 refuses it too, but with a 500).
 * - URLs are printable ASCII of at most MAX_URL_LENGTH characters (the expressions are the
 *   admin's; the URLs are the pusher's, so their length is bounded before any expression runs).
 */
import { GateError } from './errors.js';
import type { Descriptor, ParsedManifest } from './manifest.js';

export const MAX_URL_LENGTH = 2048;

export const MEDIA_TYPE_DOCKER_FOREIGN_LAYER = 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip';

export interface LayerUrlPolicy {
  allow: readonly RegExp[];
  deny: readonly RegExp[];
}

/** The policy that allows no URL (the default). */
export const NO_LAYER_URLS: LayerUrlPolicy = Object.freeze({ allow: [], deny: [] });

/** Compiles the configured expressions; a TypeError names the one that is not valid. */
export function compileLayerUrlPolicy(c: {
  allow: readonly string[];
  deny: readonly string[];
}): LayerUrlPolicy {
  const compile = (list: readonly string[], key: string): RegExp[] =>
    list.map((source, i) => {
      try {
        return new RegExp(source);
      } catch (err) {
        throw new TypeError(
          `manifests.layerUrls.${key}[${i}] is not a valid regular expression: ${(err as Error).message}`,
        );
      }
    });
  return { allow: compile(c.allow, 'allow'), deny: compile(c.deny, 'deny') };
}

function invalid(msg: string): never {
  throw new GateError('MANIFEST_INVALID', `manifest invalid: ${msg}`);
}

const hasUrls = (d: Descriptor | undefined): boolean => (d?.urls?.length ?? 0) > 0;

/** Why `url` is not acceptable under `policy`, or undefined when it is. */
export function layerUrlRefusal(url: string, policy: LayerUrlPolicy): string | undefined {
  if (url.length > MAX_URL_LENGTH) return `is longer than ${MAX_URL_LENGTH} characters`;
  if (!/^[\x21-\x7e]+$/.test(url)) return 'is not printable ASCII without spaces';
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'is not an absolute URL';
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return 'is not http or https';
  if (url.includes('#')) return 'has a fragment';
  if (policy.allow.length === 0) {
    return 'is not allowed: layer URLs are refused unless manifests.layerUrls.allow (an admin setting) lists them';
  }
  if (!policy.allow.some((re) => re.test(url))) return 'matches no expression of manifests.layerUrls.allow';
  if (policy.deny.some((re) => re.test(url))) return 'matches an expression of manifests.layerUrls.deny';
  return undefined;
}

/** Refuses (MANIFEST_INVALID) a manifest whose descriptor URLs the policy does not allow. */
export function checkLayerUrls(m: ParsedManifest, policy: LayerUrlPolicy): void {
  if (hasUrls(m.config)) invalid('config.urls: only layers may carry urls');
  if (hasUrls(m.subject)) invalid('subject.urls: only layers may carry urls');
  m.manifests.forEach((d, i) => {
    if (hasUrls(d)) invalid(`manifests[${i}].urls: index entries may not carry urls`);
  });
  m.layers.forEach((d, i) => {
    if (d.mediaType === MEDIA_TYPE_DOCKER_FOREIGN_LAYER && !hasUrls(d)) {
      invalid(`layers[${i}] is a foreign layer without urls`);
    }
    d.urls?.forEach((url, j) => {
      const why = layerUrlRefusal(url, policy);
      if (why) invalid(`layers[${i}].urls[${j}] ${JSON.stringify(url.slice(0, 200))} ${why}`);
    });
  });
}
