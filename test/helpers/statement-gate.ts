/**
 * A wire-protocol relay in front of a Postgres that can hold one statement of its clients: the
 * k-th statement (a Parse or simple Query message), or the first with some SQL, waits at the
 * relay while a test does something (another node's commit), then goes on. Nothing else is changed or reordered on
 * its connection. Sweeping k over a piece of work puts another party's commit between each
 * pair of its statements, which is how a read-then-decide race across statements shows.
 */
import net from "node:net";

export interface StatementGate {
  /** The same database as the upstream URL, through the relay. */
  url: string;
  /** Statements relayed so far. */
  statements(): number;
  /**
   * Holds a statement until `hook` resolves: the `nth` (counting from the first ever relayed),
   * or the first whose SQL matches.
   */
  arm(which: number | RegExp, hook: () => Promise<void>): void;
  close(): Promise<void>;
}

const UNTYPED_REQUESTS = new Set([80877103, 80877104]); // SSLRequest, GSSENCRequest

/** The SQL of a Parse (after the statement name) or simple Query message, else undefined. */
function statementText(message: Buffer): string | undefined {
  const type = String.fromCharCode(message[0] as number);
  if (type !== "P" && type !== "Q") return undefined;
  const start = type === "P" ? message.indexOf(0, 5) + 1 : 5;
  return message.subarray(start, message.indexOf(0, start)).toString("utf8");
}

export async function startStatementGate(upstreamUrl: string): Promise<StatementGate> {
  const upstream = new URL(upstreamUrl);
  let relayed = 0;
  let armed: { which: number | RegExp; hook: () => Promise<void> } | undefined;
  const sockets = new Set<net.Socket>();

  const server = net.createServer((client) => {
    const server = net.connect(Number(upstream.port), upstream.hostname);
    for (const socket of [client, server]) {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => {
        client.destroy();
        server.destroy();
      });
    }
    server.pipe(client);
    let pending = Buffer.alloc(0);
    let started = false;
    let chain = Promise.resolve();
    client.on("data", (data: Buffer) => {
      pending = Buffer.concat([pending, data]);
      for (;;) {
        // Before the startup message, messages have no type byte.
        const header = started ? 5 : 4;
        if (pending.length < header) return;
        const length = pending.readInt32BE(started ? 1 : 0) + (started ? 1 : 0);
        if (pending.length < length) return;
        const message = pending.subarray(0, length);
        pending = pending.subarray(length);
        let sql: string | undefined;
        if (!started) {
          started = !UNTYPED_REQUESTS.has(message.readInt32BE(4));
        } else {
          sql = statementText(message);
        }
        chain = chain.then(async () => {
          if (sql !== undefined) {
            relayed++;
            const held = armed;
            const which = held?.which;
            if (held && (typeof which === "number" ? relayed === which : which?.test(sql))) {
              armed = undefined;
              await held.hook();
            }
          }
          server.write(message);
        });
      }
    });
    client.on("end", () => {
      chain.then(() => server.end());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  const url = new URL(upstreamUrl);
  url.hostname = "127.0.0.1";
  url.port = String(port);
  return {
    url: url.toString(),
    statements: () => relayed,
    arm(which, hook) {
      armed = { which, hook };
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
