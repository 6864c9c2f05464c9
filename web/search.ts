/**
 * The search and its result grid: the library view the page opens with (the most recently
 * stored items, GET /items?order=newest), a text search from the form (with "load more" for
 * the next page of either), an image search ("more like this"), a text search with an item
 * subtracted ("less like this"), and the busy, empty and error states. Only the newest
 * request may write to the grid: each one takes a sequence number and a stale answer is
 * dropped.
 */
import { ApiError, describe, type Hit, request, type Schemas } from "./api.ts";
import { card, displayName, type Shown, stillUrl } from "./cards.ts";
import type { PageConfig } from "./config.ts";
import { $ } from "./dom.ts";
import type { QueryBox } from "./query-box.ts";
import { type SearchBody, searchOptionsRow } from "./search-options.ts";
import type { LibraryStats } from "./stats.ts";

export interface SearchDeps {
  config: PageConfig;
  queryBox: QueryBox;
  stats: LibraryStats;
  /** Opens a card's detail view (a card was clicked). */
  open(shown: Shown): void;
}

/** A query as POST /explain takes it (without the item). */
export type ExplainQuery = Partial<Omit<Schemas["ExplainRequest"], "item_id" | "format">>;

/** What the detail view does around an image search it started. */
export interface ImageSearchHooks {
  /** The hits arrived and are about to replace the grid. */
  beforeShow(): void;
  failed(error: unknown): void;
}

export interface SearchView {
  /** The library view: the most recently stored items, newest first. */
  showLibrary(): Promise<void>;
  /** A text search (query or compose) is on screen, so "less like this" can rework it. */
  hasTextSearch(): boolean;
  /** The query of the text search on screen, as POST /explain takes it (null: none). */
  explainQuery(): ExplainQuery | null;
  /** Images like this one's image (POST /search/image), from rank 1. */
  moreLike(shown: Shown, hooks: ImageSearchHooks): Promise<void>;
  /** The text search on screen with this item subtracted (compose, weight -0.5), from rank 1. */
  lessLike(shown: Shown): Promise<void>;
  /** After an upload: the library view shows the new items; an empty grid says they came. */
  noteAdded(count: number): void;
}

function describeQuery(r: Schemas["SearchResponse"]): string {
  const q = r.query;
  if (q.truncated) return ` · the query was cut to ${q.max_tokens} of its ${q.tokens} tokens`;
  if ((q.chunks ?? 1) > 1) return ` · read in ${q.chunks} sentence windows`;
  return "";
}

