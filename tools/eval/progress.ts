/** Progress for long embedding runs: a bar on a terminal, sparse log lines otherwise. */
import cliProgress from "cli-progress";
import type { ProgressBar, ProgressFactory } from "./bench.ts";

export function terminalProgress(
  stream: NodeJS.WriteStream = process.stderr,
  log: (line: string) => void = (line) => stream.write(`${line}\n`),
): ProgressFactory {
  return (label: string, total: number): ProgressBar => {
    if (stream.isTTY) {
      const bar = new cliProgress.SingleBar(
        { stream, format: `${label.padEnd(8)} [{bar}] {value}/{total} | {eta}s left` },
        cliProgress.Presets.shades_classic,
      );
      bar.start(total, 0);
      return {
        increment: (by) => bar.increment(by),
        stop: () => bar.stop(),
      };
    }
    // Without a terminal (CI, pipes): a line at every tenth of the work.
    let done = 0;
    let reported = 0;
    const started = Date.now();
    return {
      increment(by: number) {
        done += by;
        if (total > 0 && (Math.floor((10 * done) / total) > reported || done === total)) {
          reported = Math.floor((10 * done) / total);
          const seconds = ((Date.now() - started) / 1000).toFixed(1);
          log(`${label}: ${done}/${total} (${seconds}s)`);
        }
      },
      stop() {},
    };
  };
}
