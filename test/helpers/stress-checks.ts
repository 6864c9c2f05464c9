/**
 * The stress test's bookkeeping and invariants (test/stress-postgres.test.ts): what clients
 * were told (acknowledged uploads and deletes, with when they were sent and answered), and the
 * checks after each round, against the database itself and every node.
 */
import { createHash } from "node:crypto";
import pg from "pg";
import { withClient } from "../../tools/bench/postgres-admin.ts";
import type { Cluster } from "./cluster.ts";

export interface Image {
  bytes: Buffer;
  sha256: string;
  /** The id the server gives an upload without one: its content hash's first 32 digits. */
  id: string;
}

export function imageOf(bytes: Buffer): Image {
  const sha256 = createHash("sha256").update(bytes).digest("hex");
  return { bytes, sha256, id: sha256.slice(0, 32) };
}

interface Span {
  start: number;
  end: number;
}

interface History {
  image: Image;
  /** Uploads answered indexed or duplicate. */
  acks: Span[];
  /** Uploads cut off by a kill: they may have committed, by `end` at the latest. */
  maybeUploads: Span[];
  /** Deletes answered 200 or 404: absent at some moment within the span. */
  deletes: Span[];
  /** Deletes cut off by a kill. */
  maybeDeletes: Span[];
}

/** What clients were told, per id. */
export class Ledger {
  private readonly byId = new Map<string, History>();
  acknowledgements = 0;
  deletes = 0;

  private history(image: Image): History {
    let entry = this.byId.get(image.id);
    if (entry === undefined) {
      entry = { image, acks: [], maybeUploads: [], deletes: [], maybeDeletes: [] };
      this.byId.set(image.id, entry);
    }
    return entry;
  }

  acknowledged(image: Image, start: number, end: number): void {
    this.history(image).acks.push({ start, end });
    this.acknowledgements++;
  }

  uploadCutOff(image: Image, start: number, end: number): void {
    this.history(image).maybeUploads.push({ start, end });
  }

  deleted(id: string, start: number, end: number, known: boolean): void {
    const entry = this.byId.get(id);
    if (entry === undefined) return;
    (known ? entry.deletes : entry.maybeDeletes).push({ start, end });
    if (known) this.deletes++;
  }

  someAcknowledgedId(): string | undefined {
    const ids = [...this.byId.values()].filter((h) => h.acks.length > 0).map((h) => h.image.id);
    return ids[Math.floor(Math.random() * ids.length)];
  }

  acknowledgedIds(): number {
    return [...this.byId.values()].filter((h) => h.acks.length > 0).length;
  }

  /**
   * Present when some acknowledgement came after every delete (sent or cut off) ended; absent
   * when some answered delete was sent after every upload (answered or cut off) ended;
   * otherwise they overlapped and either is right.
   */
  expectations(): { image: Image; expected: "present" | "absent" | "either" }[] {
    return [...this.byId.values()].map((h) => {
      const allDeletes = [...h.deletes, ...h.maybeDeletes];
      const allUploads = [...h.acks, ...h.maybeUploads];
      const present = h.acks.some((a) => allDeletes.every((d) => d.end < a.start));
      const absent = h.deletes.some((d) => allUploads.every((u) => u.end < d.start));
      return { image: h.image, expected: present ? "present" : absent ? "absent" : "either" };
    });
  }
}

const BUSY = new Set(["server_busy", "queue_full"]);

/** Clients' requests (recorded in the ledger) and the invariants, counted. */
export class StressChecks {
  count = 0;
  readonly violations: string[] = [];
  /** Documented back-pressure answers (503 server_busy, 429 queue_full): not failures. */
  busy = 0;

  constructor(
    private readonly url: string,
    private readonly ledger: Ledger,
  ) {}

  check(ok: boolean, what: string): void {
    this.count++;
    if (!ok && this.violations.length < 50) this.violations.push(what);
  }

  /** POST /index of the images; every answer for each must be indexed or duplicate. */
  async uploadTo(node: string, images: readonly { bytes: Buffer; id: string }[]): Promise<void> {
    const form = new FormData();
    for (const image of images) {
      form.append("images", new Blob([image.bytes], { type: "image/jpeg" }), `${image.id}.jpg`);
    }
    const start = Date.now();
    let status: number;
    let body: { results?: { id: string; status: string }[]; error?: { code: string } };
    try {
      const response = await fetch(`${node}/index`, { method: "POST", body: form });
      status = response.status;
      body = (await response.json()) as typeof body;
    } catch {
      // The node was killed: no answer. What was in flight may or may not have committed.
      for (const image of images) this.ledger.uploadCutOff(image as Image, start, Date.now());
      return;
    }
    const end = Date.now();
    if ((status === 503 || status === 429) && BUSY.has(body.error?.code ?? "")) {
      this.busy++;
      return;
    }
    this.check(status === 200, `POST /index answered ${status}: ${JSON.stringify(body)}`);
    images.forEach((image, k) => {
      const result = body.results?.[k];
      const ok = result?.status === "indexed" || result?.status === "duplicate";
      this.check(ok && result?.id === image.id, `${image.id}: ${JSON.stringify(result)}`);
      if (ok) this.ledger.acknowledged(image as Image, start, end);
    });
  }

