/**
 * Start-up recovery of a data directory: find the end of the valid log, cut a torn tail,
 * and rebuild the in-memory state, reading only the tail.
 *
 * The scan starts at the checkpoint (the last frame boundary known durable, written at
 * least once a second while the log is busy and whenever the durable end enters a new
 * segment). It re-reads the one frame before the checkpoint (proving checkpoint and index
 * agree and handing the replica the last entry) and everything after it, which is bounded
 * by what was written since the checkpoint, not by the log's size. When the checkpoint's
 * index entries were lost (they are written without fsync), it scans whole segments from
 * the checkpoint's segment on: everything below the checkpoint was durable when it was
 * written, earlier segments included. Without any checkpoint (the file damaged or removed)
 * it scans the whole log: a frame placed long ago may never have been written while later
 * segments were (a client body that stalled while other appends rolled several segments),
 * and nothing else tells where the written prefix ends.
 *
 * The log ends at the first invalid frame. Every byte after it is dropped: the rest of
 * that segment and any later segment (offsets are contiguous, so nothing after a hole can
 * belong to the log). What remains is fdatasynced, so the replica may treat the whole
 * recovered log as durable.
 */
import fs from 'node:fs';
import path from 'node:path';
import { crc32c } from '../../spec/frame.ts';
import { LogError } from '../../spec/errors.ts';
import { type EntryMeta, type Epoch, entryEnd, noteEpoch, truncateEpochs } from '../../spec/entry.ts';
import type { PlantedBugs } from '../../spec/bugs.ts';
import { type ScanStop, scanFrames } from '../../spec/recovery.ts';
import { CHECKPOINT_FILE, type Checkpoint, loadCheckpoint } from './checkpoint.ts';
import { EPOCHS_FILE, loadEpochs, rewriteEpochsSync } from './epochs-file.ts';
import { FrameIndex, encodeSealedIndex, entriesFromBytes } from './frame-index.ts';
import { close, fdatasync, fstatSize, fsync, fsyncDir, ftruncate, makeDirSync, open, readAt, readFileOrNullSync, unlinkIfExists } from './fs-util.ts';
import { Segment } from './segment.ts';
import { indexPath, listSegments, segmentPath } from './segment-files.ts';

/** What start-up recovery did (log it; tests assert on it). */
export interface RecoveryStats {
  /** Segment bytes read and validated. */
  bytesScanned: number;
  segmentsScanned: number;
  /** Wall time of the whole recovery. */
  ms: number;
  /** Log offset where the scan started. */
  scanFrom: number;
  /** The scan started from a valid checkpoint (false: fallback to whole segments). */
  fromCheckpoint: boolean;
  /** Invalid, non-zero bytes followed the last valid frame: a torn write was cut off. */
  torn: boolean;
  /** Why the scan stopped (see ScanStop). */
  stop: ScanStop;
  /** Bytes removed from the end of the log (torn or zero tail, later segments). */
  truncatedBytes: number;
  /** Whole segments deleted because they followed the end of the valid log. */
  deletedSegments: number;
}

export interface Recovered {
  /** Ascending; the last one is the active segment, open and indexed. */
  segments: Segment[];
  end: number;
  epochs: Epoch[];
  checkpoint: Checkpoint | null;
  /** Frames read by the scan, ascending (see SegmentLog.recoveredTail). */
  tail: EntryMeta[];
  stats: RecoveryStats;
}

interface Plan {
  /** Index (into the segment list) of the first segment to scan. */
  first: number;
  /** Log offset where scanning starts inside it. */
  from: number;
  /** Index entries of that segment below `from`, taken from its `.idx` file. */
  prefix: Uint32Array;
  /** Entries the `.idx` file holds validly (prefix + the re-scanned frame). */
  persisted: number;
  /** When set, the first scanned frame must end exactly here (the checkpoint offset). */
  expectEnd: number | null;
  checkpoint: Checkpoint | null;
}

