/**
 * The flags a worker thread needs from its parent: only the module loaders (tsx when running
 * the sources). Worker threads refuse many process-wide flags, and test runners add their own
 * (Node 24's passes coverage and inspector flags), so everything else is left out.
 */
const LOADER_FLAGS = new Set(["--import", "--require", "-r", "--loader", "--experimental-loader"]);

export function workerExecArgv(execArgv: readonly string[] = process.execArgv): string[] {
  const kept: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const arg = execArgv[i] as string;
    const name = arg.split("=")[0] as string;
    if (!LOADER_FLAGS.has(name)) continue;
    kept.push(arg);
    if (!arg.includes("=") && i + 1 < execArgv.length) kept.push(execArgv[++i] as string);
  }
  return kept;
}
