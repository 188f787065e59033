/**
 * SegmentLog: one node's log on disk, as a run of segment files.
 *
 * The replica executor drives it: `place` (synchronous bookkeeping, in offset order) for
 * every new frame, then `writeAt` for its bytes (positional, possibly in pieces and out of
 * order), `sync` to make completed writes durable, `truncate` to drop a divergent suffix.
 * Readers use `read`. The log never interprets payloads.
 *
 * Durability rules kept here:
 * - a new epoch (term boundary) is fsynced to the `epochs` file before its first frame is
 *   written, so recovery always knows the term of every byte it keeps;
 * - `sync` fdatasyncs every segment whose writes completed since the last sync, and the
 *   directory when a segment was created;
 * - the checkpoint only ever names a boundary that a completed sync covered, and is
 *   lowered durably before a truncation cuts below it;
 * - a truncation waits for the writes issued before it, and writes issued after it wait
 *   for the truncation, so no stale byte lands past the new end.
 *
 * Files and formats: see segment-files.ts, frame-index.ts, checkpoint.ts, epochs-file.ts.
 */
import fs from 'node:fs';
import { HEADER_SIZE, checkFrame, crc32c, decodeHeader, frameSize } from '../../spec/frame.ts';
import { type EntryMeta, type Epoch, truncateEpochs } from '../../spec/entry.ts';
import type { PlantedBugs } from '../../spec/bugs.ts';
import { LogError } from '../../spec/errors.ts';
import { type Checkpoint, saveCheckpointSync, stageCheckpoint } from './checkpoint.ts';
import { appendEpochSync, rewriteEpochsSync } from './epochs-file.ts';
import { FrameIndex, decodeSealedIndex, encodeSealedIndex, indexFitsSegment, indexFooter, rebuildIndex } from './frame-index.ts';
import {
  close, fdatasync, firstBytes, fsync, fsyncDir, ftruncate, open, readAt, readAtSync, readFileOrNull, readFileOrNullSync,
  unlinkIfExists, unlinkIfExistsSync, writeAll, writevAll, writevAllSync,
} from './fs-util.ts';
import { Mutex } from './mutex.ts';
import { type RecoveryStats, recover } from './recover.ts';
import { type RetentionPolicy, segmentsToDelete } from './retention.ts';
import { Segment } from './segment.ts';
import { hex16, indexPath, segmentPath } from './segment-files.ts';
import { WriteFrontier } from './write-frontier.ts';

export type { RecoveryStats } from './recover.ts';
export type { RetentionPolicy } from './retention.ts';

export const DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024;
/** Frame starts are stored as u32 offsets within a segment. */
const MAX_SEGMENT_BYTES = 0xffff_ffff;
const DEFAULT_CHECKPOINT_INTERVAL_MS = 1000;
/** Sealed segments whose index stays in memory (LRU); the active one's is always there. */
const INDEX_CACHE_SEGMENTS = 8;
/** Sealed segments whose file stays open (LRU); more are opened per read and closed again. */
const OPEN_SEALED_SEGMENTS = 16;
const EMPTY = Buffer.alloc(0);
/** Writes up to this size go straight into the page cache on the event loop (see writeInto). */
const INLINE_WRITE_BYTES = 16 * 1024;

export interface SegmentLogOptions {
  /** Roll to a new segment when a frame would not fit (default 64 MiB). */
  segmentBytes?: number;
  /** Planted bugs (simulator only); recovery honours `noTornTailTruncation`. */
  bugs?: Partial<PlantedBugs>;
  /** Least time between two checkpoints while the log is busy (default 1000 ms). */
  checkpointIntervalMs?: number;
  /**
   * Runs before each checkpoint is written; the checkpoint waits for it and is skipped if
   * it throws. The node makes its fates records durable here: recovery does not scan what
   * lies below a checkpoint, so nothing about those frames may be lost after it.
   */
  beforeCheckpoint?: () => Promise<void>;
  /** Checkpoint at the recovered end as soon as the log is open (default true). */
  checkpointAtOpen?: boolean;
}

export interface StorageStatus {
  dir: string;
  start: number;
  end: number;
  /** Frame boundary covered by the last completed sync. */
  durable: number;
  segments: number;
  bytes: number;
  segmentBytes: number;
  activeBase: number | null;
  epochs: number;
  /** Sealed segments whose frame index is in memory (the LRU's size). */
  cachedIndexes: number;
  /** Offset of the last checkpoint written (where the next recovery would start). */
  checkpoint: number | null;
  recovery: RecoveryStats;
  /** Set after a failed fdatasync or truncation: the log refuses further use. */
  failed: string | null;
  /** Last failure of background work (index or checkpoint files); not fatal. */
  backgroundError: string | null;
}

/** A write in flight; `to` is clipped when a truncation cuts into its range. */
interface InflightWrite {
  from: number;
  to: number;
  settled: Promise<void>;
}

const noop = () => {};

/** A segment trimmed or truncated away while an operation waited for its file. */
function gone(seg: Segment): LogError {
  return new LogError('unavailable', `segment ${hex16(seg.base)} was removed`);
}

export class SegmentLog {
  /** Told (once per segment, when a read first loads it) of a sealed segment found damaged. */
  onDamaged: ((message: string) => void) | null = null;
  readonly dir: string;
  readonly segmentBytes: number;
  /** First offset in the log (the base of the oldest segment). */
  start: number;
  /** One past the last placed frame. */
  end: number;
  /** Frame boundary below which a completed sync covered every byte. */
  durable: number;
  /** Term boundaries, ascending; updated by place/truncate (live: copy it to keep it). */
  readonly epochs: Epoch[];
  /**
   * Frames found by the recovery scan, ascending and ending at `end`. Always includes the
   * log's last frame when the log is not empty.
   */
  readonly recoveredTail: EntryMeta[];
  readonly recovery: RecoveryStats;

