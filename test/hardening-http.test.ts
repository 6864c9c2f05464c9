/**
 * Hardening of the HTTP edge, against the real app on a loopback socket: Host allow-list
 * (DNS rebinding), cross-site writes and CORS, byte limits on chunked bodies, slow and idle
 * clients, the connection cap, and client input that used to produce a 5xx or another error
 * shape. Each test is an attack that worked before its fix (issue 15).
 */
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import sharp from "sharp";
import type { Response } from "supertest";
import { multipart, type Part, startTestApp, type TestServer, tempDir } from "./api-helpers.ts";
import { demoModelWithoutGallery } from "./helpers/demo-model.ts";
import { patternPng } from "./helpers/library-fixtures.ts";
import { startServe, stopProcess } from "./helpers/longclip-process.ts";

function expectError(res: Response, status: number, code: string): void {
  assert.equal(res.status, status, res.text);
  assert.equal((res.body as { error: { code: string } }).error.code, code, res.text);
}

/** Opens a raw TCP connection to the server. */
function open(url: string): Promise<Socket> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => resolve(socket));
    socket.once("error", reject);
  });
}

/** Resolves with the milliseconds until the server closed `socket`, or -1 after `limitMs`. */
function closedWithin(socket: Socket, limitMs: number): Promise<number> {
  const started = performance.now();
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(-1), limitMs);
    const done = () => {
      clearTimeout(timer);
      resolve(performance.now() - started);
    };
    socket.once("close", done);
    socket.on("error", () => {});
    socket.resume();
  });
}

