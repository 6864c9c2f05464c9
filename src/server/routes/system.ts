/** Liveness, readiness, statistics, Prometheus metrics and the OpenAPI document. */
import type { Schemas } from "../../api/spec.ts";
import { AppError } from "../../core/errors.ts";
import type { Library } from "../../library/types.ts";
import type { Handlers, RouteContext } from "./context.ts";

/** `database` of /ready and /stats: the store's servers, absent for the embedded store. */
function databaseServers(library: Library): { database?: Schemas["DatabaseServers"] } {
  const servers = library.databaseServers();
  if (servers.length === 0) return {};
  return {
    database: servers.map((server) => ({
      name: server.name,
      role: server.role,
      state: server.state,
      ...(server.reason === undefined ? {} : { reason: server.reason }),
      ...(server.lagBytes === undefined ? {} : { lag_bytes: server.lagBytes }),
      ...(server.reads === undefined ? {} : { reads: server.reads }),
    })),
  };
}

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
      const database = databaseServers(library);
      return { status: "ready", ...database } satisfies Schemas["Ready"];
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
        ...databaseServers(library),
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
