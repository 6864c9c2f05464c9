/**
 * The web UI: paragraph search with a live token count, a result grid with a detail view,
 * and drag-and-drop indexing in batches that fit the server's limits.
 */
import {
  ApiError,
  apiKey,
  describe,
  type Hit,
  type IndexResult,
  type Item,
  itemUrl,
  request,
  type Schemas,
  setApiKey,
  thumbnailUrl,
} from "./api.ts";
import { startDuplicatesPanel } from "./duplicates.ts";
import { collectDropped, type PendingFile, planBatches } from "./files.ts";
import { startJobsPanel } from "./jobs.ts";

interface PageConfig {
  maxBatchItems: number;
  maxImageBytes: number;
  maxRequestBytes: number;
  maxQueryChars: number;
  maxK: number;
  jobs: boolean;
}

const DEFAULT_CONFIG: PageConfig = {
  maxBatchItems: 64,
  maxImageBytes: 20 * 1024 * 1024,
  maxRequestBytes: 200 * 1024 * 1024,
  maxQueryChars: 10_000,
  maxK: 1000,
  jobs: false,
};

function readConfig(): PageConfig {
  const node = document.getElementById("longclip-config");
  if (!node?.textContent) return DEFAULT_CONFIG;
  try {
    return { ...DEFAULT_CONFIG, ...(JSON.parse(node.textContent) as Partial<PageConfig>) };
  } catch {
    return DEFAULT_CONFIG;
  }
}

const config = readConfig();

function $<T extends HTMLElement>(id: string): T {
  const node = document.getElementById(id);
  if (node === null) throw new Error(`the page has no #${id}`);
  return node as T;
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<Record<string, string>> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value !== undefined) node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

const query = $<HTMLTextAreaElement>("query");
const tokenCount = $("token-count");
const cutNote = $("cut-note");
const kSelect = $<HTMLSelectElement>("k");
const modeSelect = $<HTMLSelectElement>("mode");
const searchForm = $<HTMLFormElement>("search-form");
const searchButton = $<HTMLButtonElement>("search-button");
const results = $<HTMLOListElement>("results");
const resultsTitle = $("results-title");
const resultsStatus = $("results-status");
const stats = $("stats");

// ---- API key -------------------------------------------------------------------------

const keyDialog = $<HTMLDialogElement>("key-dialog");
const keyInput = $<HTMLInputElement>("key-input");
const keyReason = $("key-reason");
let keyAnswer: ((key: string | null) => void) | undefined;

function askForKey(reason: string): Promise<string | null> {
  keyReason.textContent = reason;
  keyInput.value = apiKey() ?? "";
  keyDialog.showModal();
  keyInput.focus();
  return new Promise((resolve) => {
    keyAnswer = resolve;
  });
}

function answerKey(key: string | null): void {
  const resolve = keyAnswer;
  keyAnswer = undefined;
  if (keyDialog.open) keyDialog.close();
  resolve?.(key);
}

$<HTMLFormElement>("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = keyInput.value.trim();
  setApiKey(key || null);
  updateKeyButton();
  answerKey(key || null);
});
$("key-cancel").addEventListener("click", () => answerKey(null));
$("key-clear").addEventListener("click", () => {
  setApiKey(null);
  updateKeyButton();
  answerKey(null);
});
keyDialog.addEventListener("close", () => answerKey(null));
$("key-button").addEventListener("click", () => {
  void askForKey(
    "The key is sent with every request from this tab (x-api-key) and forgotten when the tab closes.",
  );
});

function updateKeyButton(): void {
  $("key-button").textContent = apiKey() ? "API key ✓" : "API key";
}

// ---- stats -------------------------------------------------------------------------

let libraryItems: number | undefined;

async function refreshStats(): Promise<void> {
  try {
    const s = await request<Schemas["Stats"]>("/stats");
    libraryItems = s.items;
    stats.textContent = `${s.items.toLocaleString()} image${s.items === 1 ? "" : "s"} · model ${s.model_id}`;
  } catch (error) {
    stats.textContent = `Library status unavailable: ${describe(error)}`;
  }
}

// ---- the query box: growth, token count, cut marker --------------------------------

const growsByItself = typeof CSS !== "undefined" && CSS.supports("field-sizing", "content");

function grow(): void {
  if (growsByItself) return;
  query.style.height = "auto";
  query.style.height = `${query.scrollHeight + 2}px`;
}

let tokenTimer: ReturnType<typeof setTimeout> | undefined;
let tokenAbort: AbortController | undefined;

