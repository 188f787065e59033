/**
 * A frame chain: the valid frames at the start of a byte image, with a running fingerprint
 * (CRC32C) over all their bytes. It is the checker's ground truth about a disk image (live or durable):
 * two images agree on the prefix [0, E) exactly when both chains have a frame boundary at E
 * with the same running CRC (up to CRC collisions). Maintained incrementally: `invalidate`
 * drops frames whose bytes changed, `advance` parses newly valid frames.
 */
import { HEADER_SIZE, checkFrame, crc32c, Kind } from '../spec/frame.ts';

export interface ChainFrame {
  offset: number;
  end: number;
  term: number;
  kind: Kind;
  length: number;
  /** The header's payload checksum. */
  crc: number;
  /** Fingerprint of the frame's bytes (see `fingerprint`). */
  fcrc: number;
  /** Running fingerprint of every frame from offset 0 to `end` (see `chainCum`). */
  cum: number;
}

/**
 * CRC32C of a frame's bytes, continuing `seed`, *without* the header's own CRC field
 * (bytes 28..31). A CRC over a message followed by its CRC is a constant (the CRC residue),
 * so including that field would make every valid header look alike: two frames differing
 * only in their term would fingerprint equal. The field is a function of bytes 0..27, so
 * leaving it out loses nothing.
 */
const pair = Buffer.alloc(8);

/** The running fingerprint after a frame: CRC32C over (previous running value, frame fingerprint). */
export function chainCum(prev: number, fcrc: number): number {
  pair.writeUInt32LE(prev >>> 0, 0);
  pair.writeUInt32LE(fcrc >>> 0, 4);
  return crc32c(pair);
}

export function fingerprint(buf: Buffer, from: number, to: number, seed: number): number {
  const c = crc32c(buf.subarray(from, from + HEADER_SIZE - 4), seed);
  return crc32c(buf.subarray(from + HEADER_SIZE, to), c);
}

export class FrameChain {
  readonly frames: ChainFrame[] = [];

  /** Offset up to which the image is parsed (the end of the last valid frame). */
  get end(): number {
    const n = this.frames.length;
    return n > 0 ? this.frames[n - 1].end : 0;
  }

  get cum(): number {
    const n = this.frames.length;
    return n > 0 ? this.frames[n - 1].cum : 0;
  }

  /** Forgets every frame with a byte at or after `from`. */
  invalidate(from: number): void {
    const f = this.frames;
    while (f.length > 0 && f[f.length - 1].end > from) f.pop();
  }

  /** Parses valid frames from the current end of the chain. */
  advance(image: Buffer): void {
    let at = this.end;
    let cum = this.cum;
    while (at < image.length) {
      const r = checkFrame(image, at, 0, true);
      if (!r.ok) break;
      const fr = r.frame;
      const fcrc = fingerprint(image, at, r.next, 0);
      cum = chainCum(cum, fcrc);
      this.frames.push({ offset: at, end: r.next, term: fr.term, kind: fr.kind, length: fr.length, crc: fr.crc, fcrc, cum });
      at = r.next;
    }
  }

  /** Index of the frame ending exactly at `end`, or -1. */
  indexEndingAt(end: number): number {
    const f = this.frames;
    let lo = 0, hi = f.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const e = f[mid].end;
      if (e === end) return mid;
      if (e < end) lo = mid + 1; else hi = mid - 1;
    }
    return -1;
  }

  /** Index of the frame starting exactly at `offset`, or -1. */
  indexAt(offset: number): number {
    const f = this.frames;
    let lo = 0, hi = f.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const o = f[mid].offset;
      if (o === offset) return mid;
      if (o < offset) lo = mid + 1; else hi = mid - 1;
    }
    return -1;
  }

  /** Running CRC at boundary `end` (0 for the empty prefix), or null if `end` is not a boundary. */
  cumAt(end: number): number | null {
    if (end === 0) return 0;
    const i = this.indexEndingAt(end);
    return i < 0 ? null : this.frames[i].cum;
  }
}
