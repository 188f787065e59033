/**
 * The simulator's online checker: invariants checked while the run goes, against the
 * ground truth of the simulated disks rather than what replicas claim.
 *
 * The "canonical log" is the committed prefix as established by the cluster: it grows when a
 * leader commits E and a majority of nodes hold [0, E) *durably* (their durable disk images
 * have a frame boundary at E with equal running CRCs). Everything else is compared to it.
 *
 * - two-leaders: at most one leader per term;
 * - commit-regress: a replica's commit end never moves back within one incarnation;
 * - commit-without-durable-majority: a leader's commit is held durably by a majority;
 * - committed-prefix-changed: a commit contradicts the canonical log (it moved back or changed);
 * - follower-commit-uncommitted: a follower's commit end is not a committed boundary;
 * - truncated-committed: a replica drops a committed frame whose bytes it holds;
 * - replica-divergence: a replica's readable bytes (min(commit, written)) differ from the
 *   canonical log (committed prefixes must be byte-identical on every replica);
 * - ack-not-committed / ack-wrong-entry: a quorum/all acknowledgement names an offset that is
 *   not committed, or that holds some other entry;
 * - read-uncommitted / read-divergent: bytes served to a reader beyond the canonical log, or
 *   different from it; copy-divergent: committed frames copied to a lagging replica that
 *   differ from the canonical log;
 * - replica-invariant: the replica threw (its own internal assertion);
 * - trim-ack-without-majority: a leader acknowledged a trim that a majority does not hold durably;
 * - start-uncommitted: a node's log start (a deletion run's point, a reset's `to`) is not a
 *   boundary of the canonical log (everything below a start must be committed);
 * - reset-dropped-committed: a reset drops a committed frame the node holds at or above its
 *   new start; reset-past-trim: a reset goes above every trim point a node holds;
 * - final-*: after the drain, every replica's live and durable images hold the canonical log
 *   (from its start), and its trim point is at least every acknowledged one.
 *
 * Nodes delete their bytes below their log start (trims, reset): each node's chains start
 * at its disk's start, seeded with the canonical running fingerprint there (`seedAt`), so
 * every comparison above is made, as strongly as from 0, over the bytes a node still holds.
 */
import type { Effect, ReplyResult, Role } from '../spec/messages.ts';
import { Kind, decodeHeader, frameSize } from '../spec/frame.ts';
import type { FinalLog, FrameKindName } from '../spec/history.ts';
import { FrameChain, fingerprint, type ChainFrame } from './chain.ts';
import type { SimNode, AppendAttempt } from './node.ts';
import type { World } from './world.ts';

export interface Violation {
  check: string;
  message: string;
  node?: string;
  /** Virtual time, ms. */
  time: number;
}

interface NodeCheck {
  live: FrameChain;
  dur: FrameChain;
  /** Commit end of the current incarnation. */
  lastCommit: number;
  /** Role as of the effect being examined (updated by 'role' effects in effect order). */
  role: Role;
  /** Readable prefix already compared with the canonical log. */
  verified: number;
}

export class Checker {
  readonly violations: Violation[] = [];
  readonly canon = new FrameChain();
  private readonly per: NodeCheck[] = [];
  private leaders = new Map<number, string>();
  /** Highest commit end any replica ever announced. */
  maxCommit = 0;
  /** Highest trim point a leader acknowledged. */
  maxTrimAcked = 0;
  /**
   * Per node, what it held durably (and still in its file) and its trim point when its data
   * directory was emptied: its acknowledgements from before may still be on their way to a
   * leader, which rightly counts them. Losing that copy is the fault, not the leader's error.
   */
  private wiped = new Map<number, { chains: FrameChain[]; trimPoint: number }>();
  maxViolations = 20;

  constructor(private readonly w: World) {}

  attach(n: number): void {
    while (this.per.length < n) this.per.push({ live: new FrameChain(), dur: new FrameChain(), lastCommit: 0, role: 'follower', verified: 0 });
  }

