/** One search hit as a card of the result grid: thumbnail, rank, score and name. */
import { type Hit, thumbnailUrl } from "./api.ts";
import { el } from "./dom.ts";

/** The file name the page uploaded it with (metadata.filename), else the id. */
export function displayName(hit: Hit): string {
  const name = hit.metadata.filename;
  return typeof name === "string" && name !== "" ? name : hit.id;
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

/** The card's button calls `open` (the detail view). */
export function card(hit: Hit, open: (hit: Hit) => void): HTMLLIElement {
  const name = displayName(hit);
  const button = el(
    "button",
    {
      type: "button",
      class: "card",
      "data-id": hit.id,
      "aria-label": `Rank ${hit.rank}, score ${hit.score.toFixed(3)}: ${name}. Open details`,
    },
    el("img", {
      src: thumbnailUrl(hit.id),
      alt: "",
      loading: "lazy",
      decoding: "async",
      width: "256",
      height: "256",
    }),
    el(
      "span",
      { class: "card-info" },
      el("span", { class: "rank" }, `#${hit.rank}`),
      el("span", { class: "score" }, hit.score.toFixed(3)),
      el("span", { class: "name" }, name),
      ...rankNote(hit),
    ),
  );
  button.addEventListener("click", () => open(hit));
  return el("li", {}, button);
}
