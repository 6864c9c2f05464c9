/**
 * `longclip serve`: loads the model and the library, then serves the HTTP API. Every library
 * and server setting (src/core/setting-table.ts) is a flag over its LONGCLIP_* environment variable
 * over the default.
 */
import { existsSync } from "node:fs";
import type { AddressInfo } from "node:net";
import path from "node:path";
import type { Command } from "commander";
import type { FastifyBaseLogger } from "fastify";
import { AppError, isAppError } from "../core/errors.ts";
import { envName, type Settings, withApiKeyFile } from "../core/settings.ts";
import { Encoder } from "../encode/encoder.ts";
import { JobService } from "../jobs/service.ts";
import { startJobWorker } from "../jobs/worker.ts";
import { indexGalleryIfNew } from "../library/gallery.ts";
import { createLibrary } from "../library/index.ts";
import type { LongclipLibrary } from "../library/library.ts";
import { jpegDecoderDescription } from "../preprocess/jpeg-native.ts";
import { buildApp } from "../server/app.ts";
import { createLogger } from "../server/logger.ts";
import { addSettingOptions, settingsFromFlags } from "./settings.ts";
import { reportError } from "./usage.ts";

/** The message printed when the model directory is missing: how to get one, Python last. */
export function missingModelMessage(modelDir: string): string {
  const relative = path.relative(process.cwd(), modelDir);
  const shown = relative && !relative.startsWith("..") ? relative : modelDir;
  return [
    `No model at ${shown} (config.json not found). Get one without Python:`,
    `  longclip pull longclip-l --out ${shown}          (download and convert; see longclip pull --help)`,
    `  longclip export --checkpoint FILE.pt --out ${shown}   (convert a checkpoint you have)`,
    `or with the bundled training package: python3 -m training export --checkpoint FILE.pt --vocab bpe_simple_vocab_16e6.txt.gz --out ${shown}.`,
    `An existing model directory is given with --model DIR or ${envName("modelDir")}=DIR.`,
  ].join("\n");
}

/** A port the operating system accepts, checked before the model loads. */
function checkPort(port: number): void {
  if (port > 65535) {
    throw new AppError(
      "invalid_port",
      `port ${port} is out of range: give --port (${envName("port")}) from 0 to 65535; 0 picks a free port.`,
    );
  }
}

/** The listen error a person can act on: a port in use or refused, a host not of this machine. */
function listenError(error: unknown, settings: Settings): unknown {
  const code = (error as NodeJS.ErrnoException).code;
  const where = `${settings.host}:${settings.port}`;
  if (code === "EADDRINUSE") {
    return new AppError(
      "port_in_use",
      `${where} is in use by another program: stop it, or give another --port (0 picks a free one).`,
    );
  }
  if (code === "EACCES") {
    return new AppError(
      "invalid_port",
      `listening on ${where} is not permitted (ports below 1024 need privileges): give --port 1024 or above.`,
    );
  }
  if (code === "EADDRNOTAVAIL" || code === "ENOTFOUND") {
    return new AppError(
      "invalid_setting",
      `--host ${settings.host} is not an address of this machine: give 127.0.0.1 (this machine only) or 0.0.0.0 (every interface).`,
    );
  }
  return error;
}

/** The page's address as a browser on this host reaches it (a wildcard host is 127.0.0.1). */
export function browserUrl(app: { server: { address(): AddressInfo | string | null } }): string {
  const address = app.server.address();
  if (address === null || typeof address === "string") return String(address);
  const wildcard = address.address === "0.0.0.0" || address.address === "::";
  const host = wildcard ? "127.0.0.1" : address.address;
  return `http://${host.includes(":") ? `[${host}]` : host}:${address.port}/`;
}

/**
 * A library embedded by another model than the one given is re-embedded with it at once, in
 * the background, with a progress line per 10%: switching models is `serve --model NEW`.
 * Meanwhile /ready answers 503 with the progress and search answers 409 model_mismatch.
 */
function reembedInBackground(
  library: LongclipLibrary,
  modelId: string,
  log: FastifyBaseLogger,
): void {
  const started = performance.now();
  let lastStep = -1;
  log.info(
    { modelId },
    "the library holds embeddings of another model: re-embedding every item with this one (/ready says how far)",
  );
  library
    .reindex(
      (done, total) => {
        const step = total > 0 ? Math.floor((10 * done) / total) : 10;
        if (step <= lastStep) return;
        lastStep = step;
        log.info({ done, total }, `re-embedding: ${done} of ${total} items`);
      },
      (id, error) => log.warn({ id, code: error.code }, `re-embedding: ${error.message}`),
    )
    .then(
      (embedded) =>
        log.info(
          { embedded, seconds: Number(((performance.now() - started) / 1000).toFixed(1)) },
          "re-embedded the library: ready",
        ),
      (error: unknown) => {
        if (isAppError(error))
          log.warn({ code: error.code }, `re-embedding stopped: ${error.message}`);
        else log.error({ err: error }, "re-embedding failed");
      },
    );
}

