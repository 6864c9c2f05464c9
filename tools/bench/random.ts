/**
 * xorshift32 (Marsaglia, 2003): a fixed stream of 32-bit states from a seed, for data that must
 * be the same on every run (benchmark choices, test vectors, images, weights).
 */
export function xorshift32(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state;
  };
}