function showCut(text: string, kept: number): void {
  cutNote.replaceChildren();
  if (kept >= text.length) {
    cutNote.hidden = true;
    return;
  }
  const before = text.slice(Math.max(0, kept - 80), kept);
  const after = text.slice(kept);
  cutNote.append(
    el("strong", {}, "The model reads up to the ✂ mark; the dimmed text is cut: "),
    el("span", { class: "kept" }, `${kept > 80 ? "…" : ""}${before}`),
    el("mark", { class: "cut-marker", "aria-label": "cut here", title: "cut here" }, "✂"),
    el("span", { class: "cut", "data-testid": "cut-text" }, after),
  );
  cutNote.hidden = false;
}

/** The model's context length; the server's /tokenize says it (CLIP models have 77). */
let maxTokens = 248;

async function learnMaxTokens(): Promise<void> {
  try {
    const t = await request<Schemas["TokenizeResponse"]>("/tokenize", {
      method: "POST",
      json: { text: "" },
    });
    maxTokens = t.max_tokens;
    if (query.value.trim() === "") tokenCount.textContent = `0 / ${maxTokens} tokens`;
  } catch {
    // The counter reports the error on the first keystroke.
  }
}

async function countTokens(): Promise<void> {
  tokenAbort?.abort();
  const text = query.value;
  if (text.trim() === "") {
    tokenCount.textContent = `0 / ${maxTokens} tokens`;
    tokenCount.classList.remove("over");
    showCut(text, text.length);
    return;
  }
  const abort = new AbortController();
  tokenAbort = abort;
  try {
    const t = await request<Schemas["TokenizeResponse"]>("/tokenize", {
      method: "POST",
      json: { text },
      signal: abort.signal,
    });
    tokenCount.textContent = `${t.tokens} / ${t.max_tokens} tokens${t.truncated ? " (cut)" : ""}`;
    tokenCount.classList.toggle("over", t.truncated);
    maxTokens = t.max_tokens;
    showCut(text, t.kept_chars);
  } catch (error) {
    if ((error as Error).name === "AbortError") return;
    tokenCount.textContent = `token count unavailable: ${describe(error)}`;
    tokenCount.classList.add("over");
  }
}

query.addEventListener("input", () => {
  grow();
  clearTimeout(tokenTimer);
  tokenTimer = setTimeout(() => void countTokens(), 250);
});
query.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    searchForm.requestSubmit();
  }
});
// Example paragraphs (captions of the demo gallery's scenes): fill the box and search.
for (const example of document.querySelectorAll<HTMLButtonElement>("button[data-example]")) {
  example.addEventListener("click", () => {
    query.value = example.dataset.example ?? "";
    grow();
    void countTokens();
    searchForm.requestSubmit();
  });
}

// ---- results -------------------------------------------------------------------------

let searchSeq = 0;

function setBusy(busy: boolean): void {
  results.setAttribute("aria-busy", String(busy));
  searchButton.disabled = busy;
}

