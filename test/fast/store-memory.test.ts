/**
 * The storage contract (test/helpers/store-contract.ts) on the in-memory fake that the fast
 * unit tests use: it must behave as SQLite and Postgres do, or those tests prove nothing.
 */
import { MemoryDisk, MemoryStore } from "../fakes/memory-store.ts";
import { storeContract } from "../helpers/store-contract.ts";

let disk = new MemoryDisk();
storeContract("in-memory fake", {
  async open() {
    disk = new MemoryDisk();
    return new MemoryStore(disk);
  },
  async reopen() {
    return new MemoryStore(disk);
  },
});
