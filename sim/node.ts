/**
 * One simulated loglogd process: the real spec/replica.ts plus an executor of its effects
 * that behaves like the server's (server/log-node.ts) over the simulated disk and network.
 *
 * - persist: hard state (term, votedFor) is written atomically and durably before any
 *   later effect runs (the server's saveHardStateSync).
 * - allocated: the client's body is streamed into the payload area of the frame; when every
 *   chunk is in the file, `bodyDone` (or `bodyDone(ok=false)` when the client went away).
 * - write: 'body' seals a streamed frame (header, trailer; zeroes the payload first when the
 *   entry was aborted, after the body's in-flight chunk writes have landed); 'zero' writes a
 *   frame with an all-zero payload; 'upload' takes the client's uploaded copy (missing and
 *   corrupt copies are reported as `writeFailed`).
 * - fetch / copy: ask a peer for one frame's payload / for committed frames, then write.
 * - sync: fdatasync; covers the operations in the file when it was issued.
 * - truncate: in-flight writes to the dropped range are discarded (they "settle" before the
 *   truncation), including fetches still on the wire; the cut is made durable (fsync) before
 *   any later write lands, as the server's SegmentLog.truncate does.
 * - ENOSPC on any write stops the node (`fatal`): the executor never guesses which bytes of
 *   a failed write reached the page cache. The node comes back on the next restart.
 * - fatal (fdatasync failure, ENOSPC): the process stops; its supervisor restarts it a little
 *   later, and the restart recovers from disk.
 *
 * Crash = drop every volatile thing (replica, uploads, requests, bodies, in-flight work;
 * an in-flight write lands or not); power loss additionally mangles unsynced writes.
 * - trims: a deletion run (followTrim) deletes the log below min(trim point, readable end)
 *   and the start rises to it; reset: the log starts over, empty, at `to`. Below the start
 *   the bytes are gone (SimDisk) and reads, fetches and copies get `trimmed`.
 *
 * Restart = spec/recovery.ts's scanFrames over the disk from its start, then a new Replica.
 */
import { Replica, type ReplicaConfig } from '../spec/replica.ts';
import type { Effect, Input, Message, ReplyResult } from '../spec/messages.ts';
import { type EntryMeta, type Epoch, noteEpoch } from '../spec/entry.ts';
import { HEADER_SIZE, Kind, checkFrame, crc32c, decodeHeader, encodeFrame, encodeHeader, frameSize, trailerFor } from '../spec/frame.ts';
import { scanFrames } from '../spec/recovery.ts';
import type { Action } from './queue.ts';
import type { Prng } from './prng.ts';
import { SimDisk } from './disk.ts';
import type { World } from './world.ts';

/** How a client's body reaches the leader. */
export interface BodyPlan {
  /** ok: arrives whole; corrupt: arrives with a flipped byte; die: client dies mid-body; stall: never completes. */
  kind: 'ok' | 'corrupt' | 'die' | 'stall';
  /** Milliseconds from head arrival to the body's arrival (or the client's death). */
  delay: number;
}

/** One append request as the client sent it. */
export interface AppendAttempt {
  client: number;
  uploadId: string;
  payload: Buffer;
  crc: number;
  declaredCrc: number | null;
  acks: 'quorum' | 'all';
  /** Whether the client uploads copies to the followers (false: they fetch at once). */
  copies: boolean;
  body: BodyPlan;
  invoke: number;
  /** When the client closes the connection (timeout or death), in virtual ms. */
  closeAt: number;
  /** A commit end the client knew before its first attempt (see Input 'appendHead'). */
  after: number;
}

export type AppendReply = (r: ReplyResult, allocated: boolean) => void;

interface Pending {
  reply: AppendReply;
  allocated: boolean;
  attempt: AppendAttempt | null;
  /** A trim's point (for the acknowledgement check). */
  trim?: number;
}

interface InflightWrite {
  at: number;
  data: Buffer;
  discarded: boolean;
}

interface BodyState {
  reqId: number;
  meta: EntryMeta;
  attempt: AppendAttempt;
  chunksInFlight: number;
  waiters: Action[];
  cancelled: boolean;
  finished: boolean;
}

interface Outstanding {
  kind: 'fetch' | 'copy';
  seq: number;
  offset: number;
  done: boolean;
}

export type CrashKind = 'kill' | 'power' | 'fatal';

