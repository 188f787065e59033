/**
 * Per-segment frame index: the start of every frame, as a u32 offset relative to the
 * segment base, ascending. Reads use it to check that an offset is a frame start and to
 * find whole-frame boundaries without touching the segment.
 *
 * On disk (`<base>.idx`): the u32 LE entries back to back. The active segment's file grows
 * by appends at checkpoints (the checkpoint records how many entries it vouches for and
 * their CRC). A sealed segment's file is complete and ends with a footer:
 *
 * ```
 * 0  4  magic 0x5849474C ("LGIX")
 * 4  4  entry count
 * 8  4  CRC32C of the entry bytes
 * 12 4  CRC32C of footer bytes 0..11
 * ```
 *
 * Nothing here is fsynced: a missing, short or damaged index is rebuilt from the segment.
 */
import os from 'node:os';
import { HEADER_SIZE, crc32c, decodeHeader, frameSize } from '../../spec/frame.ts';
import { scanFrames } from '../../spec/recovery.ts';

const LITTLE_ENDIAN = os.endianness() === 'LE';
export const INDEX_FOOTER_SIZE = 16;
const INDEX_MAGIC = 0x5849474c;

/** A growable, ascending list of frame starts relative to a segment base. */
export class FrameIndex {
  private arr: Uint32Array;
  private n: number;

  constructor(entries?: Uint32Array) {
    this.n = entries ? entries.length : 0;
    this.arr = new Uint32Array(Math.max(1024, this.n));
    if (entries) this.arr.set(entries);
  }

  get count(): number {
    return this.n;
  }

  at(i: number): number {
    return this.arr[i];
  }

  last(): number | undefined {
    return this.n > 0 ? this.arr[this.n - 1] : undefined;
  }

  push(rel: number): void {
    if (this.n === this.arr.length) {
      const grown = new Uint32Array(this.arr.length * 2);
      grown.set(this.arr);
      this.arr = grown;
    }
    this.arr[this.n++] = rel;
  }

  /** Keeps the first `count` entries. */
  truncate(count: number): void {
    if (count < this.n) this.n = count;
  }

  /** Number of entries below `rel` (the position `rel` has or would have). */
  countBelow(rel: number): number {
    let lo = 0, hi = this.n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.arr[mid] < rel) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  /** Position of `rel` if a frame starts there, else -1. */
  find(rel: number): number {
    const i = this.countBelow(rel);
    return i < this.n && this.arr[i] === rel ? i : -1;
  }

  /**
   * Entries [from, to) as little-endian bytes. A view when the platform is little-endian:
   * use it before the index changes again (hash it, or write a copy).
   */
  view(from: number, to: number): Buffer {
    if (LITTLE_ENDIAN) return Buffer.from(this.arr.buffer, this.arr.byteOffset + from * 4, (to - from) * 4);
    const out = Buffer.alloc((to - from) * 4);
    for (let i = from; i < to; i++) out.writeUInt32LE(this.arr[i], (i - from) * 4);
    return out;
  }

  /** Entries [from, to) as a fresh little-endian buffer, safe to write asynchronously. */
  copy(from: number, to: number): Buffer {
    return Buffer.from(this.view(from, to));
  }
}

/** Decodes `count` little-endian u32 entries from `buf`. */
export function entriesFromBytes(buf: Buffer, count: number): Uint32Array {
  const out = new Uint32Array(count);
  // Copy byte-wise into the array: `buf` may not be 4-byte aligned (pooled buffers).
  if (LITTLE_ENDIAN) Buffer.from(out.buffer).set(buf.subarray(0, count * 4));
  else for (let i = 0; i < count; i++) out[i] = buf.readUInt32LE(i * 4);
  return out;
}

/** The footer that marks a sealed segment's index file complete. */
export function indexFooter(index: FrameIndex): Buffer {
  const f = Buffer.alloc(INDEX_FOOTER_SIZE);
  f.writeUInt32LE(INDEX_MAGIC, 0);
  f.writeUInt32LE(index.count, 4);
  f.writeUInt32LE(crc32c(index.view(0, index.count)), 8);
  f.writeUInt32LE(crc32c(f.subarray(0, 12)), 12);
  return f;
}

/** A complete sealed index file. */
export function encodeSealedIndex(index: FrameIndex): Buffer {
  return Buffer.concat([index.view(0, index.count), indexFooter(index)]);
}

/** Entries of a sealed index file, or null when it is not exactly a complete, intact one. */
export function decodeSealedIndex(buf: Buffer | null): Uint32Array | null {
  if (!buf || buf.length < INDEX_FOOTER_SIZE || (buf.length - INDEX_FOOTER_SIZE) % 4 !== 0) return null;
  const count = (buf.length - INDEX_FOOTER_SIZE) / 4;
  const f = buf.subarray(buf.length - INDEX_FOOTER_SIZE);
  if (f.readUInt32LE(0) !== INDEX_MAGIC || f.readUInt32LE(4) !== count) return null;
  if (crc32c(f.subarray(0, 12)) !== f.readUInt32LE(12)) return null;
  if (crc32c(buf.subarray(0, count * 4)) !== f.readUInt32LE(8)) return null;
  return entriesFromBytes(buf, count);
}

/**
 * Whether a sealed index fits its segment of `size` bytes: it starts at 0, ascends, and
 * its last frame (whose header is `lastHeader`, read from the segment) ends at `size`.
 * Guards against an index left over from an older version of the segment.
 */
export function indexFitsSegment(entries: Uint32Array, size: number, lastHeader: Buffer | null): boolean {
  if (entries.length === 0) return size === 0;
  if (entries[0] !== 0) return false;
  for (let i = 1; i < entries.length; i++) if (entries[i] <= entries[i - 1]) return false;
  if (!lastHeader || lastHeader.length < HEADER_SIZE) return false;
  const h = decodeHeader(lastHeader);
  return h.ok && entries[entries.length - 1] + frameSize(h.header.length) === size;
}

/**
 * Rebuilds a segment's index by scanning its bytes. `validEnd` below the segment's end
 * means the segment is damaged from there on (bit rot in a sealed segment).
 */
export function rebuildIndex(segment: Buffer, base: number): { index: FrameIndex; validEnd: number } {
  const scan = scanFrames(segment, base);
  const index = new FrameIndex();
  for (const e of scan.entries) index.push(e.offset - base);
  return { index, validEnd: scan.validEnd };
}
