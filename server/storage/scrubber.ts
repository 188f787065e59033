/**
 * The scrubber: reads this node's committed frames in the background, at a capped rate,
 * and checks each one as recovery does (header CRC, trailer, payload CRC32C), so that bit
 * rot in data nobody reads is found before the other copies are lost too. A frame that
 * fails is rewritten from another replica's good copy (frames are byte-identical on every
 * replica) when one has it; otherwise it is reported, and reads of it keep going to the
 * other replicas, as clients do for any bad frame. BookKeeper's bookies scrub the same way.
 *
 * Passes run `intervalMs` apart. Where a pass stands is kept in the `scrub` file, so that a
 * restart resumes it rather than starting over or waiting another interval; the file is
 * written without fsync (a lost one only means checking some bytes again).
 *
 * The scrubber reads through the page cache: bytes still cached are checked as readers get
 * them, which is what matters for serving, and are checked from the disk once evicted.
 */
import path from 'node:path';
import { checkFrame, decodeHeader, HEADER_SIZE } from '../../spec/frame.ts';
import { LogError } from '../../spec/errors.ts';
import { termAt } from '../../spec/entry.ts';
import type { SegmentLog } from './segment-log.ts';
import { readFileOrNullSync, writeFileAtomicSync } from './fs-util.ts';
import { hex16 } from './segment-files.ts';

export const SCRUB_FILE = 'scrub';

/** Bytes read per step of a pass. */
const CHUNK_BYTES = 1024 * 1024;
/** Wait after a pass failed (a read error) before going on. */
const RETRY_MS = 60_000;
/** Least time between two saves of the `scrub` file during a pass. */
const SAVE_EVERY_MS = 1000;
/** How long a pass waits for a frame to be known committed before it looks again. */
const COMMIT_WAIT_MS = 1000;
/** Reading time a pass may save up (while repairing, or waiting) and then spend at full speed. */
const BURST_MS = 1000;

export interface ScrubberOptions {
  log: SegmentLog;
  /** Time between the end of one pass and the start of the next; 0: never scrub. */
  intervalMs: number;
  /** Bytes read per second at most. */
  bytesPerSec: number;
  /** Frames are checked below this offset only (the readable end: no other frame is final). */
  limit: () => number;
  /** The other replicas, asked in this order for a copy of a damaged frame. */
  sources: () => readonly string[];
  /** Committed frames from `offset` on at replica `source` (at least the first whole one). */
  fetchFrames: (source: string, offset: number, signal: AbortSignal) => Promise<Buffer>;
  /** A repair's write or fdatasync failed: the log refuses further use, and the node must stop. */
  diskFailed: (reason: string) => void;
  /** One line per finding (a damaged frame, its repair, a pass that could not go on). */
  report: (line: string) => void;
  /** Wall-clock milliseconds (passes are due across restarts). */
  now: () => number;
}

/** What `/v1/status` shows of the scrubber. */
export interface ScrubStatus {
  /** Off when the interval is 0. */
  enabled: boolean;
  running: boolean;
  /** Where the pass under way stands (null between passes). */
  position: number | null;
  /** Passes completed since the directory was first scrubbed. */
  passes: number;
  /** When the last pass ended (ms since the epoch), null before the first. */
  lastPassEndedAt: number | null;
  /**
   * Since this process started: bytes checked, findings of damage (a frame that stays
   * damaged is found again by every pass; a damaged index's skipped rest counts once),
   * frames rewritten.
   */
  checkedBytes: number;
  damaged: number;
  repaired: number;
}

/** The `scrub` file: where a pass stands and when the last one ended. */
interface SavedState {
  position: number | null;
  passes: number;
  lastPassEndedAt: number | null;
}

function loadState(dir: string): SavedState {
  const fresh: SavedState = { position: null, passes: 0, lastPassEndedAt: null };
  const buf = readFileOrNullSync(path.join(dir, SCRUB_FILE));
  if (!buf) return fresh;
  try {
    const v = JSON.parse(buf.toString('utf8')) as Partial<SavedState>;
    const offset = (x: unknown) => (typeof x === 'number' && Number.isSafeInteger(x) && x >= 0 ? x : null);
    return { position: offset(v.position), passes: offset(v.passes) ?? 0, lastPassEndedAt: offset(v.lastPassEndedAt) };
  } catch {
    return fresh; // a damaged file only costs a pass started early
  }
}

export class Scrubber {
  private readonly state: SavedState;
  private stopped = false;
  private running = false;
  private wake: (() => void) | null = null;
  private timer: NodeJS.Timeout | null = null;
  private loop: Promise<void> | null = null;
  /** Aborts the peer fetches of a repair when the scrubber stops. */
  private readonly abort = new AbortController();
  /** The rate's clock (monotonic, unlike `now`): bytes read since `t0`. */
  private pace = { t0: 0, read: 0 };
  private savedAt = -Infinity;
  private checkedBytes = 0;
  private damaged = 0;
  private repaired = 0;

  constructor(private readonly opts: ScrubberOptions) {
    this.state = loadState(opts.log.dir);
  }

