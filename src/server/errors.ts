/**
 * Maps every error the server can meet (AppError from the library, fastify's parser and
 * validation errors, @fastify/multipart's limit errors) to the one JSON error shape.
 */
import type { FastifyError } from "fastify";
import { AppError, isAppError, isStorageFull, storageFullError } from "../core/errors.ts";
import type { Settings } from "../core/settings.ts";
import { tooManyItems } from "../library/ingest/batch.ts";
import { describeValidationError } from "./validation.ts";

export interface ErrorBody {
  error: { code: string; message: string };
}

function validationError(error: FastifyError): AppError {
  const context = error.validationContext ?? "request";
  const errors = error.validation ?? [];
  const first = errors[0];
  const message = describeValidationError(context, errors as never);
  if (first && /^\/k$/.test(first.instancePath) && context !== "params") {
    return new AppError(
      "k_out_of_range",
      `${message}; k must be an integer from 1 to the maxK setting`,
    );
  }
  return new AppError("validation_failed", `${message}; see /docs for the request format`);
}

/** The AppError a thrown value stands for; unknown errors become 500 internal_error. */
export function toAppError(error: unknown, settings: Settings): AppError {
  if (isAppError(error)) return error;
  const fe = error as FastifyError;
  if (fe?.validation) return validationError(fe);
  if (isStorageFull(error)) return storageFullError();
  switch (fe?.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return jsonTooLarge(Math.min(settings.maxJsonBytes, settings.maxRequestBytes));
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
    case "FST_INVALID_MULTIPART_CONTENT_TYPE":
      return new AppError(
        "unsupported_media_type",
        "unsupported Content-Type for this endpoint; see /docs for what each endpoint accepts",
      );
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
    case "FST_ERR_CTP_INVALID_JSON_BODY":
      return new AppError(
        "malformed_json",
        "request body is not valid JSON; fix the JSON and retry",
      );
    case "FST_INVALID_JSON_FIELD_ERROR":
      return new AppError(
        "malformed_json",
        "a multipart field declared as application/json is not valid JSON",
      );
    case "FST_FILES_LIMIT":
      return tooManyItems(settings.maxBatchItems);
    case "FST_PARTS_LIMIT":
    case "FST_FIELDS_LIMIT":
      return new AppError(
        "payload_too_large",
        "too many multipart parts or fields; send one file per image plus ids/metadata fields",
      );
    case "FST_PROTO_VIOLATION":
      return new AppError("bad_request", "a multipart field name is not allowed");
    case "FST_MP_PREMATURE_CLOSE":
      return new AppError("malformed_multipart", "the request ended before the multipart body did");
  }
  const status = typeof fe?.statusCode === "number" ? fe.statusCode : 500;
  if (status >= 400 && status < 500) {
    return new AppError("bad_request", fe.message || "bad request", undefined, status);
  }
  return new AppError("internal_error", "unexpected server error; the server log has the details");
}

/** 413 for a multipart body over maxRequestBytes. */
export function bodyTooLarge(limit: number): AppError {
  return new AppError(
    "payload_too_large",
    `request body is larger than ${limit} bytes (maxRequestBytes, LONGCLIP_MAX_REQUEST_BYTES); send smaller batches`,
  );
}

/** 413 for a JSON body over `limit` (maxJsonBytes, or maxRequestBytes when that is lower). */
export function jsonTooLarge(limit: number): AppError {
  return new AppError(
    "payload_too_large",
    `JSON body is larger than ${limit} bytes (maxJsonBytes, LONGCLIP_MAX_JSON_BYTES)`,
  );
}

/** 404 not_found for an item id that is not stored. */
export function itemNotFound(id: string): AppError {
  return new AppError("not_found", `no item with id "${id}"; GET /items lists the stored ids`);
}

export function errorBody(error: AppError): ErrorBody {
  return { error: { code: error.code, message: error.message } };
}
