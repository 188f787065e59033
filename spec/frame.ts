/**
 * The on-disk and on-wire frame format. Every entry in the log is one frame:
 *
 * ```
 * offset size field
 *  0     4    magic 0x4C474C47 ("GLGL" little-endian), guards against reading mid-frame garbage
 *  4     1    version (1)
 *  5     1    kind: 1 data, 2 noop, 3 config, 4 aborted
 *  6     2    reserved, zero
 *  8     4    payload length in bytes (u32)
 * 12     4    client checksum of the payload: CRC32C (u32), 0 for noop/aborted
 * 16     8    term (u64, little-endian; terms stay below 2^53)
 * 24     4    reserved, zero
 * 28     4    CRC32C of bytes 0..27 of this header
 * 32     len  payload
 * 32+len 1    trailer: 0xff complete, 0x55 aborted (0x00 = never completed: torn)
 * ```
 *
 * A frame's offset is the byte position of its header; the next frame starts at
 * offset + HEADER_SIZE + len + TRAILER_SIZE. Frames are byte-identical on every replica.
 */
import { crc32c } from './crc32c.ts';
import { readU64LE, writeU64LE } from './u64.ts';

export { crc32c };

export const HEADER_SIZE = 32;
export const TRAILER_SIZE = 1;
export const FRAME_OVERHEAD = HEADER_SIZE + TRAILER_SIZE;
export const MAGIC = 0x4c474c47;
export const VERSION = 1;
export const TRAILER_OK = 0xff;
export const TRAILER_ABORTED = 0x55;

export const enum Kind {
  Data = 1,
  Noop = 2,
  Config = 3,
  Aborted = 4,
}

export function kindName(kind: Kind): string {
  switch (kind) {
    case Kind.Data: return 'data';
    case Kind.Noop: return 'noop';
    case Kind.Config: return 'config';
    case Kind.Aborted: return 'aborted';
    default: return `unknown(${kind})`;
  }
}

/** Everything the header says about a frame. */
export interface FrameHeader {
  kind: Kind;
  term: number;
  length: number;
  crc: number;
}

/** Total size on disk of a frame holding `length` payload bytes. */
export function frameSize(length: number): number {
  return HEADER_SIZE + length + TRAILER_SIZE;
}

export function encodeHeader(h: FrameHeader, out: Buffer = Buffer.alloc(HEADER_SIZE), at = 0): Buffer {
  out.writeUInt32LE(MAGIC, at);
  out[at + 4] = VERSION;
  out[at + 5] = h.kind;
  out.writeUInt16LE(0, at + 6);
  out.writeUInt32LE(h.length, at + 8);
  out.writeUInt32LE(h.crc >>> 0, at + 12);
  writeU64LE(out, h.term, at + 16);
  out.writeUInt32LE(0, at + 24);
  out.writeUInt32LE(crc32c(out.subarray(at, at + 28)), at + 28);
  return out;
}

export type HeaderCheck =
  | { ok: true; header: FrameHeader }
  | { ok: false; reason: 'zero' | 'magic' | 'header-crc' | 'kind' | 'short' };

/** Validates and decodes a header. 'zero' means an all-zero header: a clean end of log. */
export function decodeHeader(buf: Uint8Array, at = 0): HeaderCheck {
  if (buf.length - at < HEADER_SIZE) return { ok: false, reason: 'short' };
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (isZero(b, at, at + HEADER_SIZE)) return { ok: false, reason: 'zero' };
  if (b.readUInt32LE(at) !== MAGIC || b[at + 4] !== VERSION) return { ok: false, reason: 'magic' };
  if (crc32c(b.subarray(at, at + 28)) !== b.readUInt32LE(at + 28)) return { ok: false, reason: 'header-crc' };
  const kind = b[at + 5] as Kind;
  if (kind < Kind.Data || kind > Kind.Aborted) return { ok: false, reason: 'kind' };
  return {
    ok: true,
    header: {
      kind,
      length: b.readUInt32LE(at + 8),
      crc: b.readUInt32LE(at + 12),
      term: readU64LE(b, at + 16),
    },
  };
}

export function isZero(b: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (b[i] !== 0) return false;
  return true;
}

/** Builds a complete frame in memory (noop, config, aborted frames, tests, the simulator). */
export function encodeFrame(h: FrameHeader, payload?: Uint8Array): Buffer {
  const out = Buffer.alloc(frameSize(h.length));
  encodeHeader(h, out, 0);
  if (payload && h.kind !== Kind.Aborted) out.set(payload.subarray(0, h.length), HEADER_SIZE);
  out[HEADER_SIZE + h.length] = h.kind === Kind.Aborted ? TRAILER_ABORTED : TRAILER_OK;
  return out;
}

/** The trailer byte that completes a frame of this kind. */
export function trailerFor(kind: Kind): number {
  return kind === Kind.Aborted ? TRAILER_ABORTED : TRAILER_OK;
}

/** One decoded frame from a buffer of whole frames. `payload` is a view, not a copy. */
export interface Frame extends FrameHeader {
  offset: number;
  payload: Buffer;
}

export type FrameCheck =
  | { ok: true; frame: Frame; next: number }
  | { ok: false; reason: 'zero' | 'magic' | 'header-crc' | 'kind' | 'short' | 'trailer' | 'checksum' };

/**
 * Validates the frame starting at `at` in `buf` (whose first byte is log offset `base`).
 * Checks the header CRC, the trailer, and (for data frames) the client checksum.
 */
export function checkFrame(buf: Buffer, at: number, base: number, verifyPayload = true): FrameCheck {
  const h = decodeHeader(buf, at);
  if (!h.ok) return h;
  const { header } = h;
  const end = at + frameSize(header.length);
  if (end > buf.length) return { ok: false, reason: 'short' };
  const trailer = buf[end - 1];
  if (trailer !== trailerFor(header.kind)) return { ok: false, reason: 'trailer' };
  const payload = buf.subarray(at + HEADER_SIZE, end - TRAILER_SIZE);
  if (verifyPayload && header.kind === Kind.Data && crc32c(payload) !== header.crc) return { ok: false, reason: 'checksum' };
  // Aborted payloads are zero on every replica; a torn zeroing write must not survive recovery.
  if (verifyPayload && header.kind === Kind.Aborted && !isZero(payload, 0, payload.length)) return { ok: false, reason: 'checksum' };
  return { ok: true, frame: { ...header, offset: base + at, payload }, next: end };
}

/**
 * Splits a buffer of whole frames (as served by `GET /v1/read`) into frames.
 * Throws on a malformed buffer; a checksum mismatch is reported per frame via `onBad`.
 */
export function* parseFrames(buf: Buffer, base: number, verifyPayload = true): Generator<Frame> {
  let at = 0;
  while (at < buf.length) {
    const r = checkFrame(buf, at, base, verifyPayload);
    if (!r.ok) throw new FrameError(base + at, r.reason);
    yield r.frame;
    at = r.next;
  }
}

export class FrameError extends Error {
  constructor(readonly offset: number, readonly reason: string) {
    super(`invalid frame at offset ${offset}: ${reason}`);
    this.name = 'FrameError';
  }
}
