/**
 * Path checks shared by everything that takes a client's path under the media root, and the
 * one way such a resolved path is opened for reading.
 */
import { constants, realpathSync } from "node:fs";
import { type FileHandle, open, readlink, realpath } from "node:fs/promises";
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
 * Where an open file actually is: on Linux what /proc says of the descriptor, so that a
 * directory on the path swapped for a link and back between the open and this check is still
 * seen; elsewhere the path resolved again.
 */
async function openedPath(handle: FileHandle, file: string): Promise<string> {
  try {
    return await readlink(`/proc/self/fd/${handle.fd}`);
  } catch {
    return realpath(file);
  }
}

/**
 * Opens an already resolved path (symlinks and `..` gone) for reading, checked on the open
 * file, so that nothing swapped in after a check is read: not through a symbolic link put in
 * its place (O_NOFOLLOW), not a directory, FIFO, socket or device (fstat on the handle;
 * O_NONBLOCK so opening a FIFO does not wait for a writer), and not somewhere else than the
 * path says (a directory on it that became a link). Throws FileRefusedError for those, the
 * errno error otherwise (ENOENT, EACCES).
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
    // A socket (ENXIO) or a device without a driver (ENODEV) cannot be opened for reading.
    if (code === "ENXIO" || code === "ENODEV") throw new FileRefusedError("not_regular");
    throw error;
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new FileRefusedError("not_regular");
    if ((await openedPath(handle, file)) !== file) throw new FileRefusedError("moved");
    return { handle, size: info.size };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/**
 * The bytes of a file opened by openResolvedFile, `size` as its check found. One byte more is
 * asked for, so that a file that grew since is noticed rather than read to its end; `changed`
 * says it grew or shrank after the check.
 */
export async function readOpenedFile(
  handle: FileHandle,
  size: number,
): Promise<{ bytes: Buffer; changed: boolean }> {
  const buffer = Buffer.allocUnsafe(size + 1);
  let filled = 0;
  while (filled < buffer.length) {
    const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return { bytes: buffer.subarray(0, Math.min(filled, size)), changed: filled !== size };
}