export class SimNode {
  replica: Replica | null = null;
  incarnation = 0;
  up = false;
  paused = false;
  private backlog: Action[] = [];
  readonly disk = new SimDisk();
  /**
   * Hard state. A run's nodes start as a new cluster, known never to have voted (loglogd
   * cannot know that: it abstains at every first start, see ReplicaInit.abstain); only an
   * emptied directory (`wipe`) starts one abstaining here.
   */
  hard: { term: number; votedFor: string | null; abstain: boolean } = { term: 0, votedFor: null, abstain: false };
  /**
   * The fates file, as loglogd keeps it: a record per upload id written (at each write
   * effect), never fdatasynced but before a checkpoint. A kill keeps every record (page
   * cache); a power loss may lose a suffix of them, among the frames the next recovery
   * scans (it starts at the checkpoint; here the scan's tail stands for it).
   */
  private fates: EntryMeta[] = [];
  private fatesAtRisk = false;
  /** The durable `fatesFrom` (see Replica.fatesFrom). */
  private fatesFrom = 0;
  /** The durable trim point (`trim` effects), like the server's trim-point file. */
  trimPoint = 0;
  /**
   * The term boundaries of the deleted part of the log, as the server's epochs file keeps
   * them: trims never prune that file (recovery reads the terms below the start from it), a
   * reset replaces it with the leader's boundaries below its start (the effect carries them).
   * Durable; recovery puts the scanned tail's boundaries after them.
   */
  private epochsBelow: Epoch[] = [];
  /** This incarnation's deletion runs (see followTrim). */
  private trimTried = 0;
  private trimming = false;
  private uploads = new Map<string, Buffer>();
  private requests = new Map<number, Pending>();
  private bodies = new Map<number, BodyState>();
  private bodyByOffset = new Map<number, BodyState>();
  private inflight = new Set<InflightWrite>();
  private outstanding = new Set<Outstanding>();
  private nextReq = 1;
  /** Local clock rate (clocks drift a little). */
  private readonly rate: number;
  /** Why the node is down, when it is. */
  downReason: string | null = 'not started';
  restarts = 0;

  constructor(
    private readonly w: World,
    readonly id: string,
    readonly idx: number,
    private readonly config: ReplicaConfig,
    private readonly random: Prng,
  ) {
    this.rate = 1 + (random.float() - 0.5) * 0.02;
  }

  localNow(): number {
    return this.w.q.now * this.rate;
  }

  // ------------------------------------------------------------------ lifecycle

  /** Starts (or restarts) the process: recover from the disk, build a replica. */
  start(): void {
    if (this.up) return;
    const w = this.w;
    // Recovery starts at the log start: below it the bytes are gone (see followTrim).
    const start = this.disk.start;
    const scan = scanFrames(this.disk.view().subarray(start), start, { bugs: w.bugs });
    if (scan.validEnd < this.disk.liveLen) this.disk.truncate(scan.validEnd);
    // Like the server's recovery: what remains is fdatasynced before the replica may treat
    // the recovered log as durable (a killed process leaves its writes in the page cache).
    if (!this.disk.syncComplete(this.disk.syncMark(), w.rng.disk, w.params.sectorFate, w.stats.mangling)) {
      w.countFault('fsync-error');
      this.downReason = 'fdatasync failed during recovery';
      if (w.trace.on) w.trace.line(w.q.now, this.id, 'START failed: fdatasync failed during recovery');
      return;
    }
    const tail = scan.entries.slice(Math.max(0, scan.entries.length - this.config.windowEntries));
    if (this.fatesAtRisk) {
      this.fatesAtRisk = false;
      const scanFrom = tail.length > 0 ? tail[0].offset : scan.validEnd;
      const cut = w.rng.disk.int(this.fates.length + 1);
      this.fates = this.fates.filter((f, i) => i < cut || f.offset < scanFrom);
    }
    const replica = new Replica({
      config: this.config,
      init: { term: this.hard.term, votedFor: this.hard.votedFor, abstain: this.hard.abstain, incarnation: this.incarnation + 1, start, end: scan.validEnd, epochs: this.recoveredEpochs(scan.epochs), tail, fates: this.fates, fatesFrom: this.fatesFrom, trimPoint: this.trimPoint },
      random: () => this.random.float(),
      now: this.localNow(),
      bugs: w.bugs,
    });
    this.fatesFrom = replica.fatesFrom;
    this.replica = replica;
    this.trimTried = 0;
    this.trimming = false;
    this.up = true;
    this.paused = false;
    this.downReason = null;
    this.incarnation++;
    w.checker.onStart(this, scan.validEnd, scan.torn);
    w.trace.mix(1, this.idx, scan.validEnd, scan.torn ? 1 : 0);
    if (w.trace.on) w.trace.line(w.q.now, this.id, `START incarnation ${this.incarnation}: recovered end ${scan.validEnd} (${scan.entries.length} frames${scan.torn ? ', torn tail cut' : ''}, stop ${scan.stop}) term ${this.hard.term} votedFor ${this.hard.votedFor}${this.hard.abstain ? ' (abstaining)' : ''}`);
    const phase = this.random.float() * w.params.tickMs;
    this.schedule(phase, () => this.tick());
  }