  private segs: Segment[];
  private cp: Checkpoint | null;
  private readonly checkpointIntervalMs: number;
  private readonly beforeCheckpoint: (() => Promise<void>) | null;
  private readonly written: WriteFrontier;
  private readonly dirty = new Set<Segment>();
  private dirDirty = false;
  private readonly inflight = new Set<InflightWrite>();
  /** Writes waiting for a truncation's barrier; a truncation made meanwhile clips them too. */
  private readonly queued = new Set<{ from: number; to: number }>();
  /** Syncs in flight (settled promises). */
  private readonly syncs = new Set<Promise<void>>();
  /** Settles when the last sync asked for has finished; the next one starts after it. */
  private lastSync: Promise<void> = Promise.resolve();
  /** Settles when the last truncation's file work is done; later writes wait for it. */
  private barrier: Promise<void> | null = null;
  /** Bumped by every truncation: background work started before one must not publish. */
  private gen = 0;
  /** Serializes `.idx` and checkpoint file updates with truncations. */
  private readonly meta = new Mutex();
  private checkpointQueued = false;
  private lastCheckpointAt = -Infinity;
  /** Sealed segments with a loaded index / an open fd, least recently used first. */
  private readonly indexCache = new Set<Segment>();
  private readonly openSealed = new Set<Segment>();
  private failure: Error | null = null;
  private backgroundError: Error | null = null;
  private closing = false;
  /** Set once close() has closed the files: nothing may open one again. */
  private closed = false;

  private constructor(dir: string, segmentBytes: number, opts: SegmentLogOptions, r: Awaited<ReturnType<typeof recover>>) {
    this.dir = dir;
    this.segmentBytes = segmentBytes;
    this.checkpointIntervalMs = opts.checkpointIntervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS;
    this.beforeCheckpoint = opts.beforeCheckpoint ?? null;
    this.segs = r.segments;
    this.start = this.segs[0]?.base ?? 0;
    this.end = r.end;
    this.durable = r.end;
    this.written = new WriteFrontier(r.end);
    this.epochs = r.epochs;
    this.recoveredTail = r.tail;
    this.recovery = r.stats;
    this.cp = r.checkpoint;
    for (const s of this.segs.slice(0, -1)) if (s.index) this.indexCache.add(s);
  }

  /** Opens (creating if needed) and recovers the log in `dir`. */
  static async open(dir: string, opts: SegmentLogOptions = {}): Promise<SegmentLog> {
    const segmentBytes = opts.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
    if (!Number.isInteger(segmentBytes) || segmentBytes < 1 || segmentBytes > MAX_SEGMENT_BYTES) {
      throw new RangeError(`segmentBytes must be an integer in [1, ${MAX_SEGMENT_BYTES}], got ${segmentBytes}`);
    }
    const r = await recover(dir, opts.bugs ?? {});
    const log = new SegmentLog(dir, segmentBytes, opts, r);
    if (log.recoveredTail.length === 0 && log.end > log.start) {
      // The scan started exactly at an empty active segment: fetch the last frame anyway.
      const prev = log.segs[log.segs.length - 2];
      const last = prev ? (await log.loadIndex(prev)).last() : undefined;
      if (last !== undefined) log.recoveredTail.push(await log.entryAt(prev.base + last));
    }
    if (opts.checkpointAtOpen !== false) await log.checkpointNow();
    return log;
  }

  // ------------------------------------------------------------------ queries

  get segmentCount(): number {
    return this.segs.length;
  }

  /** Bytes held (segments are contiguous, so this is the log's extent). */
  get bytes(): number {
    return this.end - this.start;
  }

  /** Whether a frame starts at `offset` (true for `end`, where the next one will). */
  isFrameStart(offset: number): boolean {
    if (offset < this.start || offset > this.end) return false;
    if (offset === this.end) return true;
    const seg = this.segs[this.segAt(offset)];
    return this.indexSync(seg).find(offset - seg.base) >= 0;
  }

  /** Metadata of the frame at `offset` (read from its header; uploadId is not stored). */
  async entryAt(offset: number): Promise<EntryMeta> {
    const seg = this.segs[this.segAt(offset)];
    if (offset < this.start || offset >= this.end || (await this.loadIndex(seg)).find(offset - seg.base) < 0) {
      throw new LogError('bad_offset', `no frame starts at offset ${offset}`, { start: this.start, end: this.end });
    }
    const fd = await this.acquire(seg);
    let buf: Buffer;
    try {
      buf = await readAt(fd, HEADER_SIZE, offset - seg.base);
    } finally {
      this.release(seg);
    }
    const h = decodeHeader(buf);
    if (!h.ok) throw new LogError('internal', `invalid frame header at offset ${offset}: ${h.reason}`, { offset });
    return { offset, length: h.header.length, term: h.header.term, kind: h.header.kind, crc: h.header.crc, uploadId: null };
  }

  status(): StorageStatus {
    return {
      dir: this.dir, start: this.start, end: this.end, durable: this.durable,
      segments: this.segs.length, bytes: this.bytes, segmentBytes: this.segmentBytes,
      activeBase: this.active()?.base ?? null, epochs: this.epochs.length, cachedIndexes: this.indexCache.size,
      checkpoint: this.cp?.offset ?? null, recovery: this.recovery,
      failed: this.failure?.message ?? null, backgroundError: this.backgroundError?.message ?? null,
    };
  }

  // ------------------------------------------------------------------ appending

