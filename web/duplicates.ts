/**
 * The near-duplicates view: groups of images whose embeddings are at least the chosen
 * similarity (GET /duplicates), a page at a time ("Load more groups" follows next_cursor).
 */
import { describe, request, type Schemas, thumbnailUrl } from "./api.ts";
import { el } from "./dom.ts";

const PAGE = 20;

function groupItem(group: Schemas["DuplicateGroup"], number: number): HTMLLIElement {
  const images = group.ids.map((id) =>
    el(
      "a",
      {
        href: `/items/${encodeURIComponent(id)}/image`,
        target: "_blank",
        rel: "noopener",
        title: id,
      },
      el("img", {
        src: thumbnailUrl(id, 128),
        alt: `Image ${id}`,
        loading: "lazy",
        width: "128",
        height: "128",
      }),
    ),
  );
  return el(
    "li",
    { class: "duplicate-group", "data-ids": group.ids.join(" ") },
    el(
      "p",
      { class: "duplicate-head" },
      `Group ${number} · ${group.ids.length} images · similarity up to ${group.max_score.toFixed(3)}`,
    ),
    el("div", { class: "duplicate-images" }, ...images),
  );
}

export function startDuplicatesPanel(): void {
  const form = document.getElementById("duplicates-form") as HTMLFormElement | null;
  const threshold = document.getElementById("duplicates-threshold") as HTMLInputElement | null;
  const status = document.getElementById("duplicates-status");
  const list = document.getElementById("duplicate-groups");
  const more = document.getElementById("duplicates-more") as HTMLButtonElement | null;
  if (!form || !threshold || !status || !list || !more) return;
  let cursor: string | null = null;
  let shown = 0;
  let value = 0.95;
  let seq = 0;

  const load = async (reset: boolean) => {
    const mine = ++seq;
    if (reset) {
      cursor = null;
      shown = 0;
      value = Number(threshold.value);
      list.replaceChildren();
    }
    more.hidden = true;
    status.classList.remove("error");
    status.textContent = "Looking for near-duplicates…";
    const params = new URLSearchParams({ threshold: String(value), limit: String(PAGE) });
    if (cursor !== null) params.set("cursor", cursor);
    try {
      const page = await request<Schemas["DuplicatesResponse"]>(`/duplicates?${params}`);
      if (mine !== seq) return;
      list.append(...page.groups.map((group, i) => groupItem(group, shown + i + 1)));
      shown += page.groups.length;
      cursor = page.next_cursor;
      more.hidden = cursor === null;
      status.textContent =
        shown === 0
          ? `No near-duplicates at similarity ${value} or more.`
          : `${shown} group${shown === 1 ? "" : "s"} of near-duplicates at similarity ${value} or more${cursor === null ? "" : " (more to load)"}.`;
    } catch (error) {
      if (mine !== seq) return;
      status.classList.add("error");
      status.textContent = `Near-duplicates unavailable: ${describe(error)}`;
    }
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void load(true);
  });
  more.addEventListener("click", () => void load(false));
}
