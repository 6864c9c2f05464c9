/** Worker-thread side of WorkerTowers: opens its towers, then runs one request at a time. */
import { parentPort, workerData } from "node:worker_threads";
import type { EngineLogger } from "./session.ts";
import { openTowers, type Towers, type TowersSpec } from "./towers.ts";
import { replyError, type WorkerReply, type WorkerRequest } from "./worker-towers.ts";

const port = parentPort;
if (port === null) throw new Error("src/encode/worker.ts runs only as a worker thread");

const post = (reply: WorkerReply, transfer: ArrayBuffer[] = []): void => {
  port.postMessage(reply, transfer);
};
const logger: EngineLogger = {
  info: (message) => post({ kind: "log", level: "info", message }),
  warn: (message) => post({ kind: "log", level: "warn", message }),
};

let towers: Towers;
try {
  towers = await openTowers(workerData as TowersSpec, logger);
  post({ kind: "ready", devices: towers.devices });
} catch (error) {
  post({ kind: "failed", error: replyError(error) });
  port.close();
  process.exit(0);
}

port.on("message", async (request: WorkerRequest) => {
  if (request.kind === "close") {
    await towers.close();
    port.close();
    return;
  }
  try {
    const output = await towers.run(request.tower, request.input, request.output);
    // A private copy can be handed over without copying again.
    const data = output.data.slice();
    post({ kind: "result", id: request.id, output: { ...output, data } as typeof output }, [
      data.buffer as ArrayBuffer,
    ]);
  } catch (error) {
    post({ kind: "error", id: request.id, error: replyError(error) });
  }
});
