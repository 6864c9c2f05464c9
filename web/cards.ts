/**
 * One card of the grid: a search hit (thumbnail, rank, score and name) or a stored item of
 * the library view (thumbnail and name).
 */
import { type Hit, type Item, thumbnailUrl } from "./api.ts";
import { el } from "./dom.ts";

/** What a card shows: a search hit, or an item of the library view (no rank or score). */
export type Shown = Hit | Item;

export function isHit(shown: Shown): shown is Hit {
  return "rank" in shown;
}

/** The file name it was uploaded with (metadata.filename; a gallery's `file`), else the id. */
export function displayName(shown: Shown): string {
  for (const key of ["filename", "file"]) {
    const name = shown.metadata[key];
    if (typeof name === "string" && name !== "") return name;
  }
  return shown.id;
}

/** Keyword and hybrid hits: where they ranked by image and by text ("–": not found so). */
function rankNote(hit: Hit): HTMLElement[] {
  if (hit.keyword_rank === undefined && hit.vector_rank === undefined) return [];
  const rank = (r: number | null | undefined) => (r === null || r === undefined ? "–" : `#${r}`);
  const parts =
    hit.vector_rank === undefined
      ? [`text ${rank(hit.keyword_rank)}`]
      : [`image ${rank(hit.vector_rank)}`, `text ${rank(hit.keyword_rank)}`];
  return [el("span", { class: "ranks" }, parts.join(" · "))];
}

function cardInfo(shown: Shown, name: string): HTMLElement {
  if (!isHit(shown)) return el("span", { class: "card-info" }, el("span", { class: "name" }, name));
  return el(
    "span",
    { class: "card-info" },
    el("span", { class: "rank" }, `#${shown.rank}`),
    el("span", { class: "score" }, shown.score.toFixed(3)),
    el("span", { class: "name" }, name),
    ...rankNote(shown),
  );
}

/** The card's button calls `open` (the detail view). */
export function card(shown: Shown, open: (shown: Shown) => void): HTMLLIElement {
  const name = displayName(shown);
  const button = el(
    "button",
    {
      type: "button",
      class: "card",
      "data-id": shown.id,
      "aria-label": isHit(shown)
        ? `Rank ${shown.rank}, score ${shown.score.toFixed(3)}: ${name}. Open details`
        : `${name}. Open details`,
    },
    el("img", {
      src: thumbnailUrl(shown.id),
      alt: "",
      loading: "lazy",
      decoding: "async",
      width: "256",
      height: "256",
    }),
    cardInfo(shown, name),
  );
  button.addEventListener("click", () => open(shown));
  return el("li", {}, button);
}