/** The file name the page uploaded it with (metadata.filename), else the id. */
function displayName(hit: Hit): string {
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

function card(hit: Hit): HTMLLIElement {
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
  button.addEventListener("click", () => void openDetail(hit));
  return el("li", {}, button);
}

function showHits(hits: Hit[], title: string, emptyMessage: string, extra = ""): void {
  results.replaceChildren(...hits.map(card));
  resultsTitle.textContent = title;
  resultsStatus.classList.remove("error");
  resultsStatus.textContent =
    hits.length === 0
      ? emptyMessage
      : `${hits.length} result${hits.length === 1 ? "" : "s"}${extra}`;
}

function showError(context: string, error: unknown): void {
  results.replaceChildren();
  resultsTitle.textContent = "Results";
  resultsStatus.classList.add("error");
  resultsStatus.textContent = `${context}: ${describe(error)}`;
}

function emptyLibraryMessage(): string {
  return libraryItems === 0
    ? "The library is empty: add images under \u201cAdd images\u201d, then search again."
    : "No image matched. Try another description.";
}

searchForm.addEventListener("submit", (event) => {
  event.preventDefault();
  void runSearch();
});

async function runSearch(): Promise<void> {
  const text = query.value;
  if (text.trim() === "") {
    resultsStatus.classList.add("error");
    resultsStatus.textContent = "Type a description first: the query is empty.";
    query.focus();
    return;
  }
  const seq = ++searchSeq;
  setBusy(true);
  resultsStatus.classList.remove("error");
  resultsStatus.textContent = "Searching…";
  try {
    const k = Math.min(Number(kSelect.value), config.maxK);
    const r = await request<Schemas["SearchResponse"]>("/search", {
      method: "POST",
      json: { query: text, k, mode: modeSelect.value },
    });
    if (seq !== searchSeq) return;
    const cut = r.query.truncated
      ? ` · the query was cut to ${r.query.max_tokens} of its ${r.query.tokens} tokens`
      : "";
    showHits(r.hits, "Results", emptyLibraryMessage(), ` in ${Math.round(r.took_ms)} ms${cut}`);
  } catch (error) {
    if (seq === searchSeq) showError("Search failed", error);
  } finally {
    if (seq === searchSeq) setBusy(false);
  }
}

// ---- detail view -----------------------------------------------------------------------

const detail = $<HTMLDialogElement>("detail");
const detailTitle = $("detail-title");
const detailImage = $<HTMLImageElement>("detail-image");
const detailMeta = $("detail-meta");
const detailScore = $("detail-score");
const detailError = $("detail-error");
const detailOriginal = $<HTMLAnchorElement>("detail-original");
const moreLikeThis = $<HTMLButtonElement>("more-like-this");
let detailHit: Hit | undefined;
let detailOpener: HTMLElement | null = null;

function metaRow(term: string, value: string): HTMLElement[] {
  return [el("dt", {}, term), el("dd", {}, value)];
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

async function openDetail(hit: Hit): Promise<void> {
  detailHit = hit;
  detailOpener = document.activeElement instanceof HTMLElement ? document.activeElement : null;
  detailTitle.textContent = displayName(hit);
  detailImage.src = hit.image_url;
  detailImage.alt = `Image ${hit.id}`;
  detailOriginal.href = hit.image_url;
  detailScore.textContent = `Rank ${hit.rank} · score ${hit.score.toFixed(4)}`;
  detailMeta.replaceChildren();
  detailError.hidden = true;
  moreLikeThis.disabled = false;
  detail.showModal();
  try {
    const item = await request<Item>(itemUrl(hit.id));
    if (detailHit !== hit) return;
    detailMeta.replaceChildren(
      ...metaRow("Id", item.id),
      ...metaRow("Size", `${item.width} × ${item.height} px`),
      ...metaRow("File", `${item.content_type}, ${formatBytes(item.bytes)}`),
      ...metaRow("Source", item.path ? `${item.source}: ${item.path}` : item.source),
      ...metaRow("Added", new Date(item.created_at).toLocaleString()),
      ...Object.entries(item.metadata).flatMap(([key, value]) =>
        metaRow(key, typeof value === "string" ? value : JSON.stringify(value)),
      ),
    );
  } catch (error) {
    if (detailHit !== hit) return;
    detailError.textContent = `Details unavailable: ${describe(error)}`;
    detailError.hidden = false;
  }
}

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
  if (detailHit) void searchLike(detailHit);
});

async function searchLike(hit: Hit): Promise<void> {
  const seq = ++searchSeq;
  moreLikeThis.disabled = true;
  setBusy(true);
  try {
    const original = await fetch(hit.image_url);
    if (!original.ok) {
      throw new ApiError(
        original.status,
        "image_unavailable",
        `the image of ${hit.id} could not be read`,
      );
    }
    const form = new FormData();
    form.append("image", await original.blob(), hit.id);
    const k = Math.min(Number(kSelect.value), config.maxK);
    const r = await request<Schemas["ImageSearchResponse"]>(`/search/image?k=${k}`, {
      method: "POST",
      body: form,
    });
    if (seq !== searchSeq) return;
    detail.close();
    showHits(
      r.hits,
      `More like ${displayName(hit)}`,
      "No similar image found.",
      ` in ${Math.round(r.took_ms)} ms`,
    );
    resultsTitle.focus();
  } catch (error) {
    if (seq !== searchSeq) return;
    detailError.textContent = `"More like this" failed: ${describe(error)}`;
    detailError.hidden = false;
    moreLikeThis.disabled = false;
  } finally {
    if (seq === searchSeq) setBusy(false);
  }
}

// ---- indexing --------------------------------------------------------------------------

const dropZone = $("drop-zone");
const fileInput = $<HTMLInputElement>("file-input");
const folderInput = $<HTMLInputElement>("folder-input");
const upload = $("upload");
const progress = $<HTMLProgressElement>("upload-progress");
const uploadStatus = $("upload-status");
const failuresBox = $("upload-failures-box");
const failures = $<HTMLUListElement>("upload-failures");
let uploading = false;
const queued: PendingFile[][] = [];

