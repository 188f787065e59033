/**
 * The tail recovery scan: which frames of a segment's tail survived a crash.
 *
 * Pure and synchronous (no I/O, no clock): the server runs it over bytes read from a segment
 * file, the simulator over its simulated disk, so both cut a torn tail in exactly the same
 * place.
 */
import { type FrameCheck, checkFrame, decodeHeader, frameSize, isZero } from './frame.ts';
import { type EntryMeta, type Epoch, noteEpoch } from './entry.ts';
import type { PlantedBugs } from './bugs.ts';

/** Why `checkFrame` rejected a frame. */
export type FrameFailure = Extract<FrameCheck, { ok: false }>['reason'];

/**
 * Where and why a scan stopped: 'end' = the buffer ended exactly on a frame boundary;
 * 'zero' = everything from the stop point on is zero (a clean end: nothing was written
 * there); anything else is the reason the first invalid frame failed (a torn write).
 */
export type ScanStop = 'end' | FrameFailure;

export interface ScanResult {
  /** Log offset one past the last valid frame: the log must be cut here. */
  validEnd: number;
  /** The valid frames, in order (`uploadId` is always null: the file does not hold it). */
  entries: EntryMeta[];
  /** The term boundaries among `entries` (as `noteEpoch` records them). */
  epochs: Epoch[];
  stop: ScanStop;
  /** True when bytes after `validEnd` are not all zero: a write was torn, not just never made. */
  torn: boolean;
}

export interface ScanOptions {
  /** Only `noTornTailTruncation` matters here (see PlantedBugs). */
  bugs?: Partial<PlantedBugs>;
  /** Verify the client's CRC32C of data payloads (default true; recovery must). */
  verifyPayload?: boolean;
}

/**
 * Walks the whole frames in `buf` (whose first byte is log offset `base`) until the first
 * invalid one. Every frame before it is complete: header CRC, trailer and (for data frames)
 * the payload checksum all check out.
 */
export function scanFrames(buf: Buffer, base: number, opts: ScanOptions = {}): ScanResult {
  const entries: EntryMeta[] = [];
  const epochs: Epoch[] = [];
  const verify = opts.verifyPayload ?? true;
  const keepTorn = opts.bugs?.noTornTailTruncation === true;
  let keptTorn = false;
  let at = 0;
  const keep = (offset: number, h: { kind: EntryMeta['kind']; length: number; term: number; crc: number }) => {
    entries.push({ offset, length: h.length, term: h.term, kind: h.kind, crc: h.crc, uploadId: null });
    noteEpoch(epochs, h.term, offset);
  };
  while (at < buf.length) {
    const r = checkFrame(buf, at, base, verify);
    if (r.ok) {
      keep(base + at, r.frame);
      at = r.next;
      continue;
    }
    if (keepTorn && r.reason !== 'zero') {
      // PLANTED BUG: trust the header and keep the frame's (garbage) bytes as if complete.
      const h = decodeHeader(buf, at);
      if (h.ok) {
        keep(base + at, h.header);
        keptTorn = true;
        at += frameSize(h.header.length);
        continue;
      }
    }
    // A tail that is zero all the way is a clean end: those bytes were simply never written
    // (a short all-zero remainder is reported as 'zero' too, whatever checkFrame said).
    if (isZero(buf, at, buf.length)) return { validEnd: base + at, entries, epochs, stop: 'zero', torn: keptTorn };
    return { validEnd: base + at, entries, epochs, stop: r.reason, torn: true };
  }
  // With the planted bug a kept frame may claim bytes past the buffer: validEnd says so.
  return { validEnd: base + at, entries, epochs, stop: 'end', torn: keptTorn };
}
