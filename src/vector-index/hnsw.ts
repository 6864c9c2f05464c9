/**
 * The approximate nearest-neighbour index: an hnswlib HierarchicalNSW in the cosine space,
 * keyed by the SQLite item label. hnswlib's cosine distance is `1 - cos`, so the score the
 * product reports is `1 - distance`. Deleted slots are reused (allowReplaceDeleted), and the
 * capacity doubles when the index is full.
 */
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
} from "node:fs";
import path from "node:path";
import hnswlib from "hnswlib-node";
import { efSearchFor } from "./ef-search.ts";

const { HierarchicalNSW } = hnswlib;

export interface HnswOptions {
  dims: number;
  m: number;
  efConstruction: number;
  /** 0: chosen per search from k and the graph's size (efSearchFor). */
  efSearch: number;
  /** Initial number of slots; grows by doubling. */
  capacity?: number;
  randomSeed?: number;
}

export interface Neighbour {
  label: number;
  /** Cosine similarity. */
  score: number;
}

const DEFAULT_CAPACITY = 1024;

/** hnswlib's file header: 13 fields (10 size_t, 2 int, 1 double), cur_element_count third. */
const HEADER_BYTES = 96;

export class HnswIndex {
  private readonly index: InstanceType<typeof HierarchicalNSW>;
  /** Labels present and not deleted; hnswlib's own id list also holds deleted ones. */
  private readonly live: Set<number>;
  private changed = false;

  private constructor(
    readonly options: HnswOptions,
    index: InstanceType<typeof HierarchicalNSW>,
    live: Set<number>,
  ) {
    this.index = index;
    this.live = live;
    this.index.setEf(efSearchFor(10, 0, options.efSearch));
  }

  static create(options: HnswOptions): HnswIndex {
    const index = new HierarchicalNSW("cosine", options.dims);
    index.initIndex({
      maxElements: Math.max(1, options.capacity ?? DEFAULT_CAPACITY),
      m: options.m,
      efConstruction: options.efConstruction,
      randomSeed: options.randomSeed ?? 100,
      allowReplaceDeleted: true,
    });
    return new HnswIndex(options, index, new Set());
  }

  /**
   * Reads a saved index. hnswlib does not record the dimension in a way it checks, so the
   * caller must only pass a file saved for the same model and dims (the file name says so).
   * Labels marked deleted in the file count as live until `remove` is called for them.
   */
  static load(file: string, options: HnswOptions): HnswIndex {
    const index = new HierarchicalNSW("cosine", options.dims);
    index.readIndexSync(file, true);
    return new HnswIndex(options, index, new Set(index.getIdsList()));
  }

  get size(): number {
    return this.live.size;
  }

  get capacity(): number {
    return this.index.getMaxElements();
  }

  /** True when the index changed since the last save. */
  get dirty(): boolean {
    return this.changed;
  }

  has(label: number): boolean {
    return this.live.has(label);
  }

  labels(): IterableIterator<number> {
    return this.live.values();
  }

  add(label: number, vector: Float32Array): void {
    if (vector.length !== this.options.dims) {
      throw new Error(`vector has ${vector.length} dims, the index ${this.options.dims}`);
    }
    if (this.live.has(label)) return;
    if (this.live.size >= this.index.getMaxElements()) {
      // A loaded index has exactly its element count as capacity, possibly 0, and hnswlib
      // frees its buffers on a resize to 0: never ask for less than the default.
      this.index.resizeIndex(Math.max(DEFAULT_CAPACITY, this.index.getMaxElements() * 2));
    }
    this.index.addPoint(Array.from(vector), label, true);
    this.live.add(label);
    this.changed = true;
  }

  /** Marks a label deleted; a label the index does not hold (or holds deleted) is ignored. */
  remove(label: number): void {
    try {
      this.index.markDelete(label);
      this.changed = true;
    } catch {
      // Not present or already deleted: the desired state holds either way.
    }
    this.live.delete(label);
  }

  /** The k nearest live labels by cosine similarity, best first; `accept` filters labels. */
  search(query: Float32Array, k: number, accept?: (label: number) => boolean): Neighbour[] {
    const n = Math.min(k, this.live.size);
    if (n <= 0) return [];
    this.index.setEf(efSearchFor(n, this.live.size, this.options.efSearch));
    const result =
      accept === undefined
        ? this.index.searchKnn(Array.from(query), n)
        : this.index.searchKnn(Array.from(query), n, accept);
    const out: Neighbour[] = [];
    for (let i = 0; i < result.neighbors.length; i++) {
      out.push({
        label: result.neighbors[i] as number,
        score: 1 - (result.distances[i] as number),
      });
    }
    return out;
  }

  /**
   * Atomic save: write a temporary file in the same directory, fsync it, rename it over the
   * target, fsync the directory. A crash leaves either the old file or the new one.
   */
  save(file: string): void {
    const dir = path.dirname(file);
    const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.tmp`);
    try {
      mkdirSync(dir, { recursive: true });
      this.index.writeIndexSync(tmp);
      fsyncPath(tmp);
      // hnswlib's writer does not report a full disk: check what it wrote before it replaces
      // a good file.
      this.checkWritten(tmp);
      renameSync(tmp, file);
    } catch (error) {
      rmSync(tmp, { force: true });
      throw error;
    }
    fsyncPath(dir);
    this.changed = false;
  }

  /**
   * A saved file holds the header, then per element its level-0 record (links, vector, label)
   * and a 4-byte upper-level size: its element count must match and its size reach that.
   */
  private checkWritten(file: string): void {
    const count = this.index.getCurrentCount();
    const maxM0 = 2 * this.options.m;
    const perElement = maxM0 * 4 + 4 + this.options.dims * 4 + 8 + 4;
    const expected = HEADER_BYTES + count * perElement;
    const size = statSync(file).size;
    let written = -1;
    if (size >= HEADER_BYTES) {
      const header = Buffer.alloc(HEADER_BYTES);
      const fd = openSync(file, "r");
      try {
        readSync(fd, header, 0, HEADER_BYTES, 0);
      } finally {
        closeSync(fd);
      }
      written = Number(header.readBigUInt64LE(16));
    }
    if (size < expected || written !== count) {
      throw Object.assign(
        new Error(
          `the HNSW index file written has ${size} bytes (${written} elements); ${count} elements need at least ${expected}: disk full? The previous file is kept.`,
        ),
        { code: "ENOSPC" },
      );
    }
  }
}

function fsyncPath(target: string): void {
  const fd = openSync(target, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
