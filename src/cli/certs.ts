/**
 * Development certificates: a local CA, a TLS server certificate and optional mTLS client
 * certificates, all ECDSA P-256, made with @peculiar/x509 over Node's WebCrypto.
 *
 * Files written in `dir`:
 *   ca.crt, ca.key                     the CA (key 0600)
 *   server.crt, server.key             serverAuth, SANs from `hosts` (DNS or IP)
 *   client-<name>.crt, client-<name>.key   clientAuth, CN=<name>
 *
 * Policy: idempotent. An existing file is never overwritten unless `force` is set; missing
 * server/client certificates are issued by the existing CA (read back from ca.key).
 */
import { webcrypto, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import type * as X509 from '@peculiar/x509';

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
type MetaTarget = object;
type MetaKey = string | symbol | undefined;

/**
 * @peculiar/x509 v2 (through tsyringe) needs the Reflect metadata API at load time. The
 * project has no reflect-metadata dependency, so a minimal, spec-shaped stand-in is installed
 * here when none is present: per-object, per-property maps; getMetadata walks the prototype chain.
 * Policy: never replace an existing implementation.
 */
function ensureReflectMetadata(): void {
  const R = Reflect as unknown as Record<string, unknown>;
  if (typeof R['getMetadata'] === 'function') return;
  const store = new WeakMap<MetaTarget, Map<MetaKey, Map<unknown, unknown>>>();
  const own = (target: MetaTarget, prop: MetaKey, create: boolean): Map<unknown, unknown> | undefined => {
    let byProp = store.get(target);
    if (!byProp) {
      if (!create) return undefined;
      byProp = new Map();
      store.set(target, byProp);
    }
    let m = byProp.get(prop);
    if (!m && create) {
      m = new Map();
      byProp.set(prop, m);
    }
    return m;
  };
  const defineMetadata = (k: unknown, v: unknown, target: MetaTarget, prop?: MetaKey): void => {
    own(target, prop, true)?.set(k, v);
  };
  const getOwnMetadata = (k: unknown, target: MetaTarget, prop?: MetaKey): unknown =>
    own(target, prop, false)?.get(k);
  const hasOwnMetadata = (k: unknown, target: MetaTarget, prop?: MetaKey): boolean =>
    own(target, prop, false)?.has(k) ?? false;
  const hasMetadata = (k: unknown, target: MetaTarget, prop?: MetaKey): boolean => {
    for (let t: MetaTarget | null = target; t; t = Object.getPrototypeOf(t) as MetaTarget | null) {
      if (hasOwnMetadata(k, t, prop)) return true;
    }
    return false;
  };
  const getMetadata = (k: unknown, target: MetaTarget, prop?: MetaKey): unknown => {
    for (let t: MetaTarget | null = target; t; t = Object.getPrototypeOf(t) as MetaTarget | null) {
      if (hasOwnMetadata(k, t, prop)) return getOwnMetadata(k, t, prop);
    }
    return undefined;
  };
  const metadata =
    (k: unknown, v: unknown) =>
    (target: MetaTarget, prop?: MetaKey): void =>
      defineMetadata(k, v, target, prop);
  Object.assign(R, { defineMetadata, getOwnMetadata, hasOwnMetadata, hasMetadata, getMetadata, metadata });
}

let x509Module: Promise<typeof X509> | undefined;
/** Loads @peculiar/x509 after the Reflect polyfill, with Node's WebCrypto as its provider. */
function loadX509(): Promise<typeof X509> {
  x509Module ??= (async () => {
    ensureReflectMetadata();
    const m = await import('@peculiar/x509');
    m.cryptoProvider.set(webcrypto as unknown as Parameters<typeof m.cryptoProvider.set>[0]);
    return m;
  })();
  return x509Module;
}

const ALG: webcrypto.EcKeyGenParams & webcrypto.EcdsaParams = {
  name: 'ECDSA',
  namedCurve: 'P-256',
  hash: 'SHA-256',
};
const DAY_MS = 86_400_000;

export interface CertPair {
  cert: string;
  key: string;
}

export interface DevCertificateOptions {
  dir: string;
  /** Host names and IP addresses for the server certificate's subjectAltName. */
  hosts: string[];
  /** Client certificate names (CN) for mTLS. */
  clientNames?: string[];
  /** Overwrite existing files (including the CA). */
  force?: boolean;
  /** Validity of the issued certificates; default 825 days (CA: ten years). */
  days?: number;
}

export interface DevCertificates {
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  clients: Record<string, CertPair>;
}

interface Issuer {
  cert: X509.X509Certificate;
  key: CryptoKey;
}

function pem(label: string, der: ArrayBuffer): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

function writeSecret(file: string, data: string): void {
  writeFileSync(file, data, { mode: 0o600 });
  chmodSync(file, 0o600);
}

async function keyPem(key: CryptoKey): Promise<string> {
  return pem('PRIVATE KEY', await webcrypto.subtle.exportKey('pkcs8', key));
}

async function newKeys(): Promise<CryptoKeyPair> {
  return webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']);
}

function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0] ?? 0) & 0x7f; // positive INTEGER
  return b.toString('hex');
}

