/**
 * mulberry32: a tiny seeded generator of floats in [0, 1), so a sequence can be replayed from its seed.
 * The training script's weights, the bench's inputs and the tests' random requests all come from it.
 * @param {number} seed
 * @returns {() => number}
 */
export function random(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = Math.imul(a ^ (a >>> 15), a | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
