/**
 * efSearch per query, for both HNSW engines (hnswlib in the embedded backend, pgvector on
 * Postgres): the candidate list a search keeps decides its recall, and the list it needs grows
 * with how many results are asked for (k + offset, the depth) and, slowly, with the size of the
 * graph. One fixed value is either wasted on small libraries or too low for large ones (efSearch
 * 100 gave recall@10 0.857 at 1M 768-d vectors). `--hnsw-ef-search N` (N > 0) still fixes it.
 *
 * The rule aims at recall@k >= RECALL_TARGET on clustered benchmark vectors (M 16,
 * efConstruction 200, 512-d); docs/scaling.md has the 1M measurements. Wider vectors (768-d)
 * were not measured with it and may need more. Real embeddings differ: measure yours with
 * `exact: true` searches.
 */

/** The recall@k the automatic efSearch is fitted to reach. */
export const RECALL_TARGET = 0.95;

/** pgvector accepts hnsw.ef_search from 1 to 1000. */
export const MAX_PGVECTOR_EF_SEARCH = 1000;

/** Candidates per result asked for, beyond the size term (measured; see docs/scaling.md). */
const PER_RESULT = 2;
/**
 * The list a 10-result search needs grows by this much each time the graph doubles: 131 for
 * k 10 at 1M. On the bench:scale set (10,000 clusters) 76 already gave recall@10 0.965, but
 * the harder 1,000-cluster set of docs/performance.md needed 128 for 0.971 at 1M.
 */
const PER_DOUBLING = 16;
/** Graphs up to this size need no more than PER_RESULT x depth (and at least FLOOR). */
const SMALL_GRAPH = 8_192;
const FLOOR = 40;

/**
 * The efSearch for a search of `depth` results (k + offset) in a graph of `size` vectors:
 * `fixed` when set (> 0), never less than the depth (HNSW returns at most efSearch results).
 */
export function efSearchFor(depth: number, size: number, fixed = 0): number {
  const wanted = Math.max(1, Math.ceil(depth));
  if (fixed > 0) return Math.max(fixed, wanted);
  const doublings = Math.max(0, Math.log2(Math.max(size, 1) / SMALL_GRAPH));
  const sizeTerm = Math.ceil(PER_DOUBLING * doublings * Math.sqrt(wanted / 10));
  return Math.max(FLOOR, PER_RESULT * wanted + sizeTerm, wanted);
}

/**
 * Whether a filtered search ranks the `matching` items exactly instead of walking the graph of
 * `size` vectors with the filter. A filtered walk visits about efSearch / s vectors to keep
 * efSearch of them, s = matching / size, so it computes about efSearch x size / matching
 * distances, and the exact scan `matching` of them, with no recall lost: the scan is chosen
 * while it costs at most twice the walk, i.e. matching <= 2 x sqrt(efSearch x size) (22,900 for
 * k 10 at 1M vectors), and always up to `limit` matching items. `limit` 0 turns it off (the
 * index alone, as the filtered-recall bench measures it).
 */
export function scansFilterExactly(
  matching: number,
  size: number,
  efSearch: number,
  limit: number,
): boolean {
  if (limit <= 0) return false;
  return matching <= Math.max(limit, 2 * Math.sqrt(efSearch * size));
}

/**
 * The efSearch of a filtered walk: `efSearch` candidates that pass the filter take about
 * efSearch / s visited ones (s = matching / size), so the list grows by 1 / s, up to `max`.
 */
export function filteredEfSearch(
  efSearch: number,
  matching: number,
  size: number,
  max: number,
): number {
  const share = size > 0 ? Math.min(1, Math.max(1, matching) / size) : 1;
  return Math.max(efSearch, Math.min(max, Math.ceil(efSearch / share)));
}
