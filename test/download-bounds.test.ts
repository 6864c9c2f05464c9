/**
 * `pull` downloads bounded (issue 24, finding 8), against a lying server on 127.0.0.1: a file
 * published as 100 bytes that the server streams on is cut off near 100 bytes (300 MB were
 * written before the check); with no size known, MAX_DOWNLOAD_BYTES is the cap; a 416
 * on resume counts the partial file as complete only when its size is known and matches; a 206
 * whose Content-Range does not start where the partial file ends is never appended.
 */
import assert from "node:assert/strict";
import { existsSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { after, before, test } from "node:test";
import { download } from "../src/convert/download.ts";
import { tempDir } from "./api-helpers.ts";

const MIB = 1024 * 1024;
let server: http.Server;
let base: string;
/** Bytes the streaming route managed to send before the client hung up. */
let streamed = 0;

before(async () => {
  server = http.createServer((request, response) => {
    if (request.url === "/stream") {
      // chunked, up to 64 MiB, for a file published as 100 bytes
      response.writeHead(200);
      const chunk = Buffer.alloc(64 * 1024, 1);
      let sent = 0;
      const pump = () => {
        while (sent < 64 * MIB) {
          sent += chunk.length;
          streamed = sent;
          if (!response.write(chunk)) return response.once("drain", pump);
        }
        response.end();
      };
      response.on("error", () => {});
      response.socket?.on("error", () => {});
      pump();
    } else if (request.url === "/range-416") {
      response.writeHead(416, { "content-range": "bytes */*" });
      response.end();
    } else if (request.url === "/range-from-zero") {
      const body = Buffer.from("0123456789abcdefghij");
      response.writeHead(206, {
        "content-range": `bytes 0-${body.length - 1}/${body.length}`,
        "content-length": String(body.length),
      });
      response.end(body);
    } else {
      response.writeHead(404);
      response.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => {
  server.closeAllConnections();
  server.close();
});

test("a file published as 100 bytes that the server streams on is cut off; nothing is kept", async () => {
  const dest = path.join(tempDir("download-bounds-"), "model.bin");
  await assert.rejects(download({ url: `${base}/stream`, dest, size: 100 }));
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.ok(streamed < 16 * MIB, `the server sent ${streamed} bytes before the client stopped`);
  assert.ok(!existsSync(dest) && !existsSync(`${dest}.partial`));
});

test("a 416 on resume is complete only when the size is known and matches", async () => {
  const dest = path.join(tempDir("download-bounds-"), "model.bin");
  writeFileSync(`${dest}.partial`, "0123456789");
  await assert.rejects(download({ url: `${base}/range-416`, dest }));
  assert.ok(!existsSync(dest), "a 10-byte partial file was accepted as the download");
  assert.ok(!existsSync(`${dest}.partial`));
  writeFileSync(`${dest}.partial`, "0123456789");
  const done = await download({ url: `${base}/range-416`, dest, size: 10 });
  assert.equal(done.bytes, 10);
});

test("a 206 that restarts at byte 0 is not appended to the partial file", async () => {
  const dest = path.join(tempDir("download-bounds-"), "model.bin");
  writeFileSync(`${dest}.partial`, "0123456789");
  await assert.rejects(download({ url: `${base}/range-from-zero`, dest }));
  assert.ok(!existsSync(dest), "a garbled file was accepted");
});
