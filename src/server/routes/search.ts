/** Search by text or by image, and the tokenizer view the page uses to show what is read. */
import type { Schemas } from "../../api/spec.ts";
import { AppError } from "../../core/errors.ts";
import type { Box, ComposePart, Filter, Hit } from "../../core/types.ts";
import type { Explanation } from "../../library/explain/explain.ts";
import { parseJson, readMultipart } from "../multipart.ts";
import { assertValid } from "../validation.ts";
import { keptChars } from "../web.ts";
import { type Handlers, imageUrl, type RouteContext, tookMs } from "./context.ts";

/** The library's composition parts from the API's (item_id → itemId). */
function composeParts(parts: Schemas["ComposePart"][] | undefined): ComposePart[] | undefined {
  return parts?.map((part) => ({
    weight: part.weight,
    ...(part.text !== undefined ? { text: part.text } : {}),
    ...(part.item_id !== undefined ? { itemId: part.item_id } : {}),
  }));
}

function toExplainResponse(explanation: Explanation): Schemas["ExplainResponse"] {
  const { rows, columns, scores } = explanation;
  return {
    item_id: explanation.itemId,
    model_id: explanation.modelId,
    kind: explanation.kind,
    zoom: explanation.zoom,
    grid: { rows, columns },
    scores: Array.from({ length: rows }, (_, r) =>
      Array.from(scores.subarray(r * columns, (r + 1) * columns)),
    ),
    min: explanation.min,
    max: explanation.max,
    score: explanation.score,
    peak: explanation.peak,
    crop: explanation.crop,
    image: explanation.image,
    query: explanation.query,
    ...(explanation.t !== undefined ? { t: explanation.t } : {}),
  };
}

function toHit(hit: Hit): Schemas["Hit"] {
  const out: Schemas["Hit"] = {
    id: hit.id,
    score: hit.score,
    rank: hit.rank,
    metadata: hit.metadata,
    image_url: imageUrl(hit.id),
  };
  if (hit.keywordRank !== undefined) out.keyword_rank = hit.keywordRank;
  if (hit.keywordScore !== undefined) out.keyword_score = hit.keywordScore;
  if (hit.vectorRank !== undefined) out.vector_rank = hit.vectorRank;
  if (hit.fusedScore !== undefined) out.fused_score = hit.fusedScore;
  if (hit.match !== undefined) out.match = hit.match;
  return out;
}

