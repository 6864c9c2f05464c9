// Builds the optional native JPEG decoder (src/preprocess/jpeg-native/*.c) into
// build/jpeg-native.node with the C compiler and the system's libjpeg-turbo. A Node-API
// addon: one build serves every Node.js version. Run by `npm run build`, `npm run
// build:native` and after `npm install`. The decoder is optional: where it cannot be built,
// this prints one line saying what to install and exits 0 (sharp then decodes every JPEG).
// Plain JavaScript, because it runs on install, before tsx may be there.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, renameSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const sourceDirectory = path.join(root, "src", "preprocess", "jpeg-native");
const sources = ["decode.c", "resize.c"].map((name) => path.join(sourceDirectory, name));
const output = path.join(root, "build", "jpeg-native.node");
const install =
  "install a C compiler and libjpeg-turbo's headers (Debian: apt-get install gcc libc6-dev libjpeg62-turbo-dev), then npm run build:native";

function skip(reason) {
  console.log(
    `native JPEG decoder not built (${reason}); sharp decodes JPEGs. To build it, ${install}.`,
  );
  process.exit(0);
}

for (const source of sources) {
  if (!existsSync(source)) skip(`${path.relative(root, source)} is missing`);
}
let headers;
try {
  const require = createRequire(path.join(root, "package.json"));
  headers = path.join(path.dirname(require.resolve("node-api-headers/package.json")), "include");
} catch {
  skip(
    "the node-api-headers package (a development dependency) is not installed: install with development dependencies",
  );
}

mkdirSync(path.dirname(output), { recursive: true });
// Written beside the output and renamed, so a failed build never removes a working one.
const partial = `${output}.${process.pid}.tmp`;
const compiler = process.env.CC || "cc";
const result = spawnSync(
  compiler,
  [
    "-O3",
    "-Wall",
    "-Wextra",
    "-shared",
    "-fPIC",
    // No fused multiply-adds: the resize's masks must round as those of sharp's x86-64 libvips
    // do. Where a libvips build rounds otherwise, the load-time check leaves fast mode to sharp.
    "-ffp-contract=off",
    "-DNAPI_VERSION=8",
    "-I",
    headers,
    ...sources,
    "-ljpeg",
    "-lm",
    "-o",
    partial,
  ],
  { encoding: "utf8" },
);
if (result.error !== undefined || result.status !== 0) {
  rmSync(partial, { force: true });
  const reason =
    result.error !== undefined
      ? `${compiler}: ${result.error.code === "ENOENT" ? "not found" : result.error.message}`
      : (
          result.stderr.split("\n").find((line) => /error/.test(line)) ?? `${compiler} failed`
        ).trim();
  skip(reason);
}
if (result.stderr.trim() !== "") process.stderr.write(result.stderr);
renameSync(partial, output);
console.log(`native JPEG decoder built: ${path.relative(root, output)}`);
