/**
 * One node's simulated file, modelled after FoundationDB's AsyncFileNonDurable.
 *
 * Two images: `live` is what reads see (the page cache), `durable` is what survives a power
 * loss. A completed write changes `live` at once and joins the list of pending (unsynced)
 * operations; a sync makes the pending operations that existed when it was issued durable.
 * On power loss every pending write is, per 512-byte sector, kept, lost, partly written or
 * replaced by garbage; a pending truncation is kept or lost. A process crash keeps `live`
 * (the kernel still has the pages); only power loss mangles.
 *
 * The log start (`start`): the bytes below it are gone, as the server's deleted segments
 * are. Offsets stay absolute (byte `o` of the image is log offset `o`); below the start both
 * images are zero, writes there land nowhere (a write to a deleted segment's file), and
 * pending writes there are dropped, so a power loss cannot bring them back. Raising the
 * start (`trimTo`, a deletion run) and starting over (`reset`) are durable at once: see
 * their comments for how that compares with the server.
 *
 * Faults an executor sees: ENOSPC (`write` returns false when the file would grow past
 * `spaceLimit`) and fsync errors (`failSyncs` > 0 makes the next syncs fail; the pending
 * writes are then mangled as on power loss, because after a failed fdatasync the kernel may
 * have dropped the dirty pages — the "fsyncgate" behaviour).
 */
import type { Prng } from './prng.ts';

export const SECTOR = 512;

type PendingOp = { kind: 'write'; at: number; data: Buffer } | { kind: 'truncate'; to: number };

/** Relative weights of what happens to each pending sector on power loss. */
export interface SectorFate {
  keep: number;
  lose: number;
  partial: number;
  garbage: number;
}

export const DEFAULT_SECTOR_FATE: SectorFate = { keep: 5, lose: 3, partial: 1, garbage: 1 };

export interface ManglingStats {
  sectorsKept: number;
  sectorsLost: number;
  sectorsPartial: number;
  sectorsGarbage: number;
  truncationsLost: number;
}

export class SimDisk {
  private live: Buffer = Buffer.alloc(4096);
  /** One past the last byte of the file (never below `start`). */
  liveLen = 0;
  /** The log start: every byte below it was deleted (trims) or dropped (a reset). */
  start = 0;
  private durable: Buffer = Buffer.alloc(4096);
  durableLen = 0;
  private pending: PendingOp[] = [];
  /** Global index of pending[0] (counts every operation ever recorded). */
  private pendingBase = 0;
  /** Lowest offset whose live bytes changed since the checker last looked (Infinity: none). */
  liveDirtyFrom = Infinity;
  /** Lowest offset whose durable bytes changed since the checker last looked. */
  durableDirtyFrom = Infinity;
  /** Writes that would make the file longer than this fail with ENOSPC. */
  spaceLimit = Infinity;
  /** How many of the next syncs fail. */
  failSyncs = 0;
  bytesWritten = 0;
  syncs = 0;

  /** The live bytes (a view; valid until the next mutation). */
  view(): Buffer {
    return this.live.subarray(0, this.liveLen);
  }

  durableView(): Buffer {
    return this.durable.subarray(0, this.durableLen);
  }

  /** A copy of live bytes [at, at+len) (zero-filled past the end of the file). */
  read(at: number, len: number): Buffer {
    const out = Buffer.alloc(len);
    if (at < this.liveLen) this.live.copy(out, 0, at, Math.min(this.liveLen, at + len));
    return out;
  }

  /**
   * Positional write into the page cache. False (and nothing written) on ENOSPC. The part
   * below the start lands nowhere: the server's write would go to a deleted segment's file.
   */
  write(at: number, data: Buffer): boolean {
    if (at < this.start) {
      if (at + data.length <= this.start) return true;
      data = data.subarray(this.start - at);
      at = this.start;
    }
    if (at + data.length > Math.max(this.liveLen, this.spaceLimit)) return false;
    this.live = applyWrite(this.live, this.liveLen, at, data);
    this.liveLen = Math.max(this.liveLen, at + data.length);
    this.pending.push({ kind: 'write', at, data });
    this.bytesWritten += data.length;
    if (at < this.liveDirtyFrom) this.liveDirtyFrom = at;
    return true;
  }

  truncate(to: number): void {
    to = Math.max(to, this.start);
    if (to < this.liveLen) {
      this.live.fill(0, to, this.liveLen);
      this.liveLen = to;
      if (to < this.liveDirtyFrom) this.liveDirtyFrom = to;
    }
    this.pending.push({ kind: 'truncate', to });
  }

  /**
   * A deletion run: every byte below `to` is gone, from the page cache and the platter alike
   * (the server's trim unlinks whole segments and fsyncs the directory before it reports the
   * run). Pending writes below `to` are dropped with their file. Returns the bytes deleted.
   */
  trimTo(to: number): number {
    if (to <= this.start) return 0;
    const from = this.start;
    this.start = to;
    this.live.fill(0, 0, Math.min(to, this.live.length));
    this.durable.fill(0, 0, Math.min(to, this.durable.length));
    this.grow(to);
    this.pending = this.pending.map((op): PendingOp => {
      if (op.kind === 'truncate') return op.to >= to ? op : { kind: 'truncate', to };
      if (op.at >= to) return op;
      if (op.at + op.data.length <= to) return { kind: 'write', at: to, data: EMPTY };
      return { kind: 'write', at: to, data: op.data.subarray(to - op.at) };
    });
    if (from < this.liveDirtyFrom) this.liveDirtyFrom = from;
    if (from < this.durableDirtyFrom) this.durableDirtyFrom = from;
    return to - from;
  }