  violation(check: string, message: string, node?: string): void {
    if (this.violations.length >= this.maxViolations) return;
    this.violations.push({ check, message, node, time: this.w.q.now });
    this.w.trace.mixText(check);
    if (this.w.trace.on) this.w.trace.line(this.w.q.now, 'CHK', `VIOLATION ${check}: ${message}`);
  }

  get canonEnd(): number {
    return this.canon.end;
  }

  /**
   * The running fingerprint a chain starting at `start` (a node's log start) is seeded with:
   * the committed log's at that boundary. A start that is not a committed boundary was
   * reported when it was taken (start-uncommitted); its chain then matches nothing.
   */
  private seedAt(start: number): number {
    return this.canon.cumAt(start) ?? NO_SEED;
  }

  /**
   * Brings `chain` up to date with an image whose start is `start` and whose bytes changed
   * from `dirtyFrom` on (Infinity: unchanged). True if it had to.
   */
  private refresh(chain: FrameChain, start: number, dirtyFrom: number, image: () => Buffer): boolean {
    if (chain.base !== start) chain.rebase(start, this.seedAt(start));
    else if (dirtyFrom === Infinity) return false;
    if (dirtyFrom !== Infinity) chain.invalidate(dirtyFrom);
    chain.advance(image());
    return true;
  }

  private live(n: SimNode): FrameChain {
    const c = this.per[n.idx];
    const d = n.disk;
    if (this.refresh(c.live, d.start, d.liveDirtyFrom, () => d.view())) {
      d.liveDirtyFrom = Infinity;
      if (c.verified > c.live.end) c.verified = c.live.end;
    }
    return c.live;
  }

  private durable(n: SimNode): FrameChain {
    const c = this.per[n.idx];
    const d = n.disk;
    if (this.refresh(c.dur, d.start, d.durableDirtyFrom, () => d.durableView())) d.durableDirtyFrom = Infinity;
    return c.dur;
  }

  // ------------------------------------------------------------------ lifecycle hooks

  onStart(n: SimNode, _end: number, _torn: boolean): void {
    const c = this.per[n.idx];
    c.lastCommit = n.replica!.commitEnd;
    c.role = n.replica!.role;
    c.verified = 0;
  }

  onCrash(n: SimNode, _kind: string): void {
    const c = this.per[n.idx];
    c.lastCommit = 0;
    c.role = 'follower';
    c.verified = 0;
  }

  /** `n`'s data directory is about to be emptied (see `wiped`). */
  onWipe(n: SimNode): void {
    const live = this.live(n);
    const dur = this.durable(n);
    const kept = new FrameChain();
    kept.rebase(dur.base, dur.baseCum);
    for (const f of dur.frames) {
      if (live.cumAt(f.end) !== f.cum) break;
      kept.frames.push({ ...f });
    }
    const w = this.wiped.get(n.idx) ?? { chains: [], trimPoint: 0 };
    w.chains.push(kept);
    w.trimPoint = Math.max(w.trimPoint, n.trimPoint);
    this.wiped.set(n.idx, w);
  }

  onSync(_n: SimNode): void {
    // The durable chain is brought up to date lazily, when a commit needs it.
  }

  beforeEffects(n: SimNode): void {
    void n;
  }

  // ------------------------------------------------------------------ effects

