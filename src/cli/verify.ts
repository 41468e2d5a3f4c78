/**
 * `trustgate verify`: checks an image's cosign signatures with given public keys, the way trustgate
 * decides (core evaluateTrust), and explains the answer. Exit 0 trusted, 1 refused, 2 usage or I/O.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { COSIGN_SIGNATURE_ANNOTATION, MEDIA_TYPES, digestOf } from '../core/manifest.js';
import { decodeStrictBase64, parsePublicKeyPem } from '../core/signature/keys.js';
import { parseSimpleSigningPayload, type SimpleSigningPayload } from '../core/signature/payload.js';
import { verifySignature } from '../core/signature/verify.js';
import { evaluateTrust, type SignatureCandidate, type TrustedKey, type TrustVerdict } from '../core/trust.js';
import { isJsonObject, parseStrictJson } from '../core/json-strict.js';
import { signatureArtifactOf } from './sign.js';
import { signatureTagFor } from '../core/reference.js';
import { clientEvidenceReader } from './evidence-reader.js';
import { collectEvidence } from '../trust/evidence.js';
import { compileIdentityRules, validateIdentityRule, type IdentityRule } from '../core/evidence/identity.js';
import { loadTrustedRoot, type SigstoreTrustedRoot } from '../core/evidence/trusted-root.js';
import {
  REGISTRY_OPTS,
  REGISTRY_OPTS_USAGE,
  InputError,
  UsageError,
  clientFromArgs,
  defaultIo,
  formatRef,
  manifestRefOf,
  parseArgs,
  parseImageRef,
  runCommand,
  type CliIo,
} from './registry-opts.js';

export const VERIFY_USAGE = `usage: trustgate verify HOST[:PORT]/REPO{:TAG|@DIGEST} {--key FILE.pub … | IDENTITY} [--json]
       trustgate verify --offline --manifest FILE {--signature FILE … | --bundle FILE …} {--key FILE.pub … | IDENTITY} --repo REPO

Fetches the manifest, its sha256-<hex>.sig signatures and its Sigstore bundle referrers and decides as
trustgate does, with the given keys (named after their files) and keyless identities.
Exit code: 0 trusted, 1 refused, 2 usage or I/O error.
  --key FILE.pub    a trusted public key (repeatable)
  --threshold N     distinct keys and identities that must have signed (default 1)
  --tag-binding     pulled by tag: the signature must name that tag
  --json            machine-readable output
  --offline         check files instead of a registry: --manifest FILE, --repo REPO, optional --tag,
                    and --signature files ("\\x00sigstore-json\\n"+JSON, containers/image "dir" layout)
                    and/or --bundle FILE (a Sigstore bundle, .sigstore.json) (both repeatable)
IDENTITY (keyless, Fulcio certificates; like cosign's flags, but regular expressions are anchored):
  --certificate-identity S | --certificate-identity-regexp RE     the certificate SAN (URI or email)
  --certificate-oidc-issuer S | --certificate-oidc-issuer-regexp RE  the OIDC issuer
  --certificate-github-workflow-repository S, --certificate-github-workflow-ref S,
  --certificate-github-workflow-trigger S, --certificate-github-workflow-sha S   GitHub claims (exact)
  --trusted-root FILE  a Sigstore trusted_root.json (repeatable; needed for keyless signatures and to
                       verify transparency-log entries)
${REGISTRY_OPTS_USAGE}`;

export interface SignatureReport {
  /** Layer digest in the registry; the file name offline. */
  source: string;
  /** Names of the given keys whose signature verifies over the payload. */
  signedBy: string[];
  /** The payload, parsed; `verified` says whether a given key vouches for it. */
  payload?: SimpleSigningPayload;
  payloadError?: string;
  verified: boolean;
  /** A keyless (certificate) signature: judged in the verdict against the identities. */
  keyless?: boolean;
  problem?: string;
}

