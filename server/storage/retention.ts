/**
 * Retention policy: which of the oldest sealed segments may go. Segments are only ever
 * deleted as a prefix of the log (oldest first), so the log stays contiguous.
 */

export interface RetentionPolicy {
  /** Delete sealed segments last written longer ago than this. */
  maxAgeMs?: number;
  /** Delete the oldest sealed segments while the log holds more bytes than this. */
  maxBytes?: number;
  /** Never delete bytes at or above this offset (e.g. the commit end). */
  limit?: number;
}

export interface SealedSegment {
  base: number;
  /** One past its last byte (the next segment's base). */
  end: number;
}

/**
 * How many of the oldest `sealed` segments the policy deletes, given the log's total size.
 * `mtimeMs(i)` is asked lazily, oldest first, and only while age could still matter.
 */
export async function segmentsToDelete(
  sealed: readonly SealedSegment[],
  totalBytes: number,
  policy: RetentionPolicy,
  now: number,
  mtimeMs: (i: number) => Promise<number>,
): Promise<number> {
  let n = 0;
  let bytes = totalBytes;
  for (; n < sealed.length; n++) {
    const s = sealed[n];
    if (policy.limit !== undefined && s.end > policy.limit) break;
    let drop = policy.maxBytes !== undefined && bytes > policy.maxBytes;
    if (!drop && policy.maxAgeMs !== undefined) drop = now - (await mtimeMs(n)) > policy.maxAgeMs;
    if (!drop) break;
    bytes -= s.end - s.base;
  }
  return n;
}
