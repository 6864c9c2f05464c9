/**
 * `longclip pull NAME|REPO|URL`: the files of a registry model, of any Hugging Face CLIPModel
 * repository (owner/name) or of one .pt URL are downloaded (resumably, checked) into a cache
 * directory, then converted into a model directory by the TypeScript converter.
 */
import { existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import { AppError, isAppError } from "../core/errors.ts";
import { download } from "./download.ts";
import { type ConvertResult, convertCheckpoint } from "./export.ts";
import { findModel, type HubFile, hfModelFiles, REGISTRY } from "./registry.ts";

export interface PullOptions {
  readonly target: string;
  readonly out: string;
  readonly cacheDir: string;
  readonly hubUrl: string;
  /** CLIP merges file for a .pt URL (registry models bring their own). */
  readonly vocab?: string;
  readonly name?: string;
  readonly verify?: boolean;
  readonly threads?: number;
  readonly log?: (line: string) => void;
  readonly progress?: (file: string, done: number, total: number | undefined) => void;
}

interface Plan {
  readonly name: string;
  readonly format: "torch" | "hf";
  /** URL → local file, in download order; the first is the checkpoint for "torch". */
  readonly files: readonly { url: string; dest: string; file: HubFile | undefined }[];
}

const REPO_ID = /^[\w.-]+\/[\w.-]+$/;

function hubUrl(base: string, file: HubFile): string {
  const encoded = file.path.split("/").map(encodeURIComponent).join("/");
  return `${base.replace(/\/+$/, "")}/${file.repo}/resolve/${file.revision ?? "main"}/${encoded}`;
}

function plan(options: PullOptions): Plan {
  const { target, cacheDir, hubUrl: base } = options;
  const fromHub = (name: string, format: "torch" | "hf", files: readonly HubFile[]): Plan => ({
    name,
    format,
    files: files.map((file) => ({
      url: hubUrl(base, file),
      dest: path.join(cacheDir, file.repo, file.path),
      file,
    })),
  });
  const known = findModel(target);
  if (known) return fromHub(known.name, known.format, known.files);
  if (REPO_ID.test(target)) {
    return fromHub(target.split("/")[1]?.toLowerCase() ?? target, "hf", hfModelFiles(target));
  }
  if (/^https?:\/\//.test(target)) {
    const url = new URL(target);
    const file = path.basename(url.pathname);
    if (!file.endsWith(".pt")) {
      throw new AppError(
        "model_unknown",
        `${target} is not a .pt file; for a Hugging Face CLIPModel pass its repository id (owner/name), which brings config.json and the tokenizer too`,
      );
    }
    if (!options.vocab) {
      throw new AppError(
        "tokenizer_invalid",
        "a .pt URL carries no tokenizer: pass --vocab bpe_simple_vocab_16e6.txt.gz (the CLIP BPE merges file)",
      );
    }
    const dest = path.join(cacheDir, "urls", url.host, file);
    return {
      name: path.basename(file, ".pt").toLowerCase(),
      format: "torch",
      files: [{ url: target, dest, file: undefined }],
    };
  }
  throw new AppError(
    "model_unknown",
    `unknown model ${JSON.stringify(target)}: pass one of ${REGISTRY.map((m) => m.name).join(", ")}, a Hugging Face repository id (owner/name) of a CLIPModel, or the URL of a .pt checkpoint`,
  );
}

export async function pullModel(options: PullOptions): Promise<ConvertResult> {
  const log = options.log ?? (() => {});
  const steps = plan(options);
  const local: string[] = [];
  for (const { url, dest, file } of steps.files) {
    mkdirSync(path.dirname(dest), { recursive: true });
    if (existsSync(dest)) {
      log(`${path.basename(dest)}: already downloaded (${dest})`);
      local.push(dest);
      continue;
    }
    try {
      const result = await download({
        url,
        dest,
        ...(file?.size !== undefined ? { size: file.size } : {}),
        ...(file?.sha256 ? { sha256: file.sha256 } : {}),
        onProgress: (done, total) => options.progress?.(path.basename(dest), done, total),
      });
      const checked = result.checkedAgainst
        ? `, sha256 checked against the ${result.checkedAgainst} value`
        : "";
      const resumed = result.resumedFrom > 0 ? `, resumed at ${result.resumedFrom} bytes` : "";
      log(`${path.basename(dest)}: ${result.bytes} bytes${resumed}${checked}`);
      local.push(dest);
    } catch (error) {
      if (file !== undefined && isAppError(error) && error.code === "host_unreachable") {
        throw new AppError(
          "hub_unreachable",
          `the model hub ${options.hubUrl} cannot be reached (${String(error.details?.cause)}): check the network connection, or set LONGCLIP_HUB_URL (or --hub-url) to a hub mirror this machine can reach`,
          error.details,
        );
      }
      const notFound = (error as AppError).details?.status === 404;
      if (file?.optional && notFound) {
        log(`${file.path}: not published, skipped`);
        continue;
      }
      throw error;
    }
  }
  const checkpoint =
    steps.format === "hf" ? path.dirname(local[0] as string) : (local[0] as string);
  const vocab = steps.format === "torch" ? (options.vocab ?? local[1]) : options.vocab;
  return convertCheckpoint({
    checkpoint,
    out: options.out,
    name: options.name ?? steps.name,
    ...(vocab ? { vocab } : {}),
    ...(options.verify === false ? { verify: false } : {}),
    ...(options.threads ? { threads: options.threads } : {}),
    log,
  });
}
