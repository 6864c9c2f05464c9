/** Items: indexing (multipart uploads or paths under the media root), listing, reading, deleting. */
import path from "node:path";
import type { Schemas } from "../../api/spec.ts";
import { AppError, errorOf } from "../../core/errors.ts";
import type { IndexInput, IndexResult, Item, ItemOrder } from "../../core/types.ts";
import { byteLimit } from "../../library/ingest/inputs.ts";
import { isInside, realOrSelf } from "../../util/paths.ts";
import { sendBytes } from "../byte-range.ts";
import { itemNotFound } from "../errors.ts";
import { listField, type MultipartForm, parseJson, readMultipart } from "../multipart.ts";
import { assertValid } from "../validation.ts";
import { type Handlers, idParam, imageUrl, mediaType, type RouteContext } from "./context.ts";

type Slot = { input: IndexInput } | { failed: IndexResult };

export function itemHandlers({
  settings,
  library,
  metrics,
  validators,
  buffered,
}: RouteContext): Handlers {
  // The library stores resolved paths; items show them relative to the resolved media root.
  const realMediaRoot =
    settings.mediaRoot === undefined ? undefined : realOrSelf(settings.mediaRoot);
  const validId = validators.component("Id");
  const validMetadata = validators.component("Metadata");

  const toItem = (item: Item): Schemas["Item"] => {
    const out: Schemas["Item"] = {
      id: item.id,
      metadata: item.metadata,
      content_type: item.contentType,
      width: item.width,
      height: item.height,
      bytes: item.bytes,
      sha256: item.sha256,
      source: item.source,
      created_at: item.createdAt,
      image_url: imageUrl(item.id),
    };
    if (item.path !== undefined) {
      const root = realMediaRoot;
      out.path = root && isInside(root, item.path) ? path.relative(root, item.path) : item.path;
    }
    return out;
  };

  const uploadSlots = (form: MultipartForm): Slot[] => {
    if (form.files.length === 0) {
      throw new AppError(
        "validation_failed",
        'no file in the field "images"; send one or more image files as images',
      );
    }
    const ids = listField(form, "ids", (raw) => raw);
    const metadata = listField(form, "metadata", (raw) => parseJson(raw, "metadata"));
    for (const [name, values] of [
      ["ids", ids],
      ["metadata", metadata],
    ] as const) {
      if (values.length > 0 && values.length !== form.files.length) {
        throw new AppError(
          "validation_failed",
          `${values.length} ${name} for ${form.files.length} files; send one per file, in file order`,
        );
      }
    }
    for (const [i, id] of ids.entries()) assertValid(validId, id, `ids/${i}`);
    for (const [i, meta] of metadata.entries()) assertValid(validMetadata, meta, `metadata/${i}`);
    return form.files.map((file, i): Slot => {
      const id = ids[i] as string | undefined;
      if (file.tooLarge) {
        const tooLarge = byteLimit(file.bytes, settings).error(file.filename || "file");
        return { failed: { id: id ?? "", status: "failed", error: errorOf(tooLarge) } };
      }
      const input: IndexInput = {
        bytes: file.bytes,
        filename: file.filename,
        contentType: file.contentType,
      };
      if (id !== undefined) input.id = id;
      const meta = metadata[i] as Schemas["Metadata"] | undefined;
      if (meta !== undefined) input.metadata = meta;
      return { input };
    });
  };

  // The library confines paths to the media root and checks the batch limit: a path outside
  // it fails only itself (path_outside_media_root), like any other bad item.
  const pathSlots = (body: Schemas["IndexPathsRequest"]): Slot[] => {
    if (settings.mediaRoot === undefined) {
      throw new AppError(
        "path_indexing_disabled",
        "indexing by path is disabled: start the server with --media-root DIR (LONGCLIP_MEDIA_ROOT), or upload the files as multipart",
      );
    }
    return body.items.map((item) => {
      const input: IndexInput = { path: item.path };
      if (item.id !== undefined) input.id = item.id;
      if (item.metadata !== undefined) input.metadata = item.metadata;
      return { input };
    });
  };

  return {
    async indexImages(request) {
      const slots =
        mediaType(request) === "multipart/form-data"
          ? uploadSlots(
              await readMultipart(request, settings, {
                fileField: "images",
                // Videos come in the same field: each file is held to its kind's limit.
                maxFileBytes: Math.max(settings.maxImageBytes, settings.maxVideoBytes),
                maxFiles: settings.maxBatchItems,
                allowedFields: ["ids", "metadata"],
              }),
            )
          : pathSlots(request.body as Schemas["IndexPathsRequest"]);
      const inputs = slots.flatMap((slot) => ("input" in slot ? [slot.input] : []));
      const indexed = inputs.length ? await metrics.time("index", () => library.index(inputs)) : [];
      let next = 0;
      const results = slots.map((slot) => {
        if ("failed" in slot) return slot.failed;
        const result = indexed[next++];
        if (result === undefined)
          throw new Error("library.index returned fewer results than inputs");
        return result;
      });
      metrics.countIndexResults(results.map((r) => r.status));
      return { results } satisfies Schemas["IndexResponse"];
    },

    async listItems(request) {
      const query = request.query as { cursor?: string; limit: number; order?: ItemOrder };
      const page = await library.listItems(query.cursor ?? null, query.limit, query.order);
      return {
        items: page.items.map(toItem),
        next_cursor: page.nextCursor,
      } satisfies Schemas["ItemPage"];
    },

    async getItem(request) {
      const id = idParam(request);
      const item = await library.getItem(id);
      if (item === undefined) throw itemNotFound(id);
      return toItem(item);
    },

    async deleteItem(request) {
      const id = idParam(request);
      if (!(await library.deleteItem(id))) throw itemNotFound(id);
      return { id, deleted: true } satisfies Schemas["DeleteResponse"];
    },

    async getItemImage(request, reply) {
      const id = idParam(request);
      const { t } = request.query as { t?: number };
      // The original is read whole (to check it against its sha256; a video's frame is decoded
      // from it): it counts against the bytes held in memory until the answer is sent.
      const item = await library.getItem(id);
      if (item === undefined) throw itemNotFound(id);
      const size = Math.min(item.bytes, buffered.capacity);
      if (!buffered.tryAcquire(size)) {
        throw new AppError(
          "server_busy",
          `the server holds ${settings.maxBufferedBytes} bytes of images and uploads already (maxBufferedBytes, LONGCLIP_MAX_BUFFERED_BYTES); retry shortly`,
          { retryAfterSeconds: 1 },
        );
      }
      reply.raw.once("close", () => buffered.release(size));
      if (t !== undefined) {
        const frame = await library.readFrame(id, t);
        if (frame === undefined) throw itemNotFound(id);
        return reply
          .type("image/jpeg")
          .header("x-content-type-options", "nosniff")
          .header("cache-control", "private, no-cache")
          .send(frame);
      }
      const image = await library.readImage(id);
      if (image === undefined) throw itemNotFound(id);
      reply
        .header("x-content-type-options", "nosniff")
        .header("cache-control", "private, no-cache");
      // A video's original plays in the page's <video>, which asks for byte ranges.
      return sendBytes(request, reply, image.bytes, image.contentType);
    },
  };
}
