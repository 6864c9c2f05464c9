/**
 * A PostgreSQL server for tests and benchmarks: PGlite (Postgres compiled to WebAssembly) with pgvector,
 * served over the Postgres wire protocol on 127.0.0.1 by pglite-socket. Run as its own
 * process so a test can stop (SIGKILL) and restart the database under a running product:
 *
 *   tsx tools/bench/pglite-server.ts --dir DIR --port N
 *
 * Prints `ready <port>` on stdout once it accepts connections. DIR keeps the data across
 * restarts (memory:// when omitted). PGlite is one backend: connections are multiplexed onto it,
 * so the connection cap only has to exceed what the clients open (each node pools up to 10).
 */
import { parseArgs } from "node:util";
import { PGlite } from "@electric-sql/pglite";
import { vector } from "@electric-sql/pglite-pgvector";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";

const { values } = parseArgs({
  options: {
    dir: { type: "string" },
    port: { type: "string", default: "0" },
    "max-connections": { type: "string", default: "200" },
  },
});

const db = await PGlite.create(values.dir ?? "memory://", { extensions: { vector } });
const server = new PGLiteSocketServer({
  db,
  host: "127.0.0.1",
  port: Number(values.port),
  maxConnections: Number(values["max-connections"]),
});
keepExtendedExchangesTogether(server);
await server.start();
const address = server.getServerConn();
process.stdout.write(`ready ${address.split(":").pop()}\n`);

const stop = async () => {
  await server.stop();
  await db.close();
  process.exit(0);
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);

interface QueuedMessage {
  handlerId: number;
  message: Uint8Array;
  resolve(bytes: number): void;
  reject(error: unknown): void;
  onData(data: Uint8Array): void;
}

/** pglite-socket's internal query queue (0.2.x), whose order this script changes. */
interface QueryQueue {
  queue: QueuedMessage[];
  processing: boolean;
  lastHandlerId: number | null;
  processQueue(): Promise<void>;
  clearQueueForHandler(handlerId: number): void;
}

/** Extended-protocol messages that leave an exchange open until the client's Sync. */
const EXTENDED_MESSAGES = new Set(["P", "B", "D", "E", "C", "H"]);

/**
 * pglite-socket runs one message at a time and keeps the queue to one connection only inside a
 * transaction. Outside one, another connection's message (a `BEGIN`, a Parse) can run between
 * this connection's Bind and Execute; PGlite is one backend with one unnamed statement and
 * portal, so the Execute then fails with `portal "" does not exist` (seen when several nodes
 * start against one PGlite). node-postgres sends every parameterised query as Parse … Sync, so
 * from a connection's first extended message to its Sync, only its own messages run here.
 */
function keepExtendedExchangesTogether(socketServer: PGLiteSocketServer): void {
  const queue = (socketServer as unknown as { queryQueue: QueryQueue }).queryQueue;
  let exchangeOwner: number | null = null;
  queue.processQueue = async function processQueue(this: QueryQueue) {
    if (this.processing) return;
    this.processing = true;
    try {
      while (this.queue.length > 0) {
        const owner = exchangeOwner ?? (db.isInTransaction() ? this.lastHandlerId : null);
        const index = owner === null ? 0 : this.queue.findIndex((m) => m.handlerId === owner);
        // The owner's next message has not arrived yet: its enqueue restarts the loop.
        if (index === -1) break;
        const [next] = this.queue.splice(index, 1) as [QueuedMessage];
        const type = String.fromCharCode(next.message[0] ?? 0);
        let bytes = 0;
        try {
          await db.runExclusive(() =>
            db.execProtocolRawStream(next.message, {
              onRawData: (data) => {
                bytes += data.length;
                next.onData(data);
              },
            }),
          );
        } catch (error) {
          if (exchangeOwner === next.handlerId) exchangeOwner = null;
          next.reject(error);
          continue;
        }
        this.lastHandlerId = next.handlerId;
        if (EXTENDED_MESSAGES.has(type)) exchangeOwner = next.handlerId;
        else if (exchangeOwner === next.handlerId) exchangeOwner = null;
        next.resolve(bytes);
      }
    } finally {
      this.processing = false;
    }
  };
  const clear = queue.clearQueueForHandler.bind(queue);
  queue.clearQueueForHandler = (handlerId: number) => {
    clear(handlerId);
    // A connection that closed mid-exchange must not hold the others back (its transaction, if
    // any, stays in pglite-socket's hands: letting others in there broke SIGKILL tests).
    if (exchangeOwner === handlerId) exchangeOwner = null;
  };
}