export function startSearch({ config, queryBox, stats, open }: SearchDeps): SearchView {
  const kSelect = $<HTMLSelectElement>("k");
  const modeSelect = $<HTMLSelectElement>("mode");
  const searchForm = $<HTMLFormElement>("search-form");
  const searchButton = $<HTMLButtonElement>("search-button");
  const results = $<HTMLOListElement>("results");
  const resultsTitle = $("results-title");
  const resultsStatus = $("results-status");
  const loadMore = $<HTMLButtonElement>("load-more");
  const showLibraryButton = $<HTMLButtonElement>("show-library");
  const searchOptions = searchOptionsRow();
  let searchSeq = 0;
  /** The text search on screen (query or compose), for "load more" and "less like this". */
  let current: { body: SearchBody; k: number; offset: number; shown: number } | null = null;
  /** The library view on screen: the next page's cursor and how many items it shows. */
  let library: { cursor: string | null; shown: number } | null = null;

  const toCard = (shown: Shown) => card(shown, open);
  const pageSize = () => Math.min(Number(kSelect.value), config.maxK);

  const setBusy = (busy: boolean) => {
    results.setAttribute("aria-busy", String(busy));
    searchButton.disabled = busy;
  };

  /** The grid holds a search, not the library view: offer the way back. */
  const leaveLibrary = () => {
    library = null;
    showLibraryButton.hidden = false;
  };

  const showHits = (hits: Hit[], title: string, emptyMessage: string, extra = "") => {
    leaveLibrary();
    results.replaceChildren(...hits.map(toCard));
    resultsTitle.textContent = title;
    resultsStatus.classList.remove("error");
    resultsStatus.textContent =
      hits.length === 0
        ? emptyMessage
        : `${hits.length} result${hits.length === 1 ? "" : "s"}${extra}`;
  };

  const showError = (context: string, error: unknown) => {
    leaveLibrary();
    results.replaceChildren();
    resultsTitle.textContent = "Results";
    resultsStatus.classList.add("error");
    resultsStatus.textContent = `${context}: ${describe(error)}`;
  };

  const emptyLibraryMessage = () =>
    stats.isEmpty()
      ? "The library is empty: add images under \u201cAdd images\u201d, then search again."
      : "No image matched. Try another description.";

  const libraryLine = (shown: number) => {
    const total = stats.count();
    if (shown === 0) {
      return "The library is empty: add images under \u201cAdd images\u201d below, then describe one above to find it.";
    }
    const of = total === undefined ? "" : ` of ${total.toLocaleString("en")}`;
    return `The ${shown}${of} most recently added image${shown === 1 ? "" : "s"}, newest first. Describe an image above to search them all.`;
  };

  /** The library view from its first page, or its next page ("load more"). */
  const libraryPage = async (more: boolean) => {
    const seq = ++searchSeq;
    setBusy(true);
    loadMore.disabled = true;
    try {
      const params = new URLSearchParams({ order: "newest", limit: String(pageSize()) });
      if (more && library?.cursor) params.set("cursor", library.cursor);
      const page = await request<Schemas["ItemPage"]>(`/items?${params}`);
      if (seq !== searchSeq) return;
      const shown = (more && library ? library.shown : 0) + page.items.length;
      current = null;
      library = { cursor: page.next_cursor, shown };
      showLibraryButton.hidden = true;
      resultsTitle.textContent = "Library";
      resultsStatus.classList.remove("error");
      if (more) results.append(...page.items.map(toCard));
      else results.replaceChildren(...page.items.map(toCard));
      resultsStatus.textContent = libraryLine(shown);
      loadMore.hidden = page.next_cursor === null;
    } catch (error) {
      if (seq !== searchSeq) return;
      loadMore.hidden = true;
      showError("The library could not be listed", error);
    } finally {
      if (seq === searchSeq) {
        setBusy(false);
        loadMore.disabled = false;
      }
    }
  };

  /** Runs a text search from offset 0 (a new ranking) or the next page of the current one. */
  const textSearch = async (body: SearchBody, title: string, more = false) => {
    const seq = ++searchSeq;
    setBusy(true);
    loadMore.disabled = true;
    resultsStatus.classList.remove("error");
    if (!more) resultsStatus.textContent = "Searching…";
    try {
      const k = more && current ? current.k : pageSize();
      const offset = more && current ? current.offset + current.k : 0;
      const r = await request<Schemas["SearchResponse"]>("/search", {
        method: "POST",
        json: {
          ...body,
          k,
          ...(offset > 0 ? { offset } : {}),
          // Keyword and hybrid rank by a query text; a composed query ("less like this") has none.
          ...("query" in body ? { mode: modeSelect.value } : {}),
        },
      });
      if (seq !== searchSeq) return;
      const shown = (more && current ? current.shown : 0) + r.hits.length;
      current = { body, k, offset, shown };
      if (more) {
        results.append(...r.hits.map(toCard));
        resultsStatus.textContent = `${shown} result${shown === 1 ? "" : "s"}`;
      } else {
        showHits(
          r.hits,
          title,
          emptyLibraryMessage(),
          ` in ${Math.round(r.took_ms)} ms${describeQuery(r)}`,
        );
      }
      // A full page may have a next one (a cutoff or the end of the library gives fewer).
      loadMore.hidden = r.hits.length < k || offset + 2 * k > config.maxK;
    } catch (error) {
      if (seq !== searchSeq) return;
      if (more) {
        resultsStatus.classList.add("error");
        resultsStatus.textContent = `Loading more failed: ${describe(error)}`;
      } else {
        current = null;
        loadMore.hidden = true;
        showError("Search failed", error);
      }
    } finally {
      if (seq === searchSeq) {
        setBusy(false);
        loadMore.disabled = false;
      }
    }
  };

  searchForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = queryBox.text();
    if (text.trim() === "") {
      resultsStatus.classList.add("error");
      resultsStatus.textContent = "Type a description first: the query is empty.";
      queryBox.focus();
      return;
    }
    void textSearch({ query: text, ...searchOptions.fields() }, "Results");
  });

  loadMore.addEventListener("click", () => {
    if (library) void libraryPage(true);
    else if (current) void textSearch(current.body, resultsTitle.textContent ?? "Results", true);
  });
  showLibraryButton.addEventListener("click", () => {
    void libraryPage(false).then(() => resultsTitle.focus());
  });

  return {
    showLibrary: () => libraryPage(false),

    hasTextSearch: () => current !== null,

    explainQuery() {
      if (current === null) return null;
      const { query, compose, long_query: longQuery, truncate } = current.body;
      return {
        ...(query !== undefined ? { query } : {}),
        ...(compose !== undefined ? { compose } : {}),
        ...(longQuery !== undefined ? { long_query: longQuery } : {}),
        ...(truncate !== undefined ? { truncate } : {}),
      };
    },

    async moreLike(hit, hooks) {
      const seq = ++searchSeq;
      setBusy(true);
      try {
        // The stored original (a video: the frame on show) is sent back as the query image.
        const original = await fetch(stillUrl(hit));
        if (!original.ok) {
          throw new ApiError(
            original.status,
            "image_unavailable",
            `the image of ${hit.id} could not be read`,
          );
        }
        const form = new FormData();
        form.append("image", await original.blob(), hit.id);
        const r = await request<Schemas["ImageSearchResponse"]>(`/search/image?k=${pageSize()}`, {
          method: "POST",
          body: form,
        });
        if (seq !== searchSeq) return;
        hooks.beforeShow();
        current = null;
        loadMore.hidden = true;
        showHits(
          r.hits,
          `More like ${displayName(hit)}`,
          "No similar image found.",
          ` in ${Math.round(r.took_ms)} ms`,
        );
        resultsTitle.focus();
      } catch (error) {
        if (seq !== searchSeq) return;
        hooks.failed(error);
      } finally {
        if (seq === searchSeq) setBusy(false);
      }
    },

    async lessLike(hit) {
      if (current === null) return;
      const { query: text, compose, ...options } = current.body;
      const parts = compose ?? (text !== undefined ? [{ text, weight: 1 }] : []);
      await textSearch(
        { ...options, compose: [...parts, { item_id: hit.id, weight: -0.5 }] },
        `Less like ${displayName(hit)}`,
      );
      resultsTitle.focus();
    },

    noteAdded(count) {
      if (count > 0 && library !== null) {
        void libraryPage(false);
      } else if (count > 0 && results.childElementCount === 0) {
        resultsStatus.classList.remove("error");
        resultsStatus.textContent = `${count} image${count === 1 ? "" : "s"} added: search to see them.`;
      }
    },
  };
}
