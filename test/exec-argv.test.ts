import assert from "node:assert/strict";
import { test } from "node:test";
import { workerExecArgv } from "../src/util/exec-argv.ts";

test("worker threads get the module loaders of the parent and nothing else", () => {
  assert.deepEqual(
    workerExecArgv([
      "--test-coverage-functions=0",
      "--import",
      "tsx",
      "--inspect-port=0",
      "--require=./x.cjs",
      "--max-old-space-size=4096",
      "--experimental-loader",
      "y.mjs",
    ]),
    ["--import", "tsx", "--require=./x.cjs", "--experimental-loader", "y.mjs"],
  );
  assert.deepEqual(workerExecArgv([]), []);
});