  start(): void {
    if (this.opts.intervalMs <= 0 || this.loop) return;
    this.loop = this.run();
  }

  /** Ends the pass under way at its next frame (aborting a repair's fetches) and waits for it. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    this.wake?.();
    await this.loop;
  }

  status(): ScrubStatus {
    return {
      enabled: this.opts.intervalMs > 0, running: this.running, position: this.state.position,
      passes: this.state.passes, lastPassEndedAt: this.state.lastPassEndedAt,
      checkedBytes: this.checkedBytes, damaged: this.damaged, repaired: this.repaired,
    };
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const { position, lastPassEndedAt } = this.state;
      // At most an interval away, even if the clock was set back since the last pass.
      const due = position !== null || lastPassEndedAt === null ? 0 : Math.min(this.opts.intervalMs, lastPassEndedAt + this.opts.intervalMs - this.opts.now());
      if (due > 0) {
        await this.sleep(due); // perhaps only part of it (timers stop at 24.8 days): ask again
        continue;
      }
      try {
        await this.pass();
      } catch (e) {
        if (this.stopped) return;
        // An index that cannot be loaded, say: the disk's trouble. Say so, and go on later.
        this.opts.report(`scrub: the pass stopped at ${this.state.position}: ${(e as Error).message}; it goes on in ${RETRY_MS / 1000} s`);
        await this.sleep(RETRY_MS);
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      this.wake = () => {
        if (this.timer) clearTimeout(this.timer);
        this.timer = null;
        this.wake = null;
        resolve();
      };
      this.timer = setTimeout(this.wake, Math.min(ms, 0x7fff_ffff));
      this.timer.unref();
    });
  }

  /**
   * One pass from where the last one stopped (or the log start) to where this node's log
   * ended when the pass began: what is appended meanwhile is the next pass's, so a pass ends
   * whatever the rate of appends. Frames not known committed yet are waited for, not
   * skipped: a restarted node knows its commit end only once a leader tells it.
   */
  private async pass(): Promise<void> {
    const log = this.opts.log;
    this.running = true;
    const target = log.end;
    let at = Math.max(this.state.position ?? log.start, log.start);
    this.pace = { t0: performance.now(), read: 0 };
    try {
      while (!this.stopped) {
        at = Math.max(at, log.start); // trimmed meanwhile
        // A truncation may have cut the tail the pass was to reach.
        if (at >= Math.min(target, log.end)) break;
        this.setPosition(at);
        const next = await this.step(at, Math.min(target, this.opts.limit()));
        if (next === null) await this.sleep(COMMIT_WAIT_MS);
        else at = next;
        await this.throttle();
      }
      if (this.stopped) {
        this.setPosition(at, true); // a restart goes on from here
      } else {
        this.state.passes++;
        this.state.lastPassEndedAt = this.opts.now();
        this.setPosition(null, true);
      }
    } finally {
      this.running = false;
    }
  }

  /**
   * Checks one read's worth of frames from `at`, below `limit`. Returns where the next step
   * starts, or null when the frame at `at` is not committed yet (wait for it).
   */
  private async step(at: number, limit: number): Promise<number | null> {
    const log = this.opts.log;
    if (at >= limit) return null;
    let chunk: { data: Buffer; next: number };
    try {
      chunk = await log.read(at, CHUNK_BYTES, limit);
    } catch (e) {
      const code = e instanceof LogError ? e.code : null;
      if (code === 'trimmed') return log.start;
      if (code === 'damaged') {
        // Frames past a damaged index are unknown here; reads of them go elsewhere.
        this.damaged++;
        this.opts.report(`scrub: ${(e as Error).message}; the scrubber skips the rest of that segment`);
        return log.segmentOf(at).end;
      }
      // The log was reset under this pass (a follower restarted at the leader's start).
      if ((code === 'bad_offset' || code === 'out_of_range') && at !== log.start) return log.start;
      return this.unreadable(at, limit, e);
    }
    if (chunk.next <= at) return null; // the frame at `at` reaches past the limit
    return this.check(chunk.data, at);
  }

  /**
   * A read that failed (EIO: an unreadable sector) is tried again for the one frame at `at`;
   * a frame that cannot be read is mended like a rotten one, and the pass goes on after it.
   */
  private async unreadable(at: number, limit: number, e: unknown): Promise<number | null> {
    const log = this.opts.log;
    let end: number | null;
    try {
      end = await log.frameEndAt(at);
    } catch (bad) {
      this.damaged++;
      this.opts.report(`scrub: reading at ${at} failed (${(e as Error).message}), and so did loading the index of its segment (${(bad as Error).message}): the scrubber skips the rest of that segment`);
      return log.segmentOf(at).end;
    }
    if (end === null) throw e;
    let frame: Buffer;
    try {
      frame = (await log.read(at, 0, limit)).data;
    } catch (again) {
      const code = again instanceof LogError ? again.code : null;
      // Gone or moved meanwhile: the pass takes it up again later.
      if (code === 'trimmed' || code === 'bad_offset' || code === 'out_of_range' || code === 'unavailable') throw again;
      if (!(await this.mend(at, Buffer.alloc(end - at), `unreadable: ${(again as Error).message}`))) return at;
      return end;
    }
    if (frame.length === 0) return null;
    return this.check(frame, at);
  }

