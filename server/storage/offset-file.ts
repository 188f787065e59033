/**
 * One durable offset in a file of its own: 8 bytes (u64 LE) and the CRC32C of those 8 bytes.
 * For the few offsets a node must not forget across restarts (`fates-from`, `trim-point`),
 * each saved rarely and synchronously, before the effects that depend on it.
 */
import path from 'node:path';
import { crc32c } from '../../spec/frame.ts';
import { readU64LE, writeU64LE } from '../../spec/u64.ts';
import { readFileOrNullSync, writeFileAtomicSync } from './fs-util.ts';

/** The saved offset; null when the file does not exist, 'damaged' when it does not check. */
export function loadOffsetFile(dir: string, name: string): number | null | 'damaged' {
  const b = readFileOrNullSync(path.join(dir, name));
  if (!b) return null;
  if (b.length !== 12 || crc32c(b.subarray(0, 8)) !== b.readUInt32LE(8)) return 'damaged';
  return readU64LE(b, 0);
}

/** Saves `offset` durably (temp file, fsync, rename, fsync of the directory). */
export function saveOffsetFileSync(dir: string, name: string, offset: number): void {
  const b = Buffer.alloc(12);
  writeU64LE(b, offset, 0);
  b.writeUInt32LE(crc32c(b.subarray(0, 8)), 8);
  writeFileAtomicSync(path.join(dir, name), b, true);
}
