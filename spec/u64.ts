/**
 * Little-endian u64 fields (terms and offsets, which stay below 2^53) as two u32 halves,
 * low half first. Shared by the frame header and the server's small metadata files.
 *
 * No range check beyond what `writeUInt32LE` does: a negative value, or one of 2^64 or more,
 * throws a RangeError (the low half is then already written); values of 2^53 and above are
 * not exact. Reading never fails for an in-bounds `at`.
 */

/** Reads the u64 at `at` (low u32 first) as a number. */
export function readU64LE(buf: Buffer, at: number): number {
  return buf.readUInt32LE(at) + buf.readUInt32LE(at + 4) * 0x1_0000_0000;
}

/** Writes `value` as a u64 at `at` (low u32 first). */
export function writeU64LE(buf: Buffer, value: number, at: number): void {
  buf.writeUInt32LE(value % 0x1_0000_0000, at);
  buf.writeUInt32LE(Math.floor(value / 0x1_0000_0000), at + 4);
}
