/**
 * Per-verification time of Ed25519 (pure and ph), cold key (first use of a key) and repeated key,
 * alternated in the same process: src/core/signature/verify.ts (@noble/curves points, the key's
 * precomputed table from its second use) and @noble/curves' own strict verify (no key table). The
 * hand-written table code it replaced was measured against it once (bench/README.md, session 4).
 * Medians of RUNS runs of BATCH verifications each, µs per verification. Pure CPU, no servers.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/ed25519.js   # RUNS=7 BATCH=40
 */
import { generateKeyPairSync, sign as nodeSign } from 'node:crypto';
import { ed25519, ed25519ph } from '@noble/curves/ed25519.js';
import { bytesToNumberLE } from '@noble/curves/utils.js';
import { verifyEd25519ph, verifyEd25519Pure, L } from '../src/core/signature/verify.js';
import { ed25519Seed } from '../src/core/signature/ed25519ph.js';

const RUNS = Number(process.env['RUNS'] ?? 7);
const BATCH = Number(process.env['BATCH'] ?? 40);

type Verify = (pub: Uint8Array, msg: Uint8Array, sig: Uint8Array) => boolean;

/** @noble/curves' own strict verify, with our extra small-order-R check in front. */
function curvesVerify(ph: boolean): Verify {
  const lib = ph ? ed25519ph : ed25519;
  return (pub, msg, sig) => {
    if (sig.length !== 64 || bytesToNumberLE(sig.subarray(32)) >= L) return false;
    try {
      if (ed25519.Point.fromBytes(sig.subarray(0, 32), false).isSmallOrder()) return false;
    } catch {
      return false;
    }
    return lib.verify(sig, msg, pub, { zip215: false });
  };
}

interface Case {
  pub: Uint8Array;
  msg: Uint8Array;
  sig: Uint8Array;
}

function makeCases(n: number, ph: boolean): Case[] {
  const out: Case[] = [];
  for (let i = 0; i < n; i++) {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const pub = new Uint8Array(publicKey.export({ format: 'der', type: 'spki' }).subarray(12));
    const msg = new TextEncoder().encode(`{"critical":{"image":{"docker-manifest-digest":"sha256:${i}"}}}`);
    const sig = ph
      ? ed25519ph.sign(msg, ed25519Seed(privateKey))
      : new Uint8Array(nodeSign(null, msg, privateKey));
    out.push({ pub, msg, sig });
  }
  return out;
}

/** Microseconds per verification over `cases`; asserts every one verifies. */
function timeBatch(verify: Verify, cases: Case[]): number {
  const t0 = process.hrtime.bigint();
  for (const c of cases) if (!verify(c.pub, c.msg, c.sig)) throw new Error('bench: verification failed');
  return Number(process.hrtime.bigint() - t0) / 1000 / cases.length;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const impls: Record<string, { pure: Verify; ph: Verify }> = {
  'src/verify.ts': { pure: verifyEd25519Pure, ph: verifyEd25519ph },
  '@noble/curves verify': { pure: curvesVerify(false), ph: curvesVerify(true) },
};

for (const mode of ['pure', 'ph'] as const) {
  const results: Record<string, { cold: number[]; second: number[]; warm: number[] }> = {};
  for (const name of Object.keys(impls)) results[name] = { cold: [], second: [], warm: [] };
  // Warm-up (JIT, noble's base-point table), not measured.
  for (const name of Object.keys(impls)) timeBatch(impls[name]![mode], makeCases(5, mode === 'ph'));
  for (let run = 0; run < RUNS; run++) {
    for (const name of Object.keys(impls)) {
      const verify = impls[name]![mode];
      // Cold: keys never seen before (each verifier gets its own fresh keys).
      const fresh = makeCases(BATCH, mode === 'ph');
      results[name]!.cold.push(timeBatch(verify, fresh));
      // Second use of each of those keys (src builds the key's table here). Both verifiers keep at
      // most 64 keys and drop them all at the 65th, so some of these are re-decoded as cold keys.
      results[name]!.second.push(timeBatch(verify, fresh));
      // Repeated key: one key, BATCH verifications, after two uses of that key (tables built).
      const one = makeCases(1, mode === 'ph')[0]!;
      verify(one.pub, one.msg, one.sig); // first use
      verify(one.pub, one.msg, one.sig); // second use: src builds its table here
      results[name]!.warm.push(
        timeBatch(
          verify,
          Array.from({ length: BATCH }, () => one),
        ),
      );
    }
  }
  for (const [name, r] of Object.entries(results)) {
    const us = (xs: number[]): string => median(xs).toFixed(0).padStart(6);
    console.log(
      `${mode.padEnd(4)} ${name.padEnd(22)} cold key ${us(r.cold)} µs   second use ${us(r.second)} µs   repeated key ${us(r.warm)} µs`,
    );
  }
}