function validity(days: number): { notBefore: Date; notAfter: Date } {
  const now = Date.now();
  // Policy: backdate one hour so a skewed clock between processes does not reject a fresh cert.
  return { notBefore: new Date(now - 3_600_000), notAfter: new Date(now + days * DAY_MS) };
}

/** Quote a value for a distinguished-name string (RFC 4514 escaping of the specials). */
function dnValue(v: string): string {
  return v.replace(/([,+"\\<>;=])/g, '\\$1').replace(/^([ #])/, '\\$1');
}

async function createCa(days: number): Promise<{ issuer: Issuer; keyPem: string }> {
  const x509 = await loadX509();
  const keys = await newKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: 'CN=trustgate development CA, O=trustgate',
    ...validity(days),
    signingAlgorithm: ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { issuer: { cert, key: keys.privateKey }, keyPem: await keyPem(keys.privateKey) };
}

async function loadCa(certFile: string, keyFile: string): Promise<Issuer> {
  const x509 = await loadX509();
  const cert = new x509.X509Certificate(readFileSync(certFile, 'utf8'));
  const der = x509.PemConverter.decodeFirst(readFileSync(keyFile, 'utf8'));
  const key = await webcrypto.subtle.importKey('pkcs8', der, ALG, false, ['sign']);
  return { cert, key };
}

async function issue(
  ca: Issuer,
  subject: string,
  usage: 'server' | 'client',
  days: number,
  hosts: string[] = [],
): Promise<{ cert: string; key: string }> {
  const x509 = await loadX509();
  const keys = await newKeys();
  const extensions: X509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension(
      [usage === 'server' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth],
      false,
    ),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(ca.cert.publicKey),
  ];
  if (hosts.length > 0) {
    extensions.push(
      new x509.SubjectAlternativeNameExtension(
        hosts.map((h) => {
          const host = h.replace(/^\[(.*)\]$/, '$1');
          return isIP(host) ? { type: 'ip' as const, value: host } : { type: 'dns' as const, value: host };
        }),
        false,
      ),
    );
  }
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject,
    issuer: ca.cert.subject,
    ...validity(days),
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: ca.key,
    extensions,
  });
  return { cert: cert.toString('pem') + '\n', key: await keyPem(keys.privateKey) };
}

function checkName(name: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) {
    throw new TypeError(`client name ${JSON.stringify(name)}: use letters, digits, '.', '_' or '-' (≤ 64)`);
  }
}

