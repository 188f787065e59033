/**
 * The `checkpoint` file: where recovery may start scanning. It names a frame boundary
 * below which every byte was fdatasynced, and how many entries of that segment's `.idx`
 * file it vouches for (with their CRC, since the index is written without fsync).
 *
 * 32 bytes: magic "LGCP" u32, count u32, base u64, offset u64, index CRC32C u32, CRC32C of
 * bytes 0..27 u32.
 *
 * It is replaced by temp + rename, usually without fsync: a lost update leaves an older
 * checkpoint, which only means scanning more. It is only ever lowered durably (before a
 * truncation), so it never points past the log.
 */
import fs from 'node:fs';
import path from 'node:path';
import { crc32c } from '../../spec/frame.ts';
import { readU64LE, writeU64LE } from '../../spec/u64.ts';
import { readFileOrNullSync, writeFileAtomicSync } from './fs-util.ts';

export const CHECKPOINT_FILE = 'checkpoint';
const MAGIC = 0x5043474c;
const SIZE = 32;

export interface Checkpoint {
  /** Base of the segment holding `offset`. */
  base: number;
  /** A frame boundary; everything below it is durable. */
  offset: number;
  /** Index entries of segment `base` below `offset` (the `.idx` file's first `count`). */
  count: number;
  /** CRC32C of those `count` entries' bytes. */
  indexCrc: number;
}

export function encodeCheckpoint(c: Checkpoint): Buffer {
  const b = Buffer.alloc(SIZE);
  b.writeUInt32LE(MAGIC, 0);
  b.writeUInt32LE(c.count, 4);
  writeU64LE(b, c.base, 8);
  writeU64LE(b, c.offset, 16);
  b.writeUInt32LE(c.indexCrc >>> 0, 24);
  b.writeUInt32LE(crc32c(b.subarray(0, 28)), 28);
  return b;
}

export function decodeCheckpoint(b: Buffer | null): Checkpoint | null {
  if (!b || b.length !== SIZE || b.readUInt32LE(0) !== MAGIC) return null;
  if (crc32c(b.subarray(0, 28)) !== b.readUInt32LE(28)) return null;
  const c: Checkpoint = {
    count: b.readUInt32LE(4),
    base: readU64LE(b, 8),
    offset: readU64LE(b, 16),
    indexCrc: b.readUInt32LE(24),
  };
  return c.offset >= c.base ? c : null;
}

export function loadCheckpoint(dir: string): Checkpoint | null {
  return decodeCheckpoint(readFileOrNullSync(path.join(dir, CHECKPOINT_FILE)));
}

export function saveCheckpointSync(dir: string, c: Checkpoint, durable: boolean): void {
  writeFileAtomicSync(path.join(dir, CHECKPOINT_FILE), encodeCheckpoint(c), durable);
}

/**
 * Writes the new checkpoint's temp file; `commit()` then renames it into place. The rename
 * is synchronous so that no truncation can slip between the caller's last check and it.
 */
export async function stageCheckpoint(dir: string, c: Checkpoint): Promise<{ commit(): void }> {
  const file = path.join(dir, CHECKPOINT_FILE);
  // Not `.tmp`: a concurrent saveCheckpointSync (truncation) uses that name.
  const tmp = `${file}.next`;
  await fs.promises.writeFile(tmp, encodeCheckpoint(c));
  return { commit: () => fs.renameSync(tmp, file) };
}
