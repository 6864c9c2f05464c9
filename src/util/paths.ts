/** Path containment checks shared by everything that takes a client's path under the media root. */
import { realpathSync } from "node:fs";
import path from "node:path";

/** True when `target` lies strictly below `root` (both absolute, already resolved). */
export function isInside(root: string, target: string): boolean {
  const rel = path.relative(root, target);
  return rel !== "" && !rel.startsWith(`..${path.sep}`) && rel !== ".." && !path.isAbsolute(rel);
}

/** The real path of `file`, or `undefined` when it does not exist (or cannot be resolved). */
export function realPathOrUndefined(file: string): string | undefined {
  try {
    return realpathSync(file);
  } catch {
    return undefined;
  }
}

/** The real path of `file`, or `file` itself when it cannot be resolved. */
export function realOrSelf(file: string): string {
  return realPathOrUndefined(file) ?? file;
}
