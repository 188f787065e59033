/**
 * Client upload copies held by a follower until the leader's metadata for them arrives.
 * Bounded in bytes: the oldest uploads are dropped first (the follower then fetches those
 * bytes from a peer, so dropping costs bandwidth, never data).
 */
export class UploadBuffer {
  private items = new Map<string, Buffer>();
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  put(id: string, payload: Buffer): void {
    this.take(id);
    this.items.set(id, payload);
    this.bytes += payload.length;
    while (this.bytes > this.maxBytes && this.items.size > 1) {
      const [oldest] = this.items.keys();
      this.take(oldest);
    }
  }

  /** Removes and returns the upload, if present. */
  take(id: string): Buffer | undefined {
    const b = this.items.get(id);
    if (b) {
      this.items.delete(id);
      this.bytes -= b.length;
    }
    return b;
  }

  get size(): number {
    return this.items.size;
  }
}
