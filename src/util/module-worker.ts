/**
 * Starts a worker thread from a module next to the caller, from the TypeScript sources (tsx)
 * or from the compiled dist/ alike: workers do not inherit loaders (privatenumber/tsx#354),
 * so under tsx a small bootstrap registers tsx before it imports the entry.
 */
import { Worker, type WorkerOptions } from "node:worker_threads";
import { workerExecArgv } from "./exec-argv.ts";

/** `name` is the entry's file name without extension, resolved next to `callerUrl`. */
export function startModuleWorker(
  callerUrl: string,
  name: string,
  options: Omit<WorkerOptions, "execArgv" | "eval"> = {},
): Worker {
  const source = callerUrl.endsWith(".ts");
  const entry = new URL(`./${name}${source ? ".ts" : ".js"}`, callerUrl);
  const execArgv = workerExecArgv();
  if (!source) return new Worker(entry, { ...options, execArgv });
  const bootstrap = [
    `const tsx = await import(${JSON.stringify(import.meta.resolve("tsx/esm/api"))});`,
    "tsx.register();",
    `await import(${JSON.stringify(entry.href)});`,
  ].join("\n");
  return new Worker(new URL(`data:text/javascript,${encodeURIComponent(bootstrap)}`), {
    ...options,
    execArgv,
  });
}
