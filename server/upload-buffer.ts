/**
 * Client upload copies held by a follower until the leader's metadata for them arrives.
 * Bounded in bytes and in age: the oldest uploads are dropped first, and any upload older
 * than `maxAgeMs` is dropped (a copy that arrived after the follower already fetched the
 * bytes, or one for an entry that was never appended, is never taken). Dropping costs
 * bandwidth, never data: the follower fetches those bytes from a peer.
 */
export class UploadBuffer {
  /** Insertion order is arrival order, so the oldest is always first. */
  private items = new Map<string, { payload: Buffer; at: number }>();
  private bytes = 0;

  constructor(
    private readonly maxBytes: number,
    private readonly maxAgeMs = 30_000,
    private readonly now: () => number = () => performance.now(),
  ) {}

  put(id: string, payload: Buffer): void {
    this.take(id);
    const now = this.now();
    this.items.set(id, { payload, at: now });
    this.bytes += payload.length;
    for (const [oldest, item] of this.items) {
      const overBudget = this.bytes > this.maxBytes && this.items.size > 1;
      if (!overBudget && now - item.at <= this.maxAgeMs) break;
      this.take(oldest);
    }
  }

  /** Removes and returns the upload, if present. */
  take(id: string): Buffer | undefined {
    const item = this.items.get(id);
    if (!item) return undefined;
    this.items.delete(id);
    this.bytes -= item.payload.length;
    return item.payload;
  }

  get size(): number {
    return this.items.size;
  }

  get bufferedBytes(): number {
    return this.bytes;
  }
}
