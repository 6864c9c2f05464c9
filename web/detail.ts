/**
 * The detail view of a card (a hit or a library item): the full image, the stored item's
 * fields and metadata (GET /items/{id}), and "more like this" / "less like this", which start
 * a new search. During a text search, "Show why it matched" draws POST /explain's heat map
 * over the image (the grid itself, in the overlay's colours), and a hit that matched by a
 * region of its image shows that region's box. A video plays in a <video> element from its
 * original (GET /items/{id}/image answers byte ranges), from the moment a hit matched by.
 */
import { heatColour } from "../src/library/explain/colour.ts";
import { describe, frameUrl, type Item, itemUrl, request, type Schemas } from "./api.ts";
import { displayName, formatTime, isHit, matchedTime, type Shown } from "./cards.ts";
import { $, el } from "./dom.ts";
import type { ExplainQuery, SearchView } from "./search.ts";

type Explanation = Schemas["ExplainResponse"];
type Box = Schemas["Box"];

/** The box of the region a hit matched by, when it has one (multi-vector items). */
function matchedBox(shown: Shown): Box | undefined {
  return isHit(shown) ? shown.match?.box : undefined;
}

/** Where the image's pixels are drawn inside its element (object-fit: contain). */
function drawnRect(image: HTMLImageElement): { left: number; top: number; scale: number } {
  const scale = Math.min(
    image.clientWidth / image.naturalWidth,
    image.clientHeight / image.naturalHeight,
  );
  return {
    left: image.offsetLeft + (image.clientWidth - image.naturalWidth * scale) / 2,
    top: image.offsetTop + (image.clientHeight - image.naturalHeight * scale) / 2,
    scale,
  };
}

/** Places `element` over `box` (in the original's pixels, `size` its size) on the image. */
function placeOver(
  element: HTMLElement,
  image: HTMLImageElement,
  box: Box,
  size: { width: number; height: number },
): void {
  const { left, top, scale } = drawnRect(image);
  // The original's pixels to the drawn image's (the element may show a smaller rendition).
  const ratio = (scale * image.naturalWidth) / size.width;
  element.style.left = `${left + box.x * ratio}px`;
  element.style.top = `${top + box.y * ratio}px`;
  element.style.width = `${box.width * ratio}px`;
  element.style.height = `${box.height * ratio}px`;
}

/** The grid as one canvas pixel per patch, coloured as the PNG overlay colours it. */
function paintHeat(canvas: HTMLCanvasElement, explanation: Explanation): void {
  const { rows, columns } = explanation.grid;
  canvas.width = columns;
  canvas.height = rows;
  const context = canvas.getContext("2d");
  if (context === null) return;
  const pixels = context.createImageData(columns, rows);
  const span = explanation.max - explanation.min;
  explanation.scores.forEach((row, r) => {
    row.forEach((score, c) => {
      const [red, green, blue] = heatColour(span > 0 ? (score - explanation.min) / span : 0.5);
      pixels.data.set([red, green, blue, 255], (r * columns + c) * 4);
    });
  });
  context.putImageData(pixels, 0, 0);
  canvas.dataset.rows = String(rows);
  canvas.dataset.columns = String(columns);
  canvas.dataset.peak = `${explanation.peak.row},${explanation.peak.column}`;
}

export interface DetailView {
  open(shown: Shown): Promise<void>;
}

function metaRow(term: string, value: string): HTMLElement[] {
  return [el("dt", {}, term), el("dd", {}, value)];
}

