// Deterministic randomness for the fuzz run: sfc32 seeded through splitmix32, in 32-bit integer
// arithmetic only (Math.imul, >>> 0), so one seed gives one stream on every platform.
//
// Why not `seed = (seed * 1103515245 + 12345) % 2 ** 31`: in JavaScript that product is a float64
// above 2^53, its low bits are rounded away, and the generator falls into short cycles (seed
// 20261201: a cycle of 10,466 states, which made the request loop replay the same 31 requests).
import { Buffer } from 'node:buffer';

function splitmix32(state) {
  let s = state >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/** FNV-1a of a label, to derive independent streams (fixtures, generator) from one seed. */
function fnv1a(s) {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

export function createRng(seed, label = '') {
  const init = splitmix32((Number(seed) >>> 0) ^ fnv1a(label));
  let a = init();
  let b = init();
  let c = init();
  let d = init();
  const u32 = () => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = ((c << 21) | (c >>> 11)) >>> 0;
    c = (c + t) >>> 0;
    return t;
  };
  for (let i = 0; i < 16; i++) u32();
  const rng = {
    u32,
    /** [0, 1) */
    float: () => u32() / 2 ** 32,
    /** 0 .. n-1 */
    int: (n) => Math.floor((u32() / 2 ** 32) * n),
    chance: (p) => u32() / 2 ** 32 < p,
    pick: (arr) => arr[Math.floor((u32() / 2 ** 32) * arr.length)],
    /** pairs: [[weight, value], ...] */
    weighted: (pairs) => {
      let total = 0;
      for (const [w] of pairs) total += w;
      let x = (u32() / 2 ** 32) * total;
      for (const [w, v] of pairs) {
        if (x < w) return v;
        x -= w;
      }
      return pairs[pairs.length - 1][1];
    },
    bytes: (n) => {
      const out = Buffer.alloc(n);
      for (let i = 0; i < n; i += 4) {
        const v = u32();
        for (let j = 0; j < 4 && i + j < n; j++) out[i + j] = (v >>> (8 * j)) & 0xff;
      }
      return out;
    },
    hex: (n) =>
      rng
        .bytes(Math.ceil(n / 2))
        .toString('hex')
        .slice(0, n),
  };
  return rng;
}
