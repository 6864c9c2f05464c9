/**
 * A PostgreSQL server for tests and benchmarks: PGlite (Postgres compiled to WebAssembly) with pgvector,
 * served over the Postgres wire protocol on 127.0.0.1 by pglite-socket. Run as its own
 * process so a test can stop (SIGKILL) and restart the database under a running product:
 *
 *   tsx scripts/pglite-server.ts --dir DIR --port N
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