export async function recover(dir: string, bugs: Partial<PlantedBugs>): Promise<Recovered> {
  const t0 = performance.now();
  makeDirSync(dir);
  for (const tmp of [`${CHECKPOINT_FILE}.tmp`, `${CHECKPOINT_FILE}.next`, `${EPOCHS_FILE}.tmp`]) await unlinkIfExists(path.join(dir, tmp));
  const bases = await listSegments(dir);
  const loaded = loadEpochs(dir);
  const stats: RecoveryStats = {
    bytesScanned: 0, segmentsScanned: 0, ms: 0, scanFrom: bases[0] ?? 0, fromCheckpoint: false,
    torn: false, stop: 'end', truncatedBytes: 0, deletedSegments: 0,
  };
  const cp = loadCheckpoint(dir);
  await refuseMissingSegments(dir, bases, cp, loaded.epochs);
  if (bases.length === 0) {
    if (loaded.epochs.length > 0 || !loaded.exact) rewriteEpochsSync(dir, []);
    stats.ms = performance.now() - t0;
    return { segments: [], end: 0, epochs: [], checkpoint: null, tail: [], stats };
  }

  // Terms below the scan come from the epochs file; if it is unusable, scan everything.
  const epochsUsable = !loaded.damaged && loaded.epochs.length > 0;
  const whole = (first: number): Plan => ({ first, from: bases[first], prefix: new Uint32Array(0), persisted: 0, expectEnd: null, checkpoint: null });
  const fallback = (): Plan => {
    const first = cp ? bases.indexOf(cp.base) : -1;
    return whole(epochsUsable && first > 0 ? first : 0);
  };
  let plan = checkpointPlan(dir, bases, cp) ?? fallback();
  if (!epochsUsable && plan.from > bases[0]) plan = whole(0);

  let result = await scan(dir, bases, plan, loaded.epochs, bugs, stats);
  if (!result) result = await scan(dir, bases, (plan = fallback()), loaded.epochs, bugs, stats);
  if (!result) throw new Error('unreachable: a plan without a checkpoint always scans');
  stats.scanFrom = plan.from;
  stats.fromCheckpoint = plan.checkpoint !== null;

  const { segments, end, epochs, tail } = result;
  if (!loaded.exact || !sameEpochs(epochs, loaded.epochs)) rewriteEpochsSync(dir, epochs);
  stats.ms = performance.now() - t0;
  return { segments, end, epochs, checkpoint: plan.checkpoint, tail, stats };
}

/**
 * Refuses a directory whose segment files were removed or lost by other means than the log's
 * own trims and truncations (it does not guess: starting anyway would hand out the same
 * offsets again for other data, or cut the log at the hole and delete what follows):
 * - no segment at all, while the epochs file or the checkpoint says the log had frames;
 * - the checkpoint's segment missing while later ones exist, or a hole below it: every
 *   byte below the checkpoint was fdatasynced, so no crash leaves one there.
 */
async function refuseMissingSegments(dir: string, bases: number[], cp: Checkpoint | null, epochs: readonly Epoch[]): Promise<void> {
  const advice = 'restore the missing .seg files from a backup; or, to start over with an empty log, move this directory aside (the other replicas, if any, will copy the log back)';
  if (bases.length === 0) {
    const had = cp && cp.offset > 0 ? cp.offset : epochs.length > 0 ? epochs[epochs.length - 1].offset : 0;
    if (had > 0) throw new LogError('internal', `${dir} has no segment files, but its checkpoint and epochs files say the log reached offset ${had}: ${advice}`);
    return;
  }
  if (!cp || cp.base < bases[0]) return; // trimmed past the checkpoint: nothing to check against
  const last = bases.indexOf(cp.base);
  if (last < 0) throw new LogError('internal', `${dir} has no segment file for base ${cp.base}, where its checkpoint (offset ${cp.offset}) is: ${advice}`);
  for (let k = 0; k < last; k++) {
    const size = (await fs.promises.stat(segmentPath(dir, bases[k]))).size;
    if (bases[k] + size !== bases[k + 1]) {
      const what = bases[k] + size < bases[k + 1] ? `bytes ${bases[k] + size}..${bases[k + 1]} are missing (a segment file, or part of one)` : `segment ${bases[k]} runs past the next one's base ${bases[k + 1]}`;
      throw new LogError('internal', `${dir}: ${what}, below the checkpoint at ${cp.offset}, where every byte was synced: ${advice}`);
    }
  }
}