export function searchHandlers({
  settings,
  library,
  metrics,
  options,
  validators,
}: RouteContext): Handlers {
  const validFilter = validators.component("Filter");
  const validBox = validators.component("Box");
  // The library checks search inputs itself (empty query, length, k); only /tokenize, which
  // does not reach the library, needs the length limit here.
  const checkQueryLength = (text: string) => {
    if (text.length > settings.maxQueryChars) {
      throw new AppError(
        "query_too_long",
        `the text has ${text.length} characters; the limit is ${settings.maxQueryChars} (maxQueryChars, LONGCLIP_MAX_QUERY_CHARS)`,
      );
    }
  };

  return {
    async searchText(request) {
      const body = request.body as Schemas["SearchRequest"];
      const started = performance.now();
      const options = {
        k: body.k,
        exact: body.exact,
        truncate: body.truncate,
        ...(body.offset !== undefined ? { offset: body.offset } : {}),
        ...(body.min_score !== undefined ? { minScore: body.min_score } : {}),
        ...(body.long_query !== undefined ? { longQuery: body.long_query } : {}),
        ...(body.filter ? { filter: body.filter } : {}),
        ...(body.mode ? { mode: body.mode } : {}),
        ...(body.text_fields ? { textFields: body.text_fields } : {}),
      };
      if ((body.query === undefined) === (body.compose === undefined)) {
        throw new AppError(
          "validation_failed",
          "body needs exactly one of query (a text) and compose (weighted texts and items)",
        );
      }
      const compose = composeParts(body.compose);
      const result = await metrics.time("search_text", () =>
        compose !== undefined
          ? library.searchCompose(compose, options)
          : library.searchText(body.query as string, options),
      );
      return {
        hits: result.hits.map(toHit),
        query: result.query,
        took_ms: tookMs(started),
      } satisfies Schemas["SearchResponse"];
    },

    async explainMatch(request, reply) {
      const body = request.body as Schemas["ExplainRequest"];
      const compose = composeParts(body.compose);
      const query = {
        ...(body.query !== undefined ? { text: body.query } : {}),
        ...(compose !== undefined ? { compose } : {}),
        options: {
          ...(body.truncate !== undefined ? { truncate: body.truncate } : {}),
          ...(body.long_query !== undefined ? { longQuery: body.long_query } : {}),
        },
        ...(body.zoom !== undefined ? { zoom: body.zoom } : {}),
        ...(body.t !== undefined ? { t: body.t } : {}),
      };
      if (body.format === "png") {
        const png = await metrics.time("explain", () =>
          library.explainOverlay(body.item_id, query),
        );
        return reply.type("image/png").header("cache-control", "private, no-cache").send(png);
      }
      const explanation = await metrics.time("explain", () => library.explain(body.item_id, query));
      return toExplainResponse(explanation);
    },

    async searchImage(request) {
      const query = request.query as {
        k: number;
        exact: boolean;
        offset: number;
        min_score?: number;
      };
      const started = performance.now();
      const form = await readMultipart(request, settings, {
        fileField: "image",
        maxFiles: 1,
        allowedFields: ["filter", "item_id", "box"],
      });
      /** The one value of a JSON field (a part sent as application/json arrives parsed). */
      const jsonField = (name: string): unknown => {
        const values = form.fields.get(name) ?? [];
        if (values.length > 1) {
          throw new AppError("validation_failed", `send at most one "${name}" field`);
        }
        return typeof values[0] === "string" ? parseJson(values[0], name) : values[0];
      };
      const filter = jsonField("filter");
      if (filter !== undefined) assertValid(validFilter, filter, "filter");
      const box = jsonField("box");
      if (box !== undefined && !validBox(box)) {
        throw new AppError(
          "invalid_box",
          `box must be a JSON object {"x", "y", "width", "height"} of whole pixels (x, y ≥ 0; width, height ≥ 1), not ${JSON.stringify(box)}`,
        );
      }
      const itemIds = form.fields.get("item_id") ?? [];
      const file = form.files[0];
      if ((file === undefined) === (itemIds.length === 0) || itemIds.length > 1) {
        throw new AppError(
          "validation_failed",
          'send the query image as one file in the field "image", or one stored item\'s id in the field "item_id"',
        );
      }
      if (file?.tooLarge) {
        throw new AppError(
          "image_too_large",
          `the image is larger than ${settings.maxImageBytes} bytes (maxImageBytes, LONGCLIP_MAX_IMAGE_BYTES)`,
        );
      }
      const image = file !== undefined ? file.bytes : { itemId: String(itemIds[0]) };
      const result = await metrics.time("search_image", () =>
        library.searchImage(image, {
          k: query.k,
          exact: query.exact,
          offset: query.offset,
          ...(query.min_score !== undefined ? { minScore: query.min_score } : {}),
          ...(filter !== undefined ? { filter: filter as Filter } : {}),
          ...(box !== undefined ? { box: box as Box } : {}),
        }),
      );
      return {
        hits: result.hits.map(toHit),
        took_ms: tookMs(started),
      } satisfies Schemas["ImageSearchResponse"];
    },

    async duplicates(request) {
      const query = request.query as { threshold: number; cursor?: string; limit: number };
      const page = await metrics.time("duplicates", () =>
        library.duplicates({
          threshold: query.threshold,
          cursor: query.cursor ?? null,
          limit: query.limit,
        }),
      );
      return {
        groups: page.groups.map((group) => ({ ids: group.ids, max_score: group.maxScore })),
        next_cursor: page.nextCursor,
        threshold: query.threshold,
      } satisfies Schemas["DuplicatesResponse"];
    },

    async tokenize(request) {
      const { text } = request.body as Schemas["TokenizeRequest"];
      const tokenizer = options.tokenizer;
      if (tokenizer === undefined) {
        throw new AppError(
          "not_ready",
          "this server was started without a tokenizer; restart it with a model directory",
        );
      }
      checkQueryLength(text);
      const tokens = tokenizer.encode(text);
      return {
        ids: Array.from(tokens.ids),
        tokens: tokens.tokens,
        truncated: tokens.truncated,
        max_tokens: tokenizer.contextLength,
        kept_chars: keptChars(tokenizer, text),
      } satisfies Schemas["TokenizeResponse"];
    },
  };
}
