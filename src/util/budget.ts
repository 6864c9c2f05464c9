/**
 * A counting semaphore over an amount (pixels being decoded, bytes held in memory): `acquire`
 * waits, first come first served, until the amount is free. A request larger than the whole
 * budget is clamped to it, so it runs alone rather than never. Waiters are bounded: past
 * `maxWaiting` the caller gets `busy()` at once (a 429 with a retry hint) instead of a place.
 */
import type { AppError } from "../core/errors.ts";

export class Budget {
  private used = 0;
  private readonly waiting: { amount: number; grant: () => void }[] = [];

  constructor(
    readonly capacity: number,
    private readonly maxWaiting: number,
    private readonly busy: () => AppError,
  ) {}

  /** Amount held now. */
  get inUse(): number {
    return this.used;
  }

  /** Takes `amount` (at least 1, at most the capacity); the returned function gives it back once. */
  async acquire(amount: number): Promise<() => void> {
    const take = Math.min(this.capacity, Math.max(1, Math.ceil(amount)));
    if (this.waiting.length === 0 && this.used + take <= this.capacity) {
      this.used += take;
    } else {
      if (this.waiting.length >= this.maxWaiting) throw this.busy();
      await new Promise<void>((grant) => this.waiting.push({ amount: take, grant }));
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.used -= take;
      this.grantWaiting();
    };
  }

  /** Takes `amount` only if it is free now (no waiting); false when it is not. */
  tryAcquire(amount: number): boolean {
    if (this.waiting.length > 0 || this.used + amount > this.capacity) return false;
    this.used += amount;
    return true;
  }

  release(amount: number): void {
    this.used -= amount;
    this.grantWaiting();
  }

  private grantWaiting(): void {
    for (let next = this.waiting[0]; next !== undefined; next = this.waiting[0]) {
      if (this.used + next.amount > this.capacity) return;
      this.waiting.shift();
      this.used += next.amount;
      next.grant();
    }
  }
}