/** Scan from the checkpoint, if it and its segment's index are intact. */
function checkpointPlan(dir: string, bases: number[], cp: Checkpoint | null): Plan | null {
  if (!cp) return null;
  const first = bases.indexOf(cp.base);
  if (first < 0) return null;
  if (cp.count === 0) {
    if (cp.offset !== cp.base) return null;
    return { first, from: cp.base, prefix: new Uint32Array(0), persisted: 0, expectEnd: null, checkpoint: cp };
  }
  const raw = readFileOrNullSync(indexPath(dir, cp.base));
  if (!raw || raw.length < cp.count * 4) return null;
  const bytes = raw.subarray(0, cp.count * 4);
  if (crc32c(bytes) !== cp.indexCrc) return null;
  const entries = entriesFromBytes(bytes, cp.count);
  return {
    first,
    from: cp.base + entries[cp.count - 1],
    prefix: entries.subarray(0, cp.count - 1),
    persisted: cp.count,
    expectEnd: cp.offset,
    checkpoint: cp,
  };
}

interface ScanOutcome {
  segments: Segment[];
  end: number;
  epochs: Epoch[];
  tail: EntryMeta[];
}

/** Runs a plan; null when the checkpoint turns out not to match the segment. */
async function scan(dir: string, bases: number[], plan: Plan, savedEpochs: Epoch[], bugs: Partial<PlantedBugs>, stats: RecoveryStats): Promise<ScanOutcome | null> {
  const segments = bases.slice(0, plan.first).map((b) => new Segment(b));
  const epochs = savedEpochs.map((e) => ({ ...e }));
  truncateEpochs(epochs, plan.from);
  const tail: EntryMeta[] = [];
  for (let k = plan.first; k < bases.length; k++) {
    const base = bases[k];
    const from = k === plan.first ? plan.from : base;
    const fd = await open(segmentPath(dir, base), 'r+');
    let keepOpen = false;
    try {
      const size = await fstatSize(fd);
      const buf = from - base < size ? await readAt(fd, size - (from - base), from - base) : Buffer.alloc(0);
      stats.bytesScanned += buf.length;
      stats.segmentsScanned++;
      const res = scanFrames(buf, from, { bugs });
      if (k === plan.first && plan.expectEnd !== null) {
        const e = res.entries[0];
        if (!e || e.offset !== from || entryEnd(e) !== plan.expectEnd) return null;
      }

      const seg = new Segment(base);
      const index = new FrameIndex(k === plan.first ? plan.prefix : undefined);
      for (const e of res.entries) {
        index.push(e.offset - base);
        noteEpoch(epochs, e.term, e.offset);
        tail.push(e);
      }
      seg.index = index;
      seg.persisted = k === plan.first ? plan.persisted : 0;
      const keep = res.validEnd - base;
      const next = k + 1 < bases.length ? bases[k + 1] : null;
      stats.stop = res.stop;
      stats.torn = res.torn;

      if (next !== null && res.validEnd === next) {
        // A complete sealed segment. Its index may have been written before a torn frame
        // was cut (or not at all): replace it with the scanned one.
        if (size !== keep) await ftruncate(fd, keep);
        await fdatasync(fd);
        await fs.promises.writeFile(indexPath(dir, base), encodeSealedIndex(index));
        seg.persisted = index.count;
        segments.push(seg);
        continue;
      }

      // The log ends in this segment: drop the rest of it and every later segment.
      stats.truncatedBytes += Math.max(0, size - keep);
      for (let j = k + 1; j < bases.length; j++) {
        const file = segmentPath(dir, bases[j]);
        stats.truncatedBytes += (await fs.promises.stat(file)).size;
        await fs.promises.unlink(file);
        await unlinkIfExists(indexPath(dir, bases[j]));
        stats.deletedSegments++;
      }
      if (size !== keep) {
        await ftruncate(fd, keep);
        await fsync(fd);
      } else {
        await fdatasync(fd);
      }
      if (stats.deletedSegments > 0) await fsyncDir(dir);
      // Keep only the index entries the checkpoint vouched for; the next checkpoint appends.
      if (seg.persisted > 0) await fs.promises.truncate(indexPath(dir, base), seg.persisted * 4);
      else await unlinkIfExists(indexPath(dir, base));
      seg.fd = fd;
      keepOpen = true;
      segments.push(seg);
      return { segments, end: res.validEnd, epochs, tail };
    } finally {
      if (!keepOpen) await close(fd);
    }
  }
  throw new Error('unreachable: the last segment always ends the scan');
}

function sameEpochs(a: readonly Epoch[], b: readonly Epoch[]): boolean {
  return a.length === b.length && a.every((e, i) => e.term === b[i].term && e.offset === b[i].offset);
}