export interface VerifyReport {
  reference: string;
  repository: string;
  digest: string;
  tag?: string;
  signatureTag?: string;
  signatureArtifactProblem?: string;
  keys: Array<{ name: string; file: string }>;
  /** The keyless identities given (their descriptions). */
  identities: string[];
  signatures: SignatureReport[];
  /** Referrers carrying Sigstore bundles (weighed in the verdict with the legacy signatures). */
  bundles: string[];
  verdict: TrustVerdict;
}

const IDENTITY_FLAGS = {
  'certificate-identity': { type: 'string' },
  'certificate-identity-regexp': { type: 'string' },
  'certificate-oidc-issuer': { type: 'string' },
  'certificate-oidc-issuer-regexp': { type: 'string' },
  'certificate-github-workflow-repository': { type: 'string' },
  'certificate-github-workflow-ref': { type: 'string' },
  'certificate-github-workflow-trigger': { type: 'string' },
  'certificate-github-workflow-sha': { type: 'string' },
  'trusted-root': { type: 'string', multiple: true },
} as const;

/** The identity rule the flags describe (undefined when none is given); usage errors as cosign words them. */
export function identityFromFlags(values: Record<string, unknown>): IdentityRule | undefined {
  const str = (k: string): string | undefined => {
    const v = values[k];
    return typeof v === 'string' ? v : undefined;
  };
  const subject = str('certificate-identity');
  const subjectRegExp = str('certificate-identity-regexp');
  const issuer = str('certificate-oidc-issuer');
  const issuerRegExp = str('certificate-oidc-issuer-regexp');
  const github = {
    ...(str('certificate-github-workflow-repository') !== undefined
      ? { repository: str('certificate-github-workflow-repository')! }
      : {}),
    ...(str('certificate-github-workflow-ref') !== undefined
      ? { workflowRef: str('certificate-github-workflow-ref')! }
      : {}),
    ...(str('certificate-github-workflow-trigger') !== undefined
      ? { trigger: str('certificate-github-workflow-trigger')! }
      : {}),
    ...(str('certificate-github-workflow-sha') !== undefined
      ? { sha: str('certificate-github-workflow-sha')! }
      : {}),
  };
  const any = [subject, subjectRegExp, issuer, issuerRegExp].some((v) => v !== undefined);
  if (!any && Object.keys(github).length === 0) return undefined;
  if ((subject === undefined) === (subjectRegExp === undefined)) {
    throw new UsageError('give exactly one of --certificate-identity and --certificate-identity-regexp');
  }
  if ((issuer === undefined) === (issuerRegExp === undefined)) {
    throw new UsageError(
      'give exactly one of --certificate-oidc-issuer and --certificate-oidc-issuer-regexp',
    );
  }
  const rule: IdentityRule = {
    ...(subject !== undefined ? { subject } : { subjectRegExp: subjectRegExp! }),
    ...(issuer !== undefined ? { issuer } : { issuerRegExp: issuerRegExp! }),
    ...(Object.keys(github).length > 0 ? { github } : {}),
  };
  try {
    validateIdentityRule(rule);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  return rule;
}

function loadRoots(files: string[]): SigstoreTrustedRoot[] {
  return files.map((f) => {
    try {
      return loadTrustedRoot(readFileSync(f));
    } catch (err) {
      throw new InputError(`--trusted-root ${f}: ${(err as Error).message}`);
    }
  });
}

function loadKeys(files: string[]): Array<TrustedKey & { file: string }> {
  const seen = new Set<string>();
  return files.map((file) => {
    let pem: string;
    try {
      pem = readFileSync(file, 'utf8');
    } catch (err) {
      throw new InputError(`cannot read --key ${file}: ${(err as Error).message}`);
    }
    let name = path.basename(file).replace(/\.pub$/, '');
    // Two files with the same base name stay two distinct keys.
    for (let n = 2; seen.has(name); n++) name = `${path.basename(file).replace(/\.pub$/, '')}#${n}`;
    seen.add(name);
    try {
      return { name, file, key: parsePublicKeyPem(pem) };
    } catch (err) {
      throw new InputError(`--key ${file}: ${(err as Error).message}`);
    }
  });
}

function describe(
  cands: Array<SignatureCandidate & { source: string }>,
  keys: TrustedKey[],
): SignatureReport[] {
  return cands.map((c) => {
    const sig = decodeStrictBase64(c.signature);
    const rep: SignatureReport = { source: c.source, signedBy: [], verified: false };
    if (c.keyless !== undefined) rep.keyless = true;
    if (sig === null || sig.length === 0) rep.problem = 'the signature annotation is not valid base64';
    else rep.signedBy = keys.filter((k) => verifySignature(k.key, c.payload, sig)).map((k) => k.name);
    try {
      rep.payload = parseSimpleSigningPayload(c.payload);
    } catch (err) {
      rep.payloadError = (err as Error).message;
    }
    // Policy: an unreadable payload is never reported as verified, even when a key signed its bytes.
    rep.verified = rep.signedBy.length > 0 && rep.payload !== undefined;
    return rep;
  });
}

function render(r: VerifyReport): string {
  const lines: string[] = [];
  lines.push(`image:      ${r.reference}`);
  lines.push(`digest:     ${r.digest} (computed from the manifest bytes)`);
  if (r.keys.length > 0) lines.push(`keys:       ${r.keys.map((k) => `${k.name} (${k.file})`).join(', ')}`);
  if (r.identities.length > 0) lines.push(`identities: ${r.identities.join('; ')}`);
  if (r.bundles.length > 0)
    lines.push(`bundles:    ${r.bundles.length} Sigstore bundle referrer(s): ${r.bundles.join(', ')}`);
  if (r.signatureArtifactProblem !== undefined)
    lines.push(`signatures: unusable: ${r.signatureArtifactProblem}`);
  else if (r.signatures.length === 0)
    lines.push(`signatures: none${r.signatureTag !== undefined ? ` (no ${r.signatureTag})` : ''}`);
  else {
    lines.push(
      `signatures: ${r.signatures.length}${r.signatureTag !== undefined ? ` in ${r.signatureTag}` : ''}`,
    );
    r.signatures.forEach((s, i) => {
      const who =
        s.problem !== undefined
          ? s.problem
          : s.verified
            ? `signed by ${s.signedBy.join(', ')}`
            : s.signedBy.length > 0
              ? `bytes signed by ${s.signedBy.join(', ')}, but no readable payload: not a signature`
              : 'made by none of the given keys';
      lines.push(`  #${i + 1} ${s.source}: ${who}`);
      // Policy: a payload no given key vouches for is shown as a claim, never as a fact.
      const claim = s.verified ? 'names' : 'claims (unverified)';
      if (s.payload !== undefined) {
        const p = s.payload;
        const opt = p.optional ?? {};
        const extra = [
          typeof opt.creator === 'string' ? `creator ${opt.creator}` : '',
          typeof opt.timestamp === 'number' ? `at ${new Date(opt.timestamp * 1000).toISOString()}` : '',
        ]
          .filter((x) => x !== '')
          .join(', ');
        lines.push(
          `     payload ${claim} ${p.dockerReference} @ ${p.manifestDigest}` +
            `${p.manifestDigest === r.digest ? '' : ' (NOT this digest)'}${extra !== '' ? ` (${extra})` : ''}`,
        );
      } else lines.push(`     payload unreadable: ${s.payloadError ?? 'unknown'}`);
    });
  }
  lines.push(
    r.verdict.ok
      ? `verdict:    TRUSTED: ${r.verdict.message}`
      : `verdict:    REFUSED (${r.verdict.reason}): ${r.verdict.message}`,
  );
  return `${lines.join('\n')}\n`;
}

const SIGSTORE_JSON_PREFIX = Buffer.from('\x00sigstore-json\n', 'latin1');

/** Reads a containers/image "dir" signature file: "\x00sigstore-json\n" + {mimeType, payload, annotations}. */
export function parseDirSignatureFile(bytes: Uint8Array, file: string): SignatureCandidate {
  const b = Buffer.from(bytes);
  if (!b.subarray(0, SIGSTORE_JSON_PREFIX.length).equals(SIGSTORE_JSON_PREFIX)) {
    throw new Error(`${file} is not a sigstore-json signature file (no "\\x00sigstore-json\\n" prefix)`);
  }
  const doc = parseStrictJson(b.subarray(SIGSTORE_JSON_PREFIX.length), file);
  if (!isJsonObject(doc)) throw new Error(`${file}: not a JSON object`);
  if (doc.mimeType !== MEDIA_TYPES.cosignSimpleSigning) {
    throw new Error(
      `${file}: mimeType ${JSON.stringify(doc.mimeType)} is not ${MEDIA_TYPES.cosignSimpleSigning}`,
    );
  }
  const payload = typeof doc.payload === 'string' ? decodeStrictBase64(doc.payload) : null;
  if (payload === null) throw new Error(`${file}: payload is not base64`);
  const ann = doc.annotations;
  const sig = isJsonObject(ann) ? ann[COSIGN_SIGNATURE_ANNOTATION] : undefined;
  if (typeof sig !== 'string') throw new Error(`${file}: no ${COSIGN_SIGNATURE_ANNOTATION} annotation`);
  return { payload, signature: sig };
}

function readFileOr2(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new InputError(`cannot read ${what} ${file}: ${(err as Error).message}`);
  }
}