function listFailure(name: string, code: string, message: string): void {
  failures.append(
    el(
      "li",
      { "data-file": name },
      el("strong", {}, name),
      ": ",
      el("span", { class: "failure-message" }, message),
      " ",
      el("code", {}, code),
    ),
  );
  failuresBox.hidden = false;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** One batch, retried on 429 (after Retry-After) and once after a key prompt on 401. */
async function sendBatch(batch: PendingFile[]): Promise<IndexResult[]> {
  let askedKey = false;
  for (let attempt = 0; ; attempt++) {
    const form = new FormData();
    for (const f of batch) form.append("images", f.file, f.name);
    form.append("metadata", JSON.stringify(batch.map((f) => ({ filename: f.name }))));
    try {
      const r = await request<Schemas["IndexResponse"]>("/index", { method: "POST", body: form });
      return r.results;
    } catch (error) {
      if (error instanceof ApiError && error.status === 401 && !askedKey) {
        askedKey = true;
        const key = await askForKey(`${error.message}.`);
        if (key) continue;
      }
      if (error instanceof ApiError && error.status === 429 && attempt < 5) {
        uploadStatus.textContent = `The server is busy; retrying in ${error.retryAfter ?? 1} s…`;
        await sleep((error.retryAfter ?? 1) * 1000);
        continue;
      }
      throw error;
    }
  }
}

async function indexFiles(files: PendingFile[]): Promise<void> {
  if (files.length === 0) {
    upload.hidden = false;
    uploadStatus.textContent = "No files found in what was dropped.";
    return;
  }
  if (uploading) {
    queued.push(files);
    uploadStatus.textContent = `${files.length} more files queued after the current upload.`;
    return;
  }
  uploading = true;
  upload.hidden = false;
  failures.replaceChildren();
  failuresBox.hidden = true;
  const { batches, rejected } = planBatches(files, config);
  for (const r of rejected) listFailure(r.file.name, r.code, r.message);
  const total = files.length;
  let done = rejected.length;
  let indexed = 0;
  let duplicates = 0;
  let failed = rejected.length;
  progress.max = total;
  const report = (final = false) => {
    progress.value = done;
    const counts = `${indexed} indexed, ${duplicates} already stored, ${failed} failed`;
    uploadStatus.textContent = final
      ? `Done: ${total} file${total === 1 ? "" : "s"}, ${counts}.`
      : `Uploading ${done} of ${total} files… (${counts})`;
  };
  report();
  // After a refused key (401), the remaining batches would be refused too: not sent.
  let refused: ApiError | undefined;
  for (const batch of batches) {
    try {
      if (refused) throw refused;
      const answers = await sendBatch(batch);
      answers.forEach((result, i) => {
        const file = batch[i];
        if (result.status === "indexed") indexed++;
        else if (result.status === "duplicate") duplicates++;
        else {
          failed++;
          listFailure(
            file?.name ?? result.id,
            result.error?.code ?? "failed",
            result.error?.message ?? "the server did not index this file",
          );
        }
      });
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) refused = error;
      failed += batch.length;
      const code = error instanceof ApiError ? error.code : "upload_failed";
      const message = error instanceof Error ? error.message : String(error);
      for (const f of batch) listFailure(f.name, code, message);
    }
    done += batch.length;
    report();
  }
  report(true);
  uploading = false;
  await refreshStats();
  if (indexed > 0 && results.childElementCount === 0) {
    resultsStatus.classList.remove("error");
    resultsStatus.textContent = `${indexed} image${indexed === 1 ? "" : "s"} added: search to see them.`;
  }
  const next = queued.shift();
  if (next) await indexFiles(next);
}

function filesFromInput(input: HTMLInputElement): PendingFile[] {
  return Array.from(input.files ?? [], (file) => ({
    file,
    name: file.webkitRelativePath || file.name,
  }));
}

for (const input of [fileInput, folderInput]) {
  input.addEventListener("change", () => {
    const files = filesFromInput(input);
    input.value = "";
    void indexFiles(files);
  });
}

dropZone.addEventListener("dragover", (event) => {
  event.preventDefault();
  if (event.dataTransfer) event.dataTransfer.dropEffect = "copy";
  dropZone.classList.add("dragging");
});
dropZone.addEventListener("dragleave", () => dropZone.classList.remove("dragging"));
dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  dropZone.classList.remove("dragging");
  if (!event.dataTransfer) return;
  void collectDropped(event.dataTransfer).then(indexFiles, (error: unknown) => {
    upload.hidden = false;
    uploadStatus.textContent = `Could not read the dropped files: ${describe(error)}`;
  });
});
// A file dropped outside the zone would otherwise replace the page with the file.
for (const type of ["dragover", "drop"] as const) {
  window.addEventListener(type, (event) => {
    if (!dropZone.contains(event.target as Node)) event.preventDefault();
  });
}

// ---- start -----------------------------------------------------------------------------

updateKeyButton();
grow();
void refreshStats();
startJobsPanel(config.jobs);
startDuplicatesPanel();
void learnMaxTokens().then(() => (query.value ? countTokens() : undefined));
