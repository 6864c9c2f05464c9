/** Jobs: folders or files under the media root, indexed in the background by workers. */
import type { Schemas } from "../../api/spec.ts";
import { AppError } from "../../core/errors.ts";
import type { JobSummary } from "../../store/jobs.ts";
import { type Handlers, idParam, type RouteContext } from "./context.ts";

function isoOrNull(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

function toJob(job: JobSummary): Schemas["Job"] {
  return {
    id: job.id,
    state: job.state,
    created_at: new Date(job.createdAt).toISOString(),
    started_at: isoOrNull(job.startedAt),
    finished_at: isoOrNull(job.finishedAt),
    counts: job.counts,
    failed_codes: job.failedCodes,
    rate: job.rate,
    eta_seconds: job.etaSeconds,
  };
}

export function jobHandlers({ options }: RouteContext): Handlers {
  const jobService = () => {
    if (options.jobs === undefined) {
      throw new AppError("not_ready", "this server was started without jobs");
    }
    return options.jobs;
  };
  const jobNotFound = (id: string) =>
    new AppError("not_found", `no job with id "${id}"; GET /jobs lists the jobs`);

  return {
    async createJob(request, reply) {
      const body = request.body as Schemas["JobRequest"];
      const job = await jobService().create(body);
      return reply.status(202).send(toJob(job));
    },

    async listJobs(request) {
      const { limit } = request.query as { limit: number };
      const jobs = await jobService().list(limit);
      return { jobs: jobs.map(toJob) } satisfies Schemas["JobList"];
    },

    async getJob(request) {
      const id = idParam(request);
      const job = await jobService().get(id);
      if (job === undefined) throw jobNotFound(id);
      return { ...toJob(job), failures: job.failures } satisfies Schemas["Job"];
    },

    async cancelJob(request) {
      const id = idParam(request);
      const job = await jobService().cancel(id);
      if (job === undefined) throw jobNotFound(id);
      return toJob(job);
    },
  };
}