  /**
   * Checks the whole frames in `data` (which starts at log offset `base`) and counts the
   * bytes read toward the status and the rate; returns where it got to.
   */
  private async check(data: Buffer, base: number): Promise<number> {
    const to = base + (await this.checkFrames(data, base));
    this.checkedBytes += to - base;
    this.pace.read += to - base;
    return to;
  }

  /** How far into `data` the frames were checked (all of it, unless stopped or gone). */
  private async checkFrames(data: Buffer, base: number): Promise<number> {
    let at = 0;
    while (at < data.length && !this.stopped) {
      const r = checkFrame(data, at, base);
      if (r.ok) {
        at = r.next;
        continue;
      }
      const offset = base + at;
      const end = await this.opts.log.frameEndAt(offset);
      if (end === null) break; // gone meanwhile (trimmed, reset): the next read decides
      if (!(await this.mend(offset, data.subarray(at, at + (end - offset)), r.reason))) break;
      at += end - offset;
    }
    return at;
  }

  /**
   * Rewrites the damaged frame `mine` from the first replica with a good copy, or reports
   * that none has one. False when the scrubber stopped first (the frame is checked again).
   */
  private async mend(offset: number, mine: Buffer, reason: string): Promise<boolean> {
    const log = this.opts.log;
    const where = `the frame at ${offset} (segment ${hex16(log.segmentOf(offset).base)}, ${mine.length} bytes) failed its check (${reason})`;
    const asked: string[] = [];
    for (const source of this.opts.sources()) {
      let copy: Buffer;
      try {
        copy = (await this.opts.fetchFrames(source, offset, this.abort.signal)).subarray(0, mine.length);
      } catch (e) {
        if (this.stopped) return false;
        asked.push(`${source}: ${(e as Error).message}`);
        continue;
      }
      if (this.stopped) return false;
      if (!isGoodCopy(copy, mine, offset, termAt(log.epochs, offset))) {
        asked.push(`${source}: its copy is not the same frame or fails its check too`);
        continue;
      }
      this.damaged++;
      let rewritten: boolean;
      try {
        rewritten = await log.repairFrame(offset, copy);
      } catch (e) {
        // The log has failed (a write or fdatasync error): the node must stop, as on every write path.
        this.opts.report(`scrub: ${where}, and rewriting it from ${source}'s copy failed: ${(e as Error).message}`);
        this.stopped = true;
        this.opts.diskFailed(`scrub repair at ${offset} failed: ${(e as Error).message}`);
        return false;
      }
      if (!rewritten) {
        this.opts.report(`scrub: ${where}, and was trimmed (or the log reset) before it could be rewritten from ${source}'s copy`);
        return true;
      }
      this.repaired++;
      this.opts.report(`scrub: ${where}; rewritten from ${source}'s copy`);
      return true;
    }
    this.damaged++;
    if (asked.length === 0) {
      this.opts.report(`scrub: ${where}, and there is no other replica to copy it from: readers of it get a checksum error`);
    } else {
      this.opts.report(`scrub: ${where}, and no other replica gave a good copy (${asked.join('; ')}): clients read it from another replica meanwhile, and the next pass tries again`);
    }
    return true;
  }

  /** Holds the pass to the rate; time not spent reading (a repair, a wait) saves up at most BURST_MS. */
  private async throttle(): Promise<void> {
    const p = this.pace;
    const allowedAt = (p.read / this.opts.bytesPerSec) * 1000;
    const elapsed = performance.now() - p.t0;
    if (allowedAt > elapsed) await this.sleep(allowedAt - elapsed);
    else if (elapsed - allowedAt > BURST_MS) p.t0 += elapsed - allowedAt - BURST_MS;
  }

  private setPosition(position: number | null, force = false): void {
    this.state.position = position;
    const now = performance.now();
    if (!force && now - this.savedAt < SAVE_EVERY_MS) return;
    this.savedAt = now;
    try {
      writeFileAtomicSync(path.join(this.opts.log.dir, SCRUB_FILE), JSON.stringify(this.state), false);
    } catch (e) {
      this.opts.report(`scrub: cannot save where the pass stands (${(e as Error).message}); a restart checks those bytes again`);
    }
  }
}

/**
 * Whether `copy` can replace this replica's damaged frame `mine` at `offset`: the same size,
 * whole and valid itself, of the term this replica's epochs give that offset, and, where
 * this replica's header is still valid, the same header. (A replica only serves committed
 * frames, which are the same everywhere; this guards against a confused one.)
 */
export function isGoodCopy(copy: Buffer, mine: Buffer, offset: number, term: number): boolean {
  if (copy.length !== mine.length) return false;
  const r = checkFrame(copy, 0, offset);
  if (!r.ok || r.next !== copy.length || r.frame.term !== term) return false;
  return !decodeHeader(mine).ok || copy.subarray(0, HEADER_SIZE).equals(mine.subarray(0, HEADER_SIZE));
}
