/**
 * What a metadata filter costs (issue 24): the compiled SQL's work per row grows with the
 * filter's keys, not with its values, on both backends; and on SQLite a filtered query runs
 * off the event loop. What the filters select is the storage contract's business
 * (test/helpers/store-contract.ts); the CPU figures come from `npm run bench:costs`.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import type { Filter } from "../src/core/types.ts";
import {
  INDEXED_IN_VALUES,
  filterToSql as postgresFilter,
} from "../src/store/postgres/filter-sql.ts";
import { filterToSql as sqliteFilter } from "../src/store/sqlite/filter-sql.ts";
import { openSqliteStore } from "./helpers/library-fixtures.ts";
import { newItem, vectorOf } from "./helpers/store-contract.ts";

const tmp = mkdtempSync(path.join(os.tmpdir(), "filter-cost-test-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** `keys` keys, each `$in` of strings and numbers plus `$nin` of strings, with `values` each. */
function wideFilter(keys: number, values: number): Filter {
  const filter: Filter = {};
  for (let k = 0; k < keys; k++) {
    filter[`k${k}`] = {
      $in: Array.from({ length: values }, (_, v) => (v % 2 === 0 ? `s${v}` : v)),
      $nin: Array.from({ length: values }, (_, v) => `t${v}`),
    };
  }
  return filter;
}

const occurrences = (text: string, what: string) => text.split(what).length - 1;

test("SQLite: one JSON type read per key and one list per $in/$nin, whatever the values", () => {
  for (const values of [2, 100]) {
    const { where } = sqliteFilter(wideFilter(32, values));
    assert.equal(occurrences(where, "json_type("), 32, `${values} values: type read once per key`);
    // Per key: the text branch reads the value for $in and $nin, the number branch (written
    // for 'integer' and for 'real') for $in; a row runs one branch.
    assert.equal(occurrences(where, "json_extract("), 32 * 4, `${values} values`);
    assert.ok(occurrences(where, "json_each(") <= 32 * 4, `${values} values`);
  }
});

test("Postgres: an $in/$nin list is one parameter and one membership test; a short $in a bounded containment test", () => {
  for (const values of [INDEXED_IN_VALUES + 1, 100]) {
    const { where, params } = postgresFilter(wideFilter(32, values), 1);
    assert.equal(occurrences(where, "jsonb_array_elements("), 64, `${values} values`);
    // Each term binds its key and its list.
    assert.equal(params.length, 64 * 2, `${values} values`);
  }
  // Up to INDEXED_IN_VALUES, $in is containment of any of its documents (what the GIN index
  // serves): one parameter, at most INDEXED_IN_VALUES tests a row.
  const { where, params } = postgresFilter(wideFilter(32, INDEXED_IN_VALUES), 1);
  assert.equal(occurrences(where, "metadata @> ANY("), 32);
  assert.equal(occurrences(where, "jsonb_array_elements("), 32, "$nin");
  assert.equal(params.length, 32 + 32 * 2);
});

test("SQLite: a filtered search leaves the event loop free while the filter runs", async () => {
  const store = openSqliteStore(path.join(tmp, "loop"));
  try {
    await store.setModel({ modelId: "m1", dims: 8 });
    const items = Array.from({ length: 4000 }, (_, n) => newItem(n, { k0: `s${n % 50}`, n }));
    await store.insertItems(items, "m1");
    let turns = 0;
    let running = true;
    const spin = () => {
      turns++;
      if (running) setImmediate(spin);
    };
    setImmediate(spin);
    const hits = await store.nearest(
      { vector: vectorOf(0), k: 5, exact: true, filter: wideFilter(32, 4) },
      "m1",
    );
    running = false;
    assert.equal(hits.length, 0, "no item has keys k1..k31");
    // Run on the event loop, the query would finish before the first turn.
    assert.ok(turns > 1, `the event loop turned ${turns} times during the filtered search`);
  } finally {
    await store.close();
  }
});