  /**
   * Drops the whole file and starts the log over, empty, at `to` (the `reset` effect, the
   * server's SegmentLog.reset). Durable at once here, like a truncation; the server unlinks
   * the old segments at once but makes the directory durable only with its next sync.
   * Returns the bytes dropped.
   */
  reset(to: number): number {
    const dropped = this.liveLen - this.start;
    this.live.fill(0);
    this.durable.fill(0);
    this.start = to;
    this.liveLen = 0;
    this.durableLen = 0;
    this.grow(to);
    // Every pending operation is void: the file it was on is gone.
    this.pendingBase += this.pending.length;
    this.pending = [];
    this.liveDirtyFrom = 0;
    this.durableDirtyFrom = 0;
    return dropped;
  }

  /** Extends both images with zeros to `len` bytes (the file up to the start of an empty log). */
  private grow(len: number): void {
    this.live = applyWrite(this.live, this.liveLen, len, EMPTY);
    this.durable = applyWrite(this.durable, this.durableLen, len, EMPTY);
    this.liveLen = Math.max(this.liveLen, len);
    this.durableLen = Math.max(this.durableLen, len);
  }

  /** A marker for a sync issued now: it covers every operation recorded so far. */
  syncMark(): number {
    return this.pendingBase + this.pending.length;
  }

  /** Completes a sync issued at `mark`; false when it fails (see `failSyncs`). */
  syncComplete(mark: number, rng: Prng, fate: SectorFate, stats: ManglingStats): boolean {
    this.syncs++;
    if (this.failSyncs > 0) {
      this.failSyncs--;
      this.mangle(rng, fate, stats);
      return false;
    }
    const n = Math.min(mark - this.pendingBase, this.pending.length);
    for (let i = 0; i < n; i++) this.applyDurable(this.pending[i]);
    if (n > 0) {
      this.pending.splice(0, n);
      this.pendingBase += n;
    }
    return true;
  }

  /** Power loss: pending operations are mangled into the durable image, which becomes live. */
  powerLoss(rng: Prng, fate: SectorFate, stats: ManglingStats): void {
    this.mangle(rng, fate, stats);
  }

  get pendingOps(): number {
    return this.pending.length;
  }

  private applyDurable(op: PendingOp): void {
    if (op.kind === 'write') {
      if (op.data.length === 0) return;
      this.durable = applyWrite(this.durable, this.durableLen, op.at, op.data);
      this.durableLen = Math.max(this.durableLen, op.at + op.data.length);
      if (op.at < this.durableDirtyFrom) this.durableDirtyFrom = op.at;
    } else if (op.to < this.durableLen) {
      this.durable.fill(0, op.to, this.durableLen);
      this.durableLen = op.to;
      if (op.to < this.durableDirtyFrom) this.durableDirtyFrom = op.to;
    }
  }

  private mangle(rng: Prng, fate: SectorFate, stats: ManglingStats): void {
    for (const op of this.pending) {
      if (op.kind === 'truncate') {
        if (rng.chance(0.5)) this.applyDurable(op);
        else stats.truncationsLost++;
        continue;
      }
      const end = op.at + op.data.length;
      for (let s = op.at; s < end;) {
        const e = Math.min(end, (Math.floor(s / SECTOR) + 1) * SECTOR);
        const piece = op.data.subarray(s - op.at, e - op.at);
        switch (rng.weighted(fate as unknown as Record<string, number>)) {
          case 'keep':
            this.applyDurable({ kind: 'write', at: s, data: piece });
            stats.sectorsKept++;
            break;
          case 'lose':
            stats.sectorsLost++;
            break;
          case 'partial': {
            const k = piece.length > 1 ? rng.range(1, piece.length - 1) : 1;
            this.applyDurable({ kind: 'write', at: s, data: piece.subarray(0, k) });
            stats.sectorsPartial++;
            break;
          }
          default: {
            this.applyDurable({ kind: 'write', at: s, data: Buffer.from(rng.fill(new Uint8Array(piece.length))) });
            stats.sectorsGarbage++;
            break;
          }
        }
        s = e;
      }
    }
    this.pendingBase += this.pending.length;
    this.pending = [];
    // The page cache is gone: what is on the platter is what the next reader sees.
    if (this.live.length < this.durable.length) this.live = Buffer.alloc(this.durable.length);
    this.live.fill(0);
    this.durable.copy(this.live, 0, 0, this.durableLen);
    this.liveLen = this.durableLen;
    this.liveDirtyFrom = 0;
  }
}

const EMPTY = Buffer.alloc(0);

/** Writes `data` at `at` into `buf` (holding `len` valid bytes), growing it; returns the buffer. */
function applyWrite(buf: Buffer, len: number, at: number, data: Buffer): Buffer {
  const need = at + data.length;
  if (need > buf.length) {
    let cap = buf.length;
    while (cap < need) cap *= 2;
    const grown = Buffer.alloc(cap);
    buf.copy(grown, 0, 0, len);
    buf = grown;
  }
  data.copy(buf, at);
  return buf;
}

export function emptyManglingStats(): ManglingStats {
  return { sectorsKept: 0, sectorsLost: 0, sectorsPartial: 0, sectorsGarbage: 0, truncationsLost: 0 };
}