export async function generateDevCertificates(opts: DevCertificateOptions): Promise<DevCertificates> {
  if (!opts || typeof opts.dir !== 'string' || opts.dir === '')
    throw new TypeError('certs: `dir` is required');
  if (!Array.isArray(opts.hosts) || opts.hosts.length === 0) {
    throw new TypeError('certs: `hosts` needs at least one host name or IP address');
  }
  const clientNames = opts.clientNames ?? [];
  clientNames.forEach(checkName);
  const force = opts.force ?? false;
  const days = opts.days ?? 825;
  const dir = path.resolve(opts.dir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });

  const f = (name: string): string => path.join(dir, name);
  const out: DevCertificates = {
    caCert: f('ca.crt'),
    caKey: f('ca.key'),
    serverCert: f('server.crt'),
    serverKey: f('server.key'),
    clients: {},
  };

  let ca: Issuer | undefined;
  let caIsNew = false;
  const getCa = async (): Promise<Issuer> => {
    if (ca) return ca;
    if (!force && existsSync(out.caCert) && existsSync(out.caKey)) {
      ca = await loadCa(out.caCert, out.caKey);
      return ca;
    }
    if (!force && (existsSync(out.caCert) || existsSync(out.caKey))) {
      throw new Error(`certs: only one of ${out.caCert} and ${out.caKey} exists; remove it or use --force`);
    }
    const made = await createCa(Math.max(days, 3650));
    writeFileSync(out.caCert, made.issuer.cert.toString('pem') + '\n', { mode: 0o644 });
    writeSecret(out.caKey, made.keyPem);
    caIsNew = true;
    ca = made.issuer;
    return ca;
  };
  await getCa();

  // A new CA invalidates every certificate the old one issued.
  const needs = (cert: string, key: string): boolean =>
    force || caIsNew || !existsSync(cert) || !existsSync(key);

  if (needs(out.serverCert, out.serverKey)) {
    const cn = opts.hosts.find((h) => isIP(h) === 0) ?? opts.hosts[0] ?? 'localhost';
    const pair = await issue(await getCa(), `CN=${dnValue(cn)}`, 'server', days, opts.hosts);
    writeFileSync(out.serverCert, pair.cert, { mode: 0o644 });
    writeSecret(out.serverKey, pair.key);
  }
  for (const name of clientNames) {
    const paths = { cert: f(`client-${name}.crt`), key: f(`client-${name}.key`) };
    if (needs(paths.cert, paths.key)) {
      const pair = await issue(await getCa(), `CN=${dnValue(name)}`, 'client', days);
      writeFileSync(paths.cert, pair.cert, { mode: 0o644 });
      writeSecret(paths.key, pair.key);
    }
    out.clients[name] = paths;
  }
  return out;
}

export const CERTS_USAGE = `usage: trustgate certs --dir DIR [--host H]… [--client NAME]… [--days N] [--force]

Makes a development CA (ca.crt, ca.key), a server certificate (server.crt, server.key) whose
subjectAltName lists every --host (DNS names and IP addresses; default localhost, 127.0.0.1, ::1),
and one client certificate per --client (client-NAME.crt, client-NAME.key; CN=NAME) for mTLS.
Existing files are kept unless --force is given. Keys are written with mode 0600.
`;

/** `trustgate certs …`; returns the process exit code. */
export async function runCertsCommand(
  argv: string[],
  io: { stdout?: NodeJS.WritableStream; stderr?: NodeJS.WritableStream } = {},
): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  let dir: string | undefined;
  const hosts: string[] = [];
  const clients: string[] = [];
  let force = false;
  let days: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    const eq = a.indexOf('=');
    const flag = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
    const inline = a.startsWith('--') && eq > 0 ? a.slice(eq + 1) : undefined;
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined || v === '') throw new UsageError(`${flag} needs a value`);
      return v;
    };
    try {
      switch (flag) {
        case '--dir':
          dir = value();
          break;
        case '--host':
          hosts.push(value());
          break;
        case '--client':
          clients.push(value());
          break;
        case '--days': {
          const v = value();
          days = Number(v);
          if (!Number.isInteger(days) || days < 1) throw new UsageError(`--days ${v}: a positive integer`);
          break;
        }
        case '--force':
          force = true;
          break;
        case '-h':
        case '--help':
          stdout.write(CERTS_USAGE);
          return 0;
        default:
          throw new UsageError(`unknown argument ${JSON.stringify(a)}`);
      }
    } catch (err) {
      if (err instanceof UsageError) {
        stderr.write(`trustgate certs: ${err.message}\n${CERTS_USAGE}`);
        return 2;
      }
      throw err;
    }
  }
  if (!dir) {
    stderr.write(`trustgate certs: --dir is required\n${CERTS_USAGE}`);
    return 2;
  }
  const r = await generateDevCertificates({
    dir,
    hosts: hosts.length > 0 ? hosts : ['localhost', '127.0.0.1', '::1'],
    clientNames: clients,
    force,
    ...(days !== undefined ? { days } : {}),
  });
  stdout.write(`CA:     ${r.caCert}\nserver: ${r.serverCert} ${r.serverKey}\n`);
  for (const [name, p] of Object.entries(r.clients)) stdout.write(`client ${name}: ${p.cert} ${p.key}\n`);
  return 0;
}

class UsageError extends Error {}
