/**
 * The history checker: what clients saw, judged against the final committed log.
 *
 * Pure code (no I/O, no clock), shared by the simulator and the real-process tests, which
 * write JSON-lines histories:
 *
 * ```
 * {"client","op":"append","invoke_ms","complete_ms","result":"ok"|"fail"|"unknown","upload_id","offset","len","crc"}
 * {"client","op":"read","from","entries":[[offset,len,crc],...]}        (data frames only)
 * {"client","op":"end","invoke_ms","complete_ms","end"}                   (linearizable end)
 * ```
 *
 * and the final log: every frame of the committed log after a final drain, as
 * `[offset, len, crc, kind]`. Each append's payload must be unique (the checker identifies
 * an entry by its length and CRC32C; appends sharing both are ambiguous and only checked by
 * offset).
 *
 * Checks (Jepsen's kafka checker names in brackets where they apply):
 * - dense-framing: the final frames tile [start, end) with no gap or overlap;
 * - lost: an acknowledged append is not in the final log at its offset [lost-write];
 * - inconsistent-offset: an acknowledged offset holds some other entry [inconsistent-offsets];
 * - duplicate: one append's payload appears at two offsets [duplicate];
 * - duplicate-offset: two acknowledged appends claim the same offset;
 * - failed-append-visible: an append that definitely failed is in the log;
 * - unseen: an acknowledged append no read ever returned (enable with `checkUnseen` when the
 *   history ends with a read of the whole log) [unseen];
 * - realtime-order: an append acknowledged before another was invoked has the lower offset;
 * - nonmonotonic-send: one client's acknowledged appends, in order, have increasing offsets;
 * - read-uncommitted / read-aborted: a read returned an entry that is not (or is an aborted
 *   frame, not data) in the final log [poll-skip's sibling: g1a-like reads];
 * - read-gap: a read skipped a data frame between its first and last entry [poll-skip];
 * - nonmonotonic-read: a read's entries are not strictly increasing from `from` [nonmonotonic-poll];
 * - end-stale: a linearizable end below the end of an append acknowledged before it was asked;
 * - end-invalid: a linearizable end that is not a frame boundary of the final log.
 */

export type AppendResult = 'ok' | 'fail' | 'unknown';

export interface AppendOp {
  client: string;
  op: 'append';
  invoke_ms: number;
  complete_ms: number;
  result: AppendResult;
  upload_id: string | null;
  offset: number | null;
  len: number;
  crc: number;
}

export interface ReadOp {
  client: string;
  op: 'read';
  from: number;
  entries: [number, number, number][];
  invoke_ms?: number;
  complete_ms?: number;
  node?: string;
}

export interface EndOp {
  client: string;
  op: 'end';
  invoke_ms: number;
  complete_ms: number;
  end: number;
}

export type HistoryOp = AppendOp | ReadOp | EndOp;

export type FrameKindName = 'data' | 'noop' | 'config' | 'aborted';

export interface FinalLog {
  start: number;
  end: number;
  /** Every frame of the committed log, ascending: [offset, len, crc, kind]. */
  frames: [number, number, number, FrameKindName][];
}

export interface HistoryViolation {
  check: string;
  message: string;
}

export interface HistoryOptions {
  /** Report acknowledged appends that no read returned. */
  checkUnseen?: boolean;
  /** Most violations reported per check (default 5). */
  maxPerCheck?: number;
}

export interface HistoryReport {
  ok: boolean;
  violations: HistoryViolation[];
  stats: { appends: number; ok: number; fail: number; unknown: number; unknownCommitted: number; reads: number; readEntries: number; ends: number; frames: number; dataFrames: number };
}

/** Frame overhead (header + trailer) of the frame format, duplicated here to keep this file dependency-free. */
const OVERHEAD = 33;

/** Parses a JSON-lines history (blank lines ignored). */
export function parseHistory(text: string): HistoryOp[] {
  const ops: HistoryOp[] = [];
  for (const line of text.split('\n')) {
    const s = line.trim();
    if (s.length > 0) ops.push(JSON.parse(s) as HistoryOp);
  }
  return ops;
}

export function formatHistory(ops: readonly HistoryOp[]): string {
  return ops.map((o) => JSON.stringify(o)).join('\n') + (ops.length > 0 ? '\n' : '');
}

