/**
 * bench:perf's markdown for the search side: text tower, query latency under ingest, HNSW
 * index, HNSW inserts and the HTTP server under load. Each function turns one section's
 * measured result into its title, table(s) and note, and does nothing else.
 */
import { sizeTag } from "./context.ts";
import type { IndexResult } from "./index-bench.ts";
import type { InsertPathResult, InsertRateResult } from "./insert-rate.ts";
import { fmt, type MarkdownSection, markdownTable } from "./markdown.ts";
import type { ServerResult } from "./server.ts";
import type { QueryUnderIngestRow, TextResult } from "./text.ts";

/** The HNSW build parameters of the index and insert sections. */
export interface HnswBuild {
  m: number;
  efConstruction: number;
}

export function textSection(texts: readonly TextResult[]): MarkdownSection {
  return {
    title: "Text tower: one query, latency in ms (median)",
    body: markdownTable(
      [
        "model",
        "tokens",
        "dynamic length (ours)",
        "padded to 248",
        "padded / dynamic",
        "cosine dyn vs padded",
      ],
      texts.flatMap((t) =>
        t.rows.map((r) => [
          sizeTag(t.size),
          r.tokens,
          r.dynamicMs,
          r.paddedMs,
          r.speedup,
          r.agreement.toFixed(6),
        ]),
      ),
    ),
    note: texts
      .map(
        (t) =>
          `${sizeTag(t.size)}: 248-token / 30-token latency ${fmt(t.ratio30vs248)}×. Query cache: embedTexts of a ${t.cache.tokens}-token query ${fmt(t.cache.encodeMs)} ms, LRU hit ${t.cache.cachedMs.toExponential(2)} ms (${fmt(t.cache.speedup, 0)}× faster).`,
      )
      .join("\n"),
  };
}

/** `size`: the model whose towers ran, e.g. "ViT-B/16". */
export function queryUnderIngestSection(
  rows: readonly QueryUnderIngestRow[],
  size: string,
): MarkdownSection {
  return {
    title: `Query latency under ingest (engine level, ${sizeTag(size)}, embedTexts of a one-line query)`,
    body: markdownTable(
      ["condition", "queries", "median ms", "max ms", "images/s of the ingest beside"],
      rows.map((r) => [r.condition, r.queries, r.medianMs, r.maxMs, r.imagesPerSecond]),
    ),
  };
}

export function indexSection(results: readonly IndexResult[], hnsw: HnswBuild): MarkdownSection {
  return {
    title: `Index: HNSW (M ${hnsw.m}, efConstruction ${hnsw.efConstruction}), 512-d, recall@10 against exact search`,
    body: [
      markdownTable(
        ["set", "build vectors/s", "RSS bytes/vector", "file bytes/vector", "exact queries/s"],
        results.map((r) => [
          r.dataset,
          r.buildVectorsPerS,
          fmt(r.rssBytesPerVector, 0),
          fmt(r.fileBytesPerVector, 0),
          r.exactQueriesPerS,
        ]),
      ),
      "",
      markdownTable(
        ["set", "efSearch", "queries/s", "recall@10"],
        results.flatMap((r) =>
          r.rows.map((e) => [r.dataset, e.efSearch, e.queriesPerS, fmt(e.recallAt10, 3)]),
        ),
      ),
    ].join("\n"),
    note: results
      .map((r) => `${r.dataset}: recall@10 ≥ 0.98 from efSearch ${r.efFor098 ?? "none measured"}.`)
      .join("\n"),
  };
}

/** The caveat of the in-thread insert run, when there was one. */
function inThreadNote(paths: readonly { path: string; count: number }[]): string {
  const inThread = paths.find((p) => p.path === "in-thread");
  if (inThread === undefined) return "";
  return ` The in-thread run inserts only the first ${inThread.count.toLocaleString("en-US")} vectors (a smaller graph inserts faster, so its figures flatter it).`;
}

function insertPathName(p: InsertPathResult): string {
  return p.path === "in-thread"
    ? "in-thread (before)"
    : `workers, ${p.shards} shard${p.shards > 1 ? "s" : ""}`;
}

/** `count`: the vectors asked for (the in-thread run may insert fewer). */
export function insertSection(
  inserts: InsertRateResult,
  count: number,
  hnsw: HnswBuild,
): MarkdownSection {
  return {
    title: `HNSW inserts: ${count.toLocaleString("en-US")} clustered 768-d vectors (M ${hnsw.m}, efConstruction ${hnsw.efConstruction}), batches of ${inserts.batch}`,
    body: [
      markdownTable(
        [
          "path",
          "vectors",
          "inserts/s (wall)",
          "inserts per CPU second",
          "last window /s (wall)",
          "last window per CPU s",
          "event-loop delay p99 ms",
          "max ms",
        ],
        inserts.paths.map((p) => [
          insertPathName(p),
          p.count,
          p.vectorsPerS,
          p.vectorsPerCpuS,
          p.windows.at(-1)?.vectorsPerS ?? Number.NaN,
          p.windows.at(-1)?.vectorsPerCpuS ?? Number.NaN,
          p.loopDelayP99Ms,
          p.loopDelayMaxMs,
        ]),
      ),
      "",
      markdownTable(
        ["path", "recall@10", "queries/s", "CPU ms per query", "queries/s, 10% of labels allowed"],
        inserts.paths
          .filter((p) => p.search !== undefined)
          .map((p) => [
            insertPathName(p),
            fmt(p.search?.recallAt10 ?? Number.NaN, 3),
            p.search?.queriesPerS ?? Number.NaN,
            p.search?.cpuMsPerQuery ?? Number.NaN,
            p.search?.filteredQueriesPerS ?? Number.NaN,
          ]),
      ),
    ].join("\n"),
    note: `CPU is the whole process's (every thread); wall rates depend on the machine's load and on free cores (one shard = one thread). Event-loop delay: perf_hooks.monitorEventLoopDelay while inserting.${inThreadNote(inserts.paths)} Total ${fmt(inserts.totalSeconds, 0)} s.`,
  };
}

/** `size`: the model the server ran, e.g. "ViT-B/16". */
export function serverSection(servers: readonly ServerResult[], size: string): MarkdownSection {
  const first = servers[0];
  return {
    title: `Server: POST /search, ${first?.connections} connections, ${first?.durationS} s each, ${sizeTag(size)}`,
    body: markdownTable(
      [
        "image batch",
        "condition",
        "requests/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "requests",
        "non-2xx",
        "errors",
        "images ingested",
      ],
      servers.flatMap((server) =>
        server.rows.map((r) => [
          server.imageBatchSize,
          r.condition,
          r.requestsPerS,
          r.p50Ms,
          r.p99Ms,
          r.maxMs,
          r.requests,
          r.non2xx,
          r.errors,
          r.ingestCoveredWindow === false ? `${r.imagesIngested} (ran out)` : r.imagesIngested,
        ]),
      ),
    ),
    note: servers
      .map((s) => `image batch ${s.imageBatchSize}: p99 ingesting / unloaded ${fmt(s.p99Ratio)}×.`)
      .concat("Every request's query text is new, so each one runs the text tower (no cache hits).")
      .join("\n"),
  };
}
