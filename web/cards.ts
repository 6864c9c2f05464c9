/**
 * One card of the grid: a search hit (thumbnail, rank, score and name) or a stored item of
 * the library view (thumbnail and name). A hit that matched by a frame of a video shows that
 * frame and its time.
 */
import { frameUrl, type Hit, type Item, thumbnailUrl } from "./api.ts";
import { el } from "./dom.ts";

/** What a card shows: a search hit, or an item of the library view (no rank or score). */
export type Shown = Hit | Item;

export function isHit(shown: Shown): shown is Hit {
  return "rank" in shown;
}

/** The time (seconds into the video) of the frame a hit matched by, when it matched by one. */
export function matchedTime(shown: Shown): number | undefined {
  if (!isHit(shown) || shown.match?.kind !== "frame") return undefined;
  return shown.match.t;
}

/** A still of `shown` to search by: the matched frame of a video hit, a video item's first. */
export function stillUrl(shown: Shown): string {
  const t = matchedTime(shown);
  if (t !== undefined) return frameUrl(shown.id, t);
  if (!isHit(shown) && shown.content_type.startsWith("video/")) return frameUrl(shown.id, 0);
  return shown.image_url;
}

/** Seconds as the page shows a moment of a video: "1:05.2". */
export function formatTime(seconds: number): string {
  const tenths = Math.round(seconds * 10);
  const minutes = Math.floor(tenths / 600);
  const rest = (tenths % 600) / 10;
  return `${minutes}:${rest < 10 ? "0" : ""}${rest.toFixed(1)}`;
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
  const t = matchedTime(shown);
  return el(
    "span",
    { class: "card-info" },
    el("span", { class: "rank" }, `#${shown.rank}`),
    el("span", { class: "score" }, shown.score.toFixed(3)),
    el("span", { class: "name" }, name),
    ...(t === undefined ? [] : [el("span", { class: "frame-time" }, `at ${formatTime(t)}`)]),
    ...rankNote(shown),
  );
}

/** The card's button calls `open` (the detail view). */
export function card(shown: Shown, open: (shown: Shown) => void): HTMLLIElement {
  const name = displayName(shown);
  const t = matchedTime(shown);
  const moment = t === undefined ? "" : ` at ${formatTime(t)}`;
  const button = el(
    "button",
    {
      type: "button",
      class: "card",
      "data-id": shown.id,
      "aria-label": isHit(shown)
        ? `Rank ${shown.rank}, score ${shown.score.toFixed(3)}: ${name}${moment}. Open details`
        : `${name}. Open details`,
    },
    el("img", {
      // A video hit shows the frame that matched, not the video's first frame.
      src: t === undefined ? thumbnailUrl(shown.id) : frameUrl(shown.id, t),
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
