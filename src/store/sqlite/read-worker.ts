/**
 * A thread that answers read queries of the embedded backend on its own SQLite connection
 * (./readers.ts sends them): filtered and keyword searches run here, so however long one
 * takes, the server's event loop keeps answering. WAL lets it read beside the writer.
 */
import { parentPort, workerData } from "node:worker_threads";
import Database from "better-sqlite3";
import { registerFilterFunctions } from "./filter-sql.ts";
import type { ReadReply, ReadRequest } from "./readers.ts";

if (parentPort === null) throw new Error("read-worker runs as a worker thread");
const port = parentPort;
const db = new Database((workerData as { file: string }).file, { fileMustExist: true });
db.pragma("busy_timeout = 5000");
// Reads only: a bug here can never write.
db.pragma("query_only = ON");
registerFilterFunctions(db);

port.on("message", (request: ReadRequest) => {
  let reply: ReadReply;
  try {
    const rows = db
      .prepare(request.sql)
      .raw()
      .all(...request.params) as unknown[][];
    reply = { id: request.id, ok: true, rows };
  } catch (error) {
    const { message, code } = error as { message?: string; code?: unknown };
    reply = {
      id: request.id,
      ok: false,
      error: { message: String(message), ...(typeof code === "string" ? { code } : {}) },
    };
  }
  port.postMessage(reply);
});