  onEffect(n: SimNode, e: Effect): void {
    const c = this.per[n.idx];
    switch (e.type) {
      case 'role':
        c.role = e.role;
        if (e.role === 'leader') {
          const other = this.leaders.get(e.term);
          if (other !== undefined && other !== n.id) this.violation('two-leaders', `${n.id} and ${other} were both leaders in term ${e.term}`, n.id);
          else this.leaders.set(e.term, n.id);
        }
        break;
      case 'commit':
        if (e.end <= c.lastCommit) this.violation('commit-regress', `${n.id} announced commit ${e.end} after ${c.lastCommit}`, n.id);
        c.lastCommit = Math.max(c.lastCommit, e.end);
        if (e.end > this.maxCommit) this.maxCommit = e.end;
        if (c.role === 'leader') this.leaderCommit(n, e.end);
        else this.followerCommit(n, e.end);
        break;
      case 'truncate': {
        // Dropping a committed frame whose bytes this node holds is never right (catch-up
        // drops committed entries only where their bytes were never written).
        const f = this.committedFrameFrom(n, e.to);
        if (f) this.violation('truncated-committed', `${n.id} truncated its log to ${e.to}, dropping the committed frame [${f.offset}, ${f.end}) it holds`, n.id);
        break;
      }
      case 'reset': {
        // A follower starts its log over at the leader's start only when everything it holds
        // lies below it (the others deleted what comes after): below the new start the log is
        // committed and trimmed on purpose, at and above it the node held nothing.
        this.startTaken(n, 'a reset', e.to);
        const f = this.committedFrameFrom(n, e.to);
        if (f) this.violation('reset-dropped-committed', `${n.id} reset its log to start at ${e.to}, dropping the committed frame [${f.offset}, ${f.end}) it holds at or above that start`, n.id);
        let held = 0;
        for (const m of this.w.nodes) held = Math.max(held, m.trimPoint);
        if (e.to > held) this.violation('reset-past-trim', `${n.id} reset its log to start at ${e.to}, above every trim point a node holds (the highest is ${held}): no trim deleted that far`, n.id);
        break;
      }
      default:
        break;
    }
  }

  /** The node's first frame at or after `from`, if it is a committed frame (the node holds committed bytes from there). */
  private committedFrameFrom(n: SimNode, from: number): ChainFrame | null {
    if (from >= this.canon.end) return null;
    const live = this.live(n);
    const i = live.indexAt(from);
    if (i < 0) return null;
    const f = live.frames[i];
    return f.end <= this.canon.end && this.canon.cumAt(f.end) === f.cum ? f : null;
  }

  /**
   * A node's log start moves to `start` (a deletion run up to it, or a reset): trims never
   * pass the commit end, so it must be a boundary of the committed log (and then the node's
   * chains can be seeded there).
   */
  startTaken(n: SimNode, why: string, start: number): void {
    if (start > this.canon.end || this.canon.cumAt(start) === null) {
      this.violation('start-uncommitted', `${n.id}'s log start moved to ${start} (${why}), which is not a boundary of the committed log (committed end ${this.canon.end}): everything below a start must be committed`, n.id);
    }
  }

  private leaderCommit(n: SimNode, end: number): void {
    const w = this.w;
    const majority = Math.floor(w.nodes.length / 2) + 1;
    const groups = new Map<number, SimNode[]>();
    const srcs = new Map<number, FrameChain>();
    const ends: string[] = [];
    const add = (m: SimNode, cum: number, chain: FrameChain) => {
      const g = groups.get(cum);
      if (g) g.push(m); else groups.set(cum, [m]);
      if (!srcs.has(cum)) srcs.set(cum, chain);
    };
    for (const m of w.nodes) {
      // Held durably *and* still in the file: a durable prefix the node has already
      // truncated (the truncation not yet synced) is as good as gone.
      const d = this.durable(m);
      ends.push(`${m.id}:${d.end}`);
      const cum = d.cumAt(end);
      if (cum !== null && this.live(m).cumAt(end) === cum) { add(m, cum, d); continue; }
      for (const chain of this.wiped.get(m.idx)?.chains ?? []) {
        const before = chain.cumAt(end);
        if (before !== null) { add(m, before, chain); break; }
      }
    }
    const canonCum = end <= this.canon.end ? this.canon.cumAt(end) : null;
    let best: SimNode[] = [];
    let bestCum = 0;
    for (const [cum, g] of groups) {
      if (g.length > best.length || (g.length === best.length && cum === canonCum)) { best = g; bestCum = cum; }
    }
    const term = n.replica?.term ?? -1;
    if (best.length < majority) {
      this.violation('commit-without-durable-majority', `${n.id} (leader, term ${term}) committed ${end} but only ${best.length} of ${w.nodes.length} nodes hold [0, ${end}) durably (durable valid ends ${ends.join(' ')}; a prefix counts if it is durable and still in the file)`, n.id);
      return;
    }
    if (end <= this.canon.end) {
      if (canonCum === null || canonCum !== bestCum) this.violation('committed-prefix-changed', `${n.id} (leader, term ${term}) committed [0, ${end}) with content that differs from the committed log (canonical end ${this.canon.end})`, n.id);
      return;
    }
    const src = srcs.get(bestCum)!;
    const have = src.cumAt(this.canon.end);
    if (have === null || have !== this.canon.cum) {
      this.violation('committed-prefix-changed', `${n.id} (leader, term ${term}) committed ${end}, but the durable copies of [0, ${end}) on ${best.map((x) => x.id)} do not extend the committed log [0, ${this.canon.end})`, n.id);
      return;
    }
    const from = this.canon.end === src.base ? 0 : src.indexEndingAt(this.canon.end) + 1;
    for (let i = from; i < src.frames.length && src.frames[i].end <= end; i++) this.canon.frames.push({ ...src.frames[i] });
  }