  /** Stops the process. 'power' also loses the page cache (unsynced writes are mangled). */
  crash(kind: CrashKind, why: string): void {
    if (!this.up) return;
    const w = this.w;
    // A write the process had issued lands or not.
    for (const wr of this.inflight) {
      if (!wr.discarded && w.rng.disk.chance(0.5)) this.disk.write(wr.at, wr.data);
    }
    if (kind === 'power') {
      this.disk.powerLoss(w.rng.disk, w.params.sectorFate, w.stats.mangling);
      this.fatesAtRisk = true;
    }
    this.inflight.clear();
    this.outstanding.clear();
    this.uploads.clear();
    this.requests.clear();
    this.bodies.clear();
    this.bodyByOffset.clear();
    this.backlog = [];
    this.replica = null;
    this.up = false;
    this.paused = false;
    this.downReason = why;
    this.incarnation++;
    w.checker.onCrash(this, kind);
    w.trace.mix(2, this.idx, kind === 'power' ? 1 : 0);
    if (w.trace.on) w.trace.line(w.q.now, this.id, `CRASH (${kind}): ${why}`);
  }

  /**
   * Everything this node stored is gone, as after its data directory was emptied: the log,
   * the hard state (it restarts abstaining), the fates, the trim point and the epochs file.
   * Only while it is down.
   */
  wipe(): void {
    if (this.up) throw new Error(`wipe of ${this.id} while it is up`);
    this.w.checker.onWipe(this);
    this.disk.reset(0);
    this.hard = { term: 0, votedFor: null, abstain: true };
    this.fates = [];
    this.fatesAtRisk = false;
    this.fatesFrom = 0;
    this.trimPoint = 0;
    this.epochsBelow = [];
  }

  /** The process exits on a fatal error; a supervisor (systemd, say) restarts it a little later. */
  private fatal(reason: string): void {
    const w = this.w;
    this.crash('fatal', reason);
    const inc = this.incarnation;
    w.q.after(50 + w.rng.faults.exp(200), () => {
      if (inc === this.incarnation && !this.up && !w.healed) this.start();
    });
  }

  pause(ms: number): void {
    if (!this.up || this.paused) return;
    this.paused = true;
    const inc = this.incarnation;
    if (this.w.trace.on) this.w.trace.line(this.w.q.now, this.id, `PAUSE ${ms.toFixed(0)} ms`);
    this.w.q.after(ms, () => {
      if (inc !== this.incarnation || !this.paused) return;
      this.resume();
    });
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    if (this.w.trace.on) this.w.trace.line(this.w.q.now, this.id, 'RESUME');
    const b = this.backlog;
    this.backlog = [];
    for (const fn of b) this.w.q.after(0, () => this.deliver(fn));
  }

  /** Runs `fn` on this process now, or after a pause; drops it if the process is down. */
  deliver(fn: Action): void {
    if (!this.up) return;
    if (this.paused) { this.backlog.push(fn); return; }
    fn();
  }

  /** Runs `fn` after `delay` if this incarnation is still alive (local completions, timers). */
  private schedule(delay: number, fn: Action): void {
    const inc = this.incarnation;
    this.w.q.after(delay, () => {
      if (inc !== this.incarnation) return;
      this.deliver(fn);
    });
  }

  private tick(): void {
    this.step({ type: 'tick', now: this.localNow() });
    this.followTrim();
    this.schedule(this.w.params.tickMs, () => this.tick());
  }

  // ------------------------------------------------------------------ stepping

  /** Feeds one input to the replica and executes its effects in order. */
  step(input: Input): void {
    const r = this.replica;
    if (!r || !this.up) return;
    const w = this.w;
    w.trace.mix(10 + INPUT_CODES[input.type], this.idx, w.q.now);
    if (w.trace.on && input.type !== 'tick') w.trace.line(w.q.now, this.id, `<- ${describeInput(input)}`);
    let effects: Effect[];
    try {
      effects = r.step(input);
    } catch (e) {
      w.checker.violation('replica-invariant', `${this.id} threw on ${input.type}: ${(e as Error).message}`, this.id);
      this.crash('kill', 'replica threw');
      return;
    }
    const inc = this.incarnation;
    w.checker.beforeEffects(this);
    for (const e of effects) {
      if (inc !== this.incarnation) break;
      w.checker.onEffect(this, e);
      this.execute(e);
    }
    if (inc === this.incarnation) w.checker.afterStep(this);
  }

