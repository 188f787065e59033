/**
 * Tracks which bytes of the log have been written (write calls completed), as a contiguous
 * frontier plus the completed ranges beyond it. Writes complete out of order (payload
 * chunks, headers and trailers of different frames race), and only the contiguous prefix
 * may be called written: a sync then makes exactly that prefix durable.
 */
export class WriteFrontier {
  /** Every byte below this offset has been written. */
  value: number;
  /** Completed ranges [from, to) above `value`, ascending and disjoint. */
  private ranges: Array<[number, number]> = [];

  constructor(value: number) {
    this.value = value;
  }

  add(from: number, to: number): void {
    if (to <= this.value) return;
    if (from <= this.value) {
      this.value = to;
      while (this.ranges.length > 0 && this.ranges[0][0] <= this.value) {
        this.value = Math.max(this.value, this.ranges[0][1]);
        this.ranges.shift();
      }
      return;
    }
    // Insert, merging with overlapping or touching neighbours.
    let i = 0;
    while (i < this.ranges.length && this.ranges[i][1] < from) i++;
    let j = i;
    while (j < this.ranges.length && this.ranges[j][0] <= to) {
      from = Math.min(from, this.ranges[j][0]);
      to = Math.max(to, this.ranges[j][1]);
      j++;
    }
    this.ranges.splice(i, j - i, [from, to]);
  }

  /** True if every byte of [from, to) has been written. */
  covers(from: number, to: number): boolean {
    if (to <= this.value) return true;
    for (const [a, b] of this.ranges) if (a <= from && to <= b) return true;
    return false;
  }

  /** Forgets everything written at or after `offset` (the log was truncated there). */
  truncate(offset: number): void {
    this.value = Math.min(this.value, offset);
    this.ranges = this.ranges.filter((r) => r[0] < offset).map((r): [number, number] => [r[0], Math.min(r[1], offset)]);
  }

  reset(offset: number): void {
    this.value = offset;
    this.ranges = [];
  }
}
