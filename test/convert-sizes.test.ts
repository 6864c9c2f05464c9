/**
 * Sizes inside untrusted weights (issue 24, finding 5): `longclip export` on crafted files
 * (tools/bench/crafted-checkpoints.ts: zip bombs, stride-0 views, storages far larger than their
 * tensors, a billion layers in a config.json, a gzip-bombed merges file, a pickle of millions of
 * objects, NaN weights that fail the self-check) refuses each with its code, peaks under
 * 512 MB of memory as the export process itself reports it, and leaves nothing in `--out`.
 */
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import path from "node:path";
import { after, test } from "node:test";
import { runExport, writeCraftedCheckpoints } from "../tools/bench/crafted-checkpoints.ts";
import { tempDir } from "./helpers/library-fixtures.ts";

const dir = tempDir("convert-sizes-");
after(() => rmSync(dir, { recursive: true, force: true }));

/** The ceiling issue 24 sets for any crafted file (a bare `longclip export` is about 130 MB). */
const PEAK_RSS_LIMIT_MB = 512;

test("crafted checkpoints are refused before their sizes are allocated; --out is left empty", async (t) => {
  const crafted = writeCraftedCheckpoints(path.join(dir, "files"));
  const failures: string[] = [];
  for (const [i, file] of crafted.entries()) {
    const out = path.join(dir, `out-${i}`);
    const run = await runExport(file, out, 90_000);
    t.diagnostic(
      `${file.name}: ${run.code ?? `exit ${String(run.exit)}`}, peak ${run.peakRssMb?.toFixed(0) ?? "?"} MB, ${run.seconds.toFixed(1)} s, ${run.leftBytes} bytes left`,
    );
    if (run.code !== file.code)
      failures.push(`${file.name}: ${run.code ?? run.exit}, not ${file.code}`);
    if (!(run.peakRssMb !== undefined && run.peakRssMb < PEAK_RSS_LIMIT_MB)) {
      failures.push(`${file.name}: peak RSS ${run.peakRssMb ?? "unknown (killed)"} MB`);
    }
    if (run.leftBytes !== 0) failures.push(`${file.name}: ${run.leftBytes} bytes left in --out`);
  }
  assert.deepEqual(failures, []);
});