  private execute(e: Effect): void {
    const w = this.w;
    const tr = w.trace;
    switch (e.type) {
      case 'send': {
        const to = w.nodeIndex.get(e.to)!;
        const msg = e.msg;
        tr.mix(30 + MSG_CODES[msg.type], to, msg.term, msg.type === 'append' ? msg.prevEnd + msg.entries.length * 1e9 : 0);
        if (tr.on && (msg.type !== 'append' || msg.entries.length > 0 || msg.catchUp) && msg.type !== 'appendReply') tr.line(w.q.now, this.id, `-> ${e.to} ${describeMsg(msg)}`);
        const from = this.id;
        w.net.send(this.idx, to, () => w.nodes[to].deliver(() => w.nodes[to].step({ type: 'message', from, msg })), true);
        break;
      }
      case 'persist':
        tr.mix(40, e.term, e.votedFor === null ? -1 : w.nodeIndex.get(e.votedFor)!);
        if (e.abstain) tr.mix(41);
        this.hard = { term: e.term, votedFor: e.votedFor, abstain: e.abstain === true };
        break;
      case 'allocated': this.onAllocated(e.reqId, e.meta); break;
      case 'cancelBody': {
        tr.mix(42, e.reqId);
        const b = this.bodies.get(e.reqId);
        if (b) b.cancelled = true;
        break;
      }
      case 'write':
        if (e.meta.uploadId !== null) this.fates.push({ ...e.meta });
        this.onWrite(e.seq, e.meta, e.source);
        break;
      case 'fatesFrom': this.fatesFrom = Math.max(this.fatesFrom, e.offset); break;
      case 'trim':
        // Durable at once, like the server's saveTrimPointSync.
        tr.mix(52, e.before);
        this.trimPoint = Math.max(this.trimPoint, e.before);
        this.followTrim();
        break;
      case 'fetch': this.onFetch(e.seq, e.meta, e.peer); break;
      case 'copy': this.onCopy(e.peer, e.start, e.to, e.term); break;
      case 'sync': {
        tr.mix(45, e.upTo);
        const mark = this.disk.syncMark();
        const p = w.params.disk;
        let lat = p.syncMin + w.rng.disk.exp(p.syncMean);
        if (w.rng.disk.chance(p.slowP)) lat += w.rng.disk.exp(p.syncMean * 20);
        this.schedule(lat, () => {
          const ok = this.disk.syncComplete(mark, w.rng.disk, w.params.sectorFate, w.stats.mangling);
          if (!ok) {
            w.countFault('fsync-error');
            if (tr.on) tr.line(w.q.now, this.id, 'FSYNC FAILED');
          }
          w.checker.onSync(this);
          this.step({ type: 'syncDone', upTo: e.upTo, ok });
        });
        break;
      }
      case 'reset': {
        // Like the server's SegmentLog.reset: the whole log goes and starts over, empty, at
        // `to`, its epochs replaced by the leader's below `to`; writes and fetches still in
        // flight land nowhere. Durable at once (see SimDisk.reset).
        tr.mix(54, e.to);
        if (tr.on) tr.line(w.q.now, this.id, `reset: the log starts over, empty, at ${e.to} (it held [${this.disk.start}, ${this.disk.liveLen}))`);
        for (const wr of this.inflight) wr.discarded = true;
        for (const o of this.outstanding) o.done = true;
        w.stats.resets++;
        w.stats.trimmedBytes += this.disk.reset(e.to);
        this.epochsBelow = e.epochs.filter((x) => x.offset < e.to).map((x) => ({ ...x }));
        break;
      }
      case 'truncate': {
        tr.mix(46, e.to);
        if (tr.on) tr.line(w.q.now, this.id, `truncate to ${e.to}`);
        for (const wr of this.inflight) {
          if (wr.at >= e.to) wr.discarded = true;
          else if (wr.at + wr.data.length > e.to) wr.data = wr.data.subarray(0, e.to - wr.at);
        }
        for (const o of this.outstanding) if (o.offset >= e.to) o.done = true;
        // Like the server (ftruncate + fsync before any later write lands): the cut is
        // durable at once. Left pending, a power loss could bring back stale frames in front
        // of newer ones: a log that passes every frame check but is not one leader's log.
        this.disk.truncate(e.to);
        if (!this.disk.syncComplete(this.disk.syncMark(), w.rng.disk, w.params.sectorFate, w.stats.mangling)) {
          w.countFault('fsync-error');
          this.fatal(`fsync after truncating to ${e.to} failed`);
        }
        break;
      }
      case 'reply': {
        tr.mix(47, e.reqId);
        const p = this.requests.get(e.reqId);
        if (!p) break;
        this.requests.delete(e.reqId);
        if (tr.on) tr.line(w.q.now, this.id, `reply req ${e.reqId}${p.attempt ? ` (${p.attempt.uploadId})` : ''}: ${JSON.stringify(e.result)}`);
        if (p.trim !== undefined && e.result.type === 'trimmed') w.checker.onTrimAck(this, p.trim);
        if (p.attempt) {
          const r = e.result;
          if (r.type === 'appended') w.checker.onAck(this, p.attempt, r.offset, r.end);
          // "Committed, but not every replica confirmed it": as much a claim as an ack.
          else if (r.type === 'error' && r.code === 'unconfirmed') w.checker.onAck(this, p.attempt, Number(r.details?.offset), Number(r.details?.end));
        }
        p.reply(e.result, p.allocated);
        break;
      }
      case 'commit':
        tr.mix(48, e.end);
        w.stats.commits++;
        if (tr.on) tr.line(w.q.now, this.id, `commit ${e.end}`);
        break;
      case 'role':
        tr.mix(49, e.term, e.role === 'leader' ? 2 : e.role === 'candidate' ? 1 : 0);
        if (e.role === 'leader') {
          w.stats.elections++;
          if (w.onLeader) w.onLeader(this);
        }
        if (e.term > w.stats.maxTerm) w.stats.maxTerm = e.term;
        if (tr.on) tr.line(w.q.now, this.id, `role ${e.role} term ${e.term} leader ${e.leader}`);
        break;
      case 'fatal':
        tr.mix(50);
        this.fatal(e.reason);
        break;
    }
  }

