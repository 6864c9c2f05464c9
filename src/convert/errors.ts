/**
 * Errors of the checkpoint converter. Every one is an AppError whose code says what went wrong
 * and whose message says what to do next.
 */
import { AppError, type ErrorCode } from "../core/errors.ts";

/** The converter's codes; the catalog (src/core/errors.ts) says what each means. */
export type ConvertErrorCode = Extract<
  ErrorCode,
  `checkpoint_${string}` | "tokenizer_invalid" | "export_check_failed"
>;

export function convertError(
  code: ConvertErrorCode,
  message: string,
  details?: Record<string, unknown>,
): AppError {
  return new AppError(code, message, details);
}