  async deleteOn(node: string, id: string): Promise<void> {
    const start = Date.now();
    let status: number;
    try {
      const response = await fetch(`${node}/items/${id}`, { method: "DELETE" });
      status = response.status;
      await response.arrayBuffer();
    } catch {
      this.ledger.deleted(id, start, Date.now(), false);
      return;
    }
    this.check(status === 200 || status === 404, `DELETE /items/${id} answered ${status}`);
    this.ledger.deleted(id, start, Date.now(), true);
  }

  private query<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> {
    return withClient(this.url, async (client) => (await client.query<R>(sql, params)).rows);
  }

  async liveModel(): Promise<string | undefined> {
    const rows = await this.query<{ value: string }>(
      "SELECT value FROM longclip.meta WHERE key = 'model_id'",
    );
    return rows[0]?.value;
  }

  /** Deadlocks the server detected in this database, ever. */
  async deadlocks(): Promise<number> {
    const rows = await this.query<{ n: string }>(
      "SELECT deadlocks AS n FROM pg_stat_database WHERE datname = current_database()",
    );
    return Number(rows[0]?.n ?? 0);
  }

  /** Waits for a job to be done (asking any live node) and returns its summary. */
  async jobDone(cluster: Cluster, id: string): Promise<JobSummary> {
    return until("the job to be done", 300, undefined, async () => {
      const node = cluster.liveNodes()[0];
      if (node === undefined) return undefined;
      const job = (await (await fetch(`${node.url}/jobs/${id}`)).json()) as JobSummary;
      return job.state === "done" ? job : undefined;
    });
  }

  /** Waits until no reindex is recorded and every node serves the store's model. */
  async reindexSettled(cluster: Cluster): Promise<void> {
    const state = async () => {
      const record = await this.query<{ value: string }>(
        "SELECT value FROM longclip.meta WHERE key = 'reindex_target'",
      );
      const nodes = await Promise.all(
        cluster.liveNodes().map(async (node) => {
          const answers = await Promise.all(
            ["stats", "reindex"].map((route) =>
              fetch(`${node.url}/${route}`)
                .then((r) => r.text())
                .catch((e: Error) => e.message),
            ),
          );
          return `${node.url}: ${answers.join(" ")}`;
        }),
      );
      return `store on ${await this.liveModel()}, record ${record[0]?.value ?? "none"}; ${nodes.join("; ")}`;
    };
    await until("the reindex to switch and every node to follow", 300, state, async () => {
      const target = await this.query("SELECT 1 FROM longclip.meta WHERE key = 'reindex_target'");
      if (target.length > 0) return undefined;
      const model = await this.liveModel();
      for (const node of cluster.liveNodes()) {
        const stats = (await (await fetch(`${node.url}/stats`)).json()) as { model_id: string };
        if (stats.model_id !== model) return undefined;
      }
      return true;
    });
  }

