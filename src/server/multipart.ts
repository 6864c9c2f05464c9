/**
 * Reading multipart uploads: files into memory (each capped at maxImageBytes or the caller's
 * limit, the request at maxRequestBytes), text fields collected by name. A file over the cap is kept as "too large"
 * rather than failing the request, so a batch can report it as one failed item.
 */
import type { FastifyRequest } from "fastify";
import { AppError, isAppError } from "../core/errors.ts";
import type { Settings } from "../core/settings.ts";
import { tooManyItems } from "../library/ingest/batch.ts";
import { bodyTooLarge } from "./errors.ts";

export interface UploadedFile {
  bytes: Buffer;
  /** The file was larger than the limit (ReadOptions.maxFileBytes); `bytes` holds only its start. */
  tooLarge: boolean;
  filename: string;
  contentType: string;
}

export interface MultipartForm {
  files: UploadedFile[];
  fields: Map<string, unknown[]>;
}

export interface ReadOptions {
  fileField: string;
  /** Largest file kept whole (default maxImageBytes); a larger one is `tooLarge`. */
  maxFileBytes?: number;
  maxFiles: number;
  allowedFields: readonly string[];
}

/** Largest text field (ids, metadata JSON). */
export const MAX_FIELD_BYTES = 1024 * 1024;

export async function readMultipart(
  request: FastifyRequest,
  settings: Settings,
  options: ReadOptions,
): Promise<MultipartForm> {
  const files: UploadedFile[] = [];
  const fields = new Map<string, unknown[]>();
  let total = 0;
  const overBudget = () => bodyTooLarge(settings.maxRequestBytes);
  try {
    const parts = request.parts({
      limits: {
        fileSize: options.maxFileBytes ?? settings.maxImageBytes,
        files: options.maxFiles,
        fields: Math.max(8, options.allowedFields.length * (options.maxFiles + 1)),
        fieldSize: MAX_FIELD_BYTES,
        parts: options.maxFiles * (options.allowedFields.length + 2) + 8,
      },
    });
    for await (const part of parts) {
      if (part.type === "file") {
        if (part.fieldname !== options.fileField) {
          part.file.resume();
          throw new AppError(
            "validation_failed",
            `unexpected file field "${part.fieldname}"; send files in the field "${options.fileField}"`,
          );
        }
        const bytes = await part.toBuffer();
        total += bytes.length;
        if (total > settings.maxRequestBytes) throw overBudget();
        files.push({
          bytes,
          tooLarge: part.file.truncated,
          filename: part.filename,
          contentType: part.mimetype,
        });
        continue;
      }
      if (!options.allowedFields.includes(part.fieldname)) {
        const known = [options.fileField, ...options.allowedFields].map((f) => `"${f}"`).join(", ");
        throw new AppError(
          "validation_failed",
          `unexpected multipart field "${part.fieldname}"; this endpoint reads ${known}`,
        );
      }
      if (part.valueTruncated) {
        throw new AppError(
          "payload_too_large",
          `multipart field "${part.fieldname}" is larger than ${MAX_FIELD_BYTES} bytes`,
        );
      }
      total += typeof part.value === "string" ? Buffer.byteLength(part.value) : 0;
      if (total > settings.maxRequestBytes) throw overBudget();
      const values = fields.get(part.fieldname) ?? [];
      values.push(part.value);
      fields.set(part.fieldname, values);
    }
  } catch (error) {
    if (isAppError(error)) throw error;
    const code = (error as { code?: unknown }).code;
    if (code === "FST_FILES_LIMIT") {
      throw options.maxFiles === 1
        ? new AppError(
            "validation_failed",
            `send exactly one file in the field "${options.fileField}"`,
          )
        : tooManyItems(options.maxFiles);
    }
    if (typeof code === "string" && code.startsWith("FST_")) throw error;
    throw new AppError(
      "malformed_multipart",
      `the multipart body could not be parsed (${(error as Error).message}); send multipart/form-data as a browser or curl -F does`,
    );
  }
  return { files, fields };
}

/**
 * Values of a repeated field, where one value may also be a JSON array of them
 * (`ids=a&ids=b` or `ids=["a","b"]`).
 */
export function listField(
  form: MultipartForm,
  name: string,
  parseScalar: (raw: string) => unknown,
): unknown[] {
  const out: unknown[] = [];
  for (const value of form.fields.get(name) ?? []) {
    if (Array.isArray(value)) {
      out.push(...value);
      continue;
    }
    // A part sent with Content-Type application/json arrives already parsed.
    if (typeof value === "object" && value !== null) {
      out.push(value);
      continue;
    }
    const text = String(value);
    if (text.trimStart().startsWith("[")) {
      const parsed = parseJson(text, name);
      if (!Array.isArray(parsed))
        throw new AppError("malformed_json", `field "${name}" is not a JSON array`);
      out.push(...parsed);
    } else {
      out.push(parseScalar(text));
    }
  }
  return out;
}

export function parseJson(text: string, field: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new AppError(
      "malformed_json",
      `multipart field "${field}" is not valid JSON; send a JSON object (or an array of them)`,
    );
  }
}
