/** Byte-level mutations of valid inputs for the fuzz passes (fast-check arbitraries). */
import fc from "fast-check";

/** Random bytes, or a valid file with a few byte flips, a cut or an insertion. */
export function mutatedBytes(valid: Buffer): fc.Arbitrary<Buffer> {
  return fc.oneof(
    { weight: 4, arbitrary: fc.constant(valid) },
    fc.uint8Array({ maxLength: 512 }).map((a) => Buffer.from(a)),
    fc.integer({ min: 0, max: valid.length }).map((n) => valid.subarray(0, n)),
    fc
      .array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), {
        minLength: 1,
        maxLength: 16,
      })
      .map((flips) => {
        const copy = Buffer.from(valid);
        for (const [at, value] of flips) copy[at] = value;
        return copy;
      }),
    fc
      .tuple(fc.nat(valid.length), fc.uint8Array({ minLength: 1, maxLength: 64 }))
      .map(([at, junk]) =>
        Buffer.concat([valid.subarray(0, at), Buffer.from(junk), valid.subarray(at)]),
      ),
  );
}