  private followerCommit(n: SimNode, end: number): void {
    if (end > this.canon.end || this.canon.cumAt(end) === null) {
      this.violation('follower-commit-uncommitted', `${n.id} (${this.per[n.idx].role}) set its commit end to ${end}, which is not a committed boundary (committed end ${this.canon.end})`, n.id);
    }
  }

  /** A leader acknowledged an append (quorum or all), or answered it committed but `unconfirmed`, as [offset, end). */
  onAck(n: SimNode, a: AppendAttempt, offset: number, end: number): void {
    const i = this.canon.indexAt(offset);
    if (i < 0 || this.canon.frames[i].end > this.canon.end) {
      this.violation('ack-not-committed', `${n.id} acknowledged ${a.uploadId} (acks=${a.acks}) at ${offset} but [0, ${end}) is not committed (committed end ${this.canon.end})`, n.id);
      return;
    }
    const f = this.canon.frames[i];
    if (f.kind !== Kind.Data || f.length !== a.payload.length || f.crc !== a.crc || f.end !== end) {
      this.violation('ack-wrong-entry', `${n.id} acknowledged ${a.uploadId} at ${offset}, but the committed frame there is kind ${f.kind}, ${f.length} bytes, crc ${f.crc}`, n.id);
    }
  }

  /** A leader answered a trim: its point must be held durably by a majority (else a later leader may lose it). */
  onTrimAck(n: SimNode, before: number): void {
    const w = this.w;
    const majority = Math.floor(w.nodes.length / 2) + 1;
    const holders = w.nodes.filter((m) => Math.max(m.trimPoint, this.wiped.get(m.idx)?.trimPoint ?? 0) >= before);
    if (holders.length < majority) {
      this.violation('trim-ack-without-majority', `${n.id} acknowledged a trim before ${before} held by ${holders.length} of ${w.nodes.length} nodes (${holders.map((m) => m.id).join(', ') || 'none'})`, n.id);
    }
    this.maxTrimAcked = Math.max(this.maxTrimAcked, before);
    w.stats.trims++;
  }

