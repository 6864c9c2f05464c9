/**
 * A scale-out deployment for fault tests: `longclip serve` nodes and `longclip worker`s (child
 * processes, as users run them) on one Postgres, with two model directories side by side for
 * blue/green reindexes. Processes are started with the model the store holds now, several at
 * the same moment, and SIGKILLed by slot.
 */
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { PROJECT_ROOT } from "../../src/core/settings.ts";
import { withClient } from "../../tools/bench/postgres-admin.ts";
import {
  type LongclipProcess,
  startLongclip,
  startServe,
  stopProcess,
} from "./longclip-process.ts";

const DEMO = path.join(PROJECT_ROOT, "models", "demo");

/** Two exported models beside each other: the demo, and the demo renormalised under another id. */
export function twoModels(root: string): Map<string, string> {
  const dirs = new Map<string, string>();
  const demoConfig = JSON.parse(readFileSync(path.join(DEMO, "config.json"), "utf8"));
  for (const name of ["blue", "green"]) {
    const dir = path.join(root, "models", name);
    mkdirSync(dir, { recursive: true });
    for (const file of ["vision.onnx", "text.onnx", "vocab.txt"]) {
      copyFileSync(path.join(DEMO, file), path.join(dir, file));
    }
    const config = { ...demoConfig, model_id: `longclip-demo-${name}` };
    if (name === "green") {
      config.image_mean = [0.5, 0.5, 0.5];
      config.image_std = [0.25, 0.25, 0.25];
    }
    writeFileSync(path.join(dir, "config.json"), JSON.stringify(config, null, 2));
    dirs.set(config.model_id, dir);
  }
  return dirs;
}

export interface ClusterOptions {
  root: string;
  databaseUrl: string;
  mediaRoot: string;
  /** Model id → directory (twoModels). */
  models: Map<string, string>;
  nodes: number;
  workers: number;
  jobLeaseMs: number;
}

export class Cluster {
  readonly nodes: (LongclipProcess | undefined)[];
  readonly workers: (LongclipProcess | undefined)[];
  private started = 0;

  constructor(private readonly options: ClusterOptions) {
    this.nodes = new Array(options.nodes).fill(undefined);
    this.workers = new Array(options.workers).fill(undefined);
  }

  /** The directory of the model the store holds now (the first model for a new store). */
  async currentModelDir(): Promise<string> {
    const modelId = await withClient(this.options.databaseUrl, async (client) => {
      const { rows } = await client
        .query<{ value: string }>("SELECT value FROM longclip.meta WHERE key = 'model_id'")
        .catch(() => ({ rows: [] as { value: string }[] }));
      return rows[0]?.value;
    });
    const dir = modelId === undefined ? undefined : this.options.models.get(modelId);
    return dir ?? ([...this.options.models.values()][0] as string);
  }

  private common(kind: string, model: string): string[] {
    this.started++;
    return [
      "--model",
      model,
      "--data",
      path.join(this.options.root, `${kind}-${this.started}`),
      "--database-url",
      this.options.databaseUrl,
      "--media-root",
      this.options.mediaRoot,
      "--image-batch-size",
      "4",
    ];
  }

  /** Starts the nodes in these slots at the same moment; resolves when all serve. */
  startNodes(slots: readonly number[]): Promise<void> {
    return this.startOnModel("nodes", slots, (model) => startServe(this.common("node", model)));
  }

  startWorkers(slots: readonly number[]): Promise<void> {
    return this.startOnModel("workers", slots, (model) =>
      startLongclip(
        [
          "worker",
          ...this.common("worker", model),
          "--threads",
          "1",
          "--job-lease-ms",
          String(this.options.jobLeaseMs),
        ],
        "worker started",
      ),
    );
  }

  /**
   * Starts processes on the store's model. A reindex may switch the store while they start:
   * then they were given the old model (and would wait for an operator), so they are started
   * again on the new one, as an operator would.
   */
  private async startOnModel(
    kind: "nodes" | "workers",
    slots: readonly number[],
    start: (model: string) => Promise<LongclipProcess>,
  ): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const model = await this.currentModelDir();
      await Promise.all(
        slots.map(async (slot) => {
          this[kind][slot] = await start(model);
        }),
      );
      if ((await this.currentModelDir()) === model || attempt >= 3) return;
      await Promise.all(slots.map((slot) => this.kill(kind, slot)));
    }
  }

  /** SIGKILLs a process and waits for it to be gone. */
  async kill(kind: "nodes" | "workers", slot: number): Promise<void> {
    const victim = this[kind][slot];
    this[kind][slot] = undefined;
    if (victim !== undefined) await stopProcess(victim, "SIGKILL");
  }

  liveNodes(): LongclipProcess[] {
    return this.nodes.filter((node): node is LongclipProcess => node !== undefined);
  }

  async stopAll(): Promise<void> {
    await Promise.all(
      [...this.nodes, ...this.workers].map((p) => (p ? stopProcess(p, "SIGKILL") : undefined)),
    );
  }
}
