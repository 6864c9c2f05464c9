/**
 * Blue/green reindex on Postgres: the next model's embeddings go to `embeddings_staging` (its
 * parts' to `item_parts_staging`) beside the live ones, and the swap moves them into `items`
 * (and `item_parts`), records the model and rebuilds
 * the HNSW index in one transaction. The reindex in progress is a `meta` row every node reads.
 */
import { ITEM_COLUMNS } from "../item-row.ts";
import { partColumns } from "../parts.ts";
import {
  parseReindexTarget,
  REINDEX_KEY,
  reindexIncomplete,
  reindexRecord,
  reindexSuperseded,
} from "../reindex-target.ts";
import type { ModelInfo, ReindexTarget, StagedRow, StoredItem, SwapOptions } from "../types.ts";
import type { Db } from "./db.ts";
import { dropIndex, ensureIndex, type HnswIndexSettings } from "./hnsw-index.ts";
import { writeModel } from "./meta.ts";
import { type ItemRow, toItem, vectorParam } from "./rows.ts";

export class PostgresStaging {
  constructor(
    private readonly db: Db,
    private readonly ready: () => Promise<void>,
    private readonly index: HnswIndexSettings,
  ) {}

  async clear(): Promise<void> {
    await this.ready();
    await this.db.query(
      "WITH parts AS (DELETE FROM longclip.item_parts_staging) DELETE FROM longclip.embeddings_staging",
    );
  }

  async put(rows: readonly StagedRow[], modelId: string): Promise<void> {
    if (rows.length === 0) return;
    await this.ready();
    await this.db.transaction(async (client) => {
      // Items deleted meanwhile (by any node) are skipped: locked first, a delete waits for
      // this transaction instead of the insert failing on the foreign key.
      const kept = await client.query<{ label: number }>(
        "SELECT label FROM longclip.items WHERE label = ANY($1::bigint[]) ORDER BY label FOR KEY SHARE",
        [rows.map((row) => row.label)],
      );
      const alive = new Set(kept.rows.map((row) => row.label));
      for (const row of rows) {
        if (!alive.has(row.label)) continue;
        await client.query(
          `INSERT INTO longclip.embeddings_staging (label, model_id, embedding) VALUES ($1, $2, $3::vector)
           ON CONFLICT (label) DO UPDATE SET model_id = excluded.model_id, embedding = excluded.embedding`,
          [row.label, modelId, vectorParam(row.vector)],
        );
        if (row.parts !== undefined && row.parts.length > 0) {
          // By index, as partsOf lists them; a part that is not stored is skipped.
          await client.query(
            `INSERT INTO longclip.item_parts_staging (item, part, model_id, embedding)
             SELECT p.item, p.part, $2, s.embedding::vector
             FROM unnest($3::integer[], $4::text[]) AS s (part, embedding)
             JOIN longclip.item_parts AS p ON p.item = $1 AND p.part = s.part
             ON CONFLICT (item, part) DO UPDATE SET model_id = excluded.model_id, embedding = excluded.embedding`,
            [
              row.label,
              modelId,
              row.parts.map((part) => part.index),
              row.parts.map((part) => vectorParam(part.vector)),
            ],
          );
        }
        const added = (row.newParts ?? []).map(partColumns);
        if (added.length > 0) {
          // New parts take the indexes after the stored ones.
          await client.query(
            `INSERT INTO longclip.item_parts_staging (item, part, model_id, embedding, kind, box_x, box_y, box_width, box_height, t)
             SELECT $1, (SELECT coalesce(max(part), -1) FROM longclip.item_parts WHERE item = $1) + p.n,
               $2, p.embedding::vector, p.kind, p.box_x, p.box_y, p.box_width, p.box_height, p.t
             FROM unnest($3::text[], $4::text[], $5::float8[], $6::float8[], $7::float8[], $8::float8[], $9::float8[])
               WITH ORDINALITY AS p (embedding, kind, box_x, box_y, box_width, box_height, t, n)
             ON CONFLICT (item, part) DO UPDATE SET model_id = excluded.model_id,
               embedding = excluded.embedding, kind = excluded.kind, box_x = excluded.box_x,
               box_y = excluded.box_y, box_width = excluded.box_width,
               box_height = excluded.box_height, t = excluded.t`,
            [
              row.label,
              modelId,
              (row.newParts ?? []).map((part) => vectorParam(part.vector)),
              added.map((c) => c.kind),
              added.map((c) => c.box_x),
              added.map((c) => c.box_y),
              added.map((c) => c.box_width),
              added.map((c) => c.box_height),
              added.map((c) => c.t),
            ],
          );
        }
      }
    });
  }