/** Starts the server; resolves once it listens. Returns a function that shuts it down. */
export async function serve(given: Settings): Promise<() => Promise<void>> {
  const settings = withApiKeyFile(given);
  checkPort(settings.port);
  if (!existsSync(path.join(settings.modelDir, "config.json"))) {
    throw new AppError("model_not_found", missingModelMessage(settings.modelDir));
  }
  const log = createLogger(settings.logFormat);
  const encoder = await Encoder.load(settings.modelDir, settings, { logger: log });
  const library = await createLibrary(settings, encoder, {
    loadModel: (dir) => Encoder.load(dir, settings, { logger: log }),
    // Background work meets expected states too (a database away): those are warnings.
    onBackgroundError: (error) => {
      if (isAppError(error)) log.warn({ code: error.code }, error.message);
      else log.error({ err: error }, "background work failed");
    },
  });
  const jobs = new JobService(library.store.jobs, settings);
  const app = buildApp(settings, library, {
    tokenizer: encoder.tokenizer,
    jobs,
    loggerInstance: log,
  });
  const runner = startJobWorker(settings, library, (message, fields) =>
    app.log.info(fields ?? {}, message),
  );
  if (runner !== undefined) {
    jobs.onCreated = () => runner.poke();
    // Before the library closes: the chunk in progress finishes and is recorded.
    app.addHook("preClose", () => runner.stop());
  }
  // A database that is not reachable yet leaves the gallery for a later start.
  const gallery = library.ready()
    ? await indexGalleryIfNew(library, settings.modelDir, settings.maxBatchItems)
    : undefined;
  if (gallery) {
    app.log.info(
      {
        indexed: gallery.indexed,
        duplicate: gallery.duplicate,
        failed: gallery.failed.map((f) => `${f.id}: ${f.error?.code}`),
      },
      "new library: indexed the model's sample gallery",
    );
  }
  let address: string;
  try {
    address = await app.listen({ host: settings.host, port: settings.port });
  } catch (error) {
    // Closes the library (and stops the job worker) so the process can end.
    await app.close().catch(() => {});
    throw listenError(error, settings);
  }
  // Before "longclip serving": whoever stops the server once it says so gets a clean shutdown.
  const shutdownTimeoutMs = settings.shutdownTimeoutMs;
  let closing: Promise<void> | undefined;
  const shutdown = () => {
    // Stops accepting (and /ready answers 503), lets in-flight requests finish, then waits
    // for the library's running work and saves the index (library.close).
    closing ??= app.close();
    return closing;
  };
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.once(signal, () => {
      const started = performance.now();
      app.log.info({ signal, timeoutMs: shutdownTimeoutMs }, "shutting down");
      // Bounded: what has not finished by then is cut off. Acknowledged items are already
      // committed to SQLite, and the next start adds any the saved index lacks.
      setTimeout(() => {
        app.log.error({ timeoutMs: shutdownTimeoutMs }, "shutdown timed out; exiting");
        process.exit(1);
      }, shutdownTimeoutMs).unref();
      shutdown().then(
        () => {
          app.log.info({ ms: Math.round(performance.now() - started) }, "shut down");
          process.exit(0);
        },
        (error: unknown) => {
          app.log.error({ err: error }, "shutdown failed");
          process.exit(1);
        },
      );
    });
  }
  app.log.info(
    {
      address,
      modelId: encoder.modelId,
      device: encoder.stats().device,
      jpegDecoder: await jpegDecoderDescription(settings.nativeJpeg),
      items: library.ready() ? (await library.stats()).items : "unknown",
      backend: library.store.backend,
      ready: library.ready() ? true : library.notReadyReason(),
      jobWorker: runner === undefined ? "off" : "in this process",
      dataDir: settings.dataDir,
      apiKey: settings.apiKey ? "required on write endpoints" : "none",
    },
    "longclip serving",
  );
  app.log.info(`open ${browserUrl(app)} in your browser`);
  if (library.state() === "needs_reindex") reembedInBackground(library, encoder.modelId, app.log);
  if (process.argv.some((arg) => arg === "--api-key" || arg.startsWith("--api-key="))) {
    app.log.warn(
      "the API key was given with --api-key, which any local user can read in `ps`; use LONGCLIP_API_KEY or --api-key-file instead",
    );
  }
  return shutdown;
}

export function register(program: Command): void {
  const command = program
    .command("serve")
    .description(
      "Serve the HTTP API (openapi.yaml; docs at /docs) over the model and data directory",
    );
  addSettingOptions(command);
  command.action(async (flags: Record<string, string | undefined>) => {
    try {
      await serve(settingsFromFlags(flags));
    } catch (error) {
      process.exit(reportError(error));
    }
  });
}
