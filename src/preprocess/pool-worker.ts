/** Worker-thread side of PreprocessPool: decodes and preprocesses images off the main thread. */
import { parentPort } from "node:worker_threads";
import { AppError, isAppError, serializeError } from "../core/errors.ts";
import { preprocessImage } from "./index.ts";
import type { PoolReply, PoolRequest } from "./pool.ts";
import { preprocessWithCrops } from "./regions.ts";

const port = parentPort;
if (port === null) throw new Error("pool-worker.ts runs only as a worker thread");

port.on("message", async (request: PoolRequest) => {
  try {
    const bytes = Buffer.from(request.bytes);
    const image =
      request.crops === undefined
        ? await preprocessImage(bytes, request.options)
        : await preprocessWithCrops(bytes, request.options, request.crops);
    const reply: PoolReply = { id: request.id, ok: true, image };
    const buffers = [image.pixels, ...(image.regions ?? []).map((r) => r.pixels)];
    port.postMessage(
      reply,
      buffers.map((pixels) => pixels.buffer as ArrayBuffer),
    );
  } catch (error) {
    const failure = isAppError(error)
      ? error
      : new AppError(
          "preprocess_failed",
          `Preprocessing failed unexpectedly: ${String((error as Error)?.message ?? error)}`,
        );
    const reply: PoolReply = { id: request.id, ok: false, error: serializeError(failure) };
    port.postMessage(reply);
  }
});
