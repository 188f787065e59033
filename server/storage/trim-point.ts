/**
 * The node's trim point (spec/replica.ts, `trim` effect): everything below it is to be
 * deleted here. Saved before the node tells anyone it holds the point, so that a trim a
 * majority acknowledged survives any of them restarting.
 */
import { loadOffsetFile, saveOffsetFileSync } from './offset-file.ts';

export const TRIM_POINT_FILE = 'trim-point';

/**
 * The saved trim point, 0 when none was saved; `damaged` when the file does not check (the
 * node then starts from 0 and learns the point again from the leader's next message).
 */
export function loadTrimPoint(dir: string): { point: number; damaged: boolean } {
  const saved = loadOffsetFile(dir, TRIM_POINT_FILE);
  return saved === 'damaged' ? { point: 0, damaged: true } : { point: saved ?? 0, damaged: false };
}

export function saveTrimPointSync(dir: string, point: number): void {
  saveOffsetFileSync(dir, TRIM_POINT_FILE, point);
}