  /**
   * Reserves the next frame: `length` payload bytes of `term` at `offset` (must equal
   * `end`). Rolls to a new segment when the frame does not fit the active one; a frame
   * larger than a segment gets one of its own. Persists a new epoch when the term changes.
   * Synchronous, so the executor can call it in effect order.
   */
  place(offset: number, length: number, term: number): void {
    this.usable();
    if (offset !== this.end) throw new LogError('internal', `place at ${offset} but the log ends at ${this.end}`, { offset, end: this.end });
    if (!Number.isInteger(length) || length < 0 || length > 0xffff_ffff) throw new LogError('bad_request', `invalid frame length ${length}`);
    const last = this.epochs[this.epochs.length - 1];
    if (last && term < last.term) throw new LogError('internal', `term ${term} at ${offset} is below the log's last term ${last.term}`, { offset });
    const size = frameSize(length);
    if (!last || last.term !== term) {
      // Durable before any byte of the frame is written: once a checkpoint passes this
      // frame recovery no longer scans it, so only this file can tell its term.
      appendEpochSync(this.dir, { term, offset });
      this.epochs.push({ term, offset });
    }
    let seg = this.active();
    if (!seg) {
      seg = this.createSegment(offset);
    } else if (offset > seg.base && offset - seg.base + size > this.segmentBytes) {
      const full = seg;
      seg = this.createSegment(offset);
      this.seal(full);
    }
    seg.index!.push(offset - seg.base);
    this.end = offset + size;
  }

  /**
   * Writes bytes of placed frames at `offset` (one buffer, or several back to back with
   * one writev). Must stay inside one segment; frames never straddle, so a write within
   * one frame always does. Every byte of every frame must be written eventually (an
   * aborted payload as zeros): the durable boundary only advances over written bytes.
   */
  async writeAt(offset: number, data: Buffer | Buffer[]): Promise<void> {
    this.usable();
    let bufs = Buffer.isBuffer(data) ? [data] : data;
    let len = 0;
    for (const b of bufs) len += b.length;
    if (len === 0) return;
    if (this.barrier) {
      const q = { from: offset, to: offset + len };
      this.queued.add(q);
      try {
        while (this.barrier) await this.barrier;
      } finally {
        this.queued.delete(q);
      }
      // What a truncation cut while this write waited belongs to no frame any more: writing
      // it would put stale bytes where a new frame goes, and count them as written.
      if (q.to < offset + len) {
        len = q.to - offset;
        if (len === 0) return;
        bufs = firstBytes(bufs, len);
      }
    }
    const k = this.segAt(offset);
    if (offset < this.start || k < 0 || offset + len > this.segmentEnd(k)) {
      throw new LogError('internal', `write of ${len} bytes at ${offset} is not inside the placed frames of one segment`, { offset, end: this.end });
    }
    const seg = this.segs[k];
    const w: InflightWrite = { from: offset, to: offset + len, settled: Promise.resolve() };
    this.inflight.add(w);
    const p = this.writeInto(seg, w, bufs);
    w.settled = p.then(noop, noop);
    return p;
  }

  private async writeInto(seg: Segment, w: InflightWrite, bufs: Buffer[]): Promise<void> {
    try {
      let fd: number;
      try {
        fd = await this.acquire(seg);
      } catch (e) {
        // Truncated away while its file was opening: the cut left nothing of it to write.
        if (seg.deleted && w.to === w.from) return;
        throw e;
      }
      try {
        const pos = w.from - seg.base;
        // A small write is a few microseconds of copying into the page cache: done inline it
        // saves a threadpool round trip (0.1-0.3 ms measured here) on every small append.
        if (w.to - w.from <= INLINE_WRITE_BYTES) writevAllSync(fd, bufs, pos);
        else await writevAll(fd, bufs, pos);
      } finally {
        this.release(seg);
      }
    } finally {
      this.inflight.delete(w);
    }
    // Only a completed write counts: sync covers what completed before it started.
    if (!seg.deleted) {
      seg.dirty = true;
      this.dirty.add(seg);
    }
    if (w.to > w.from) this.written.add(w.from, w.to);
  }

  /** True if every byte of [from, to) has been written (in order or not; not necessarily synced). */
  isWritten(from: number, to: number): boolean {
    return this.written.covers(from, to);
  }

  /**
   * Appends whole frames copied from a peer (catch-up): validates all of them (header,
   * trailer, payload checksum), places them, then writes them. `offset` must equal `end`.
   */
  async appendFrames(offset: number, frames: Buffer): Promise<void> {
    this.usable();
    if (offset !== this.end) throw new LogError('internal', `appendFrames at ${offset} but the log ends at ${this.end}`, { offset, end: this.end });
    const metas: Array<{ at: number; length: number; term: number }> = [];
    let term = this.epochs[this.epochs.length - 1]?.term ?? 0;
    for (let at = 0; at < frames.length;) {
      const r = checkFrame(frames, at, offset);
      if (!r.ok) throw new LogError('bad_request', `invalid frame at offset ${offset + at}: ${r.reason}`, { offset: offset + at });
      // Checked up front so that a bad batch places nothing.
      if (r.frame.term < term) throw new LogError('bad_request', `frame at offset ${offset + at} has term ${r.frame.term} below ${term}`, { offset: offset + at });
      term = r.frame.term;
      metas.push({ at, length: r.frame.length, term });
      at = r.next;
    }
    // Place all, cutting the buffer where a frame lands in a new segment.
    const pieces: Array<[number, number]> = [];
    for (const m of metas) {
      const before = this.active();
      this.place(offset + m.at, m.length, m.term);
      const end = m.at + frameSize(m.length);
      if (pieces.length === 0 || this.active() !== before) pieces.push([m.at, end]);
      else pieces[pieces.length - 1][1] = end;
    }
    await Promise.all(pieces.map(([from, to]) => this.writeAt(offset + from, frames.subarray(from, to))));
  }

