/**
 * src/util/paths.ts: opening a resolved path checks the open file itself (kind, links, where
 * it is), and reading it notices a size that changed after the check.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import {
  appendFileSync,
  mkdirSync,
  realpathSync,
  rmSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import path from "node:path";
import { after, test } from "node:test";
import { FileRefusedError, openResolvedFile, readOpenedFile } from "../src/util/paths.ts";
import { tempDir } from "./helpers/library-fixtures.ts";

// Resolved: the paths given must be real paths, as the callers give them.
const root = realpathSync(tempDir("paths-"));
after(() => rmSync(root, { recursive: true, force: true }));

async function refusal(file: string): Promise<string | undefined> {
  try {
    const { handle } = await openResolvedFile(file);
    await handle.close();
    return undefined;
  } catch (error) {
    if (error instanceof FileRefusedError) return error.reason;
    throw error;
  }
}

test("openResolvedFile refuses links, directories, FIFOs, sockets and moved paths", async () => {
  const dir = path.join(root, "kinds");
  mkdirSync(path.join(dir, "real"), { recursive: true });
  const file = path.join(dir, "real", "image.bin");
  writeFileSync(file, "12345");
  symlinkSync(file, path.join(dir, "link.bin"));
  symlinkSync(path.join(dir, "real"), path.join(dir, "linked-dir"));
  execFileSync("mkfifo", [path.join(dir, "pipe.bin")]);
  const socketPath = path.join(dir, "socket.bin");
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  try {
    assert.equal(await refusal(file), undefined);
    assert.equal(await refusal(path.join(dir, "link.bin")), "symlink");
    assert.equal(await refusal(path.join(dir, "real")), "not_regular");
    // Opening a FIFO for reading would wait for a writer: refused at once instead.
    assert.equal(await refusal(path.join(dir, "pipe.bin")), "not_regular");
    assert.equal(await refusal(socketPath), "not_regular");
    // A directory on the path is a link: the file opened is elsewhere than the path says.
    assert.equal(await refusal(path.join(dir, "linked-dir", "image.bin")), "moved");
    await assert.rejects(openResolvedFile(path.join(dir, "missing.bin")), { code: "ENOENT" });
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
});

test("readOpenedFile reads the checked size and notices growth and shrinking", async () => {
  const file = path.join(root, "size.bin");
  for (const [name, change, expected] of [
    ["unchanged", () => {}, { text: "12345", changed: false }],
    ["grown", () => appendFileSync(file, "678"), { text: "12345", changed: true }],
    ["shrunk", () => truncateSync(file, 3), { text: "123", changed: true }],
  ] as const) {
    writeFileSync(file, "12345");
    const { handle, size } = await openResolvedFile(file);
    try {
      change();
      const { bytes, changed } = await readOpenedFile(handle, size);
      assert.deepEqual({ text: bytes.toString(), changed }, expected, name);
    } finally {
      await handle.close();
    }
  }
});