  /**
   * Bytes served to a reader must be committed frames. Catch-up copies may carry the
   * leader's uncommitted frames too; their committed part must match the committed log.
   */
  onServe(n: SimNode, kind: 'read' | 'copy', from: number, bytes: Buffer, to: string): void {
    if (kind === 'copy' && from + bytes.length > this.canon.end) {
      let at = 0;
      while (at < bytes.length) {
        const h = decodeHeader(bytes, at);
        if (!h.ok) break;
        const next = at + frameSize(h.header.length);
        if (from + next > this.canon.end) break;
        at = next;
      }
      bytes = bytes.subarray(0, at);
    }
    const end = from + bytes.length;
    if (bytes.length === 0) return;
    if (end > this.canon.end) {
      this.violation(kind === 'read' ? 'read-uncommitted' : 'copy-uncommitted', `${n.id} served [${from}, ${end}) to ${to} beyond the committed end ${this.canon.end}`, n.id);
      return;
    }
    let at = 0;
    while (at < bytes.length) {
      const h = decodeHeader(bytes, at);
      const i = this.canon.indexAt(from + at);
      if (!h.ok || i < 0) {
        this.violation(kind === 'read' ? 'read-divergent' : 'copy-divergent', `${n.id} served a frame at ${from + at} to ${to} that is not a committed frame`, n.id);
        return;
      }
      const next = at + frameSize(h.header.length);
      const f = this.canon.frames[i];
      if (next > bytes.length || f.end !== from + next || fingerprint(bytes, at, next, 0) !== f.fcrc) {
        this.violation(kind === 'read' ? 'read-divergent' : 'copy-divergent', `${n.id} served the frame at ${from + at} to ${to} with bytes that differ from the committed frame`, n.id);
        return;
      }
      at = next;
    }
  }

  afterStep(n: SimNode): void {
    const r = n.replica;
    if (!r) return;
    const c = this.per[n.idx];
    if (r.commitEnd < c.lastCommit) this.violation('commit-regress', `${n.id}'s commit end moved back from ${c.lastCommit} to ${r.commitEnd}`, n.id);
    c.lastCommit = Math.max(c.lastCommit, r.commitEnd);
    const readable = Math.min(r.commitEnd, r.writtenEnd, this.canon.end);
    if (readable > c.verified || n.disk.liveDirtyFrom < c.verified) {
      const live = this.live(n);
      const upto = Math.min(Math.min(r.commitEnd, r.writtenEnd), this.canon.end);
      if (upto > c.verified) {
        const mine = live.cumAt(upto);
        const theirs = this.canon.cumAt(upto);
        if (mine === null || theirs === null || mine !== theirs) {
          this.violation('replica-divergence', `${n.id}'s committed and written prefix [0, ${upto}) differs from the committed log (its valid frames end at ${live.end}${theirs === null ? `; ${upto} is not a committed boundary` : ''})`, n.id);
          c.verified = Infinity;
          return;
        }
        c.verified = upto;
      }
    }
  }

  // ------------------------------------------------------------------ the end of a run

  /** After the drain: every replica holds exactly the committed log, live and durable. */
  finalCheck(): void {
    const w = this.w;
    const end = this.canon.end;
    for (const n of w.nodes) {
      const r = n.replica;
      if (!r) { this.violation('final-node-down', `${n.id} is down after the drain`, n.id); continue; }
      if (r.commitEnd < this.maxCommit) this.violation('final-commit-regress', `${n.id}'s commit end ${r.commitEnd} is below a commit end announced earlier (${this.maxCommit})`, n.id);
      const live = this.live(n);
      if (live.cumAt(end) !== this.canon.cum) this.violation('final-prefix-mismatch', `${n.id}'s log [0, ${end}) differs from the committed log (valid frames end at ${live.end})`, n.id);
      const dur = this.durable(n);
      if (dur.cumAt(end) !== this.canon.cum) this.violation('final-durable-mismatch', `${n.id}'s durable image does not hold the committed log [0, ${end}) (durable valid end ${dur.end})`, n.id);
      if (n.trimPoint < this.maxTrimAcked) this.violation('final-trim-lost', `${n.id}'s trim point ${n.trimPoint} is below a trim acknowledged before ${this.maxTrimAcked}`, n.id);
    }
  }

  /** The committed log as the history checker wants it. */
  finalLog(): FinalLog {
    return {
      start: 0,
      end: this.canon.end,
      frames: this.canon.frames.map((f: ChainFrame) => [f.offset, f.length, f.crc, kindName(f.kind)]),
    };
  }
}

/** Seeds the chain of a start that is not a committed boundary: a value no running CRC32C takes. */
const NO_SEED = -1;

function kindName(k: Kind): FrameKindName {
  return k === Kind.Data ? 'data' : k === Kind.Noop ? 'noop' : k === Kind.Aborted ? 'aborted' : 'config';
}
