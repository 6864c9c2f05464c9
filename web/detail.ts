/**
 * The detail view of a card (a hit or a library item): the full image, the stored item's
 * fields and metadata (GET /items/{id}), and "more like this" / "less like this", which start
 * a new search.
 */
import { describe, type Item, itemUrl, request } from "./api.ts";
import { displayName, isHit, type Shown } from "./cards.ts";
import { $, el } from "./dom.ts";
import type { SearchView } from "./search.ts";

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
  const detailMeta = $("detail-meta");
  const detailScore = $("detail-score");
  const detailError = $("detail-error");
  const detailOriginal = $<HTMLAnchorElement>("detail-original");
  const moreLikeThis = $<HTMLButtonElement>("more-like-this");
  const lessLikeThis = $<HTMLButtonElement>("less-like-this");
  /** The card on show; an answer for another one (the view was reopened) is dropped. */
  let detailHit: Shown | undefined;
  /** Focus goes back here when the view closes (keyboard users keep their place). */
  let detailOpener: HTMLElement | null = null;

  $("detail-close").addEventListener("click", () => detail.close());
  detail.addEventListener("close", () => {
    detailHit = undefined;
    detailImage.removeAttribute("src");
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
      detailOpener = document.activeElement instanceof HTMLElement ? document.activeElement : null;
      detailTitle.textContent = displayName(hit);
      detailImage.src = hit.image_url;
      detailImage.alt = `Image ${hit.id}`;
      detailOriginal.href = hit.image_url;
      detailScore.textContent = isHit(hit)
        ? `Rank ${hit.rank} · score ${hit.score.toFixed(4)}`
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
