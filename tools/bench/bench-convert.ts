/**
 * Conversion time and peak memory, TypeScript converter against the Python exporter, on the
 * same checkpoints in one run (each run is a fresh process under GNU time: wall seconds and
 * the peak resident set of the largest process), then the agreement of the two directories'
 * towers on the self-check inputs. Usage:
 *
 *   tsx tools/bench/bench-convert.ts --vocab bpe_simple_vocab_16e6.txt.gz --work artifacts/convert-bench A.pt [B.pt ...]
 */
import { execFileSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import * as ort from "onnxruntime-node";
import { openCheckpoint } from "../../src/convert/export.ts";
import {
  TEXT_INPUT,
  TEXT_OUTPUT,
  VISION_INPUT,
  VISION_OUTPUT,
} from "../../src/convert/onnx-towers.ts";
import { checkInputs, relativeDifference } from "../../src/convert/self-check.ts";
import { PROJECT_ROOT } from "../../src/core/settings.ts";

interface Measured {
  seconds: number;
  peakMiB: number;
}

function timed(command: string, args: readonly string[]): Measured {
  const report = path.join(PROJECT_ROOT, "artifacts", "convert-bench", "time.txt");
  execFileSync("/usr/bin/time", ["-f", "%e %M", "-o", report, command, ...args], {
    cwd: PROJECT_ROOT,
    stdio: ["ignore", "ignore", "inherit"],
  });
  const [seconds, kib] = readFileSync(report, "utf8").trim().split(/\s+/).slice(-2).map(Number);
  return { seconds: seconds as number, peakMiB: (kib as number) / 1024 };
}

async function embed(dir: string, pixels: Float32Array, res: number, ids: number[]) {
  const run = async (file: string, feeds: Record<string, ort.Tensor>, output: string) => {
    const session = await ort.InferenceSession.create(path.join(dir, file));
    const result = (await session.run(feeds))[output]?.data as Float32Array;
    await session.release();
    return result;
  };
  return [
    await run(
      "vision.onnx",
      { [VISION_INPUT]: new ort.Tensor("float32", pixels, [1, 3, res, res]) },
      VISION_OUTPUT,
    ),
    await run(
      "text.onnx",
      { [TEXT_INPUT]: new ort.Tensor("int64", BigInt64Array.from(ids, BigInt), [1, ids.length]) },
      TEXT_OUTPUT,
    ),
  ];
}

async function agreement(checkpoint: string, tsDir: string, pyDir: string): Promise<number> {
  const { weights } = await openCheckpoint(checkpoint);
  const { pixels, ids } = checkInputs(weights, 7);
  const res = weights.spec.imageResolution;
  weights.close();
  const a = await embed(tsDir, pixels, res, ids);
  const b = await embed(pyDir, pixels, res, ids);
  return Math.max(...a.map((values, i) => relativeDifference(values, b[i] as Float32Array)));
}

const { values, positionals } = parseArgs({
  options: {
    vocab: { type: "string" },
    work: { type: "string" },
    "no-verify": { type: "boolean" },
  },
  allowPositionals: true,
});
if (!values.vocab || !values.work || positionals.length === 0) {
  process.stderr.write(
    "usage: tsx tools/bench/bench-convert.ts --vocab FILE --work DIR [--no-verify] CHECKPOINT...\n",
  );
  process.exit(2);
}
const vocab = values.vocab;
const work = values.work;
const verify = values["no-verify"] ? ["--no-verify"] : [];
const rows = [
  "| checkpoint | exporter | seconds | peak RSS (MiB) |",
  "| --- | --- | ---: | ---: |",
];
const agreements: string[] = [];
for (const checkpoint of positionals) {
  const name = path.basename(checkpoint, ".pt");
  const tsDir = path.join(work, `ts-${name}`);
  const pyDir = path.join(work, `py-${name}`);
  const common = ["--checkpoint", checkpoint, "--vocab", vocab, ...verify];
  const ts = timed(process.execPath, [
    path.join(PROJECT_ROOT, "bin", "longclip.js"),
    "export",
    ...common,
    "--out",
    tsDir,
  ]);
  const py = timed(path.join(PROJECT_ROOT, "scripts", "python"), [
    "-m",
    "training",
    "export",
    ...common,
    "--out",
    pyDir,
  ]);
  for (const [label, m] of [
    ["TypeScript", ts],
    ["Python", py],
  ] as const) {
    rows.push(`| ${name} | ${label} | ${m.seconds.toFixed(1)} | ${m.peakMiB.toFixed(0)} |`);
  }
  agreements.push(
    `${name}: TypeScript vs Python towers, max relative difference ${(await agreement(checkpoint, tsDir, pyDir)).toExponential(2)}`,
  );
  rmSync(tsDir, { recursive: true, force: true });
  rmSync(pyDir, { recursive: true, force: true });
}
process.stdout.write(
  `${rows.join("\n")}\n\n${agreements.join("\n")}\n(check ${verify.length ? "off" : "on"} in both exporters)\n`,
);