  async swap(info: ModelInfo, options: SwapOptions): Promise<void> {
    await this.ready();
    await this.db.transaction(async (client) => {
      await client.query("LOCK TABLE longclip.meta IN EXCLUSIVE MODE");
      if (options.target !== undefined) {
        const recorded = await client.query<{ value: string }>(
          "SELECT value FROM longclip.meta WHERE key = $1",
          [REINDEX_KEY],
        );
        if (recorded.rows[0]?.value !== reindexRecord(options.target)) throw reindexSuperseded();
      }
      const except = options.requireCompleteExcept;
      if (except !== undefined) {
        // Inserts lock the model row FOR SHARE, so none commits between this count and the swap.
        const missing = await client.query<{ n: number }>(
          `SELECT count(*)::bigint AS n FROM longclip.items i WHERE NOT EXISTS
             (SELECT 1 FROM longclip.embeddings_staging s WHERE s.label = i.label AND s.model_id = $1)
           AND NOT (label = ANY($2::bigint[]))`,
          [info.modelId, except],
        );
        const n = Number(missing.rows[0]?.n ?? 0);
        if (n > 0) throw reindexIncomplete(n);
      }
      // Rebuilding the index once is far cheaper than updating it row by row.
      await dropIndex(client);
      await client.query(
        `UPDATE longclip.items AS i SET model_id = s.model_id, embedding = s.embedding
         FROM longclip.embeddings_staging AS s WHERE s.label = i.label AND s.model_id = $1`,
        [info.modelId],
      );
      await client.query(
        "UPDATE longclip.items SET model_id = NULL, embedding = NULL WHERE model_id <> $1",
        [info.modelId],
      );
      // Parts likewise, by item and position; a part with no embedding of the model is dropped,
      // and so is a stored part an item staged without (its regions under another setting).
      await client.query(
        `UPDATE longclip.item_parts AS p SET model_id = s.model_id, embedding = s.embedding
         FROM longclip.item_parts_staging AS s
         WHERE s.item = p.item AND s.part = p.part AND s.model_id = $1`,
        [info.modelId],
      );
      await client.query(
        `DELETE FROM longclip.item_parts AS p WHERE p.model_id <> $1 OR (
           p.item IN (SELECT label FROM longclip.embeddings_staging WHERE model_id = $1)
           AND NOT EXISTS (SELECT 1 FROM longclip.item_parts_staging AS s
             WHERE s.item = p.item AND s.part = p.part AND s.model_id = $1))`,
        [info.modelId],
      );
      await client.query(
        `INSERT INTO longclip.item_parts (item, part, kind, box_x, box_y, box_width, box_height, t, model_id, embedding)
         SELECT s.item, s.part, s.kind, s.box_x, s.box_y, s.box_width, s.box_height, s.t, s.model_id, s.embedding
         FROM longclip.item_parts_staging AS s
         WHERE s.model_id = $1 AND s.kind IS NOT NULL
           AND s.item IN (SELECT label FROM longclip.embeddings_staging WHERE model_id = $1)
         ON CONFLICT (item, part) DO NOTHING`,
        [info.modelId],
      );
      await client.query("DELETE FROM longclip.item_parts_staging");
      await client.query("DELETE FROM longclip.embeddings_staging");
      await client.query("DELETE FROM longclip.meta WHERE key = $1", [REINDEX_KEY]);
      await writeModel(client, info);
      await ensureIndex(client, this.index, info.dims);
    });
  }

  async unstagedAfter(modelId: string, label: number, limit: number): Promise<StoredItem[]> {
    await this.ready();
    const result = await this.db.query<ItemRow>(
      `SELECT ${ITEM_COLUMNS} FROM longclip.items i WHERE label > $1 AND NOT EXISTS
         (SELECT 1 FROM longclip.embeddings_staging s WHERE s.label = i.label AND s.model_id = $2)
       ORDER BY label LIMIT $3`,
      [label, modelId, limit],
    );
    return result.rows.map(toItem);
  }

  async count(modelId: string): Promise<number> {
    await this.ready();
    const result = await this.db.query<{ n: number }>(
      "SELECT count(*)::bigint AS n FROM longclip.embeddings_staging WHERE model_id = $1",
      [modelId],
    );
    return Number(result.rows[0]?.n ?? 0);
  }

  async reindexTarget(): Promise<ReindexTarget | undefined> {
    await this.ready();
    const result = await this.db.query<{ value: string }>(
      "SELECT value FROM longclip.meta WHERE key = $1",
      [REINDEX_KEY],
    );
    return parseReindexTarget(result.rows[0]?.value);
  }

  async setReindexTarget(
    target: ReindexTarget | undefined,
    expected?: ReindexTarget | null,
  ): Promise<boolean> {
    await this.ready();
    const value = target === undefined ? null : reindexRecord(target);
    if (expected === undefined) {
      await this.db.query(
        value === null
          ? "DELETE FROM longclip.meta WHERE key = $1"
          : "INSERT INTO longclip.meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        value === null ? [REINDEX_KEY] : [REINDEX_KEY, value],
      );
      return true;
    }
    if (expected === null && value === null) return (await this.reindexTarget()) === undefined;
    // Compare-and-set in one statement: of nodes doing it at the same moment, one wins.
    const result =
      expected === null
        ? await this.db.query(
            "INSERT INTO longclip.meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            [REINDEX_KEY, value],
          )
        : value === null
          ? await this.db.query("DELETE FROM longclip.meta WHERE key = $1 AND value = $2", [
              REINDEX_KEY,
              reindexRecord(expected),
            ])
          : await this.db.query(
              "UPDATE longclip.meta SET value = $2 WHERE key = $1 AND value = $3",
              [REINDEX_KEY, value, reindexRecord(expected)],
            );
    return result.rowCount === 1;
  }
}
