/**
 * One shard of the embedded backend's HNSW index, on its own thread: hnswlib-node inserts one
 * vector per call on the calling thread, so inserts (and rebuilds) here leave the server's
 * event loop free. Requests are handled in the order they arrive, which is what makes a search
 * posted after an insert see it.
 */
import { existsSync } from "node:fs";
import { parentPort } from "node:worker_threads";
import { HnswIndex } from "./hnsw.ts";
import type { ShardReply, ShardRequest } from "./shard-messages.ts";

if (parentPort === null) throw new Error("hnsw-shard-worker runs as a worker thread");
const port = parentPort;
let index: HnswIndex | undefined;

function open(): HnswIndex {
  if (index === undefined) throw new Error("the shard was not initialised");
  return index;
}

function handle(request: ShardRequest): ShardReply {
  const { id } = request;
  const state = () => ({ size: index?.size ?? 0, capacity: index?.capacity ?? 0 });
  switch (request.op) {
    case "init": {
      let loaded = false;
      if (request.file !== undefined && existsSync(request.file)) {
        try {
          index = HnswIndex.load(request.file, request.options);
          loaded = true;
        } catch {
          // Unreadable: start empty; the owner reconciles with SQLite, which rebuilds it.
        }
      }
      if (!loaded) index = HnswIndex.create(request.options);
      return { id, ok: true, loaded, ...state() };
    }
    case "add": {
      const target = open();
      const dims = target.options.dims;
      const { labels, vectors } = request;
      for (let i = 0; i < labels.length; i++) {
        target.add(labels[i] as number, vectors.subarray(i * dims, (i + 1) * dims));
      }
      return { id, ok: true, ...state() };
    }
    case "remove": {
      const target = open();
      for (const label of request.labels) target.remove(label);
      return { id, ok: true, ...state() };
    }
    case "search": {
      const bits = request.allowed === undefined ? undefined : new Uint8Array(request.allowed);
      const accept =
        bits === undefined
          ? undefined
          : (label: number) => (((bits[Math.floor(label / 8)] ?? 0) >> (label % 8)) & 1) === 1;
      const found = open().search(request.query, request.k, accept);
      const labels = Float64Array.from(found, (n) => n.label);
      const scores = Float32Array.from(found, (n) => n.score);
      return { id, ok: true, labels, scores, ...state() };
    }
    case "labels":
      return { id, ok: true, labels: Float64Array.from(open().labels()), ...state() };
    case "save": {
      const target = open();
      const saved = target.dirty || request.force === true;
      if (saved) target.save(request.file);
      return { id, ok: true, saved, ...state() };
    }
  }
}

port.on("message", (request: ShardRequest) => {
  let reply: ShardReply;
  try {
    reply = handle(request);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    reply = {
      id: request.id,
      ok: false,
      error: {
        message: error instanceof Error ? error.message : String(error),
        ...(typeof code === "string" ? { code } : {}),
      },
    };
  }
  const transfer: ArrayBuffer[] = [];
  if (reply.ok && reply.labels !== undefined) transfer.push(reply.labels.buffer as ArrayBuffer);
  if (reply.ok && reply.scores !== undefined) transfer.push(reply.scores.buffer as ArrayBuffer);
  port.postMessage(reply, transfer);
});
