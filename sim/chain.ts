/**
 * A frame chain: the valid frames at the start of a byte image, with a running fingerprint
 * (CRC32C) over all their bytes. It is the checker's ground truth about a disk image (live or durable):
 * two images agree on the prefix [0, E) exactly when both chains have a frame boundary at E
 * with the same running CRC (up to CRC collisions). Maintained incrementally: `invalidate`
 * drops frames whose bytes changed, `advance` parses newly valid frames.
 *
 * A chain may start above 0 (`base`), where the image's bytes below were deleted (trims, a
 * reset): its running fingerprint is then seeded with the committed log's at that boundary
 * (`baseCum`), so running values stay comparable across images that start at different
 * offsets. Two images agree on [b, E) for any boundary b at or above both bases exactly when
 * they agree at b and at E.
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
  /** Where the chain starts (the image's log start). */
  base = 0;
  /** The running fingerprint at `base` (0 at offset 0). */
  baseCum = 0;

  /** Offset up to which the image is parsed (the end of the last valid frame). */
  get end(): number {
    const n = this.frames.length;
    return n > 0 ? this.frames[n - 1].end : this.base;
  }

  get cum(): number {
    const n = this.frames.length;
    return n > 0 ? this.frames[n - 1].cum : this.baseCum;
  }

  /**
   * Moves the start of the chain to `base` with running value `baseCum`. Frames from `base`
   * on are kept when the chain already had a boundary there with that running value;
   * otherwise the chain is parsed again from `base` (by `advance`).
   */
  rebase(base: number, baseCum: number): void {
    if (base === this.base && baseCum === this.baseCum) return;
    const k = base === this.base ? 0 : this.indexAt(base);
    const at = k > 0 ? this.frames[k - 1].cum : k === 0 && base === this.base ? this.baseCum : null;
    if (k >= 0 && at === baseCum) this.frames.splice(0, k);
    else this.frames.length = 0;
    this.base = base;
    this.baseCum = baseCum;
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

  /** Running CRC at boundary `end` (`baseCum` at the base), or null if `end` is not a boundary of the chain. */
  cumAt(end: number): number | null {
    if (end === this.base) return this.baseCum;
    const i = this.indexEndingAt(end);
    return i < 0 ? null : this.frames[i].cum;
  }
}
