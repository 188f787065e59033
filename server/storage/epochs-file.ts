/**
 * The `epochs` file: the log's term boundaries, so the term of any offset is known without
 * reading old segments (Raft's prev-entry check and leader completeness need it).
 *
 * Records of 20 bytes: term u64 LE, offset u64 LE, CRC32C of those 16 bytes. A new epoch is
 * appended and fsynced when its first frame is placed, before any byte of that frame is
 * written, so the file is never behind the segments. A torn last record (crash during the
 * append) is dropped on load; its frame was never written.
 */
import fs from 'node:fs';
import path from 'node:path';
import { crc32c } from '../../spec/frame.ts';
import { readU64LE, writeU64LE } from '../../spec/u64.ts';
import type { Epoch } from '../../spec/entry.ts';
import { fsyncDirSync, readFileOrNullSync, writeFileAtomicSync } from './fs-util.ts';

export const EPOCHS_FILE = 'epochs';
const RECORD = 20;

function encodeRecord(e: Epoch): Buffer {
  const b = Buffer.alloc(RECORD);
  writeU64LE(b, e.term, 0);
  writeU64LE(b, e.offset, 8);
  b.writeUInt32LE(crc32c(b.subarray(0, 16)), 16);
  return b;
}

export interface LoadedEpochs {
  epochs: Epoch[];
  /** The file held exactly these records and nothing else (no torn or damaged tail). */
  exact: boolean;
  /** A record other than the last was invalid: the file is damaged, not just torn. */
  damaged: boolean;
}

export function loadEpochs(dir: string): LoadedEpochs {
  const buf = readFileOrNullSync(path.join(dir, EPOCHS_FILE));
  const epochs: Epoch[] = [];
  if (!buf) return { epochs, exact: true, damaged: false };
  let at = 0;
  for (; at + RECORD <= buf.length; at += RECORD) {
    if (crc32c(buf.subarray(at, at + 16)) !== buf.readUInt32LE(at + 16)) break;
    const e: Epoch = {
      term: readU64LE(buf, at),
      offset: readU64LE(buf, at + 8),
    };
    const prev = epochs[epochs.length - 1];
    if (prev && (e.term <= prev.term || e.offset < prev.offset)) break;
    epochs.push(e);
  }
  const exact = at === buf.length;
  return { epochs, exact, damaged: !exact && buf.length - at > RECORD };
}

/** Appends one epoch durably (once per term: synchronous calls are fine). */
export function appendEpochSync(dir: string, e: Epoch): void {
  const file = path.join(dir, EPOCHS_FILE);
  const created = !fs.existsSync(file);
  const fd = fs.openSync(file, 'a');
  try {
    fs.writeSync(fd, encodeRecord(e));
    fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  if (created) fsyncDirSync(dir);
}

/** Replaces the file with exactly `epochs`, durably (after a truncation, trim or recovery). */
export function rewriteEpochsSync(dir: string, epochs: readonly Epoch[]): void {
  writeFileAtomicSync(path.join(dir, EPOCHS_FILE), Buffer.concat(epochs.map(encodeRecord)), true);
}