export async function verifyCommand(argv: string[], io: CliIo = defaultIo()): Promise<number> {
  return runCommand(
    io,
    VERIFY_USAGE,
    async () => {
      const { values, positionals } = parseArgs(argv, {
        ...REGISTRY_OPTS,
        ...IDENTITY_FLAGS,
        bundle: { type: 'string', multiple: true },
        key: { type: 'string', multiple: true },
        json: { type: 'boolean' },
        threshold: { type: 'string' },
        'tag-binding': { type: 'boolean' },
        offline: { type: 'boolean' },
        manifest: { type: 'string' },
        signature: { type: 'string', multiple: true },
        repo: { type: 'string' },
        tag: { type: 'string' },
        help: { type: 'boolean' },
      });
      if (values.help === true) {
        io.stdout.write(VERIFY_USAGE);
        return 0;
      }
      const keyFiles = (values.key as string[] | undefined) ?? [];
      const identity = identityFromFlags(values);
      if (keyFiles.length === 0 && identity === undefined) {
        throw new UsageError(
          'give at least one --key FILE.pub, or a keyless identity (--certificate-identity…)',
        );
      }
      const roots = loadRoots((values['trusted-root'] as string[] | undefined) ?? []);
      if (identity !== undefined && roots.length === 0) {
        throw new UsageError('a keyless identity needs --trusted-root FILE (a Sigstore trusted_root.json)');
      }
      const identities = compileIdentityRules(identity ? [identity] : []);
      const threshold = values.threshold === undefined ? 1 : Number(values.threshold);
      if (!Number.isSafeInteger(threshold) || threshold < 1)
        throw new UsageError('--threshold must be an integer >= 1');
      const keys = loadKeys(keyFiles);
      let report: Omit<VerifyReport, 'verdict' | 'signatures' | 'keys' | 'bundles' | 'identities'>;
      let cands: Array<SignatureCandidate & { source: string }>;
      let bundles: Array<{ bytes: Uint8Array; source: string }> = [];
      let artifact: Uint8Array | undefined;

      if (values.offline === true) {
        if (positionals.length > 0) throw new UsageError('--offline takes no image reference');
        const manifestFile = values.manifest as string | undefined;
        const repo = values.repo as string | undefined;
        if (manifestFile === undefined || repo === undefined) {
          throw new UsageError('--offline needs --manifest FILE and --repo REPO');
        }
        const manifest = readFileOr2(manifestFile, 'manifest');
        artifact = manifest;
        const digest = digestOf(manifest);
        const tag = values.tag as string | undefined;
        bundles = ((values.bundle as string[] | undefined) ?? []).map((f) => ({
          bytes: readFileOr2(f, 'bundle'),
          source: path.basename(f),
        }));
        cands = ((values.signature as string[] | undefined) ?? []).map((f) => {
          try {
            return { ...parseDirSignatureFile(readFileOr2(f, 'signature'), f), source: path.basename(f) };
          } catch (err) {
            if (err instanceof UsageError) throw err;
            throw new InputError((err as Error).message);
          }
        });
        report = {
          reference: `${repo}${tag !== undefined ? `:${tag}` : ''} (${manifestFile})`,
          repository: repo,
          digest,
        };
        if (tag !== undefined) report.tag = tag;
      } else {
        for (const o of ['manifest', 'signature', 'bundle', 'repo', 'tag']) {
          if (values[o] !== undefined) throw new UsageError(`--${o} is only for --offline`);
        }
        if (positionals.length !== 1) throw new UsageError('verify takes exactly one image reference');
        const ref = parseImageRef(positionals[0] as string);
        const manifestRef = manifestRefOf(ref);
        const client = await clientFromArgs(ref.host, values, io);
        try {
          // As a consumer: one GET, digest computed from the bytes, then the evidence.
          const m = await client.getManifest(ref.repo, manifestRef);
          // The same evidence, with the same limits, as trustgate reads (src/trust/evidence.ts); the
          // `.sig` manifest it reads is kept, so the report explains it without a second GET.
          const sigTag = signatureTagFor(m.digest);
          const reader = clientEvidenceReader(client);
          let sigManifest: { bytes: Uint8Array; contentType?: string } | undefined;
          const evidence = await collectEvidence(
            {
              ...reader,
              async manifest(repo, r) {
                const got = await reader.manifest(repo, r);
                if (r === sigTag) sigManifest = got;
                return got;
              },
            },
            ref.repo,
            m.digest,
          );
          const art = signatureArtifactOf(
            sigTag,
            sigManifest && {
              bytes: sigManifest.bytes,
              ...(sigManifest.contentType !== undefined ? { mediaType: sigManifest.contentType } : {}),
              digest: digestOf(sigManifest.bytes),
            },
          );
          artifact = m.bytes;
          cands = evidence.legacy.map((c) => ({
            payload: c.payload,
            signature: c.signature,
            ...(c.keyless ? { keyless: c.keyless } : {}),
            source: c.layerDigest,
          }));
          bundles = evidence.bundles.map((b) => ({ bytes: b.bytes, source: b.referrer }));
          report = {
            reference: formatRef(ref),
            repository: ref.repo,
            digest: m.digest,
            signatureTag: art.tag,
          };
          if (ref.tag !== undefined) report.tag = ref.tag;
          if (art.problem !== undefined) report.signatureArtifactProblem = art.problem;
        } finally {
          client.close();
        }
      }

      const verdict = evaluateTrust({
        repo: report.repository,
        digest: report.digest,
        ...(report.tag !== undefined ? { tag: report.tag } : {}),
        signatures: cands.map(({ source: _source, ...c }) => c),
        bundles: bundles.map((b) => b.bytes),
        ...(artifact ? { artifact } : {}),
        bundleOptions: { tlog: 'optional', trustedRoots: roots },
        identities,
        keys: keys.map(({ name, key }) => ({ name, key })),
        threshold,
        tagBinding: values['tag-binding'] === true,
        now: io.now(),
      });
      const full: VerifyReport = {
        ...report,
        keys: keys.map((k) => ({ name: k.name, file: k.file })),
        identities: identities.map((m) => m.description),
        signatures: describe(cands, keys),
        bundles: bundles.map((b) => b.source),
        verdict,
      };
      io.stdout.write(values.json === true ? `${JSON.stringify(full, null, 2)}\n` : render(full));
      return verdict.ok ? 0 : 1;
    },
    2,
  );
}