export function checkHistory(ops: readonly HistoryOp[], final: FinalLog, opts: HistoryOptions = {}): HistoryReport {
  const max = opts.maxPerCheck ?? 5;
  const violations: HistoryViolation[] = [];
  const counts = new Map<string, number>();
  const report = (check: string, message: string) => {
    const n = counts.get(check) ?? 0;
    counts.set(check, n + 1);
    if (n < max) violations.push({ check, message });
  };

  // ---- the final log: dense framing, and indexes by offset and by payload identity
  const byOffset = new Map<number, [number, number, number, FrameKindName]>();
  const byKey = new Map<string, number[]>();
  let at = final.start;
  let dataFrames = 0;
  for (const f of final.frames) {
    const [offset, len, crc, kind] = f;
    if (offset !== at) report('dense-framing', `frame at ${offset} but the previous frame ended at ${at}`);
    at = offset + OVERHEAD + len;
    byOffset.set(offset, f);
    if (kind === 'data') {
      dataFrames++;
      const k = key(len, crc);
      const list = byKey.get(k);
      if (list) list.push(offset); else byKey.set(k, [offset]);
    }
  }
  if (at !== final.end) report('dense-framing', `frames end at ${at} but the log ends at ${final.end}`);
  const dataOffsets = final.frames.filter((f) => f[3] === 'data').map((f) => f[0]);

  const appends = ops.filter((o): o is AppendOp => o.op === 'append');
  const reads = ops.filter((o): o is ReadOp => o.op === 'read');
  const ends = ops.filter((o): o is EndOp => o.op === 'end');

  // Payload identities shared by several appends are ambiguous.
  const keyUses = new Map<string, number>();
  for (const a of appends) keyUses.set(key(a.len, a.crc), (keyUses.get(key(a.len, a.crc)) ?? 0) + 1);

  // ---- appends
  const claimed = new Map<number, AppendOp>();
  /** Where each append ended up (acknowledged, or found in the log). */
  const placed = new Map<AppendOp, number>();
  let unknownCommitted = 0;
  for (const a of appends) {
    const k = key(a.len, a.crc);
    const unique = keyUses.get(k) === 1;
    const found = unique ? byKey.get(k) ?? [] : [];
    if (found.length > 1) report('duplicate', `${describe(a)} appears at ${found.length} offsets: ${found.slice(0, 5).join(', ')}`);
    if (a.result === 'ok') {
      if (a.offset === null) { report('lost', `${describe(a)} was acknowledged without an offset`); continue; }
      const other = claimed.get(a.offset);
      if (other) report('duplicate-offset', `${describe(a)} and ${describe(other)} were both acknowledged at offset ${a.offset}`);
      claimed.set(a.offset, a);
      placed.set(a, a.offset);
      const f = byOffset.get(a.offset);
      if (!f || f[3] !== 'data' || f[1] !== a.len || f[2] !== a.crc) {
        if (unique && found.length === 0) report('lost', `${describe(a)} was acknowledged at ${a.offset} but is not in the final log`);
        else report('inconsistent-offset', `${describe(a)} was acknowledged at ${a.offset} but the final log holds ${f ? `a ${f[3]} frame of ${f[1]} bytes, crc ${f[2]}` : 'no frame'} there${found.length > 0 ? ` (the entry is at ${found.join(', ')})` : ''}`);
      }
    } else if (a.result === 'fail') {
      if (found.length > 0) report('failed-append-visible', `${describe(a)} failed but is in the log at ${found.join(', ')}`);
    } else if (found.length > 0) {
      unknownCommitted++;
      placed.set(a, found[0]);
    }
  }

  // ---- real-time order: acknowledged before invoked ⇒ lower offset
  const byComplete = appends.filter((a) => a.result === 'ok' && placed.has(a)).sort((x, y) => x.complete_ms - y.complete_ms);
  const byInvoke = [...placed.keys()].sort((x, y) => x.invoke_ms - y.invoke_ms);
  let i = 0;
  let maxOffset = -1;
  let maxOp: AppendOp | null = null;
  for (const b of byInvoke) {
    while (i < byComplete.length && byComplete[i].complete_ms < b.invoke_ms) {
      const o = placed.get(byComplete[i])!;
      if (o > maxOffset) { maxOffset = o; maxOp = byComplete[i]; }
      i++;
    }
    const ob = placed.get(b)!;
    if (maxOp && maxOp !== b && ob <= maxOffset) {
      report('realtime-order', `${describe(maxOp)} was acknowledged at ${maxOp.complete_ms} ms (offset ${maxOffset}) before ${describe(b)} was invoked at ${b.invoke_ms} ms, yet the latter has offset ${ob}`);
    }
  }

  // ---- per-client monotonic sends
  const perClient = new Map<string, AppendOp[]>();
  for (const a of appends) {
    if (a.result !== 'ok' || a.offset === null) continue;
    const l = perClient.get(a.client);
    if (l) l.push(a); else perClient.set(a.client, [a]);
  }
  for (const [client, list] of perClient) {
    list.sort((x, y) => x.invoke_ms - y.invoke_ms);
    for (let j = 1; j < list.length; j++) {
      if (list[j].offset! <= list[j - 1].offset! && list[j].invoke_ms >= list[j - 1].complete_ms) {
        report('nonmonotonic-send', `client ${client}: ${describe(list[j])} got offset ${list[j].offset} after ${describe(list[j - 1])} got ${list[j - 1].offset}`);
      }
    }
  }

  // ---- reads
  const seen = new Set<number>();
  let readEntries = 0;
  for (const r of reads) {
    let prev = -1;
    let first = -1, last = -1;
    for (const [offset, len, crc] of r.entries) {
      readEntries++;
      if (offset < r.from || offset <= prev) report('nonmonotonic-read', `client ${r.client} read from ${r.from} returned offset ${offset} after ${prev}`);
      prev = offset;
      if (first < 0) first = offset;
      last = offset;
      seen.add(offset);
      const f = byOffset.get(offset);
      if (!f) report('read-uncommitted', `client ${r.client} read an entry at ${offset} (${len} bytes, crc ${crc}) that is not a frame of the final log`);
      else if (f[3] === 'aborted') report('read-aborted', `client ${r.client} read data at ${offset} where the final log has an aborted frame`);
      else if (f[3] !== 'data' || f[1] !== len || f[2] !== crc) report('read-uncommitted', `client ${r.client} read ${len} bytes, crc ${crc} at ${offset}; the final log has a ${f[3]} frame of ${f[1]} bytes, crc ${f[2]}`);
    }
    if (first >= 0) {
      // Every data frame between the first and the last entry read must have been returned.
      const lo = lowerBound(dataOffsets, r.from);
      const hi = lowerBound(dataOffsets, last + 1);
      const expected = hi - lo;
      if (expected !== r.entries.length) {
        const got = new Set(r.entries.map((e) => e[0]));
        const missing = dataOffsets.slice(lo, hi).filter((o) => !got.has(o));
        if (missing.length > 0) report('read-gap', `client ${r.client} read from ${r.from} to ${last} skipped data frames at ${missing.slice(0, 5).join(', ')}`);
      }
    }
  }
  if (opts.checkUnseen) {
    for (const a of appends) {
      if (a.result === 'ok' && a.offset !== null && !seen.has(a.offset)) report('unseen', `${describe(a)} was acknowledged at ${a.offset} but no read returned it`);
    }
  }

  // ---- linearizable ends
  const frameEnds = new Set<number>([final.start]);
  for (const f of final.frames) frameEnds.add(f[0] + OVERHEAD + f[1]);
  const acked = appends.filter((a) => a.result === 'ok' && a.offset !== null).sort((x, y) => x.complete_ms - y.complete_ms);
  const sortedEnds = [...ends].sort((x, y) => x.invoke_ms - y.invoke_ms);
  let j = 0;
  let needEnd = 0;
  let needOp: AppendOp | null = null;
  for (const e of sortedEnds) {
    while (j < acked.length && acked[j].complete_ms < e.invoke_ms) {
      const end = acked[j].offset! + OVERHEAD + acked[j].len;
      if (end > needEnd) { needEnd = end; needOp = acked[j]; }
      j++;
    }
    if (e.end < needEnd) report('end-stale', `client ${e.client} asked a linearizable end at ${e.invoke_ms} ms and got ${e.end}, but ${describe(needOp!)} ending at ${needEnd} was acknowledged before`);
    if (!frameEnds.has(e.end) && e.end <= final.end) report('end-invalid', `client ${e.client} got linearizable end ${e.end}, not a frame boundary of the final log`);
    if (e.end > final.end) report('end-invalid', `client ${e.client} got linearizable end ${e.end}, past the final end ${final.end}`);
  }

  for (const [check, n] of counts) if (n > max) violations.push({ check, message: `... and ${n - max} more ${check} violations` });
  const ok = appends.filter((a) => a.result === 'ok').length;
  const fail = appends.filter((a) => a.result === 'fail').length;
  return {
    ok: violations.length === 0,
    violations,
    stats: {
      appends: appends.length, ok, fail, unknown: appends.length - ok - fail, unknownCommitted,
      reads: reads.length, readEntries, ends: ends.length, frames: final.frames.length, dataFrames,
    },
  };
}

function key(len: number, crc: number): string {
  return `${len}:${crc >>> 0}`;
}

function describe(a: AppendOp): string {
  return `append ${a.upload_id ?? '(no id)'} by ${a.client} (${a.len} bytes, crc ${a.crc})`;
}

function lowerBound(sorted: number[], x: number): number {
  let lo = 0, hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid] < x) lo = mid + 1; else hi = mid;
  }
  return lo;
}