/** The same text in every locale and time zone: "2026-12-07 11:47 UTC". */
export function formatDate(iso: string): string {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return `${date.toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

/** Where the item came from, in the words the page uses for it. */
function sourceOf(item: Item): string {
  if (item.metadata.gallery === true) return "sample gallery of the model";
  if (item.source === "path")
    return item.path ? `file on the server: ${item.path}` : "file on the server";
  return "added from this page or the API";
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export function startDetailView(search: SearchView): DetailView {
  const detail = $<HTMLDialogElement>("detail");
  const detailTitle = $("detail-title");
  const detailImage = $<HTMLImageElement>("detail-image");
  const detailVideo = $<HTMLVideoElement>("detail-video");
  const detailMeta = $("detail-meta");
  const detailScore = $("detail-score");
  const detailError = $("detail-error");
  const detailOriginal = $<HTMLAnchorElement>("detail-original");
  const heatToggle = $<HTMLButtonElement>("detail-heat-toggle");
  const heatStatus = $("detail-heat-status");
  const heatCanvas = $<HTMLCanvasElement>("detail-heat");
  const boxElement = $("detail-box");
  const moreLikeThis = $<HTMLButtonElement>("more-like-this");
  const lessLikeThis = $<HTMLButtonElement>("less-like-this");
  /** The card on show; an answer for another one (the view was reopened) is dropped. */
  let detailHit: Shown | undefined;
  /** Focus goes back here when the view closes (keyboard users keep their place). */
  let detailOpener: HTMLElement | null = null;
  /** The query the view explains (the text search on screen when it opened). */
  let explainQuery: ExplainQuery | null = null;
  /** The heat map on show, and the original's size its crop is in. */
  let explained: Explanation | undefined;
  /** Where the video on show starts (seconds): the moment its hit matched by, else 0. */
  let videoStart = 0;

  // Seeking needs the video's metadata; the poster shows the moment until then.
  detailVideo.addEventListener("loadedmetadata", () => {
    detailVideo.currentTime = videoStart;
  });

  const stopVideo = () => {
    if (detailVideo.hidden) return;
    detailVideo.pause();
    detailVideo.removeAttribute("src");
    detailVideo.removeAttribute("poster");
    detailVideo.load();
    detailVideo.hidden = true;
  };

  /** Shows the still image of `shown` (an image item). */
  const showImage = (shown: Shown) => {
    stopVideo();
    detailImage.hidden = false;
    detailImage.src = shown.image_url;
    detailImage.alt = `Image ${shown.id}`;
  };

  /** Shows the frame at `t` seconds of video `shown` as a still: a heat map is of one frame. */
  const showFrame = (shown: Shown, t: number) => {
    stopVideo();
    detailImage.hidden = false;
    detailImage.src = frameUrl(shown.id, t);
    detailImage.alt = `Frame at ${formatTime(t)} of video ${shown.id}`;
  };

  /** Plays the original of video `shown` from `start` seconds, its frame there as the poster. */
  const showVideo = (shown: Shown, start: number) => {
    detailImage.hidden = true;
    detailImage.removeAttribute("src");
    hideHeat();
    videoStart = start;
    detailVideo.hidden = false;
    detailVideo.poster = frameUrl(shown.id, start);
    detailVideo.setAttribute("aria-label", `Video ${shown.id}, from ${formatTime(start)}`);
    detailVideo.src = shown.image_url;
  };

  /** Puts the heat map and the box where the image is drawn now (it may have been resized). */
  const place = () => {
    if (!detailImage.naturalWidth) return;
    if (explained !== undefined && !heatCanvas.hidden) {
      placeOver(heatCanvas, detailImage, explained.crop, explained.image);
    }
    const box = detailHit === undefined ? undefined : matchedBox(detailHit);
    if (box !== undefined) {
      boxElement.hidden = false;
      placeOver(boxElement, detailImage, box, {
        width: detailImage.naturalWidth,
        height: detailImage.naturalHeight,
      });
    }
  };
  detailImage.addEventListener("load", place);
  new ResizeObserver(place).observe(detailImage);

  const hideHeat = () => {
    heatCanvas.hidden = true;
    heatToggle.setAttribute("aria-pressed", "false");
    heatToggle.textContent = "Show why it matched";
  };

  heatToggle.addEventListener("click", async () => {
    const hit = detailHit;
    if (hit === undefined || explainQuery === null) return;
    if (heatToggle.getAttribute("aria-pressed") === "true") {
      hideHeat();
      heatStatus.textContent = "";
      // A video's heat map was over its frame's still: the video plays on from its moment.
      if (explained?.t !== undefined) showVideo(hit, videoStart);
      return;
    }
    heatToggle.disabled = true;
    heatStatus.textContent = "Working out where the image agrees with the query…";
    try {
      const explanation = await request<Explanation>("/explain", {
        method: "POST",
        json: { ...explainQuery, item_id: hit.id, t: matchedTime(hit) },
      });
      if (detailHit !== hit) return;
      explained = explanation;
      // A video's map is of the frame at its t (the hit's moment, or the best one).
      if (explanation.t !== undefined) showFrame(hit, explanation.t);
      paintHeat(heatCanvas, explanation);
      heatCanvas.hidden = false;
      heatToggle.setAttribute("aria-pressed", "true");
      heatToggle.textContent = "Hide why it matched";
      heatStatus.textContent = `Red: where the image agrees most with the query (score ${explanation.score.toFixed(4)}; patches from ${explanation.min.toFixed(3)} to ${explanation.max.toFixed(3)}).`;
      place();
    } catch (error) {
      if (detailHit !== hit) return;
      heatStatus.textContent = `No heat map: ${describe(error)}`;
    } finally {
      if (detailHit === hit) heatToggle.disabled = false;
    }
  });

  $("detail-close").addEventListener("click", () => detail.close());
  detail.addEventListener("close", () => {
    detailHit = undefined;
    explained = undefined;
    hideHeat();
    boxElement.hidden = true;
    detailImage.removeAttribute("src");
    stopVideo();
    if (detailOpener?.isConnected) detailOpener.focus();
  });
  detail.addEventListener("click", (event) => {
    if (event.target === detail) detail.close();
  });

  moreLikeThis.addEventListener("click", () => {
    const hit = detailHit;
    if (hit === undefined) return;
    moreLikeThis.disabled = true;
    void search.moreLike(hit, {
      beforeShow: () => detail.close(),
      failed: (error) => {
        detailError.textContent = `"More like this" failed: ${describe(error)}`;
        detailError.hidden = false;
        moreLikeThis.disabled = false;
      },
    });
  });

  lessLikeThis.addEventListener("click", () => {
    const hit = detailHit;
    if (hit === undefined || !search.hasTextSearch()) return;
    detail.close();
    void search.lessLike(hit);
  });

  return {
    async open(hit) {
      detailHit = hit;
      explained = undefined;
      hideHeat();
      boxElement.hidden = true;
      heatStatus.textContent = "";
      explainQuery = search.explainQuery();
      heatToggle.hidden = explainQuery === null;
      heatToggle.disabled = false;
      detailOpener = document.activeElement instanceof HTMLElement ? document.activeElement : null;
      detailTitle.textContent = displayName(hit);
      // A hit by a video's frame plays the video from that frame; a library item is known
      // to be a video by its content type (a hit by the whole video, once its item is read).
      const t = matchedTime(hit);
      if (t !== undefined) showVideo(hit, t);
      else if (!isHit(hit) && hit.content_type.startsWith("video/")) showVideo(hit, 0);
      else showImage(hit);
      detailOriginal.href = hit.image_url;
      const moment = t === undefined ? "" : ` · frame at ${formatTime(t)}`;
      detailScore.textContent = isHit(hit)
        ? `Rank ${hit.rank} · score ${hit.score.toFixed(4)}${moment}`
        : "In the library";
      detailMeta.replaceChildren();
      detailError.hidden = true;
      moreLikeThis.disabled = false;
      // "Less like this" reworks the text search on screen; image results have none.
      lessLikeThis.hidden = !search.hasTextSearch();
      detail.showModal();
      try {
        const item = await request<Item>(itemUrl(hit.id));
        if (detailHit !== hit) return;
        if (item.content_type.startsWith("video/") && detailVideo.hidden) showVideo(hit, 0);
        detailMeta.replaceChildren(
          ...metaRow("Id", item.id),
          ...metaRow("Size", `${item.width} × ${item.height} px`),
          ...metaRow("File", `${item.content_type}, ${formatBytes(item.bytes)}`),
          ...metaRow("Source", sourceOf(item)),
          ...metaRow("Added", formatDate(item.created_at)),
          ...Object.entries(item.metadata).flatMap(([key, value]) =>
            metaRow(key, typeof value === "string" ? value : JSON.stringify(value)),
          ),
        );
      } catch (error) {
        if (detailHit !== hit) return;
        detailError.textContent = `Details unavailable: ${describe(error)}`;
        detailError.hidden = false;
      }
    },
  };
}
