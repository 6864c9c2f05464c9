/**
 * Uploaded originals, content-addressed: dataDir/originals/ab/abcdef... (the sha256 of the
 * bytes). A file is written to a temporary name, fsynced, renamed into place and its directory
 * fsynced before the SQLite commit that refers to it, so a committed item always has its bytes.
 * A crash between the two leaves an unreferenced file, which a later upload of the same bytes
 * simply reuses.
 */
import { constants, readdirSync, rmSync, statSync } from "node:fs";
import { access, mkdir, open, readFile, rename, rm } from "node:fs/promises";
import path from "node:path";

/** A temporary file this old is an orphan of a crashed write, not one in progress. */
export const ORPHAN_TMP_AGE_MS = 60 * 60 * 1000;

export class Originals {
  constructor(readonly root: string) {}

  /**
   * Removes `*.tmp` files a crash left behind (older than `minAgeMs`, so a write in progress
   * in another process is never touched); returns how many went.
   */
  sweepOrphans(minAgeMs = ORPHAN_TMP_AGE_MS, now = Date.now()): number {
    let removed = 0;
    let shards: string[];
    try {
      shards = readdirSync(this.root);
    } catch {
      return 0;
    }
    for (const shard of shards) {
      const dir = path.join(this.root, shard);
      let names: string[];
      try {
        names = readdirSync(dir);
      } catch {
        continue;
      }
      for (const name of names) {
        if (!name.endsWith(".tmp")) continue;
        const file = path.join(dir, name);
        try {
          if (now - statSync(file).mtimeMs < minAgeMs) continue;
          rmSync(file, { force: true });
          removed++;
        } catch {
          // Gone already, or not ours to remove: nothing to do.
        }
      }
    }
    return removed;
  }

  pathOf(sha256: string): string {
    return path.join(this.root, sha256.slice(0, 2), sha256.slice(2));
  }

  async write(sha256: string, bytes: Buffer): Promise<void> {
    const target = this.pathOf(sha256);
    if (await exists(target)) return;
    const dir = path.dirname(target);
    await mkdir(dir, { recursive: true });
    const tmp = `${target}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
    try {
      const file = await open(tmp, "w");
      try {
        await file.writeFile(bytes);
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(tmp, target);
    } catch (error) {
      await rm(tmp, { force: true });
      throw error;
    }
    const handle = await open(dir, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  read(sha256: string): Promise<Buffer> {
    return readFile(this.pathOf(sha256));
  }

  /**
   * Synchronous on purpose: once the item's row is gone, the same bytes may be uploaded again,
   * and that upload must not find the old file (and skip writing it) just before it vanishes.
   */
  remove(sha256: string): void {
    rmSync(this.pathOf(sha256), { force: true });
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await access(file, constants.F_OK);
    return true;
  } catch {
    return false;
  }
}