  /** The invariants after a round, when the job and any reindex are done. */
  async afterRound(
    cluster: Cluster,
    round: { folder: string; job: JobSummary; files: number },
  ): Promise<void> {
    const model = await this.liveModel();
    const [db] = await this.query<Record<string, string>>(
      `SELECT
         (SELECT count(*) FROM longclip.items) AS items,
         (SELECT count(DISTINCT sha256) FROM longclip.items) AS contents,
         (SELECT count(*) FROM longclip.items WHERE embedding IS NULL OR model_id IS DISTINCT FROM $1
            OR vector_dims(embedding) <> (SELECT value::int FROM longclip.meta WHERE key = 'dims'))
           AS without_live_embedding,
         (SELECT count(*) FROM longclip.items i WHERE source = 'upload' AND NOT EXISTS
            (SELECT 1 FROM longclip.originals o WHERE o.sha256 = i.sha256
               AND encode(sha256(o.bytes), 'hex') = i.sha256)) AS upload_without_bytes,
         (SELECT count(*) FROM longclip.originals o WHERE NOT EXISTS
            (SELECT 1 FROM longclip.items i WHERE i.sha256 = o.sha256)) AS orphan_originals,
         (SELECT count(*) FROM longclip.embeddings_staging) AS staged_left,
         (SELECT count(*) FROM longclip.items WHERE path LIKE '%/' || $2 || '/%') AS job_rows`,
      [model, round.folder],
    );
    const row = db as Record<string, string>;
    const items = Number(row.items);
    this.check(row.contents === row.items, `no content stored twice: ${JSON.stringify(row)}`);
    for (const key of [
      "without_live_embedding",
      "upload_without_bytes",
      "orphan_originals",
      "staged_left",
    ]) {
      this.check(Number(row[key]) === 0, `${key} = ${row[key]}`);
    }
    const { counts } = round.job;
    this.check(
      counts.indexed === round.files && counts.failed === 0 && counts.duplicate === 0,
      `job ${round.folder}: ${JSON.stringify(round.job)}`,
    );
    this.check(Number(row.job_rows) === counts.indexed, `job rows ${row.job_rows} vs counts`);

    const stored = new Map(
      (
        await this.query<{ id: string; sha256: string }>("SELECT id, sha256 FROM longclip.items")
      ).map((r) => [r.id, r.sha256]),
    );
    const present: Image[] = [];
    for (const { image, expected } of this.ledger.expectations()) {
      const sha = stored.get(image.id);
      if (expected === "present") {
        this.check(sha === image.sha256, `acknowledged ${image.id} is stored (${sha})`);
        present.push(image);
      } else if (expected === "absent") {
        this.check(sha === undefined, `deleted ${image.id} is gone`);
      } else {
        this.check(sha === undefined || sha === image.sha256, `${image.id} whole or gone`);
      }
    }
    for (const node of cluster.liveNodes()) {
      const stats = (await (await fetch(`${node.url}/stats`)).json()) as {
        items: number;
        model_id: string;
      };
      this.check(
        stats.items === items && stats.model_id === model,
        `/stats of ${node.url}: ${stats.items} items on ${stats.model_id}, the database ${items} on ${model}`,
      );
    }
    // A sample of acknowledged items is found by its own bytes under the live model.
    const nodes = cluster.liveNodes();
    for (let i = 0; i < Math.min(3, present.length); i++) {
      const image = present[Math.floor(Math.random() * present.length)] as Image;
      const node = nodes[i % nodes.length];
      if (node === undefined) break;
      const form = new FormData();
      form.append("image", new Blob([image.bytes], { type: "image/jpeg" }), "q.jpg");
      const response = await fetch(`${node.url}/search/image?k=1&exact=true`, {
        method: "POST",
        body: form,
      });
      const hit = ((await response.json()) as { hits?: { id: string; score: number }[] }).hits?.[0];
      this.check(
        hit?.id === image.id && hit.score > 0.999,
        `search by ${image.id}'s bytes: ${JSON.stringify(hit)}`,
      );
    }
  }
}

export interface JobSummary {
  state: string;
  counts: { indexed: number; duplicate: number; failed: number; total: number };
  failed_codes?: Record<string, number>;
}

async function until<T>(
  what: string,
  seconds: number,
  describe: (() => Promise<string>) | undefined,
  check: () => Promise<T | undefined>,
) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const value = await check().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) {
      const now = describe === undefined ? "" : `: ${await describe().catch(String)}`;
      throw new Error(`timed out after ${seconds} s waiting for ${what}${now}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
}

/** The longest time a statement has been waiting for a lock, sampled every 200 ms. */
export class LockWaitSampler {
  longest = 0;
  private running = false;
  private loop: Promise<void> | undefined;

  constructor(private readonly url: string) {}

  start(): void {
    this.running = true;
    this.loop = (async () => {
      const client = new pg.Client({ connectionString: this.url });
      client.on("error", () => {});
      await client.connect();
      try {
        while (this.running) {
          const { rows } = await client.query<{ s: number | null }>(
            `SELECT max(extract(epoch FROM clock_timestamp() - state_change))::float8 AS s
             FROM pg_stat_activity WHERE wait_event_type = 'Lock'`,
          );
          this.longest = Math.max(this.longest, rows[0]?.s ?? 0);
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
      } finally {
        await client.end();
      }
    })();
  }

  stop(): Promise<void> | undefined {
    this.running = false;
    return this.loop;
  }
}

/** A node's longclip_store_retries, all reasons together. */
export async function scrapeRetries(node: string): Promise<number> {
  const text = await (await fetch(`${node}/metrics`)).text();
  let sum = 0;
  for (const match of text.matchAll(/^longclip_store_retries\{[^}]*\} (\d+)/gm)) {
    sum += Number(match[1]);
  }
  return sum;
}