  /**
   * fdatasyncs every segment written since the last sync (and the directory after a
   * segment was created). Covers the writes that completed before the call. A failure is
   * permanent: after a failed fsync the kernel may have dropped the dirty pages, so a retry
   * could "succeed" without the data; the log refuses further use and must be reopened.
   */
  sync(): Promise<void> {
    // One at a time. A second sync started beside the first would find the dirty segments
    // already taken and, with nothing left to fdatasync, declare durable what the first's
    // fdatasync has not covered yet.
    const p = this.lastSync.then(() => this.syncNow());
    // close() waits for these: an fd must not close under a running fdatasync, and a failure
    // it reports must not be missed by whoever closes the log.
    const settled = p.then(noop, noop);
    this.lastSync = settled;
    this.syncs.add(settled);
    void settled.then(() => this.syncs.delete(settled));
    return p;
  }

  private async syncNow(): Promise<void> {
    if (this.failure) throw this.failure;
    const upTo = this.written.value;
    const gen = this.gen;
    const segs = [...this.dirty].filter((s) => !s.deleted);
    this.dirty.clear();
    for (const s of segs) s.dirty = false;
    const dir = this.dirDirty;
    this.dirDirty = false;
    try {
      await Promise.all(segs.map(async (s) => {
        const fd = await this.acquire(s);
        try {
          await fdatasync(fd);
        } finally {
          this.release(s);
        }
      }));
      if (dir) await fsyncDir(this.dir);
    } catch (e) {
      throw this.fail(e, 'fdatasync failed');
    }
    if (gen === this.gen) {
      const b = this.boundaryAtOrBelow(upTo);
      if (b > this.durable) this.durable = b;
      this.maybeCheckpoint();
    }
    this.evictFds();
  }

  // ------------------------------------------------------------------ truncation

  /**
   * Drops every frame at and after `offset` (a frame boundary, start <= offset <= end).
   * The bookkeeping (end, index, epochs, later segments) changes at once, so the caller
   * may place new frames right after calling; the file work waits for the writes issued
   * before, and writes issued after wait for it. Resolves when the cut is durable.
   */
  truncate(offset: number): Promise<void> {
    let k: number, seg: Segment, index: FrameIndex, rel: number, count: number;
    try {
      this.usable();
      if (offset === this.end) return this.barrier ?? Promise.resolve();
      if (offset < this.start) throw new LogError('trimmed', `cannot truncate at ${offset}: the log starts at ${this.start}`, { start: this.start });
      if (!(offset <= this.end)) throw new LogError('out_of_range', `cannot truncate at ${offset}: the log ends at ${this.end}`, { start: this.start, end: this.end });
      k = this.segAt(offset);
      seg = this.segs[k];
      index = this.indexSync(seg);
      rel = offset - seg.base;
      count = index.countBelow(rel);
      if (count >= index.count || index.at(count) !== rel) {
        throw new LogError('bad_offset', `cannot truncate at ${offset}: not a frame boundary`, { start: this.start, end: this.end });
      }
    } catch (e) {
      return Promise.reject(e);
    }

    let removed: Segment[];
    try {
      this.gen++;
      this.clipPendingWrites(offset);
      this.written.truncate(offset);
      this.durable = Math.min(this.durable, offset);
      if (this.cp && this.cp.offset > offset) {
        // Lowered durably before the cut: a checkpoint past the end would, once new
        // frames are written, point into the middle of one.
        const keep = Math.min(seg.persisted, count);
        this.cp = { base: seg.base, offset: keep < count ? seg.base + index.at(keep) : offset, count: keep, indexCrc: crc32c(index.view(0, keep)) };
        saveCheckpointSync(this.dir, this.cp, true);
      }
      // Later segments go now, so a segment the next place() creates cannot collide with one.
      removed = this.segs.splice(k + 1);
      for (const s of removed.reverse()) this.drop(s, true);
      index.truncate(count);
      seg.persisted = Math.min(seg.persisted, count);
      this.indexCache.delete(seg);
      this.openSealed.delete(seg);
      this.end = offset;
      const before = this.epochs.length;
      truncateEpochs(this.epochs, offset);
      if (this.epochs.length !== before) rewriteEpochsSync(this.dir, this.epochs);
    } catch (e) {
      return this.cutFailed(e);
    }

    // A later truncation or a reset may drop the segment before this runs, or while it does:
    // its files are gone then (the path may already name a new segment with the same base),
    // and nothing is left to cut.
    const cutFiles = async () => {
      if (seg.deleted) return;
      const fd = await this.acquire(seg);
      try {
        await ftruncate(fd, rel);
        await fsync(fd);
      } finally {
        this.release(seg);
      }
      if (seg.deleted) return;
      // Drops a sealed footer and entries past the cut (checkpoints vouch for a prefix).
      // Durably: an old sealed index that survived a crash could pass for the index of the
      // frames written after the cut, if they happen to end where the old ones did.
      const idx = await this.indexFd(seg);
      if (seg.deleted) return;
      await ftruncate(idx, seg.persisted * 4);
      await fsync(idx);
    };
    return this.fence(() => this.meta.run(async () => {
      try {
        await cutFiles();
      } catch (e) {
        if (!seg.deleted) throw e;
      }
      // The removed segments' unlinks must be durable either way.
      if (removed.length > 0) await fsyncDir(this.dir);
    }));
  }

