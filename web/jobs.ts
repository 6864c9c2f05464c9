/**
 * The jobs panel: start a job for files or folders under the server's media root, and follow
 * every job's progress (a bar, files per second, ETA, failures by code) until it is done.
 * Polls GET /jobs every 2 s while a job runs, every 15 s otherwise.
 */
import { describe, request, type Schemas } from "./api.ts";
import { el } from "./dom.ts";

type Job = Schemas["Job"];

const ACTIVE_MS = 2_000;
const IDLE_MS = 15_000;

export function jobLine(job: Job): string {
  const c = job.counts;
  const done = c.indexed + c.duplicate + c.failed;
  const parts = [`${done} of ${c.total} files`, `${c.indexed} indexed`];
  if (c.duplicate) parts.push(`${c.duplicate} already stored`);
  if (c.failed) {
    const codes = Object.entries(job.failed_codes)
      .map(([code, n]) => `${code} ${n}`)
      .join(", ");
    parts.push(`${c.failed} failed (${codes})`);
  }
  if (c.cancelled) parts.push(`${c.cancelled} cancelled`);
  if (job.state === "running") {
    parts.push(`${job.rate.toFixed(1)} files/s`);
    if (job.eta_seconds !== null) parts.push(`about ${job.eta_seconds} s left`);
  }
  return parts.join(" · ");
}

function jobItem(job: Job, refresh: () => void): HTMLLIElement {
  const item = document.createElement("li");
  item.className = `job job-${job.state}`;
  item.dataset.jobId = job.id;
  const c = job.counts;
  const head = document.createElement("div");
  head.className = "job-head";
  head.append(
    el("span", { class: "job-id" }, job.id),
    el("span", { class: "job-state" }, job.state),
  );
  const bar = document.createElement("progress");
  bar.max = Math.max(1, c.total);
  bar.value = c.indexed + c.duplicate + c.failed + c.cancelled;
  bar.setAttribute("aria-label", `${job.id} progress`);
  item.append(head, bar, el("p", { class: "job-line" }, jobLine(job)));
  if (job.state === "queued" || job.state === "running") {
    const cancel = el("button", { type: "button", class: "button secondary" }, "Cancel");
    cancel.addEventListener("click", () => {
      cancel.disabled = true;
      void request(`/jobs/${encodeURIComponent(job.id)}`, { method: "DELETE" }).then(
        refresh,
        refresh,
      );
    });
    item.append(cancel);
  }
  return item;
}

/**
 * Shows the panel when the server has a media root (jobs index files there); otherwise a
 * line under "Add images" says how to turn it on.
 */
export function startJobsPanel(enabled: boolean): void {
  const panel = document.getElementById("jobs-panel");
  const hint = document.getElementById("jobs-hint");
  if (hint !== null) hint.hidden = enabled;
  if (panel === null || !enabled) return;
  panel.hidden = false;
  const form = document.getElementById("job-form") as HTMLFormElement | null;
  const input = document.getElementById("job-paths") as HTMLInputElement | null;
  const list = document.getElementById("job-list");
  const status = document.getElementById("job-status");
  if (!form || !input || !list || !status) return;
  let timer: number | undefined;

  const refresh = async (): Promise<void> => {
    window.clearTimeout(timer);
    let jobs: Job[] = [];
    try {
      jobs = (await request<Schemas["JobList"]>("/jobs?limit=10")).jobs;
    } catch (error) {
      status.textContent = `Could not read the jobs: ${describe(error)}`;
    }
    list.replaceChildren(...jobs.map((job) => jobItem(job, () => void refresh())));
    const active = jobs.some((job) => job.state === "queued" || job.state === "running");
    timer = window.setTimeout(() => void refresh(), active ? ACTIVE_MS : IDLE_MS);
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const paths = input.value
      .split(",")
      .map((p) => p.trim())
      .filter(Boolean);
    if (paths.length === 0) {
      status.textContent = "Name a file or folder under the server's media root.";
      return;
    }
    status.textContent = "Starting…";
    request<Job>("/jobs", { method: "POST", json: { paths } }).then(
      (job) => {
        status.textContent = `Started ${job.id}: ${job.counts.total} files.`;
        input.value = "";
        void refresh();
      },
      (error: unknown) => {
        status.textContent = `Not started: ${describe(error)}`;
      },
    );
  });
  void refresh();
}
