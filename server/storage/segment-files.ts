/**
 * Names of the files in a node's data directory.
 *
 * ```
 * 0000000000000000.seg   segment: the frames from this log offset on (16 hex digits)
 * 0000000000000000.idx   its frame index (see frame-index.ts)
 * epochs                 term boundaries (see epochs-file.ts)
 * checkpoint             last checkpointed durable frame boundary (see checkpoint.ts)
 * hardstate              Raft term and vote (see hard-state.ts)
 * fates                  upload id -> frame, for fates after a restart (see fates-file.ts)
 * fates-from             where this node's knowledge of upload ids starts (see fates-file.ts)
 * trim-point             everything below it is to be deleted here (see trim-point.ts)
 * lock                   the pid of the node using the directory (see dir-lock.ts)
 * identity               whose directory this is (see identity-file.ts)
 * scrub                  where the scrub pass stands (see scrubber.ts)
 * ```
 *
 * Fixed-width hex names sort in offset order and stay exact up to 2^53.
 */
import fs from 'node:fs';
import path from 'node:path';

const SEGMENT_RE = /^([0-9a-f]{16})\.seg$/;

export function hex16(base: number): string {
  return base.toString(16).padStart(16, '0');
}

export function segmentPath(dir: string, base: number): string {
  return path.join(dir, `${hex16(base)}.seg`);
}

export function indexPath(dir: string, base: number): string {
  return path.join(dir, `${hex16(base)}.idx`);
}

/** The base offset a segment file name stands for, or null for any other file. */
export function parseSegmentName(name: string): number | null {
  const m = SEGMENT_RE.exec(name);
  if (!m) return null;
  const base = Number.parseInt(m[1], 16);
  return Number.isSafeInteger(base) ? base : null;
}

/** Base offsets of the segments in `dir`, ascending. */
export async function listSegments(dir: string): Promise<number[]> {
  const names = await fs.promises.readdir(dir);
  const bases: number[] = [];
  for (const n of names) {
    const b = parseSegmentName(n);
    if (b !== null) bases.push(b);
  }
  return bases.sort((a, b) => a - b);
}
