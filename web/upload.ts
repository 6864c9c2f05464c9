/**
 * The "Add images" panel: files from the pickers or a drop are sent to POST /index in
 * batches that fit the server's limits, with progress, retries on 429, one key prompt on
 * 401, and every failed file listed with its code. A drop during an upload waits its turn.
 */
import { ApiError, describe, type IndexResult, request, type Schemas } from "./api.ts";
import type { AskForKey } from "./api-key.ts";
import type { PageConfig } from "./config.ts";
import { $, el } from "./dom.ts";
import { collectDropped, type PendingFile, planBatches } from "./files.ts";

export interface UploadDeps {
  config: PageConfig;
  askForKey: AskForKey;
  /** Called after each upload with the number of images it added. */
  uploaded(indexed: number): Promise<void>;
}

/** How often one batch is retried while the server answers 429. */
const BUSY_RETRIES = 5;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function filesFromInput(input: HTMLInputElement): PendingFile[] {
  return Array.from(input.files ?? [], (file) => ({
    file,
    name: file.webkitRelativePath || file.name,
  }));
}

export function startUploadPanel({ config, askForKey, uploaded }: UploadDeps): void {
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

  const listFailure = (name: string, code: string, message: string) => {
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
  };

  /** One batch, retried on 429 (after Retry-After) and once after a key prompt on 401. */
  const sendBatch = async (batch: PendingFile[]): Promise<IndexResult[]> => {
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
        if (error instanceof ApiError && error.status === 429 && attempt < BUSY_RETRIES) {
          uploadStatus.textContent = `The server is busy; retrying in ${error.retryAfter ?? 1} s…`;
          await sleep((error.retryAfter ?? 1) * 1000);
          continue;
        }
        throw error;
      }
    }
  };

  const indexFiles = async (files: PendingFile[]): Promise<void> => {
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
    await uploaded(indexed);
    const next = queued.shift();
    if (next) await indexFiles(next);
  };

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
}
