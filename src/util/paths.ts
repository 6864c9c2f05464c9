/**
 * Path checks shared by everything that takes a client's path under the media root, and the
 * one way such a resolved path is opened for reading.
 */
import { constants, realpathSync } from "node:fs";
import { type FileHandle, open, realpath } from "node:fs/promises";
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

/** Why a resolved path was not opened: it is no longer the regular file it resolved to. */
export class FileRefusedError extends Error {
  constructor(readonly reason: "symlink" | "not_regular" | "moved") {
    super(`file refused: ${reason}`);
  }
}

/**
 * Opens an already resolved path (symlinks and `..` gone) for reading, checked on the open
 * file, so that nothing swapped in after a check is read: not through a symbolic link put in
 * its place (O_NOFOLLOW), not a directory, FIFO or device (fstat on the handle; O_NONBLOCK so
 * opening a FIFO does not wait for a writer), and not through a directory on its path that
 * became a link. Throws FileRefusedError for those, the errno error otherwise (ENOENT, EACCES).
 */
export async function openResolvedFile(
  file: string,
): Promise<{ handle: FileHandle; size: number }> {
  let handle: FileHandle;
  try {
    handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ELOOP" || code === "EMLINK") throw new FileRefusedError("symlink");
    throw error;
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new FileRefusedError("not_regular");
    if ((await realpath(file)) !== file) throw new FileRefusedError("moved");
    return { handle, size: info.size };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/**
 * The bytes of a file opened by openResolvedFile, `size` as its check found; one byte more is
 * asked for, so that a file that grew since is noticed (`grew`) rather than read to its end.
 */
export async function readOpenedFile(
  handle: FileHandle,
  size: number,
): Promise<{ bytes: Buffer; grew: boolean }> {
  const buffer = Buffer.allocUnsafe(size + 1);
  let filled = 0;
  while (filled < buffer.length) {
    const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return { bytes: buffer.subarray(0, Math.min(filled, size)), grew: filled > size };
}
