/**
 * Store work run again after the database aborted it for a deadlock or a serialization
 * failure: such an abort undoes the whole transaction, so running it again is safe, and a
 * client never sees it. Counted since the process started, for /metrics.
 */
export type RetryReason = "deadlock" | "serialization_failure";

const counts: Record<RetryReason, number> = { deadlock: 0, serialization_failure: 0 };

export function countStoreRetry(reason: RetryReason): void {
  counts[reason]++;
}

export function storeRetries(): Readonly<Record<RetryReason, number>> {
  return { ...counts };
}
