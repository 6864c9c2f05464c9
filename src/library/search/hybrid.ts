/**
 * Keyword and hybrid search: the text of the query matched against the items' text fields
 * (the store's full-text index), alone or fused with the vector ranking by reciprocal rank
 * fusion (RRF, Cormack et al. 2009: each ranking adds 1 / (60 + rank) to an item's score).
 * RRF needs no calibration between BM25-like and cosine scores, which are not comparable.
 *
 * Every hit's `score` stays the cosine similarity of its image to the query (of its best
 * vector: the whole image's or a part's, which the hit's `match` names), whatever ranked it, so
 * a score means the same in every mode.
 */
import { AppError } from "../../core/errors.ts";
import type { Filter, Hit, HitMatch, SearchMode } from "../../core/types.ts";
import type { ItemStore, PartMatch, ScoredItem } from "../../store/types.ts";
import { cosine } from "../../vector-index/exact.ts";

/** The usual RRF constant: damps the weight of the very first ranks. */
export const RRF_K = 60;
/** Distinct words of a query that go to the full-text index (a 248-token paragraph has fewer). */
export const MAX_KEYWORD_WORDS = 256;
const MAX_TEXT_FIELDS = 32;
const TEXT_FIELD = /^[A-Za-z0-9_-]{1,64}$/;

/** A hit's `match` from the store's: the part's locator and score (its index stays inside). */
export function hitMatch(match: PartMatch | undefined): { match?: HitMatch } {
  if (match === undefined) return {};
  const { index: _index, ...shown } = match;
  return { match: shown };
}

/** The distinct words (letters and digits) of a query, lower-cased, in order of appearance. */
export function keywordWords(text: string): string[] {
  const words = new Set<string>();
  for (const match of text.toLowerCase().matchAll(/[\p{L}\p{N}]+/gu)) {
    words.add(match[0]);
    if (words.size === MAX_KEYWORD_WORDS) break;
  }
  return [...words];
}

/** `--text-fields` or a request's `text_fields`, checked: top-level metadata keys. */
export function parseTextFields(fields: string | readonly string[], origin: string): string[] {
  const list = (typeof fields === "string" ? fields.split(",") : [...fields])
    .map((field) => field.trim())
    .filter((field) => field !== "");
  if (list.length > MAX_TEXT_FIELDS) {
    throw new AppError(
      "validation_failed",
      `${origin} names ${list.length} fields; the limit is ${MAX_TEXT_FIELDS}.`,
    );
  }
  for (const field of list) {
    if (!TEXT_FIELD.test(field)) {
      throw new AppError(
        "validation_failed",
        `${origin}: "${field.slice(0, 80)}" is not a top-level metadata key (1-64 letters, digits, "_" or "-").`,
      );
    }
  }
  return [...new Set(list)];
}

export interface RankedQuery {
  mode: SearchMode;
  /** The query embedding (for the vector ranking and every hit's cosine score). */
  vector: Float32Array;
  /** The query text (for the keyword ranking). */
  text: string;
  fields: readonly string[];
  k: number;
  /** Candidates each ranking gives the fusion in hybrid mode (at least k are taken). */
  candidates: number;
  exact: boolean;
  filter?: Filter;
}

interface Candidate {
  scored: ScoredItem;
  vectorRank: number | null;
  keywordRank: number | null;
  keywordScore: number | null;
}

/** Keyword-only or hybrid hits (vector mode is the library's plain `searchVector`). */
export async function rankedSearch(
  store: ItemStore,
  modelId: string,
  query: RankedQuery,
): Promise<Hit[]> {
  const filter = query.filter !== undefined ? { filter: query.filter } : {};
  const depth = query.mode === "hybrid" ? Math.max(query.k, query.candidates) : query.k;
  const keywordRanking = await store.keywordSearch({
    words: keywordWords(query.text),
    fields: query.fields,
    k: depth,
    ...filter,
  });
  const vectorRanking =
    query.mode === "hybrid"
      ? await store.nearest(
          { vector: query.vector, k: depth, exact: query.exact, ...filter },
          modelId,
        )
      : [];

  const byLabel = new Map<number, Candidate>();
  vectorRanking.forEach((scored, i) => {
    byLabel.set(scored.item.label, {
      scored,
      vectorRank: i + 1,
      keywordRank: null,
      keywordScore: null,
    });
  });
  keywordRanking.forEach((scored, i) => {
    const known = byLabel.get(scored.item.label);
    if (known !== undefined) {
      known.keywordRank = i + 1;
      known.keywordScore = scored.score;
    } else {
      byLabel.set(scored.item.label, {
        scored,
        vectorRank: null,
        keywordRank: i + 1,
        keywordScore: scored.score,
      });
    }
  });

  const fused = (c: Candidate) =>
    (c.vectorRank === null ? 0 : 1 / (RRF_K + c.vectorRank)) +
    (c.keywordRank === null ? 0 : 1 / (RRF_K + c.keywordRank));
  const ordered = [...byLabel.values()];
  if (query.mode === "hybrid") {
    ordered.sort(
      (a, b) =>
        fused(b) - fused(a) ||
        (a.vectorRank ?? Number.POSITIVE_INFINITY) - (b.vectorRank ?? Number.POSITIVE_INFINITY) ||
        a.scored.item.label - b.scored.item.label,
    );
  }
  const top = ordered.slice(0, query.k);

  // Keyword-ranked items get their cosine score from their stored embeddings, as a search
  // by vector would: the best of the whole image's and its parts'.
  const needCosine = top.filter((c) => c.vectorRank === null).map((c) => c.scored.item.label);
  const cosines = await bestCosines(store, modelId, query.vector, needCosine);
  const hits: Hit[] = [];
  for (const c of top) {
    const best = c.vectorRank !== null ? c.scored : cosines.get(c.scored.item.label);
    // An item without an embedding of this model is not searchable until re-indexed.
    if (best === undefined) continue;
    const hit: Hit = {
      id: c.scored.item.id,
      score: best.score,
      rank: hits.length + 1,
      metadata: c.scored.item.metadata,
      keywordRank: c.keywordRank,
      keywordScore: c.keywordScore,
      ...hitMatch(best.match),
    };
    if (query.mode === "hybrid") {
      hit.vectorRank = c.vectorRank;
      hit.fusedScore = fused(c);
    }
    hits.push(hit);
  }
  return hits;
}

/** The cosine of each item's best vector to `vector`, with the part that gave it, if any. */
async function bestCosines(
  store: ItemStore,
  modelId: string,
  vector: Float32Array,
  labels: readonly number[],
): Promise<Map<number, { score: number; match?: PartMatch }>> {
  const best = new Map<number, { score: number; match?: PartMatch }>();
  if (labels.length === 0) return best;
  for (const row of await store.embeddingsOf(modelId, labels)) {
    best.set(row.label, { score: cosine(vector, row.vector) });
  }
  for (const [label, parts] of await store.partsOf(modelId, labels)) {
    let held = best.get(label);
    if (held === undefined) continue;
    for (const { vector: partVector, ...part } of parts) {
      const score = cosine(vector, partVector);
      if (score > held.score) {
        held = { score, match: { ...part, score } };
        best.set(label, held);
      }
    }
  }
  return best;
}
