/**
 * `longclip export`: a checkpoint to a model directory (docs/model-format.md).
 *
 * Official Long-CLIP / OpenAI-format `.pt` state dicts and Hugging Face CLIPModel directories
 * are converted in TypeScript (src/convert), without Python. `--python`, `--random-init`,
 * `--int8` and `--fp16` run the training package's exporter instead (`python3 -m training export`, through
 * scripts/python), with every other argument passed through. A file the TypeScript converter
 * refuses (a TorchScript archive, a training checkpoint) is never passed on to Python by itself:
 * the Python exporter compiles and runs a TorchScript archive's code, so that takes --python.
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { parseArgs } from "node:util";
import type { Command } from "commander";
import { convertCheckpoint } from "../convert/export.ts";
import { AppError } from "../core/errors.ts";
import { PROJECT_ROOT } from "../core/settings.ts";
import type { DenseKind } from "../model/format.ts";
import { reportError } from "./usage.ts";

/** Exit code of scripts/python when no Python with torch is installed. */
const NO_PYTHON = 127;
const DENSE_CHOICES: readonly string[] = ["value", "final", "none"];
const PYTHON_ONLY_OPTIONS = [
  "--random-init",
  "--int8",
  "--fp16",
  "--opset",
  "--seed",
  "--num-merges",
];

export const EXPORT_USAGE = `usage: longclip export --checkpoint PATH [--vocab FILE] --out DIR [--name NAME] [--dense KIND] [--no-verify] [--threads N]
       longclip export --python ARGS...   (the Python exporter: python3 -m training export ARGS)

Converts without Python:
  official Long-CLIP checkpoints (longclip-B.pt, longclip-L.pt), OpenAI-format state dicts,
  Hugging Face CLIPModel directories (config.json + model.safetensors + vocab.json/merges.txt)
  or the path of their model.safetensors.

  --checkpoint PATH  the .pt file, the Hugging Face directory or its model.safetensors
  --vocab FILE       CLIP BPE merges file (bpe_simple_vocab_16e6.txt.gz); required for .pt,
                     optional for a Hugging Face directory (its merges.txt is used)
  --out DIR          model directory to write
  --name NAME        model name (default: the output directory's name)
  --dense KIND       value, final or none (default): adds the vision tower's second output
                     patch_embeds, patch embeddings for heat maps (POST /explain); value is the
                     last block's value path (MaskCLIP), final its patch tokens. image_embeds
                     is the same with any KIND
  --no-verify        skip the check of the towers against the TypeScript forward
  --threads N        ONNX Runtime threads for the check (default 2)

--random-init, --int8, --fp16, TorchScript archives and training checkpoints need the Python exporter
(longclip export --python --help). The TypeScript converter never runs anything from a checkpoint;
--python on a TorchScript archive (OpenAI's own .pt files) runs the archive's TorchScript code, so
use it only on files from a source you trust.
`;

export function exportCommand(args: readonly string[]): { command: string; args: string[] } {
  return {
    command: path.join(PROJECT_ROOT, "scripts", "python"),
    args: ["-m", "training", "export", ...args],
  };
}

/** Runs the Python exporter with `args`; resolves to its exit code. */
export async function runPythonExport(args: readonly string[]): Promise<number> {
  const { command, args: argv } = exportCommand(args);
  const child = spawn(command, argv, { cwd: PROJECT_ROOT, stdio: "inherit" });
  return new Promise<number>((resolve) => {
    child.on("error", (error) => {
      process.stderr.write(`error: could not run ${command}: ${error.message}\n`);
      resolve(NO_PYTHON);
    });
    child.on("exit", (status, signal) => resolve(status ?? (signal ? 1 : 0)));
  });
}

function wantsPython(args: readonly string[]): boolean {
  return args.some(
    (arg) => arg === "--python" || PYTHON_ONLY_OPTIONS.includes(arg.split("=")[0] as string),
  );
}

/** `longclip export ARGS`; resolves to the exit code. */
export async function runExport(args: readonly string[]): Promise<number> {
  if (wantsPython(args)) return runPythonExport(args.filter((arg) => arg !== "--python"));
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args: [...args],
      options: {
        checkpoint: { type: "string" },
        vocab: { type: "string" },
        out: { type: "string" },
        name: { type: "string" },
        "no-verify": { type: "boolean" },
        threads: { type: "string" },
        dense: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
    }).values;
  } catch (error) {
    return reportError(new AppError("usage", (error as Error).message));
  }
  if (values.help) {
    process.stdout.write(EXPORT_USAGE);
    return 0;
  }
  const checkpoint = values.checkpoint as string | undefined;
  const out = values.out as string | undefined;
  const threads = Number(values.threads ?? 2);
  const dense = (values.dense as string | undefined) ?? "none";
  if (!checkpoint || !out || !Number.isInteger(threads) || threads < 1) {
    return reportError(
      new AppError(
        "usage",
        "--checkpoint and --out are required, --threads a whole number from 1.",
      ),
    );
  }
  if (!DENSE_CHOICES.includes(dense)) {
    return reportError(
      new AppError("usage", `--dense must be value, final or none, not ${JSON.stringify(dense)}.`),
    );
  }
  const started = performance.now();
  try {
    const result = await convertCheckpoint({
      checkpoint,
      out,
      vocab: values.vocab as string | undefined,
      name: values.name as string | undefined,
      verify: !values["no-verify"],
      threads,
      ...(dense === "none" ? {} : { dense: dense as DenseKind }),
      log: (line) => process.stdout.write(`${line}\n`),
    });
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    process.stdout.write(`wrote ${out} (${String(result.config.model_id)}) in ${seconds}s\n`);
    return 0;
  } catch (error) {
    // Never hand a refused file to Python by itself: the Python exporter runs TorchScript code,
    // so only an explicit --python may do that.
    return reportError(error);
  }
}

export function register(program: Command): void {
  program
    .command("export")
    .description(
      "Convert a Long-CLIP / OpenAI CLIP .pt state dict or a Hugging Face CLIPModel to a model directory, without Python (--python: the training package's exporter)",
    )
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .argument("[args...]", "see longclip export --help")
    .action(async (args: string[]) => {
      process.exitCode = await runExport(args);
    });
}