  // ------------------------------------------------------------------ disk

  private writeLatency(): number {
    const p = this.w.params.disk;
    let lat = p.writeMin + this.w.rng.disk.exp(p.writeMean);
    if (this.w.rng.disk.chance(p.slowP)) lat += this.w.rng.disk.exp(p.writeMean * 20);
    return lat;
  }

  /** Issues positional writes; `done` runs once all landed. `gate` delays the issue. */
  private diskWrite(parts: { at: number; data: Buffer }[], done: Action, gate?: BodyState): void {
    const recs: InflightWrite[] = parts.map((p) => ({ at: p.at, data: p.data, discarded: false }));
    for (const r of recs) this.inflight.add(r);
    let left = recs.length;
    const issue = () => {
      for (const r of recs) {
        this.schedule(this.writeLatency(), () => {
          this.inflight.delete(r);
          if (!r.discarded && !this.disk.write(r.at, r.data)) {
            this.w.countFault('enospc-hit');
            this.fatal(`ENOSPC writing ${r.data.length} bytes at ${r.at}`);
            return;
          }
          if (--left === 0) done();
        });
      }
    };
    if (gate && gate.chunksInFlight > 0) gate.waiters.push(issue);
    else issue();
  }

  // ------------------------------------------------------------------ appends (leader side)

  /** A client's append request head arrived. */
  clientAppend(a: AppendAttempt, reply: AppendReply): void {
    const reqId = this.nextReq++;
    this.requests.set(reqId, { reply, allocated: false, attempt: a });
    this.step({ type: 'appendHead', reqId, uploadId: a.uploadId, length: a.payload.length, crc: a.declaredCrc, acks: a.acks, copies: a.copies, after: a.after });
  }

  private onAllocated(reqId: number, meta: EntryMeta): void {
    const w = this.w;
    w.trace.mix(41, reqId, meta.offset, meta.length);
    const p = this.requests.get(reqId);
    if (!p || !p.attempt) return;
    p.allocated = true;
    const a = p.attempt;
    const b: BodyState = { reqId, meta: { ...meta }, attempt: a, chunksInFlight: 0, waiters: [], cancelled: false, finished: false };
    this.bodies.set(reqId, b);
    this.bodyByOffset.set(meta.offset, b);
    if (w.trace.on) w.trace.line(w.q.now, this.id, `allocated req ${reqId} (${a.uploadId}) at ${meta.offset} len ${meta.length}, body ${a.body.kind}`);
    const closeIn = Math.max(0, a.closeAt - w.q.now) + w.net.delay(a.client, this.idx);
    switch (a.body.kind) {
      case 'ok':
      case 'corrupt':
      case 'die': {
        let data = a.payload;
        if (a.body.kind === 'corrupt' && data.length > 0) {
          data = Buffer.from(data);
          data[w.rng.clients.int(data.length)] ^= 0x5a;
        }
        const upto = a.body.kind === 'die' ? w.rng.clients.int(data.length + 1) : data.length;
        this.streamBody(b, data, upto, a.body.kind !== 'die', a.body.delay, closeIn);
        break;
      }
      case 'stall':
        this.schedule(closeIn, () => this.bodyClosed(b));
        break;
    }
  }

  /**
   * Streams body bytes [0, upto) into the payload area in 1 KiB chunks spread over `delay`
   * ms, each written as it arrives; once all landed, `bodyDone` (ok only if `complete`).
   * A partition between client and node holds the rest back until the client gives up.
   */
  private streamBody(b: BodyState, data: Buffer, upto: number, complete: boolean, delay: number, closeIn: number): void {
    const w = this.w;
    const base = b.meta.offset + HEADER_SIZE;
    const CHUNK = 1024;
    const n = Math.max(1, Math.ceil(upto / CHUNK));
    const t0 = w.q.now;
    let arrived = 0;
    const settle = () => {
      if (b.chunksInFlight > 0) return;
      const waiters = b.waiters;
      b.waiters = [];
      for (const fn of waiters) fn();
      if (arrived < n || b.cancelled || b.finished) return;
      b.finished = true;
      this.step({ type: 'bodyDone', reqId: b.reqId, ok: complete, crc: complete ? crc32c(data) : 0 });
    };
    for (let i = 0; i < n; i++) {
      this.schedule((delay * (i + 1)) / n, () => {
        if (b.cancelled || b.finished || arrived < i) return;
        if (w.net.isBlocked(b.attempt.client, this.idx)) {
          arrived = -1;
          this.schedule(Math.max(0, closeIn - (w.q.now - t0)), () => this.bodyClosed(b));
          return;
        }
        arrived = i + 1;
        const from = i * CHUNK, to = Math.min(upto, from + CHUNK);
        if (to <= from) { settle(); return; }
        b.chunksInFlight++;
        this.diskWrite([{ at: base + from, data: Buffer.from(data.subarray(from, to)) }], () => {
          b.chunksInFlight--;
          settle();
        });
      });
    }
  }