  /**
   * Drops the whole log and starts it again, empty, at `offset` (e.g. a follower joining
   * a cluster whose log starts past everything it has). The epochs are replaced by
   * `epochsBelow`'s boundaries below `offset` (the leader's terms there): a log that is empty
   * after a restart still knows the term before its start.
   */
  reset(offset: number, epochsBelow: readonly Epoch[] = []): Promise<void> {
    try {
      this.usable();
      if (!Number.isSafeInteger(offset) || offset < 0) throw new LogError('bad_offset', `invalid offset ${offset}`);
    } catch (e) {
      return Promise.reject(e);
    }
    try {
      this.gen++;
      this.clipPendingWrites(-Infinity);
      this.written.reset(offset);
      this.durable = offset;
      for (const s of this.segs.splice(0).reverse()) this.drop(s, true);
      this.epochs.length = 0;
      for (const e of epochsBelow) if (e.offset < offset) this.epochs.push({ term: e.term, offset: e.offset });
      rewriteEpochsSync(this.dir, this.epochs);
      this.start = offset;
      this.end = offset;
      this.cp = null;
      this.createSegment(offset);
    } catch (e) {
      return this.cutFailed(e);
    }
    return this.fence();
  }

  // ------------------------------------------------------------------ reading

  /**
   * Whole frames from `offset`: at least one (even if larger than `maxBytes`), never past
   * `limitEnd` (which callers keep at or below `end`, e.g. the commit end), never across
   * a segment. `next` is the offset after the last frame returned; fewer frames than
   * asked for is normal, the caller loops.
   */
  async read(offset: number, maxBytes: number, limitEnd: number): Promise<{ data: Buffer; next: number }> {
    if (offset < this.start) throw new LogError('trimmed', `offset ${offset} was trimmed; the log starts at ${this.start}`, { start: this.start });
    if (offset > limitEnd) throw new LogError('out_of_range', `offset ${offset} is beyond the end ${limitEnd}`, { start: this.start, end: limitEnd });
    if (offset === limitEnd) return { data: EMPTY, next: offset };
    const limit = Math.min(limitEnd, this.end);
    if (offset >= limit) throw new LogError('out_of_range', `offset ${offset} is beyond the end ${limit}`, { start: this.start, end: limit });

    const seg = this.segs[this.segAt(offset)];
    // A trim or truncation that removes the segment meanwhile: decide again (trimmed, out of
    // range, or whatever frame is there now).
    const again = (e: unknown) => {
      if (seg.deleted) return this.read(offset, maxBytes, limitEnd);
      throw e;
    };
    let index: FrameIndex;
    try {
      index = await this.loadIndex(seg);
    } catch (e) {
      return again(e);
    }
    const k = this.segAt(offset);
    if (seg.deleted || this.segs[k] !== seg) return this.read(offset, maxBytes, limitEnd);
    const rel = offset - seg.base;
    const i = index.find(rel);
    if (i < 0) {
      if (seg.damagedAt !== null && offset >= seg.damagedAt) {
        throw new LogError('damaged', `segment ${hex16(seg.base)} of this replica is damaged from offset ${seg.damagedAt}; read the range from another replica`, { offset, damagedAt: seg.damagedAt });
      }
      throw new LogError('bad_offset', `offset ${offset} is not the start of a frame`, { start: this.start, end: limitEnd });
    }
    const segEnd = (seg.damagedAt ?? this.segmentEnd(k)) - seg.base;
    const boundary = (j: number) => (j < index.count ? index.at(j) : segEnd);
    const stop = Math.min(segEnd, limit - seg.base);
    if (boundary(i + 1) > stop) return { data: EMPTY, next: offset };
    const cap = Math.min(stop, rel + Math.max(0, maxBytes));
    let j = segEnd <= cap ? index.count : index.countBelow(cap + 1) - 1;
    if (j <= i) j = i + 1;
    const to = boundary(j);

    let data: Buffer;
    try {
      const fd = await this.acquire(seg);
      try {
        data = await readAt(fd, to - rel, rel);
      } finally {
        this.release(seg);
      }
    } catch (e) {
      return again(e);
    }
    if (data.length !== to - rel) throw new LogError('internal', `segment ${hex16(seg.base)} is shorter than its index`, { offset });
    return { data, next: seg.base + to };
  }

  // ------------------------------------------------------------------ scrubbing

  /**
   * Where the frame starting at `offset` ends by the index, not by its header (which may be
   * the damaged part); null when no frame starts there (any more). For the scrubber.
   */
  async frameEndAt(offset: number): Promise<number | null> {
    const k = this.segAt(offset);
    if (k < 0 || offset < this.start || offset >= this.end) return null;
    const seg = this.segs[k];
    const index = await this.loadIndex(seg);
    if (seg.deleted) return null;
    const i = index.find(offset - seg.base);
    if (i < 0) return null;
    if (i + 1 < index.count) return seg.base + index.at(i + 1);
    return seg.damagedAt ?? this.segmentEnd(this.segAt(seg.base));
  }

  /** The segment holding `offset`: its base, and one past it (the next one's base, or the log's end). */
  segmentOf(offset: number): { base: number; end: number } {
    const k = this.segAt(offset);
    return k < 0 ? { base: this.start, end: this.start } : { base: this.segs[k].base, end: this.segmentEnd(k) };
  }