describe("hardening: the HTTP edge", () => {
  let server: TestServer;
  /** A second server with timeouts of about a second and a cap of 40 connections. */
  let strict: TestServer;
  let image: Buffer;

  const form = (parts: Part[], headers: Record<string, string> = {}) => {
    const body = multipart(parts);
    return server.http
      .post("/index")
      .set({ ...body.headers, ...headers })
      .send(body.payload);
  };

  before(async () => {
    server = await startTestApp({
      maxRequestBytes: 1024 * 1024,
      maxJsonBytes: 64 * 1024,
      allowedHosts: "search.example.org,.internal.example",
      corsOrigins: "https://app.example.com",
    });
    strict = await startTestApp({
      requestTimeoutMs: 1_500,
      headersTimeoutMs: 1_000,
      idleTimeoutMs: 1_500,
      maxConnections: 40,
    });
    image = await patternPng(1);
  });
  after(async () => {
    await server?.app.close();
    await strict?.app.close();
  });

  test("a foreign Host (DNS rebinding) is refused; IPs, localhost and allowed names answer", async () => {
    const ids = await server.http.get("/items").set("host", "attacker.example.net");
    expectError(ids, 403, "host_not_allowed");
    const page = await server.http.get("/").set("host", "attacker.example.net:8080");
    expectError(page, 403, "host_not_allowed");
    for (const host of [
      "127.0.0.1:9",
      "localhost:8080",
      "[::1]:8080",
      "search.example.org",
      "a.internal.example",
    ]) {
      const res = await server.http.get("/health").set("host", host);
      assert.equal(res.status, 200, `${host}: ${res.text}`);
    }
  });

  test("cross-site writes are refused unless --cors-origins allows the origin", async () => {
    const parts = [{ name: "images", value: image, filename: "a.png", contentType: "image/png" }];
    expectError(await form(parts, { origin: "https://evil.example" }), 403, "cross_site_request");
    expectError(await form(parts, { "sec-fetch-site": "cross-site" }), 403, "cross_site_request");
    expectError(
      await server.http.delete("/items/anything").set("origin", "null"),
      403,
      "cross_site_request",
    );
    assert.equal((await server.http.get("/stats")).body.items, 0, "nothing was stored");

    // The server's own page (same origin) and an allowed origin may write.
    const own = await form(parts, {
      origin: server.url,
      "sec-fetch-site": "same-origin",
    });
    assert.equal(own.status, 200, own.text);
    const allowed = await form(
      [{ name: "images", value: await patternPng(2), filename: "b.png" }],
      { origin: "https://app.example.com", "sec-fetch-site": "cross-site" },
    );
    assert.equal(allowed.status, 200, allowed.text);
    assert.equal(allowed.headers["access-control-allow-origin"], "https://app.example.com");

    const preflight = await server.http
      .options("/index")
      .set({ origin: "https://app.example.com", "access-control-request-method": "POST" });
    assert.equal(preflight.status, 204);
    assert.match(String(preflight.headers["access-control-allow-headers"]), /x-api-key/);
    const refused = await server.http
      .options("/index")
      .set({ origin: "https://evil.example", "access-control-request-method": "POST" });
    expectError(refused, 403, "cross_site_request");
    assert.equal(refused.headers["access-control-allow-origin"], undefined);
  });

  test("a chunked multipart body over maxRequestBytes is refused before it is read", async () => {
    const socket = await open(server.url);
    const boundary = "----hardening-chunked";
    socket.write(
      [
        "POST /index HTTP/1.1",
        `Host: ${new URL(server.url).host}`,
        `Content-Type: multipart/form-data; boundary=${boundary}`,
        "Transfer-Encoding: chunked",
        "",
        "",
      ].join("\r\n"),
    );
    let answer = "";
    socket.on("data", (data: Buffer) => {
      answer += data.toString("latin1");
    });
    const head = Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="images"; filename="big.png"\r\nContent-Type: image/png\r\n\r\n`,
    );
    const chunk = (data: Buffer) =>
      new Promise<boolean>((resolve) => {
        if (socket.destroyed) return resolve(false);
        socket.write(`${data.length.toString(16)}\r\n`);
        socket.write(data);
        socket.write("\r\n", () => resolve(true));
      });
    await chunk(head);
    // Up to 40 MiB (40x the limit) in 256 KiB chunks, stopping once the server answered.
    let sent = head.length;
    const block = Buffer.alloc(256 * 1024, 7);
    while (sent < 40 * 1024 * 1024 && answer === "" && !socket.destroyed) {
      if (!(await chunk(block))) break;
      sent += block.length;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
    socket.destroy();
    assert.match(answer, /^HTTP\/1\.1 413/, answer.slice(0, 200));
    assert.match(answer, /payload_too_large/);
    assert.ok(sent < 8 * 1024 * 1024, `the server let ${sent} bytes in before answering`);
  });

  test("a chunked JSON body over maxJsonBytes is refused", async () => {
    const socket = await open(server.url);
    let answer = "";
    socket.on("data", (data: Buffer) => {
      answer += data.toString("latin1");
    });
    socket.write(
      `POST /search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`,
    );
    const block = `{"query": "${"a".repeat(200 * 1024)}`;
    socket.write(`${Buffer.byteLength(block).toString(16)}\r\n${block}\r\n`);
    await closedWithin(socket, 3_000);
    assert.match(answer, /^HTTP\/1\.1 413/, answer.slice(0, 200));
    assert.match(answer, /payload_too_large/);
  });

  test("slow headers, a trickling body and idle connections are cut off", async () => {
    const slowHeaders = await open(strict.url);
    slowHeaders.write("GET /health HTTP/1.1\r\n");
    const trickle = setInterval(() => {
      if (!slowHeaders.destroyed) slowHeaders.write("X-Slow: 1\r\n");
    }, 200);
    const idle = await open(strict.url);
    // One request, then silence on the kept-alive connection.
    const kept = await open(strict.url);
    kept.write("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    const slowBody = await open(strict.url);
    slowBody.write(
      `POST /search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"query":`,
    );
    const dribble = setInterval(() => {
      if (!slowBody.destroyed) slowBody.write(" ");
    }, 200);
    try {
      const [headersMs, idleMs, bodyMs, keptMs] = await Promise.all([
        closedWithin(slowHeaders, 6_000),
        closedWithin(idle, 6_000),
        closedWithin(slowBody, 6_000),
        closedWithin(kept, 6_000),
      ]);
      assert.ok(keptMs >= 0, "a kept-alive connection idle after its request was never closed");
      assert.ok(headersMs >= 0, "a connection trickling headers was never closed");
      assert.ok(idleMs >= 0, "an idle connection was never closed");
      assert.ok(bodyMs >= 0, "a connection trickling its body was never closed");
    } finally {
      clearInterval(trickle);
      clearInterval(dribble);
      for (const s of [slowHeaders, idle, slowBody, kept]) s.destroy();
    }
  });

  test("connections past maxConnections are closed at once", async () => {
    const sockets = await Promise.all(Array.from({ length: 50 }, () => open(strict.url)));
    try {
      const closed = await Promise.all(sockets.map((s) => closedWithin(s, 500)));
      const dropped = closed.filter((ms) => ms >= 0).length;
      assert.ok(dropped >= 10, `${dropped} of 50 connections were closed with a cap of 40`);
    } finally {
      for (const s of sockets) s.destroy();
    }
    // Room again once they are gone.
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal((await strict.http.get("/health")).status, 200);
  });

  test("client input never produces a 5xx or another error shape", async () => {
    // Malformed percent-encoding and an over-long parameter.
    expectError(await server.http.get("/items/%ZZ"), 400, "bad_request");
    const long = await server.http.get(`/items/${"a".repeat(400)}`);
    assert.ok(long.status >= 400 && long.status < 500, long.text);
    assert.equal(typeof long.body.error?.code, "string", long.text);
    // Filter keys the store cannot address.
    for (const key of [".", ".a"]) {
      const res = await server.http
        .post("/search")
        .send({ query: "a photo", filter: { [key]: 1 } });
      assert.equal(res.status, 400, `${key}: ${res.text}`);
    }
    // Ids a normalised URL cannot reach.
    for (const id of [".", ".."]) {
      const res = await form([
        { name: "images", value: await patternPng(10 + id.length), filename: "x.png" },
        { name: "ids", value: id },
      ]);
      assert.equal(res.status, 200, res.text);
      assert.equal(res.body.results[0].status, "failed");
      assert.equal(res.body.results[0].error.code, "invalid_id");
    }
    // A truncated JSON body.
    const truncated = await server.http
      .post("/search")
      .set("content-type", "application/json")
      .send('{"query": "a');
    assert.equal(truncated.status, 400);
    assert.equal(truncated.body.error.code, "malformed_json");
  });

  test("thumbnails decode what ingest accepted (junk between JPEG markers, a bad EXIF block)", async () => {
    const jpeg = await sharp(await patternPng(20, 64))
      .jpeg()
      .toBuffer();
    // 0xFFD8, then junk bytes before the next marker: libjpeg warns, ingest accepts.
    const junk = Buffer.concat([jpeg.subarray(0, 2), Buffer.alloc(17, 0x42), jpeg.subarray(2)]);
    // An APP1 "Exif" segment whose TIFF header is garbage.
    const exifBody = Buffer.concat([Buffer.from("Exif\0\0", "latin1"), Buffer.alloc(40, 0xee)]);
    const app1 = Buffer.concat([Buffer.from([0xff, 0xe1, 0, exifBody.length + 2]), exifBody]);
    const badExif = Buffer.concat([jpeg.subarray(0, 2), app1, jpeg.subarray(2)]);
    const res = await form([
      { name: "images", value: junk, filename: "junk.jpg" },
      { name: "images", value: badExif, filename: "exif.jpg" },
    ]);
    assert.equal(res.status, 200, res.text);
    for (const result of res.body.results) {
      assert.equal(result.status, "indexed", JSON.stringify(result));
      const thumb = await server.http.get(`/items/${result.id}/thumbnail?size=32`);
      assert.equal(thumb.status, 200, thumb.text);
      assert.equal(thumb.headers["content-type"], "image/webp");
    }
  });

  test("JSON answers and /docs say nosniff", async () => {
    for (const url of ["/stats", "/docs/", "/health", "/nothing-here"]) {
      const res = await server.http.get(url);
      assert.equal(res.headers["x-content-type-options"], "nosniff", url);
    }
  });
});

describe("hardening: shutdown with a trickling upload", () => {
  test("SIGTERM exits within --shutdown-timeout-ms though a client never finishes", async () => {
    const server = await startServe([
      "--model",
      demoModelWithoutGallery(),
      "--data",
      tempDir("longclip-shutdown-"),
      "--shutdown-timeout-ms",
      "2000",
    ]);
    const socket = await open(server.url);
    socket.on("error", () => {});
    socket.write(
      "POST /index HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\nContent-Length: 100000\r\n\r\n--x\r\n",
    );
    const trickle = setInterval(() => {
      if (!socket.destroyed) socket.write("a");
    }, 100);
    try {
      await new Promise((resolve) => setTimeout(resolve, 300));
      const signalled = performance.now();
      server.child.kill("SIGTERM");
      const exited = await Promise.race([
        server.exited.then(() => performance.now() - signalled),
        new Promise<number>((resolve) => setTimeout(() => resolve(-1), 8_000)),
      ]);
      assert.ok(exited >= 0, "the server was still running 8 s after SIGTERM");
      assert.ok(exited < 6_000, `exited after ${exited} ms`);
    } finally {
      clearInterval(trickle);
      socket.destroy();
      await stopProcess(server, "SIGKILL");
    }
  });
});
