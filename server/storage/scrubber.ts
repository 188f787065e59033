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

export interface ScrubberOptions {
  log: SegmentLog;
  /** Time between the end of one pass and the start of the next; 0: never scrub. */
  intervalMs: number;
  /** Bytes read per second at most. */
  bytesPerSec: number;
  /** Frames are checked below this offset only (the commit end: no other frame is final). */
  limit: () => number;
  /** The other replicas, asked in this order for a copy of a damaged frame. */
  sources: () => readonly string[];
  /** Committed frames from `offset` on at replica `source` (at least the first whole one). */
  fetchFrames: (source: string, offset: number) => Promise<Buffer>;
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
  /** Since this process started: bytes checked, frames found damaged, frames rewritten. */
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
  private savedAt = 0;
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

  /** Ends the pass under way at its next step and waits for it. */
  async stop(): Promise<void> {
    this.stopped = true;
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
      if (due > 0) await this.sleep(due);
      if (this.stopped) return;
      try {
        await this.pass();
      } catch (e) {
        // A read or index error here is the disk's: say so, and try again later.
        this.opts.report(`scrub: the pass stopped at ${this.state.position}: ${(e as Error).message}; it goes on in ${RETRY_MS / 1000} s`);
        await this.sleep(RETRY_MS);
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wake = () => {
        if (this.timer) clearTimeout(this.timer);
        this.timer = null;
        this.wake = null;
        resolve();
      };
      // setTimeout caps at 2^31-1 ms (24.8 days); a longer wait just sleeps again.
      this.timer = setTimeout(this.wake, Math.min(ms, 0x7fff_ffff));
      this.timer.unref();
    });
  }

  /** One pass from where the last one stopped (or the log start) to the commit end. */
  private async pass(): Promise<void> {
    const log = this.opts.log;
    this.running = true;
    let at = Math.max(this.state.position ?? log.start, log.start);
    const t0 = performance.now(); // the rate's clock: monotonic, unlike now()
    let read = 0;
    try {
      while (!this.stopped) {
        if (at < log.start) at = log.start; // trimmed meanwhile
        const limit = this.opts.limit();
        if (at >= limit) break;
        this.setPosition(at);
        let chunk: { data: Buffer; next: number };
        try {
          chunk = await log.read(at, CHUNK_BYTES, limit);
        } catch (e) {
          const code = e instanceof LogError ? e.code : null;
          if (code === 'trimmed') continue;
          if (code === 'damaged') {
            // Frames past a damaged index are unknown here; reads of them go elsewhere.
            this.opts.report(`scrub: ${(e as Error).message}; the scrubber skips the rest of that segment`);
            at = log.segmentOf(at).end;
            continue;
          }
          if ((code === 'bad_offset' || code === 'out_of_range') && at !== log.start) {
            // The log was reset under this pass (a follower restarted at the leader's start).
            at = log.start;
            continue;
          }
          throw e;
        }
        if (chunk.next <= at) break;
        await this.check(chunk.data, at);
        read += chunk.data.length;
        this.checkedBytes += chunk.data.length;
        at = chunk.next;
        const ahead = (read / this.opts.bytesPerSec) * 1000 - (performance.now() - t0);
        if (ahead > 0) await this.sleep(ahead);
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

  /** Checks the whole frames in `data` (which starts at log offset `base`). */
  private async check(data: Buffer, base: number): Promise<void> {
    for (let at = 0; at < data.length;) {
      const r = checkFrame(data, at, base);
      if (r.ok) {
        at = r.next;
        continue;
      }
      const offset = base + at;
      const end = await this.opts.log.frameEndAt(offset);
      if (end === null) return; // gone meanwhile (trimmed, reset): the next read decides
      await this.mend(offset, data.subarray(at, at + (end - offset)), r.reason);
      at += end - offset;
    }
  }

  private async mend(offset: number, mine: Buffer, reason: string): Promise<void> {
    this.damaged++;
    const where = `the frame at ${offset} (segment ${hex16(this.opts.log.segmentOf(offset).base)}, ${mine.length} bytes)`;
    const asked: string[] = [];
    for (const source of this.opts.sources()) {
      let copy: Buffer;
      try {
        copy = (await this.opts.fetchFrames(source, offset)).subarray(0, mine.length);
      } catch (e) {
        asked.push(`${source}: ${(e as Error).message}`);
        continue;
      }
      if (!isGoodCopy(copy, mine, offset, termAt(this.opts.log.epochs, offset))) {
        asked.push(`${source}: its copy is not the same frame or fails its check too`);
        continue;
      }
      if (!(await this.opts.log.repairFrame(offset, copy))) return; // trimmed meanwhile
      this.repaired++;
      this.opts.report(`scrub: ${where} failed its check (${reason}); rewritten from ${source}'s copy`);
      return;
    }
    if (asked.length === 0) {
      this.opts.report(`scrub: ${where} failed its check (${reason}), and there is no other replica to copy it from: readers of it get a checksum error`);
      return;
    }
    this.opts.report(`scrub: ${where} failed its check (${reason}), and no other replica gave a good copy (${asked.join('; ')}): clients read it from another replica meanwhile, and the next pass tries again`);
  }

  private setPosition(position: number | null, force = false): void {
    this.state.position = position;
    const now = this.opts.now();
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
