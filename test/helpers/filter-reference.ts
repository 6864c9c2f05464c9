/**
 * Metadata filters evaluated in plain JavaScript, written from the documented semantics
 * (src/store/filter.ts's header, docs/search.md) rather than from either backend's SQL, and
 * fast-check arbitraries of metadata and filters over small pools of keys and values, so random
 * filters often match something. The storage contract compares every backend with this.
 */
import fc from "fast-check";
import type { Filter } from "../../src/core/types.ts";

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Scalar = null | boolean | number | string;

/** Instants of the date strings in the pools (the zone-less ones are UTC). */
const DATES: Record<string, number> = {
  "2024-01-15": Date.UTC(2024, 0, 15),
  "2024-01-15T10:30:00Z": Date.UTC(2024, 0, 15, 10, 30),
  "2024-01-15T12:30:00+02:00": Date.UTC(2024, 0, 15, 10, 30),
  "2024-03-01T00:00": Date.UTC(2024, 2, 1),
};
/** Strings stored in metadata: dates, a non-date that looks like one, and plain words. */
const STRINGS = [...Object.keys(DATES), "2024-02-30", "a", "b", "Paris", "1"];
const NUMBERS = [-1, 0, 1, 1.5, 2, 2024];
const SCALARS: Scalar[] = [...STRINGS, ...NUMBERS, true, false, null];
const KEYS = ["a", "b", "c", "n.x", "missing"];

const scalar = fc.constantFrom(...SCALARS);
const stored: fc.Arbitrary<Json> = fc.oneof(
  { weight: 6, arbitrary: scalar },
  { weight: 1, arbitrary: fc.array(scalar, { maxLength: 2 }) },
  { weight: 1, arbitrary: fc.constant({ x: 1 }) },
);

/** Metadata over the pool's keys (`n.x` is the key `x` of an object `n`). */
export const metadataArbitrary: fc.Arbitrary<Record<string, Json>> = fc
  .record({ a: stored, b: stored, c: stored, nx: stored }, { requiredKeys: [] })
  .map(({ nx, ...rest }) => (nx === undefined ? rest : { ...rest, n: { x: nx } }));

const rangeBound = fc.oneof(fc.constantFrom(...NUMBERS), fc.constantFrom(...Object.keys(DATES)));
const operator = fc.oneof(
  fc.tuple(fc.constantFrom("$eq", "$ne"), scalar),
  fc.tuple(fc.constantFrom("$in", "$nin"), fc.array(scalar, { maxLength: 12 })),
  fc.tuple(fc.constantFrom("$gt", "$gte", "$lt", "$lte"), rangeBound),
  fc.tuple(fc.constant("$exists"), fc.boolean()),
);
/** A plain value, or one to three operators (on one key they AND). */
const condition = fc.oneof(
  scalar,
  fc.array(operator, { minLength: 1, maxLength: 3 }).map((ops) => Object.fromEntries(ops)),
);

export const filterArbitrary: fc.Arbitrary<Filter> = fc.dictionary(
  fc.constantFrom(...KEYS),
  condition,
  { minKeys: 1, maxKeys: 3 },
) as fc.Arbitrary<Filter>;

/** The value at a dotted key: objects are walked, arrays never indexed. */
function valueAt(metadata: Json, key: string): { present: boolean; value?: Json } {
  let value: Json = metadata;
  for (const part of key.split(".")) {
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      return { present: false };
    }
    if (!Object.hasOwn(value, part)) return { present: false };
    value = value[part] as Json;
  }
  return { present: true, value };
}

/** Same JSON type and value; arrays and objects equal no scalar. */
const same = (a: Json | undefined, b: Scalar) => a === b && (a === null || typeof a !== "object");

function inRange(value: Json | undefined, bound: number | string, holds: (d: number) => boolean) {
  if (typeof bound === "number") return typeof value === "number" && holds(value - bound);
  const at = typeof value === "string" ? DATES[value] : undefined;
  return at !== undefined && holds(at - (DATES[bound] as number));
}

/** Whether `metadata` meets `filter`, by the documented semantics. */
export function referenceMatches(metadata: Record<string, Json>, filter: Filter): boolean {
  return Object.entries(filter).every(([key, condition]) => {
    const { present, value } = valueAt(metadata, key);
    if (condition === null || typeof condition !== "object") {
      return present && same(value, condition as Scalar);
    }
    return Object.entries(condition).every(([op, operand]) => {
      const oneOf = (list: Scalar[]) => present && list.some((x) => same(value, x));
      switch (op) {
        case "$eq":
          return present && same(value, operand as Scalar);
        case "$ne":
          return !(present && same(value, operand as Scalar));
        case "$in":
          return oneOf(operand as Scalar[]);
        case "$nin":
          return !oneOf(operand as Scalar[]);
        case "$gt":
          return present && inRange(value, operand as number | string, (d) => d > 0);
        case "$gte":
          return present && inRange(value, operand as number | string, (d) => d >= 0);
        case "$lt":
          return present && inRange(value, operand as number | string, (d) => d < 0);
        case "$lte":
          return present && inRange(value, operand as number | string, (d) => d <= 0);
        case "$exists":
          return present === operand;
        default:
          throw new Error(`the reference has no operator ${op}`);
      }
    });
  });
}
