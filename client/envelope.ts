/**
 * The record batch envelope: how the SDK packs many small records into one log entry.
 * The log itself never looks inside; only clients encode and decode it.
 *
 * ```
 * offset  size        field
 *  0      4           magic, the ASCII bytes "LLB1" (0x4C 0x4C 0x42 0x31, in that order)
 *  4      1           version (1)
 *  5      1           flags: bit 0 = a 32-byte SHA-256 digest follows the records
 *  6      2           reserved, zero
 *  8      4           record count n (u32 LE)
 * 12      4           CRC32C (u32 LE) of every byte after this 16-byte header
 * 16      4n          record lengths (u32 LE each)
 * 16+4n   sum(len)    the records, back to back
 * ...     32          (flag bit 0) SHA-256 of the records region only
 * ```
 *
 * The CRC32C catches accidental corruption cheaply (it runs at GB/s); the optional SHA-256
 * digest is for users who want a strong, tamper-evident check of the record bytes (it is
 * ~50 MB/s with @noble/hashes, so it is off by default).
 *
 * An entry that does not start with the magic is not an envelope: {@link isBatch} tells them
 * apart, and the consumer helper reads such entries as one opaque record.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { crc32c, crc32cCombine } from '../spec/crc32c.ts';
import { LogError } from '../spec/errors.ts';

/** Size of the fixed envelope header. */
export const BATCH_HEADER_SIZE = 16;
/** The magic as it reads with `readUInt32LE` (bytes "LLB1"). */
export const BATCH_MAGIC = 0x31424c4c;
export const BATCH_VERSION = 1;
/** Flag bit 0: a SHA-256 digest of the records region ends the envelope. */
export const FLAG_SHA256 = 0x01;
export const DIGEST_SIZE = 32;

/** Options of {@link encodeBatch}. */
export interface EncodeBatchOptions {
  /** Append a strong digest of the records (tamper evidence). Default: none. */
  digest?: 'sha256';
  /**
   * Encode into the start of this buffer when the envelope fits, and return a view of it
   * (a producer's pooled batch buffer). Otherwise a new buffer is allocated.
   */
  into?: Buffer;
}

/** Envelope size in bytes for records of these lengths. */
export function batchSize(recordBytes: number, count: number, digest?: 'sha256'): number {
  return BATCH_HEADER_SIZE + 4 * count + recordBytes + (digest === 'sha256' ? DIGEST_SIZE : 0);
}

/** Packs `records` into one envelope (one log entry's payload). */
export function encodeBatch(records: readonly Uint8Array[], opts: EncodeBatchOptions = {}): Buffer {
  if (opts.digest !== undefined && opts.digest !== 'sha256') {
    throw new LogError('bad_request', `unsupported digest: ${String(opts.digest)}`);
  }
  let total = 0;
  for (const r of records) total += r.byteLength;
  const withDigest = opts.digest === 'sha256';
  const size = batchSize(total, records.length, opts.digest);
  const out = opts.into && opts.into.length >= size ? opts.into.subarray(0, size) : Buffer.allocUnsafe(size);
  out.writeUInt32LE(BATCH_MAGIC, 0);
  out[4] = BATCH_VERSION;
  out[5] = withDigest ? FLAG_SHA256 : 0;
  out.writeUInt16LE(0, 6);
  out.writeUInt32LE(records.length, 8);
  let at = BATCH_HEADER_SIZE;
  for (const r of records) {
    out.writeUInt32LE(r.byteLength, at);
    at += 4;
  }
  const recordsStart = at;
  for (const r of records) {
    out.set(r, at);
    at += r.byteLength;
  }
  if (withDigest) {
    out.set(sha256(out.subarray(recordsStart, at)), at);
    at += DIGEST_SIZE;
  }
  out.writeUInt32LE(crc32c(out.subarray(BATCH_HEADER_SIZE)), 12);
  return out;
}

/**
 * CRC32C of a whole envelope (what an entry's frame header carries), derived from the CRC the
 * envelope already stores: one short pass over the 16-byte header instead of a second pass
 * over the records.
 */
export function envelopeCrc(envelope: Buffer): number {
  return crc32cCombine(crc32c(envelope.subarray(0, BATCH_HEADER_SIZE)), envelope.readUInt32LE(12), envelope.length - BATCH_HEADER_SIZE);
}

