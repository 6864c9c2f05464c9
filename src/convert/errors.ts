/**
 * Errors of the checkpoint converter. Every one is an AppError whose code says what went wrong
 * and whose message says what to do next.
 */
import { AppError } from "../core/errors.ts";

export type ConvertErrorCode =
  /** The checkpoint path does not exist. */
  | "checkpoint_not_found"
  /** Truncated, corrupted or not the format it claims to be. */
  | "checkpoint_unreadable"
  /** The pickle names a global a state dict never needs (it could run code in Python). */
  | "checkpoint_unsafe"
  /** A TorchScript archive: only the Python exporter reads those. */
  | "checkpoint_torchscript"
  /** A size inside the file past what any CLIP model needs (src/convert/limits.ts). */
  | "checkpoint_too_large"
  /** Readable, but not a CLIP ViT layout this converter knows (unknown keys, wrong shapes). */
  | "checkpoint_unsupported"
  /** The tokenizer files are missing or inconsistent with the model. */
  | "tokenizer_invalid"
  /** The written towers disagree with the TypeScript reference forward. */
  | "export_check_failed";

export function convertError(
  code: ConvertErrorCode,
  message: string,
  details?: Record<string, unknown>,
): AppError {
  return new AppError(code, message, details);
}
