/** What the HTTP layer and the CLI call for jobs: create (walks the paths), read, list, cancel. */
import type { JobFailure, JobStore, JobSummary } from "../store/jobs.ts";
import { createJob, type JobLimits, type JobRequest } from "./create.ts";

/** Failed files shown with a job. */
const FAILURES_SHOWN = 20;

export interface JobDetail extends JobSummary {
  failures: JobFailure[];
}

export class JobService {
  /** Called after a job is created, e.g. to wake the in-process worker. */
  onCreated: (() => void) | undefined;

  constructor(
    private readonly jobs: JobStore,
    private readonly limits: JobLimits,
  ) {}

  async create(request: JobRequest): Promise<JobSummary> {
    const job = await createJob(this.jobs, request, this.limits);
    this.onCreated?.();
    return job;
  }

  async get(id: string): Promise<JobDetail | undefined> {
    const job = await this.jobs.get(id);
    if (job === undefined) return undefined;
    return { ...job, failures: await this.jobs.failures(id, FAILURES_SHOWN) };
  }

  list(limit: number): Promise<JobSummary[]> {
    return this.jobs.list(limit);
  }

  cancel(id: string): Promise<JobSummary | undefined> {
    return this.jobs.cancel(id);
  }
}