  /**
   * Overwrites the frame at `offset` with `frame`, a good copy of it from another replica
   * (frames are byte-identical on every replica), and fdatasyncs it: the scrubber's repair
   * of a committed frame that rotted here. Only a frame the index has at exactly that size
   * is rewritten; false when it is gone by now (trimmed, or the log was reset).
   */
  async repairFrame(offset: number, frame: Buffer): Promise<boolean> {
    this.usable();
    if ((await this.frameEndAt(offset)) !== offset + frame.length) return false;
    const k = this.segAt(offset);
    if (k < 0) return false;
    const seg = this.segs[k];
    let fd: number;
    try {
      fd = await this.acquire(seg);
    } catch (e) {
      if (seg.deleted) return false;
      throw e;
    }
    try {
      if (seg.deleted) return false;
      await writeAll(fd, frame, offset - seg.base);
      // On the segment's own fd: an error this fdatasync reports may be one that belonged
      // to appended pages too (Linux reports a writeback error once per file), so a
      // failure here fails the log as any other write or sync failure does.
      await fdatasync(fd);
    } catch (e) {
      throw this.fail(e, `repairing the frame at ${offset}`);
    } finally {
      this.release(seg);
    }
    return true;
  }

  // ------------------------------------------------------------------ trimming and retention

  /**
   * Deletes the segments that lie entirely below `before` (never the active one), oldest
   * first so a crash leaves a contiguous log. Returns the new start.
   */
  async trim(before: number): Promise<number> {
    this.usable();
    let n = 0;
    while (n < this.segs.length - 1 && this.segs[n + 1].base <= before) n++;
    if (n === 0) return this.start;
    const gone = this.segs.splice(0, n);
    this.start = this.segs[0].base;
    if (this.cp && this.cp.base < this.start) {
      this.cp = { base: this.start, offset: this.start, count: 0, indexCrc: 0 };
      saveCheckpointSync(this.dir, this.cp, true);
    }
    for (const s of gone) this.drop(s, false);
    for (const s of gone) {
      await unlinkIfExists(segmentPath(this.dir, s.base));
      await unlinkIfExists(indexPath(this.dir, s.base));
    }
    await fsyncDir(this.dir);
    return this.start;
  }

  /** Trims the oldest sealed segments by age (file mtime) and total size. Returns the start. */
  async applyRetention(policy: RetentionPolicy, now: number): Promise<number> {
    this.usable();
    const sealed = this.segs.slice(0, -1).map((s, i) => ({ base: s.base, end: this.segs[i + 1].base }));
    const n = await segmentsToDelete(sealed, this.bytes, policy, now, async (i) => (await fs.promises.stat(segmentPath(this.dir, sealed[i].base))).mtimeMs);
    return n > 0 ? this.trim(sealed[n - 1].end) : this.start;
  }

  // ------------------------------------------------------------------ checkpoints and closing

  /** Writes a checkpoint at the durable boundary now (close does; tests may). */
  checkpointNow(): Promise<void> {
    return this.meta.run(() => this.checkpoint());
  }

