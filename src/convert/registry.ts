/**
 * The models `longclip pull NAME` knows: where their files are on the Hugging Face hub (or a
 * mirror named by LONGCLIP_HUB_URL) and how to convert them. Sizes and checksums are pinned
 * where published; otherwise the download is checked against the hub's own LFS sha256 and size
 * headers when the server sends them. docs/model-format.md lists the published figures.
 */

export interface HubFile {
  /** owner/name of the repository holding the file. */
  readonly repo: string;
  readonly path: string;
  readonly revision?: string;
  readonly size?: number;
  readonly sha256?: string;
  /** A file the conversion can do without (e.g. preprocessor_config.json). */
  readonly optional?: boolean;
}

export interface RegistryModel {
  readonly name: string;
  readonly description: string;
  /** Model card. */
  readonly source: string;
  /** "torch": one .pt state dict plus a CLIP merges file; "hf": a CLIPModel directory. */
  readonly format: "torch" | "hf";
  readonly files: readonly HubFile[];
}

/** The files of a transformers CLIPModel repository this converter reads. */
export function hfModelFiles(repo: string, revision = "main"): HubFile[] {
  return [
    { repo, revision, path: "config.json" },
    { repo, revision, path: "model.safetensors" },
    { repo, revision, path: "vocab.json" },
    { repo, revision, path: "merges.txt" },
    { repo, revision, path: "preprocessor_config.json", optional: true },
  ];
}

/** OpenAI's CLIP BPE merges as published with its transformers models (48,894 merges). */
const CLIP_MERGES: HubFile = { repo: "openai/clip-vit-base-patch16", path: "merges.txt" };

export const REGISTRY: readonly RegistryModel[] = [
  {
    name: "longclip-b",
    description: "Long-CLIP ViT-B/16, the official checkpoint (ECCV 2024)",
    source: "https://huggingface.co/BeichenZhang/LongCLIP-B",
    format: "torch",
    files: [{ repo: "BeichenZhang/LongCLIP-B", path: "longclip-B.pt" }, CLIP_MERGES],
  },
  {
    name: "longclip-l",
    description: "Long-CLIP ViT-L/14, the official checkpoint (ECCV 2024)",
    source: "https://huggingface.co/BeichenZhang/LongCLIP-L",
    format: "torch",
    files: [{ repo: "BeichenZhang/LongCLIP-L", path: "longclip-L.pt" }, CLIP_MERGES],
  },
  {
    name: "longclip-l-hf",
    description: "Long-CLIP ViT-L/14 converted to a transformers CLIPModel (the official weights)",
    source: "https://huggingface.co/zer0int/LongCLIP-L-Diffusers",
    format: "hf",
    files: hfModelFiles("zer0int/LongCLIP-L-Diffusers"),
  },
  {
    name: "longclip-gmp-l",
    description:
      "Long-CLIP ViT-L/14 fine-tuned with geometric parametrization (GmP), CLIPModel format",
    source: "https://huggingface.co/zer0int/LongCLIP-GmP-ViT-L-14",
    format: "hf",
    files: hfModelFiles("zer0int/LongCLIP-GmP-ViT-L-14"),
  },
];

export function findModel(name: string): RegistryModel | undefined {
  return REGISTRY.find((model) => model.name === name.toLowerCase());
}