/** True if `buf` starts like an envelope (magic and room for a header). */
export function isBatch(buf: Uint8Array): boolean {
  return buf.byteLength >= BATCH_HEADER_SIZE && buf[0] === 0x4c && buf[1] === 0x4c && buf[2] === 0x42 && buf[3] === 0x31;
}

function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/** Where the records start and end, or why the record lengths do not fit `buf`. */
function recordsRegion(buf: Buffer): { count: number; start: number; end: number } | string {
  const count = buf.readUInt32LE(8);
  const end = buf.length - ((buf[5] & FLAG_SHA256) !== 0 ? DIGEST_SIZE : 0);
  const start = BATCH_HEADER_SIZE + 4 * count;
  if (start > end) return `envelope too short for ${count} records`;
  let total = 0;
  for (let i = 0; i < count; i++) total += buf.readUInt32LE(BATCH_HEADER_SIZE + 4 * i);
  if (start + total !== end) return `envelope record lengths (${total} bytes) do not match its size (${end - start} bytes)`;
  return { count, start, end };
}

/**
 * Unpacks an envelope into its records. The returned buffers are views into `buf`, not copies.
 *
 * @throws LogError `checksum_mismatch` if the CRC32C or the digest does not match;
 *   `bad_request` if `buf` is not a well-formed envelope (no magic, unknown version or
 *   flags, lengths that do not add up).
 */
export function decodeBatch(input: Uint8Array): Buffer[] {
  const buf = asBuffer(input);
  if (!isBatch(buf)) throw new LogError('bad_request', 'not a record batch envelope (no LLB1 magic)');
  checkHeader(buf);
  // Before the lengths: a changed byte anywhere after the header is reported as corruption.
  checkCrc(buf);
  const region = recordsRegion(buf);
  if (typeof region === 'string') throw new LogError('bad_request', region);
  return unpack(buf, region);
}

/**
 * {@link decodeBatch} for a payload laid out as an envelope (the magic, and record lengths
 * that add up to its size), or null for one that is not (raw bytes that may begin with
 * anything). Version, flags and checksums are not judged by that layout: an envelope of a
 * version this reader does not know must fail to decode, not pass for a raw record (so
 * later versions keep the count and the length table where they are).
 */
export function decodeIfBatch(input: Uint8Array): Buffer[] | null {
  const buf = asBuffer(input);
  if (!isBatch(buf)) return null;
  const region = recordsRegion(buf);
  if (typeof region === 'string') return null;
  checkHeader(buf);
  checkCrc(buf);
  return unpack(buf, region);
}

function checkHeader(buf: Buffer): void {
  const version = buf[4];
  if (version !== BATCH_VERSION) throw new LogError('bad_request', `unsupported envelope version ${version}`);
  const flags = buf[5];
  if ((flags & ~FLAG_SHA256) !== 0) throw new LogError('bad_request', `unknown envelope flags 0x${flags.toString(16)}`);
  if (buf.readUInt16LE(6) !== 0) throw new LogError('bad_request', 'envelope reserved bytes are not zero');
}

function checkCrc(buf: Buffer): void {
  const stored = buf.readUInt32LE(12);
  const actual = crc32c(buf.subarray(BATCH_HEADER_SIZE));
  if (stored !== actual) {
    throw new LogError('checksum_mismatch', `envelope CRC32C mismatch (stored ${stored}, computed ${actual})`, { expected: stored, actual });
  }
}

/** The records of a checked envelope whose lengths fit (`region`), after its digest if it has one. */
function unpack(buf: Buffer, { count, start, end }: { count: number; start: number; end: number }): Buffer[] {
  if ((buf[5] & FLAG_SHA256) !== 0) {
    const digest = sha256(buf.subarray(start, end));
    if (!buf.subarray(end).equals(digest)) throw new LogError('checksum_mismatch', 'envelope SHA-256 digest mismatch');
  }
  const out: Buffer[] = new Array(count);
  let at = start;
  for (let i = 0; i < count; i++) {
    const len = buf.readUInt32LE(BATCH_HEADER_SIZE + 4 * i);
    out[i] = buf.subarray(at, at + len);
    at += len;
  }
  return out;
}