  /** The client closed the connection before the body completed. */
  private bodyClosed(b: BodyState): void {
    if (b.cancelled || b.finished) return;
    b.finished = true;
    this.step({ type: 'bodyDone', reqId: b.reqId, ok: false, crc: 0 });
  }

  // ------------------------------------------------------------------ writes

  private onWrite(seq: number, meta: EntryMeta, source: 'body' | 'zero' | 'upload'): void {
    const w = this.w;
    w.trace.mix(43, seq, meta.offset, source === 'body' ? 0 : source === 'zero' ? 1 : 2);
    const done = () => this.step({ type: 'writeDone', seq });
    if (source === 'body') {
      const b = this.bodyByOffset.get(meta.offset);
      if (b) { this.bodyByOffset.delete(meta.offset); this.bodies.delete(b.reqId); }
      const parts: { at: number; data: Buffer }[] = [];
      if (meta.kind === Kind.Aborted && meta.length > 0) parts.push({ at: meta.offset + HEADER_SIZE, data: Buffer.alloc(meta.length) });
      parts.push({ at: meta.offset, data: encodeHeader(meta) });
      parts.push({ at: meta.offset + HEADER_SIZE + meta.length, data: Buffer.from([trailerFor(meta.kind)]) });
      this.diskWrite(parts, done, b);
      return;
    }
    if (source === 'upload') {
      const up = meta.uploadId !== null ? this.uploads.get(meta.uploadId) : undefined;
      if (up !== undefined && meta.uploadId !== null) this.uploads.delete(meta.uploadId);
      if (!up) { this.schedule(0, () => this.step({ type: 'writeFailed', seq, reason: 'missing' })); return; }
      if (up.length !== meta.length || crc32c(up) !== meta.crc) { this.schedule(0, () => this.step({ type: 'writeFailed', seq, reason: 'corrupt' })); return; }
      this.diskWrite([{ at: meta.offset, data: encodeFrame(meta, up) }], done);
      return;
    }
    this.diskWrite([{ at: meta.offset, data: encodeFrame(meta) }], done);
  }

  private onFetch(seq: number, meta: EntryMeta, peer: string): void {
    const w = this.w;
    w.stats.fetches++;
    w.trace.mix(44, seq, meta.offset, w.nodeIndex.get(peer)!);
    if (w.trace.on) w.trace.line(w.q.now, this.id, `fetch ${meta.offset} (${meta.uploadId}) from ${peer}`);
    const o: Outstanding = { kind: 'fetch', seq, offset: meta.offset, done: false };
    this.outstanding.add(o);
    const fail = () => {
      if (o.done) return;
      o.done = true;
      this.outstanding.delete(o);
      this.step({ type: 'writeFailed', seq, reason: 'fetch' });
    };
    this.schedule(w.params.fetchTimeoutMs, fail);
    const pi = w.nodeIndex.get(peer)!;
    const inc = this.incarnation;
    const back = (payload: Buffer | null) => {
      w.net.send(pi, this.idx, () => {
        if (inc !== this.incarnation) return;
        this.deliver(() => {
          if (o.done) return;
          if (!payload || payload.length !== meta.length || crc32c(payload) !== meta.crc) { fail(); return; }
          o.done = true;
          this.diskWrite([{ at: meta.offset, data: encodeFrame(meta, payload) }], () => {
            this.outstanding.delete(o);
            this.step({ type: 'writeDone', seq });
          });
        });
      }, false);
    };
    w.net.send(this.idx, pi, () => w.nodes[pi].deliver(() => back(w.nodes[pi].serveFetch(meta))), false);
  }

  /** Peer side of a fetch: the payload of the frame `meta` describes, if this node has it. */
  serveFetch(meta: EntryMeta): Buffer | null {
    if (!this.up || meta.offset < this.disk.start) return null;
    const r = checkFrame(this.disk.view(), meta.offset, 0, true);
    if (!r.ok) return null;
    const f = r.frame;
    if (f.term !== meta.term || f.length !== meta.length || f.kind !== meta.kind || f.crc !== meta.crc) return null;
    return Buffer.from(f.payload);
  }

