/** Blue/green reindex: start (or resume) a switch to another model, follow it, switch. */
import { existsSync } from "node:fs";
import path from "node:path";
import type { Schemas } from "../../api/spec.ts";
import { AppError } from "../../core/errors.ts";
import type { ReindexStatus } from "../../library/index.ts";
import { CONFIG_FILE } from "../../model/format.ts";
import type { ReindexTarget } from "../../store/types.ts";
import { isInside, realPathOrUndefined } from "../../util/paths.ts";
import type { Handlers, RouteContext } from "./context.ts";

function isoOrNull(ms: number | undefined): string | null {
  return ms === undefined ? null : new Date(ms).toISOString();
}

function toStatus(status: ReindexStatus): Schemas["ReindexStatus"] {
  return {
    state: status.state,
    model_id: status.modelId,
    dims: status.dims,
    switch: status.switchMode,
    done: status.done,
    total: status.total,
    failed: status.failed,
    failures: status.failures,
    started_at: new Date(status.startedAt).toISOString(),
    finished_at: isoOrNull(status.finishedAt),
    ...(status.error ? { error: status.error } : {}),
  };
}

/**
 * A run recorded by another node, as this node sees it; or a run that failed for its model
 * (recorded by whichever node ran it), with its error.
 */
function followed(target: ReindexTarget): Schemas["ReindexStatus"] {
  if (target.failed !== undefined) {
    return {
      ...followed({ ...target, failed: undefined }),
      state: "failed",
      finished_at: new Date(target.heartbeatAt).toISOString(),
      error: target.failed,
    };
  }
  return {
    state: "following",
    model_id: target.modelId,
    dims: target.dims,
    switch: target.switchMode,
    done: 0,
    total: 0,
    failed: 0,
    failures: [],
    started_at: new Date(target.startedAt).toISOString(),
    finished_at: null,
  };
}

export function reindexHandlers({ settings, library }: RouteContext): Handlers {
  /** The next model's directory: beside the served model (under its parent directory). */
  const modelDirOf = (requested: string): string => {
    const root = realPathOrUndefined(path.dirname(settings.modelDir));
    const resolved = root === undefined ? undefined : path.resolve(root, requested);
    const real = resolved === undefined ? undefined : realPathOrUndefined(resolved);
    if (root === undefined || resolved === undefined || !isInside(root, real ?? resolved)) {
      throw new AppError(
        "path_outside_models",
        `model_dir must be a model directory beside the served one (under ${path.dirname(settings.modelDir)}); copy or export the next model there.`,
      );
    }
    if (real === undefined || !existsSync(path.join(real, CONFIG_FILE))) {
      throw new AppError(
        "model_not_found",
        `No model in ${requested} (no ${CONFIG_FILE}); export one there with longclip export or longclip pull.`,
      );
    }
    return real;
  };

  return {
    async startReindex(request, reply) {
      const body = request.body as Schemas["ReindexRequest"];
      const status = await library.startReindex(modelDirOf(body.model_dir), body.switch ?? "auto");
      return reply.status(202).send(toStatus(status));
    },

    async getReindex() {
      const status = library.reindexStatus();
      if (status !== undefined && status.state !== "switched" && status.state !== "failed")
        return toStatus(status);
      const target = await library.reindexTarget();
      if (target !== undefined) {
        // a run this node ran and that failed for its model: its own status has its progress
        const own = target.failed !== undefined && status?.modelId === target.modelId;
        return own ? toStatus(status) : followed(target);
      }
      if (status !== undefined) return toStatus(status);
      // 404 here (no run to show); a switch with no run is the catalog's 409.
      throw new AppError(
        "no_reindex",
        "No reindex is in progress; start one with POST /reindex.",
        undefined,
        404,
      );
    },

    async switchReindex() {
      return toStatus(await library.switchReindex());
    },
  };
}