  /**
   * Waits for writes and syncs in flight, syncs the rest, checkpoints and closes every file
   * (the log is unusable afterwards). Throws the log's failure, if it has one (a failed
   * fdatasync, say): what was written may not be durable, and whoever closes must not report
   * a clean stop.
   */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    while (this.barrier) await this.barrier;
    await Promise.all([...this.inflight].map((w) => w.settled));
    await Promise.all([...this.syncs]);
    if (!this.failure) {
      await this.sync();
      await this.checkpointNow();
    }
    await this.meta.run(async () => {
      for (const s of this.segs) {
        if (s.idxFd !== null) await close(s.idxFd);
        s.idxFd = null;
      }
    });
    this.closed = true;
    for (const s of this.segs) {
      if (s.fd !== null) await close(s.fd);
      s.fd = null;
    }
    if (this.failure) throw this.failure;
  }

  // ------------------------------------------------------------------ internals

  /**
   * A truncation at `at` makes writes in flight or queued behind a barrier count only up to
   * it (`-Infinity`: nothing, for a reset).
   */
  private clipPendingWrites(at: number): void {
    for (const w of this.inflight) w.to = Math.max(w.from, Math.min(w.to, at));
    for (const q of this.queued) q.to = Math.max(q.from, Math.min(q.to, at));
  }

  private usable(): void {
    if (this.failure) throw this.failure;
    if (this.closing) throw new LogError('unavailable', 'the log is closed');
  }

  private fail(e: unknown, what: string): LogError {
    const err = e instanceof LogError ? e : new LogError('internal', `${what}: ${(e as Error).message}`, {}, { cause: e });
    this.failure ??= err;
    return err;
  }

  private noteBackground(e: unknown): void {
    this.backgroundError = e as Error;
  }

  /**
   * A truncation or reset that failed part way through its bookkeeping (an epochs or
   * checkpoint file could not be written) leaves it matching neither side of the cut: the
   * log refuses further use.
   */
  private cutFailed(e: unknown): Promise<never> {
    return Promise.reject(this.fail(e, 'truncation failed'));
  }

  /**
   * Runs a truncation's or reset's file work after the writes in flight and the previous
   * truncation's work, and publishes it as the barrier later writes wait for.
   */
  private fence(work: () => Promise<void> = async () => {}): Promise<void> {
    const waitFor = [...this.inflight].map((w) => w.settled);
    const prev = this.barrier;
    const job = (async () => {
      await prev;
      await Promise.all(waitFor);
      await work();
    })();
    const settled = job.then(noop, noop);
    this.barrier = settled;
    void settled.then(() => {
      if (this.barrier === settled) this.barrier = null;
    });
    return job.catch((e) => {
      throw this.fail(e, 'truncation failed');
    });
  }

  private active(): Segment | undefined {
    return this.segs[this.segs.length - 1];
  }

  /** Index (in `segs`) of the segment holding `offset`: the last with base <= offset, or -1. */
  private segAt(offset: number): number {
    let lo = 0, hi = this.segs.length - 1, found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.segs[mid].base <= offset) { found = mid; lo = mid + 1; } else hi = mid - 1;
    }
    return found;
  }

  /** One past the last byte of segment `k`. */
  private segmentEnd(k: number): number {
    return k + 1 < this.segs.length ? this.segs[k + 1].base : this.end;
  }

  private createSegment(base: number): Segment {
    const seg = new Segment(base);
    seg.fd = fs.openSync(segmentPath(this.dir, base), 'w+');
    unlinkIfExistsSync(indexPath(this.dir, base));
    seg.index = new FrameIndex();
    this.segs.push(seg);
    if (this.segs.length === 1) this.start = base;
    // The next sync makes the new file's directory entry durable.
    this.dirDirty = true;
    if (!this.cp) {
      // A fresh log starts with a checkpoint, so recovery never has to guess where to begin.
      this.cp = { base, offset: base, count: 0, indexCrc: 0 };
      saveCheckpointSync(this.dir, this.cp, true);
    }
    return seg;
  }

  /** `seg` was the active segment and is full (a new one is active): write its final index out. */
  private seal(seg: Segment): void {
    const index = seg.index!;
    this.touchIndex(seg);
    this.openSealed.add(seg);
    void this.meta.run(async () => {
      // Truncated into (active again) or away in the meantime: nothing to seal.
      if (seg.deleted || seg === this.active()) return;
      const gen = this.gen;
      const fd = await this.indexFd(seg);
      const n = index.count;
      await writeAll(fd, Buffer.concat([index.copy(seg.persisted, n), indexFooter(index)]), seg.persisted * 4);
      await ftruncate(fd, n * 4 + 16);
      if (gen === this.gen) seg.persisted = n;
      await close(fd);
      seg.idxFd = null;
    }).catch((e) => this.noteBackground(e));
  }

  /** Forgets a trimmed or truncated segment; `unlinkNow` deletes its files synchronously. */
  private drop(seg: Segment, unlinkNow: boolean): void {
    seg.deleted = true;
    this.dirty.delete(seg);
    this.indexCache.delete(seg);
    this.openSealed.delete(seg);
    seg.index = null;
    if (seg.refs === 0) this.closeFd(seg);
    // The index fd may be in use by a queued index write: close it in turn.
    void this.meta.run(async () => {
      if (seg.idxFd !== null) await close(seg.idxFd);
      seg.idxFd = null;
    }).catch((e) => this.noteBackground(e));
    if (unlinkNow) {
      unlinkIfExistsSync(segmentPath(this.dir, seg.base));
      unlinkIfExistsSync(indexPath(this.dir, seg.base));
    }
  }

  private closeFd(seg: Segment): void {
    if (seg.fd === null) return;
    fs.close(seg.fd, noop);
    seg.fd = null;
  }

  /** The segment's fd, opened on demand; pair with release(). */
  private async acquire(seg: Segment): Promise<number> {
    seg.refs++;
    try {
      if (seg.fd === null) {
        // A dropped segment's path may already name a new segment with the same base: a
        // dropped one is never opened again (an fd it still has keeps serving its old bytes).
        if (seg.deleted) throw gone(seg);
        if (this.closed) throw new LogError('unavailable', 'the log is closed');
        seg.opening ??= open(segmentPath(this.dir, seg.base), 'r+').then(
          (fd) => { seg.fd = fd; seg.opening = null; return fd; },
          (e) => { seg.opening = null; throw e; },
        );
        await seg.opening;
        if (seg.deleted) throw gone(seg);
      }
    } catch (e) {
      this.release(seg);
      throw e;
    }
    if (seg !== this.active() && !seg.deleted) {
      this.openSealed.delete(seg);
      this.openSealed.add(seg);
      // Not only after syncs: a node that only serves reads (a replay from the start) would
      // otherwise keep every segment it read open.
      if (this.openSealed.size > OPEN_SEALED_SEGMENTS) this.evictFds();
    }
    return seg.fd!;
  }

  private release(seg: Segment): void {
    seg.refs--;
    if (seg.deleted && seg.refs === 0) this.closeFd(seg);
  }

  /** Closes the least recently used sealed segment files beyond the cap (idle, synced ones). */
  private evictFds(): void {
    for (const s of this.openSealed) {
      if (this.openSealed.size <= OPEN_SEALED_SEGMENTS) return;
      if (s.refs > 0 || s.dirty || s === this.active()) continue;
      this.openSealed.delete(s);
      this.closeFd(s);
    }
  }

  private async indexFd(seg: Segment): Promise<number> {
    seg.idxFd ??= await open(indexPath(this.dir, seg.base), fs.constants.O_RDWR | fs.constants.O_CREAT);
    return seg.idxFd;
  }

  private touchIndex(seg: Segment): void {
    if (seg === this.active()) return;
    this.indexCache.delete(seg);
    this.indexCache.add(seg);
    if (this.indexCache.size <= INDEX_CACHE_SEGMENTS) return;
    const frontier = this.written.value;
    for (const s of this.indexCache) {
      if (this.indexCache.size <= INDEX_CACHE_SEGMENTS) break;
      // A segment with frames placed but not yet written (a follower catching up) cannot
      // rebuild its index from the file: keep it in memory until its bytes are all there.
      if (s === seg || this.segmentEnd(this.segAt(s.base)) > frontier) continue;
      this.indexCache.delete(s);
      s.index = null;
    }
  }

  /** The largest frame boundary <= `offset` whose segment index is in memory (else `durable`). */
  private boundaryAtOrBelow(offset: number): number {
    if (offset >= this.end) return this.end;
    const k = this.segAt(offset);
    const seg = this.segs[k];
    if (!seg?.index) return this.durable;
    const i = seg.index.countBelow(offset - seg.base + 1) - 1;
    return i < 0 ? seg.base : seg.base + seg.index.at(i);
  }

  /**
   * A sealed segment's index: from its `.idx` file when that is complete and fits the
   * segment, else rebuilt by scanning the segment (and written back).
   */
  private async loadIndex(seg: Segment): Promise<FrameIndex> {
    if (seg.index) {
      this.touchIndex(seg);
      return seg.index;
    }
    seg.indexLoading ??= (async () => {
      try {
        const size = this.segmentEnd(this.segAt(seg.base)) - seg.base;
        let entries = decodeSealedIndex(await readFileOrNull(indexPath(this.dir, seg.base)));
        const fd = await this.acquire(seg);
        let rebuilt: { index: FrameIndex; validEnd: number } | null = null;
        try {
          if (entries) {
            const header = entries.length > 0 ? await readAt(fd, HEADER_SIZE, entries[entries.length - 1]) : null;
            if (!indexFitsSegment(entries, size, header)) entries = null;
          }
          if (!entries) rebuilt = rebuildIndex(await readAt(fd, size, 0), seg.base);
        } finally {
          this.release(seg);
        }
        return this.adoptIndex(seg, entries, rebuilt, size);
      } finally {
        seg.indexLoading = null;
      }
    })();
    return seg.indexLoading;
  }

  /** Synchronous twin of loadIndex, for truncate and isFrameStart (rarely needs the disk). */
  private indexSync(seg: Segment): FrameIndex {
    if (seg.index) {
      this.touchIndex(seg);
      return seg.index;
    }
    const size = this.segmentEnd(this.segAt(seg.base)) - seg.base;
    let entries = decodeSealedIndex(readFileOrNullSync(indexPath(this.dir, seg.base)));
    const fd = fs.openSync(segmentPath(this.dir, seg.base), 'r');
    let rebuilt: { index: FrameIndex; validEnd: number } | null = null;
    try {
      if (entries) {
        const header = entries.length > 0 ? readAtSync(fd, HEADER_SIZE, entries[entries.length - 1]) : null;
        if (!indexFitsSegment(entries, size, header)) entries = null;
      }
      if (!entries) rebuilt = rebuildIndex(readAtSync(fd, size, 0), seg.base);
    } finally {
      fs.closeSync(fd);
    }
    return this.adoptIndex(seg, entries, rebuilt, size);
  }

  private adoptIndex(seg: Segment, entries: Uint32Array | null, rebuilt: { index: FrameIndex; validEnd: number } | null, size: number): FrameIndex {
    // Loaded twice concurrently (sync and async): keep the first, it may have changed since.
    if (seg.index) return seg.index;
    let index: FrameIndex;
    if (entries) {
      index = new FrameIndex(entries);
      seg.persisted = entries.length;
    } else {
      index = rebuilt!.index;
      if (rebuilt!.validEnd < seg.base + size) {
        seg.damagedAt = rebuilt!.validEnd;
        this.onDamaged?.(`segment ${hex16(seg.base)} is damaged from offset ${seg.damagedAt} (its frames end there, ${seg.base + size - seg.damagedAt} bytes before the segment does): reads of that range get "damaged" and go to other replicas; restore the file from a replica to repair it`);
      } else if (!seg.deleted) {
        void this.meta.run(async () => {
          if (seg.deleted || seg === this.active()) return;
          await fs.promises.writeFile(indexPath(this.dir, seg.base), encodeSealedIndex(index));
          seg.persisted = index.count;
        }).catch((e) => this.noteBackground(e));
      }
    }
    if (!seg.deleted) {
      seg.index = index;
      this.touchIndex(seg);
    }
    return index;
  }

  private maybeCheckpoint(): void {
    if (this.checkpointQueued || this.closing) return;
    const cp = this.cp;
    if (cp && cp.offset === this.durable) return;
    const newSegment = !cp || this.segs[this.segAt(this.durable)]?.base !== cp.base;
    if (!newSegment && performance.now() - this.lastCheckpointAt < this.checkpointIntervalMs) return;
    this.checkpointQueued = true;
    void this.checkpointNow()
      .catch((e) => this.noteBackground(e))
      .finally(() => { this.checkpointQueued = false; });
  }

  /**
   * Runs under the metadata lock: appends the index entries below the durable boundary to
   * the segment's `.idx` file, then replaces the checkpoint. No fsync: the checkpoint
   * carries the CRC of the entries it relies on, and recovery falls back if they are lost.
   */
  private async checkpoint(): Promise<void> {
    const gen = this.gen;
    const d = this.durable;
    if (this.cp && this.cp.offset === d) return;
    const k = this.segAt(d);
    if (k < 0) return;
    const seg = this.segs[k];
    const index = seg.index ?? (await this.loadIndex(seg));
    const count = index.countBelow(d - seg.base);
    if (count > seg.persisted) {
      const from = seg.persisted;
      await writeAll(await this.indexFd(seg), index.copy(from, count), from * 4);
      if (gen !== this.gen || seg.deleted) return;
      seg.persisted = count;
    }
    const next: Checkpoint = { base: seg.base, offset: d, count, indexCrc: crc32c(index.view(0, count)) };
    if (this.beforeCheckpoint) await this.beforeCheckpoint();
    const staged = await stageCheckpoint(this.dir, next);
    // A truncation lowered the checkpoint meanwhile: this one may point past the log.
    if (gen !== this.gen || seg.deleted) return;
    staged.commit();
    this.cp = next;
    this.lastCheckpointAt = performance.now();
  }
}
