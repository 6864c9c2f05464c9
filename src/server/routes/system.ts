/** Liveness, readiness, statistics, Prometheus metrics and the OpenAPI document. */
import type { Schemas } from "../../api/spec.ts";
import { AppError } from "../../core/errors.ts";
import type { Handlers, RouteContext } from "./context.ts";

export function systemHandlers({ library, metrics, spec, isClosing }: RouteContext): Handlers {
  return {
    async health() {
      return { status: "ok" } satisfies Schemas["Health"];
    },

    async ready() {
      if (isClosing() || !library.ready()) {
        throw new AppError(
          "not_ready",
          isClosing()
            ? "the server is shutting down"
            : `not ready: ${library.notReadyReason() ?? "the library is starting"}`,
          { retryAfterSeconds: 5 },
        );
      }
      return { status: "ready" } satisfies Schemas["Ready"];
    },

    async stats() {
      const s = await library.stats();
      return {
        items: s.items,
        model_id: s.modelId,
        dims: s.dims,
        device: s.device,
        backend: s.backend,
        index: {
          type: s.index.type,
          space: s.index.space,
          m: s.index.m,
          ef_construction: s.index.efConstruction,
          ef_search: s.index.efSearch,
          capacity: s.index.capacity,
          size: s.index.size,
        },
        queue: { pending: s.queue.pending, capacity: s.queue.capacity },
      } satisfies Schemas["Stats"];
    },

    async metrics(_request, reply) {
      return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
    },

    async openapi() {
      return spec;
    },
  };
}
