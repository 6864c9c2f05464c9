/** Whether the interpreter scripts/python picks has torch (the Python exporter's tests need it). */
import { spawnSync } from "node:child_process";
import path from "node:path";
import { PROJECT_ROOT } from "../../src/core/settings.ts";

export const PYTHON = path.join(PROJECT_ROOT, "scripts", "python");
export const HAVE_PYTHON_TORCH = spawnSync(PYTHON, ["-c", "import torch"]).status === 0;
export const SKIP_WITHOUT_PYTHON = HAVE_PYTHON_TORCH
  ? false
  : "skipped: no Python with torch (scripts/python); install Debian's python3-torch";