  private onCopy(peer: string, start: number, to: number, term: number): void {
    const w = this.w;
    w.stats.copies++;
    w.trace.mix(51, start, to, w.nodeIndex.get(peer)!);
    if (w.trace.on) w.trace.line(w.q.now, this.id, `copy [${start}, ${to}) from ${peer}`);
    const o: Outstanding = { kind: 'copy', seq: 0, offset: start, done: false };
    this.outstanding.add(o);
    const fail = () => {
      if (o.done) return;
      o.done = true;
      this.outstanding.delete(o);
      this.step({ type: 'copyDone', start, to: start, epochs: [], ok: false });
    };
    this.schedule(w.params.fetchTimeoutMs * 4, fail);
    const pi = w.nodeIndex.get(peer)!;
    const inc = this.incarnation;
    const back = (bytes: Buffer | null) => {
      w.net.send(pi, this.idx, () => {
        if (inc !== this.incarnation) return;
        this.deliver(() => {
          if (o.done) return;
          if (!bytes || bytes.length === 0) { fail(); return; }
          o.done = true;
          // serveCopy sent only checked frames: their term boundaries are all we need.
          const { epochs } = scanFrames(bytes, start, { verifyPayload: false });
          this.diskWrite([{ at: start, data: bytes }], () => {
            this.outstanding.delete(o);
            this.step({ type: 'copyDone', start, to: start + bytes.length, epochs, ok: true });
          });
        });
      }, false);
    };
    w.net.send(this.idx, pi, () => w.nodes[pi].deliver(() => back(w.nodes[pi].serveCopy(start, to, term, this.id))), false);
  }

  /**
   * Peer side of catch-up: whole valid frames of this node's log from `start`, up to `to`
   * and its written end, while it is still in `term` (the copy's leader's term).
   */
  serveCopy(start: number, to: number, term: number, forNode: string): Buffer | null {
    // Below the start the frames are gone: the server answers `trimmed`, and the copy fails.
    if (!this.up || !this.replica || this.replica.term !== term || start < this.disk.start) return null;
    const limit = Math.min(to, this.replica.writtenEnd);
    const image = this.disk.view();
    let at = start;
    while (at < limit) {
      const r = checkFrame(image, at, 0, true);
      if (!r.ok || r.next > limit) break;
      at = r.next;
    }
    const bytes = Buffer.from(image.subarray(start, at));
    this.w.checker.onServe(this, 'copy', start, bytes, forNode);
    return bytes;
  }

  // ------------------------------------------------------------------ other client requests

  clientUpload(uploadId: string, data: Buffer): void {
    if (this.uploads.size >= 4096) this.uploads.delete(this.uploads.keys().next().value!);
    this.uploads.set(uploadId, data);
    this.step({ type: 'uploadArrived', uploadId });
  }

  clientFate(uploadId: string, after: number, reply: (r: ReplyResult) => void): void {
    this.clientRequest(reply, (reqId) => ({ type: 'fate', reqId, uploadId, after }));
  }

  clientTrim(before: number, reply: (r: ReplyResult) => void): void {
    this.clientRequest(reply, (reqId) => ({ type: 'trim', reqId, before }), before);
  }

  clientReadIndex(reply: (r: ReplyResult) => void): void {
    this.clientRequest(reply, (reqId) => ({ type: 'readIndex', reqId }));
  }

  /** A client request other than an append: `input` under a new request id, answered by its reply effect. */
  private clientRequest(reply: (r: ReplyResult) => void, input: (reqId: number) => Input, trim?: number): void {
    const reqId = this.nextReq++;
    this.requests.set(reqId, { reply: (r) => reply(r), allocated: false, attempt: null, trim });
    this.step(input(reqId));
  }

  /**
   * A deletion run toward the trim point, as the server's followTrim: up to
   * min(trim point, readable end), after a disk latency, reported with `trimDone`. The
   * server deletes whole segments below that point, so its start is the base of the first
   * segment it keeps; the simulated disk has no segments and deletes everything below it:
   * the start becomes `upTo` (a frame boundary: both bounds are committed boundaries). The
   * bytes below are gone from both disk images at once (the server unlinks the segments and
   * fsyncs the directory before it reports the run); a crash before the run completes loses
   * the run (nothing deleted; the next incarnation runs it again), as a crash before the
   * server's first unlink does. The start survives restarts: recovery scans from it, and the
   * terms below it come from `epochsBelow` (the server's epochs file). Reads, fetches and
   * copies below the start are refused (`trimmed`), as the server refuses them.
   */
  private followTrim(): void {
    const r = this.replica;
    if (!r || this.trimming) return;
    const upTo = Math.min(this.trimPoint, r.readableEnd());
    if (upTo <= this.trimTried) return;
    this.trimming = true;
    this.trimTried = upTo;
    this.schedule(this.writeLatency(), () => {
      this.trimming = false;
      this.w.trace.mix(53, upTo);
      const start = this.deleteBelow(upTo);
      this.step({ type: 'trimDone', start, upTo });
    });
  }

  /** Deletes the log below `upTo` (when it is above the start); returns the start. */
  private deleteBelow(upTo: number): number {
    const w = this.w;
    const from = this.disk.start;
    if (upTo <= from) return from;
    w.checker.startTaken(this, 'a deletion run', upTo);
    // The epochs file keeps the terms of what goes (only checked frames are deleted).
    const { epochs } = scanFrames(this.disk.view().subarray(from, upTo), from, { verifyPayload: false });
    for (const e of epochs) noteEpoch(this.epochsBelow, e.term, e.offset);
    w.stats.trimmedBytes += this.disk.trimTo(upTo);
    w.trace.mix(55, from, upTo);
    if (w.trace.on) w.trace.line(w.q.now, this.id, `deleted [${from}, ${upTo}): the log starts at ${upTo}`);
    return upTo;
  }

