// sfc32: a small, fast, seedable PRNG with good statistical quality, so generated data
// and load runs can be reproduced from a seed. A plain ES module with no dependencies:
// the TypeScript code, the jest tests and the k6 scripts (through loadtest/lib/traffic.js)
// all import this one file.

/** A function returning uniform numbers in [0, 1), fixed by `seed`. */
export function createRandom(seed) {
  let a = 0x9e3779b9, b = 0x243f6a88, c = 0xb7e15162, d = seed >>> 0;
  const next = () => {
    a >>>= 0; b >>>= 0; c >>>= 0; d >>>= 0;
    let t = (a + b) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    d = (d + 1) | 0;
    t = (t + d) | 0;
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  for (let i = 0; i < 15; i++) next();
  return next;
}
