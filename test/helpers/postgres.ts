/**
 * The test Postgres (native PostgreSQL + pgvector, or PGlite where that cannot run: see
 * tools/bench/test-postgres.ts) and test-only peers: a free port, a server that refuses every password.
 */
import net from "node:net";

export {
  startPostgres,
  type TestPostgres,
  testPostgresKind,
} from "../../tools/bench/test-postgres.ts";

/** A loopback port nothing listens on (bound, then released). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * A server that answers every connection as a Postgres that refuses the password does: an
 * ErrorResponse with SQLSTATE 28P01 after the startup message.
 */
export async function startRefusingPostgres(): Promise<{ url: string; close(): Promise<void> }> {
  const server = net.createServer((socket) => {
    socket.once("data", () => {
      const fields = Buffer.concat([
        ...[
          "SFATAL",
          "VFATAL",
          "C28P01",
          'Mpassword authentication failed for user "postgres"',
        ].map((field) => Buffer.from(`${field}\0`)),
        Buffer.from([0]),
      ]);
      const header = Buffer.alloc(5);
      header.write("E", 0);
      header.writeInt32BE(fields.length + 4, 1);
      socket.end(Buffer.concat([header, fields]));
    });
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `postgres://postgres:wrong@127.0.0.1:${port}/postgres`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
