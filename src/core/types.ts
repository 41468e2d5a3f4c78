/** Shared vocabulary of the pure core. */

export type Action = 'pull' | 'push' | 'delete' | 'catalog';

/** A manifest reference: exactly one of tag or digest. */
export type Reference = { tag: string; digest?: undefined } | { digest: string; tag?: undefined };

/**
 * One /v2 request, parsed once with the distribution grammar. Every later step (auth, policy,
 * trust, forwarding) works from this value and never re-reads the raw path.
 */
export type Route =
  | { kind: 'base'; action: null }
  | { kind: 'catalog'; action: 'catalog' }
  | { kind: 'tags'; repo: string; action: 'pull' }
  | { kind: 'manifest'; repo: string; ref: Reference; action: 'pull' | 'push' | 'delete' }
  | { kind: 'blob'; repo: string; digest: string; action: 'pull' | 'delete' }
  | {
      kind: 'upload-start';
      repo: string;
      action: 'push';
      /** Cross-repository mount: needs pull on `from` (I4). */
      mount?: { from: string; digest: string };
      /** Monolithic upload digest (`?digest=`). */
      digest?: string;
    }
  | { kind: 'upload'; repo: string; uuid: string; action: 'push'; digest?: string }
  /** OCI 1.1 referrers API (`GET /v2/<name>/referrers/<digest>`), served by trustgate itself. */
  | { kind: 'referrers'; repo: string; digest: string; action: 'pull'; artifactType?: string };

export type RouteKind = Route['kind'];

/** Who is asking. Produced by auth, consumed by policy. */
export interface Identity {
  /** Stable subject, e.g. `alice`, `robot:ci-main`, `mtls:CN=build-01`, `anonymous`. */
  subject: string;
  kind: 'user' | 'robot' | 'mtls' | 'anonymous';
  groups: readonly string[];
}