  /** The term boundaries of the recovered log: those of the deleted part, then the scanned ones. */
  private recoveredEpochs(scanned: Epoch[]): Epoch[] {
    const out = this.epochsBelow.map((e) => ({ ...e }));
    for (const e of scanned) noteEpoch(out, e.term, e.offset);
    return out;
  }


  /**
   * Serves a read like GET /v1/read: whole frames from `from` up to the readable end, at most
   * `limit` bytes but at least one frame. Frames are not validated here (the server does not
   * either): the reader checks them.
   */
  serveRead(from: number, limit: number, forClient: string): { bytes: Buffer; next: number } | { error: 'out_of_range' | 'bad_offset' | 'unavailable' } | { error: 'trimmed'; start: number } {
    if (!this.up || !this.replica) return { error: 'unavailable' };
    if (from < this.disk.start) return { error: 'trimmed', start: this.disk.start };
    const readable = this.replica.readableEnd();
    if (from > readable) return { error: 'out_of_range' };
    const image = this.disk.view();
    let at = from;
    while (at < readable && (at === from || at - from < limit)) {
      const h = decodeHeader(image, at);
      if (!h.ok) break;
      const next = at + frameSize(h.header.length);
      if (next > readable) break;
      at = next;
    }
    if (at === from && from < readable) return { error: 'bad_offset' };
    const bytes = Buffer.alloc(at - from);
    image.copy(bytes, 0, from, Math.min(at, image.length));
    this.w.checker.onServe(this, 'read', from, bytes, forClient);
    return { bytes, next: at };
  }
}

const INPUT_CODES: Record<Input['type'], number> = {
  tick: 0, message: 1, appendHead: 2, bodyDone: 3, writeDone: 4, writeFailed: 5, uploadArrived: 6,
  syncDone: 7, copyDone: 8, readIndex: 9, fate: 10, trim: 11, trimDone: 12,
};
const MSG_CODES: Record<Message['type'], number> = { vote: 0, voteReply: 1, append: 2, appendReply: 3, probe: 4, probeReply: 5 };

export function describeMsg(m: Message): string {
  switch (m.type) {
    case 'vote': return `${m.pre ? 'prevote' : 'vote'} t${m.term} last(${m.lastEnd},t${m.lastTerm})`;
    case 'voteReply': return `${m.pre ? 'prevote' : 'vote'}Reply t${m.term} ${m.granted ? 'granted' : 'denied'}`;
    case 'append': {
      const es = m.entries.map((e) => `${e.offset}+${e.length}t${e.term}${e.kind === Kind.Data ? '' : e.kind === Kind.Noop ? 'n' : e.kind === Kind.Aborted ? 'a' : 'c'}`).join(',');
      return `append t${m.term} prev(${m.prevEnd},t${m.prevTerm}) commit ${m.commit} [${es}]${m.catchUp ? ` catchUp to ${m.catchUp.to}` : ''}`;
    }
    case 'appendReply': return `appendReply t${m.term} ${m.ok ? 'ok' : 'no'} end ${m.end}${m.ok ? '' : ` conflict t${m.conflictTerm}`}`;
    case 'probe': return `probe t${m.term} #${m.nonce}`;
    case 'probeReply': return `probeReply t${m.term} #${m.nonce}${m.leaderEnd !== undefined ? ` leader end ${m.leaderEnd}` : ''}`;
  }
}

function describeInput(i: Input): string {
  switch (i.type) {
    case 'message': return `${i.from}: ${describeMsg(i.msg)}`;
    case 'appendHead': return `appendHead req ${i.reqId} (${i.uploadId}) len ${i.length}`;
    case 'bodyDone': return `bodyDone req ${i.reqId} ${i.ok ? 'ok' : 'BROKEN'}`;
    case 'writeDone': return `writeDone ${i.seq}`;
    case 'writeFailed': return `writeFailed ${i.seq} ${i.reason}`;
    case 'uploadArrived': return `upload ${i.uploadId}`;
    case 'syncDone': return `syncDone ${i.upTo} ${i.ok ? 'ok' : 'FAILED'}`;
    case 'copyDone': return `copyDone [${i.start}, ${i.to}) ${i.ok ? 'ok' : 'failed'}`;
    case 'readIndex': return `readIndex req ${i.reqId}`;
    case 'fate': return `fate req ${i.reqId} ${i.uploadId} after ${i.after ?? 0}`;
    case 'trim': return `trim req ${i.reqId} before ${i.before}`;
    case 'trimDone': return `trimDone start ${i.start} up to ${i.upTo}`;
    case 'tick': return `tick ${i.now}`;
  }
}
