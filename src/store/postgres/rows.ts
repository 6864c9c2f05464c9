/**
 * How the Postgres backend reads an item and passes a vector: metadata as jsonb (parsed by
 * the driver), created_at as timestamptz, vectors as pgvector's text form.
 */
import { fromSql, toSql } from "pgvector";
import type { Metadata } from "../../core/types.ts";
import { type ItemRow as Row, rowToItem } from "../item-row.ts";
import type { StoredItem } from "../types.ts";

export type ItemRow = Row<Metadata, Date>;

export function toItem(row: ItemRow): StoredItem {
  return rowToItem(
    row,
    (value) => value,
    (value) => value.toISOString(),
  );
}

export function vectorParam(vector: Float32Array): string {
  return toSql(Array.from(vector)) as string;
}

export function parseVector(text: string): Float32Array {
  return Float32Array.from(fromSql(text) as number[]);
}
