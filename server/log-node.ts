/**
 * LogNode: the server-side executor of spec's replica. It owns the replica, the segment
 * log and the upload buffer, turns effects into file I/O, peer sends and client replies,
 * and turns completions back into inputs. It contains no protocol decisions: those are
 * all in spec/replica.ts, which the simulator runs the same way.
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { Replica } from '../spec/replica.ts';
import type { Effect, Input, Message, NodeId, ReplyResult } from '../spec/messages.ts';
import { type EntryMeta, entryEnd, termAt } from '../spec/entry.ts';
import { Kind, HEADER_SIZE, crc32c, decodeHeader, encodeFrame, encodeHeader, frameSize, trailerFor } from '../spec/frame.ts';
import { LogError } from '../spec/errors.ts';
import { SegmentLog } from './storage/segment-log.ts';
import { loadHardState, saveHardStateSync } from './storage/hard-state.ts';
import type { NodeConfig } from './config.ts';
import { UploadBuffer } from './upload-buffer.ts';
import { FatesFile, loadFatesFrom, raiseFatesFromSync, saveFatesFromSync } from './storage/fates-file.ts';
import { loadTrimPoint, saveTrimPointSync } from './storage/trim-point.ts';
import { DirLock } from './storage/dir-lock.ts';
import { makeDirSync } from './storage/fs-util.ts';
import { claimIdentitySync } from './storage/identity-file.ts';
import { Scrubber } from './storage/scrubber.ts';

/** What the node needs from the cluster transport (none for a cluster of one). */
export interface PeerTransport {
  send(to: NodeId, msg: Message): void;
  /** Message bytes sent to peers so far (for `/v1/status`), if the transport counts them. */
  readonly stats?: { messageBytes: number };
  /** Payload bytes of a placed frame at a peer (written, not necessarily committed). */
  fetchPayload(peer: NodeId, meta: EntryMeta): Promise<Buffer>;
  /**
   * Written frames [offset, to) at a peer, in one request, while the peer is in `term` (it may
   * answer fewer: those it has written). Several fetches at once go this way (see flushFetches).
   */
  fetchFrameRun?(peer: NodeId, offset: number, to: number, term: number): Promise<Buffer>;
  /** Committed frames from `offset` at a peer (at least the whole first one): a scrub's repair. */
  fetchFrames(peer: NodeId, offset: number, signal?: AbortSignal): Promise<Buffer>;
  /** Frames [start, to) from a peer's written log while the peer is still in `term` (catch-up). */
  copyFrames(peer: NodeId, start: number, to: number, term: number, onChunk: (offset: number, frames: Buffer) => Promise<void>): Promise<number>;
  close(): Promise<void>;
}

/** Receives the streamed body of an allocated append. */
export interface BodySink {
  start(meta: EntryMeta): void;
  cancel(): void;
}

type Pending = (r: ReplyResult) => void;

/**
 * How long a peer's payload fetch waits for this node's own write of that frame. A leader
 * sends an entry's metadata before its write of the body lands (a large body goes through
 * the threadpool), and a follower told that no client copy is coming fetches at once.
 */
const FETCH_WAIT_MS = 2000;
/** The most frame bytes one request of adjacent fetches asks for. */
const FETCH_RUN_BYTES = 4 << 20;

/** A fetch effect of the replica: the payload of `meta` from `peer`, reported under `seq`. */
interface Fetch { seq: number; meta: EntryMeta; peer: NodeId }

/** Seeded from the OS once; the replica itself only sees a function. */
function makeRandom(): () => number {
  let s = randomBytes(4).readUInt32LE(0) || 1;
  return () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s / 0x1_0000_0000;
  };
}

/**
 * A file of the data directory this user may not open: Node's bare "EACCES: permission
 * denied, open 'd/hardstate'" said which, not why or what to do. The usual cause is a node
 * once run as another user (root, say), which left files this one cannot write.
 */
function unopenable(e: unknown, dir: string): unknown {
  const code = (e as NodeJS.ErrnoException).code;
  if (e instanceof LogError || (code !== 'EACCES' && code !== 'EPERM')) return e;
  return new LogError('internal', `cannot open the data directory ${dir}: ${(e as Error).message}; every file in it must be readable and writable by this user (a node once run as another user, root say, leaves files it cannot open: chown them to this one)`, {}, { cause: e });
}

export class LogNode extends EventEmitter {
  readonly replica: Replica;
  readonly log: SegmentLog;
  readonly uploads: UploadBuffer;
  private transport: PeerTransport | null = null;
  private pending = new Map<number, Pending>();
  private bodies = new Map<number, BodySink>();
  /** In-flight body chunk writes, by frame offset. */
  private bodyWrites = new Map<number, Set<Promise<void>>>();
  /** Fetch effects of this turn, sent together by flushFetches. */
  private fetches: Fetch[] = [];
  private nextReq = 1;
  private ticker: NodeJS.Timeout | null = null;
  private retentionTimer: NodeJS.Timeout | null = null;
  private readonly scrubber: Scrubber;
  /** The leader's start to trim toward (`trim` effects), and the last point tried. */
  private trimTarget = 0;
  private trimTried = 0;
  private trimming = false;
  private closed = false;
  private readonly t0 = performance.now();
  /** A complete body handed over with bodyDone, for the write effect of that step. */
  private heldBody: { offset: number; chunks: Buffer[] } | null = null;
  /** Payload bytes of client appends this node received complete as leader (for `/v1/status`). */
  appendedBytes = 0;
  /** Payload bytes peers fetched from this node (`/v1/peer/payload`, and frames of fetch runs). */
  peerPayloadBytes = 0;
  /** Fetch requests peers made here (one per entry, or one per run of entries). */
  peerFetchRequests = 0;
  /** Frame bytes peers copied from this node to catch up (GET /v1/peer/frames). */
  peerCopyBytes = 0;

  private constructor(readonly config: NodeConfig, log: SegmentLog, replica: Replica, private readonly fatesFile: FatesFile, private readonly lock: DirLock) {
    super();
    this.setMaxListeners(0);
    this.log = log;
    this.log.onDamaged = (message) => this.emit('warn', message);
    this.replica = replica;
    this.uploads = new UploadBuffer(config.uploadBufferBytes);
    this.scrubber = new Scrubber({
      log, intervalMs: config.scrubIntervalMs, bytesPerSec: config.scrubBytesPerSec,
      limit: () => this.readableEnd(),
      sources: () => this.replica.config.members.filter((m) => m !== config.id),
      fetchFrames: (peer, offset, signal) => {
        if (!this.transport) return Promise.reject(new Error('no peer transport'));
        return this.transport.fetchFrames(peer, offset, signal);
      },
      diskFailed: (reason) => this.fatal(reason),
      report: (line) => this.emit('warn', line),
      now: () => Date.now(),
    });
  }

  /** Takes the data directory (refused while another node has it), recovers it and builds the replica. */
  static async open(config: NodeConfig): Promise<LogNode> {
    makeDirSync(config.dataDir, 'the data directory');
    const lock = DirLock.acquire(config.dataDir);
    try {
      return await LogNode.openLocked(config, lock);
    } catch (e) {
      lock.release();
      throw unopenable(e, config.dataDir);
    }
  }

  private static async openLocked(config: NodeConfig, lock: DirLock): Promise<LogNode> {
    const members = config.peers.length > 0 ? config.peers.map((p) => p.id) : [config.id];
    claimIdentitySync(config.dataDir, { cluster: config.clusterName, node: config.id, members });
    // Asked before the fates file opens: dropping its oldest records there writes the file.
    const hadFatesFrom = loadFatesFrom(config.dataDir) !== null;
    const fates = FatesFile.open(config.dataDir);
    let log: SegmentLog;
    try {
      // No checkpoint until the replica has marked the recovered frames without a fates
      // record and that is saved: the next recovery would not scan them again.
      log = await SegmentLog.open(config.dataDir, { segmentBytes: config.segmentBytes, beforeCheckpoint: () => fates.file.sync(), checkpointAtOpen: false });
    } catch (e) {
      await fates.file.close();
      throw e;
    }
    const hard = loadHardState(config.dataDir);
    const trim = loadTrimPoint(config.dataDir);
    // No file: a new directory (nothing to forget), or one written before the file existed,
    // whose records may have been dropped unannounced (all of its log, then).
    const saved = hadFatesFrom ? loadFatesFrom(config.dataDir) : null;
    const fatesFrom = saved ?? (log.end > log.start ? log.end : 0);
    const replica = new Replica({
      config: {
        id: config.id, members,
        electionMs: config.electionMs, heartbeatMs: config.heartbeatMs,
        bodyDeadlineMs: config.bodyDeadlineMs, uploadDeadlineMs: config.uploadDeadlineMs,
        allAckTimeoutMs: config.allAckTimeoutMs, maxEntryBytes: config.maxEntryBytes, maxBatchEntries: 1024, windowEntries: 200_000,
      },
      init: { term: hard.term, votedFor: hard.votedFor, abstain: hard.abstain, newCluster: config.newCluster, incarnation: randomBytes(6).readUIntLE(0, 6), start: log.start, end: log.end, epochs: log.epochs, tail: log.recoveredTail, fates: fates.fates, fatesFrom, trimPoint: trim.point },
      random: makeRandom(),
      now: 0,
    });
    if (saved === null || replica.fatesFrom > fatesFrom) saveFatesFromSync(config.dataDir, replica.fatesFrom);
    await log.checkpointNow();
    const node = new LogNode(config, log, replica, fates.file, lock);
    node.savedTrimPoint = trim.point;
    if (trim.damaged) node.openWarnings.push('the trim-point file is damaged: this node deletes nothing more until the leader passes its trim point on again');
    return node;
  }

  /** The trim point in the `trim-point` file: a restart's resumed trim need not save it again. */
  private savedTrimPoint = 0;
  /** Said when the node starts (`warn` events), once whoever listens has subscribed. */
  private readonly openWarnings: string[] = [];
  /** As last saved in the hard state (see ReplicaInit.abstain). */
  private abstaining = false;

  /** Starts the clock; with a cluster of one this elects the node at once. */
  start(transport: PeerTransport | null): void {
    this.transport = transport;
    for (const w of this.openWarnings.splice(0)) this.emit('warn', w);
    this.abstaining = this.replica.abstaining;
    if (this.abstaining) {
      this.emit('info', `${this.config.id} has no saved vote (its data directory is new or was emptied), so it does not vote yet: it may have voted before and forgotten. It will once every member has told it its term and it holds what the leader has committed; until then the other members elect without it.`);
    }
    this.tick();
    this.ticker = setInterval(() => this.tick(), Math.max(5, Math.min(10, this.config.heartbeatMs / 5)));
    this.ticker.unref();
    if (this.config.retention.maxAgeMs !== null || this.config.retention.maxBytes !== null) {
      this.retentionTimer = setInterval(() => void this.applyRetention(), this.config.retentionCheckMs);
      this.retentionTimer.unref();
      // The first run waits for the readable end, its limit: a restarted node learns it only
      // from its first commit (a single node's re-commit, a follower's leader). Run at once,
      // it deleted nothing, and a lowered limit waited a minute for the timer.
      this.once('readable', () => void this.applyRetention());
    }
    this.scrubber.start();
  }

  now(): number {
    return performance.now() - this.t0;
  }

  private tick(): void {
    this.step({ type: 'tick', now: this.now() });
    this.followTrim();
  }

  /**
   * Deletes toward the trim point (`trim` effect) as far as this node can serve: whole
   * segments below min(point, readable end). The rest follows on later ticks, as the node
   * catches up and its segments seal. Each run is reported (`trimDone`), even one that
   * deleted nothing: the leader answers a trim once it has run up to its point.
   */
  private followTrim(): void {
    if (this.trimming || this.closed) return;
    const upTo = Math.min(this.trimTarget, this.readableEnd());
    if (upTo <= this.trimTried) return;
    this.trimming = true;
    this.trimTried = upTo;
    const was = this.log.start;
    this.log.trim(upTo).then(
      (start) => { this.noteStart(was, 'a trim'); this.step({ type: 'trimDone', start, upTo }); },
      (err) => this.emit('warn', `trim to ${upTo} failed: ${(err as Error).message}`),
    ).finally(() => { this.trimming = false; });
  }

  /** Feeds one input to the replica and executes its effects in order. */
  step(input: Input): void {
    if (this.closed) return;
    const readable = this.readableEnd();
    const written = this.replica.writtenEnd;
    const effects = this.replica.step(input);
    for (const e of effects) this.execute(e);
    // Readers wait for the readable end, min(commit, written): on a follower the commit end
    // often arrives before the bytes (the payload is still uploading or being fetched), and
    // then it is a write, not a commit, that makes the entry readable. Wake them either way.
    if (!this.closed && this.readableEnd() > readable) this.emit('readable', this.readableEnd());
    // A write (or catch-up copy) that lands after a missing one does not move the written
    // end, but a fetch of that very frame may be waiting for it.
    if (!this.closed && (this.replica.writtenEnd > written || input.type === 'writeDone' || input.type === 'copyDone')) this.emit('written', this.replica.writtenEnd);
  }

  private execute(e: Effect): void {
    switch (e.type) {
      case 'send': this.transport?.send(e.to, e.msg); break;
      case 'persist':
        saveHardStateSync(this.config.dataDir, { term: e.term, votedFor: e.votedFor, abstain: e.abstain === true });
        if (this.abstaining && !e.abstain) this.emit('info', `${this.config.id} votes again: it knows every member's term and holds what the leader had committed`);
        this.abstaining = e.abstain === true;
        break;
      // The file may be higher already: the fates file raises it when it drops records.
      case 'fatesFrom': raiseFatesFromSync(this.config.dataDir, e.offset); break;
      case 'trim':
        // Durable before any later effect: the acknowledgement that reports it, say.
        if (e.before > this.savedTrimPoint) {
          saveTrimPointSync(this.config.dataDir, e.before);
          this.savedTrimPoint = e.before;
        }
        this.trimTarget = Math.max(this.trimTarget, e.before);
        this.followTrim();
        break;
      case 'allocated':
        this.log.place(e.meta.offset, e.meta.length, e.meta.term);
        this.bodies.get(e.reqId)?.start(e.meta);
        break;
      case 'cancelBody': this.bodies.get(e.reqId)?.cancel(); this.bodies.delete(e.reqId); break;
      case 'write':
        this.fatesFile.add(e.meta);
        this.write(e.seq, e.meta, e.source);
        break;
      case 'fetch': this.queueFetch({ seq: e.seq, meta: e.meta, peer: e.peer }); break;
      case 'copy': this.copy(e.peer, e.start, e.to, e.term); break;
      case 'sync':
        this.log.sync().then(
          () => this.step({ type: 'syncDone', upTo: e.upTo, ok: true }),
          (err) => { this.emit('warn', `fdatasync failed: ${(err as Error).message}`); this.step({ type: 'syncDone', upTo: e.upTo, ok: false }); },
        );
        break;
      case 'reset': {
        // Every deletion is a line: this one drops the whole local log, which lies below the
        // leader's start (trimmed there while this node was away).
        const was = { start: this.log.start, end: this.log.end };
        // Bookkeeping now (the copy that follows places frames from `to` on); files fenced.
        this.log.reset(e.to, e.epochs).catch((err) => this.fatal(`reset failed: ${(err as Error).message}`));
        this.emit('info', `the leader's log starts at ${e.to}, past all this node held (${was.start}..${was.end}, trimmed there meanwhile): deleted every segment, copying the log from ${e.to} on`);
        break;
      }
      case 'truncate': {
        // SegmentLog cuts its bookkeeping now and orders the file work after earlier writes.
        this.log.truncate(e.to).catch((err) => this.fatal(`truncate failed: ${(err as Error).message}`));
        break;
      }
      case 'reply': {
        const p = this.pending.get(e.reqId);
        this.pending.delete(e.reqId);
        p?.(e.result);
        break;
      }
      case 'commit': this.emit('commit', e.end); break;
      case 'role': this.emit('role', e); break;
      case 'fatal': this.fatal(e.reason); break;
    }
  }

  private fatal(reason: string): void {
    this.emit('fatal', reason);
  }

  private write(seq: number, meta: EntryMeta, source: 'body' | 'zero' | 'upload'): void {
    let frame: Buffer | null = null;
    if (source !== 'body') {
      // An upload write retried after its upload was missing (or corrupt) is already placed.
      if (meta.offset === this.log.end) this.log.place(meta.offset, meta.length, meta.term);
      if (source === 'upload') {
        const up = meta.uploadId !== null ? this.uploads.take(meta.uploadId) : undefined;
        if (!up) { queueMicrotask(() => this.step({ type: 'writeFailed', seq, reason: 'missing' })); return; }
        if (up.length !== meta.length || crc32c(up) !== meta.crc) { queueMicrotask(() => this.step({ type: 'writeFailed', seq, reason: 'corrupt' })); return; }
        frame = encodeFrame(meta, up);
      } else {
        frame = encodeFrame(meta);
      }
    }
    let held: Buffer[] | null = null;
    if (source === 'body' && this.heldBody?.offset === meta.offset) held = this.heldBody.chunks;
    const done = frame ? this.log.writeAt(meta.offset, frame) : this.sealBody(meta, held);
    done.then(
      () => this.step({ type: 'writeDone', seq }),
      (err) => this.fatal(`write at ${meta.offset} failed: ${(err as Error).message}`),
    );
  }

  /** Header and trailer of a streamed body; an aborted body's payload is zeroed first. */
  private async sealBody(meta: EntryMeta, held: Buffer[] | null): Promise<void> {
    // Body chunks still in flight (a body cut short) must land before the zeroing does.
    const inflight = this.bodyWrites.get(meta.offset);
    this.bodyWrites.delete(meta.offset);
    if (inflight && inflight.size > 0) await Promise.allSettled([...inflight]);
    if (held && meta.kind === Kind.Data) {
      await this.log.writeAt(meta.offset, [encodeHeader(meta), ...held, Buffer.from([trailerFor(meta.kind)])]);
      return;
    }
    const writes: Promise<void>[] = [];
    if (meta.kind === Kind.Aborted && meta.length > 0) writes.push(this.log.writeAt(meta.offset + HEADER_SIZE, Buffer.alloc(meta.length)));
    writes.push(this.log.writeAt(meta.offset, encodeHeader(meta)));
    writes.push(this.log.writeAt(meta.offset + HEADER_SIZE + meta.length, Buffer.from([trailerFor(meta.kind)])));
    await Promise.all(writes);
  }

  /**
   * Fetches are gathered for a turn and sent together: runs of adjacent entries from one peer
   * in one request. A follower back from an outage fetches thousands of entries at once (no
   * client copy is coming for them), and one HTTP request each made it catch up at 1-3 MB/s
   * with small entries (found by an acceptance test).
   */
  private queueFetch(f: Fetch): void {
    if (this.fetches.length === 0) queueMicrotask(() => this.flushFetches());
    this.fetches.push(f);
  }

  private flushFetches(): void {
    const all = this.fetches;
    this.fetches = [];
    all.sort((a, b) => (a.peer < b.peer ? -1 : a.peer > b.peer ? 1 : a.meta.offset - b.meta.offset));
    let run: Fetch[] = [];
    let bytes = 0;
    const send = () => {
      if (run.length === 1) this.fetch(run[0].seq, run[0].meta, run[0].peer);
      else if (run.length > 1) this.fetchRun(run);
      run = [];
      bytes = 0;
    };
    for (const f of all) {
      const last = run[run.length - 1];
      const size = frameSize(f.meta.length);
      if (last && (last.peer !== f.peer || entryEnd(last.meta) !== f.meta.offset || bytes + size > FETCH_RUN_BYTES)) send();
      run.push(f);
      bytes += size;
    }
    send();
  }

  /**
   * One request for the frames of `run` (adjacent entries, one peer). Each frame is checked
   * against the entry it should be (length, term, CRC32C of the payload) and written as a
   * fetched payload is; the entries the answer does not cover are fetched one by one.
   */
  private fetchRun(run: Fetch[]): void {
    const { peer } = run[0];
    const one = (fs: Fetch[]) => { for (const f of fs) this.fetch(f.seq, f.meta, f.peer); };
    if (!this.transport?.fetchFrameRun) { one(run); return; }
    this.transport.fetchFrameRun(peer, run[0].meta.offset, entryEnd(run[run.length - 1].meta), this.replica.term).then(
      (frames) => {
        let at = 0;
        let i = 0;
        for (; i < run.length; i++) {
          const { seq, meta } = run[i];
          const size = frameSize(meta.length);
          const h = at + size <= frames.length ? decodeHeader(frames.subarray(at, at + HEADER_SIZE)) : null;
          if (!h?.ok || h.header.kind !== meta.kind || h.header.length !== meta.length || h.header.term !== meta.term) break;
          const payload = frames.subarray(at + HEADER_SIZE, at + HEADER_SIZE + meta.length);
          if (crc32c(payload) !== meta.crc) break;
          at += size;
          this.writeFetched(seq, meta, payload);
        }
        one(run.slice(i));
      },
      () => one(run),
    );
  }

  /** Writes a payload fetched from a peer into the frame it was fetched for, if the log still has that frame. */
  private writeFetched(seq: number, meta: EntryMeta, payload: Buffer): void {
    // The log may have been truncated while the fetch was in flight, and other frames placed
    // over this range: write only into the frame the fetch was for. (Writes issued after a
    // truncation land after it, so this check must be made now.)
    if (!this.holdsFrame(meta)) {
      this.step({ type: 'writeFailed', seq, reason: 'fetch' });
      return;
    }
    // A write that failed is a disk failure, fatal as on every other path (unless the node is
    // closing: a fetch that came back just as it closed finds the log closed).
    this.log.writeAt(meta.offset, encodeFrame(meta, payload)).then(
      () => this.step({ type: 'writeDone', seq }),
      (err) => { if (!this.closed) this.fatal(`write at ${meta.offset} failed: ${(err as Error).message}`); },
    );
  }

  private fetch(seq: number, meta: EntryMeta, peer: NodeId): void {
    if (!this.transport) { queueMicrotask(() => this.step({ type: 'writeFailed', seq, reason: 'fetch' })); return; }
    // A fetch that failed is tried again (the replica decides when, and from whom).
    this.transport.fetchPayload(peer, meta).then(
      (payload) => {
        if (payload.length !== meta.length || crc32c(payload) !== meta.crc) this.step({ type: 'writeFailed', seq, reason: 'fetch' });
        else this.writeFetched(seq, meta, payload);
      },
      () => this.step({ type: 'writeFailed', seq, reason: 'fetch' }),
    );
  }

  /**
   * Whether the log has the frame `meta` describes placed right now: its range is in the
   * log with the same term. (Every replica lays out a term's entries exactly as that
   * term's leader placed them, so the same term at the same offset is the same frame.)
   * Only in-memory bookkeeping: no frame index is loaded (a sealed segment's index reloaded
   * while its frames are not all written yet would miss the unwritten ones).
   */
  private holdsFrame(meta: Pick<EntryMeta, 'offset' | 'length' | 'term'>): boolean {
    return meta.offset + frameSize(meta.length) <= this.log.end && termAt(this.log.epochs, meta.offset) === meta.term;
  }

  private copy(peer: NodeId, start: number, to: number, term: number): void {
    if (!this.transport) { queueMicrotask(() => this.step({ type: 'copyDone', start, to: start, epochs: [], ok: false })); return; }
    const epochsBefore = this.log.epochs.length;
    // Chunks are appended to the log as they arrive, so a copy that fails part way has still
    // made progress: the replica is told how far (whole chunks written), or its end and the
    // log's would part and every later copy would start behind the file. A chunk whose
    // frames were placed but whose write failed leaves the log with a hole it has already
    // counted: that is a disk failure, fatal like any failed write.
    let reached = start;
    let holed = false;
    const onChunk = async (offset: number, frames: Buffer) => {
      try {
        await this.log.appendFrames(offset, frames);
      } catch (e) {
        // Frames that fail validation are refused before any is placed (the peer's fault).
        holed = this.log.end > offset;
        throw e;
      }
      reached = offset + frames.length;
    };
    const done = () => this.step({ type: 'copyDone', start, to: reached, epochs: this.log.epochs.slice(Math.max(0, epochsBefore - 1)), ok: reached > start });
    this.transport.copyFrames(peer, start, to, term, onChunk).then(done, (err) => {
      if (holed) {
        this.fatal(`catch-up write failed: ${(err as Error).message}`);
        return;
      }
      this.emit('warn', `catch-up from ${peer} failed at ${reached}: ${(err as Error).message}`);
      done();
    });
  }

  // ------------------------------------------------------------------ client operations

  /** Registers a request id whose reply the replica will send later. */
  private request(): { reqId: number; result: Promise<ReplyResult> } {
    const reqId = this.nextReq++;
    const result = new Promise<ReplyResult>((resolve) => this.pending.set(reqId, resolve));
    return { reqId, result };
  }

  /**
   * Starts an append: the replica allocates the range (sink.start is called synchronously
   * with the meta when it does), and the returned promise settles per the ack level.
   */
  beginAppend(args: { length: number; crc: number | null; uploadId: string | null; acks: 'leader' | 'quorum' | 'all'; copies?: boolean; after?: number; sink: BodySink }): { reqId: number; result: Promise<ReplyResult> } {
    const { reqId, result } = this.request();
    this.bodies.set(reqId, args.sink);
    this.step({ type: 'appendHead', reqId, uploadId: args.uploadId, length: args.length, crc: args.crc, acks: args.acks, copies: args.copies, after: args.after });
    void result.finally(() => this.bodies.delete(reqId));
    return { reqId, result };
  }

  /** Writes a chunk of the body of the frame at `frame` into the segment file at `at`. */
  writeBody(frame: number, at: number, chunk: Buffer | Buffer[]): Promise<void> {
    const w = this.log.writeAt(at, chunk);
    let set = this.bodyWrites.get(frame);
    if (!set) this.bodyWrites.set(frame, (set = new Set()));
    set.add(w);
    const drop = () => { set.delete(w); };
    // A body chunk that cannot be written is a failed write like any other: the node stops.
    w.then(drop, (err) => { drop(); if (!this.closed) this.fatal(`write at ${at} failed: ${(err as Error).message}`); });
    return w;
  }

  /**
   * The body of an allocated append is complete (or lost). `held`: the whole body, not
   * written yet; the replica's write effect for it (in this same step) writes it with the
   * frame's header and trailer.
   */
  bodyDone(reqId: number, ok: boolean, crc: number, held?: { offset: number; chunks: Buffer[] }, writeError?: string): void {
    this.heldBody = held ?? null;
    try {
      this.step({ type: 'bodyDone', reqId, ok, crc, ...(writeError !== undefined && { writeError }) });
    } finally {
      this.heldBody = null;
    }
  }

  readIndex(): Promise<ReplyResult> {
    const { reqId, result } = this.request();
    this.step({ type: 'readIndex', reqId });
    return result;
  }

  /** What became of an upload id; `after`: every attempt under it was placed at or past this offset (see Input 'fate'). */
  fate(uploadId: string, after = 0): Promise<ReplyResult> {
    const { reqId, result } = this.request();
    this.step({ type: 'fate', reqId, uploadId, after });
    return result;
  }

  upload(uploadId: string, payload: Buffer): void {
    this.uploads.put(uploadId, payload);
    this.step({ type: 'uploadArrived', uploadId });
  }

  /** Reads are served up to here: the local commit end, limited to bytes in the file. */
  readableEnd(): number {
    return this.replica.readableEnd();
  }

  /** Resolves when the readable end passes `offset`, or after `ms` / on abort (false). */
  waitReadable(offset: number, ms: number, signal?: AbortSignal): Promise<boolean> {
    return this.waitUntil('readable', () => this.readableEnd() > offset, ms, signal);
  }

  /** Resolves true once `ok()` holds, checked now and on each `event`; false after `ms`, on abort or on close. */
  private waitUntil(event: 'readable' | 'written', ok: () => boolean, ms: number, signal?: AbortSignal): Promise<boolean> {
    if (ok()) return Promise.resolve(true);
    if (ms <= 0 || signal?.aborted || this.closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const finish = (v: boolean) => {
        clearTimeout(timer);
        this.off(event, onEvent);
        this.off('closing', onAbort);
        signal?.removeEventListener('abort', onAbort);
        resolve(v);
      };
      const onEvent = () => { if (ok()) finish(true); };
      const onAbort = () => finish(false);
      const timer = setTimeout(() => finish(!this.closed && ok()), ms);
      this.on(event, onEvent);
      this.once('closing', onAbort);
      signal?.addEventListener('abort', onAbort);
    });
  }

  /**
   * Payload of the frame at `offset` for a peer's fetch: placed and written here (not
   * necessarily committed), with the expected length and term.
   */
  async readPayload(offset: number, length: number, term: number): Promise<Buffer> {
    const end = offset + frameSize(length);
    // This frame's own bytes, not the written prefix: a frame whose body arrived before an
    // earlier one's can be served at once.
    const written = () => this.replica.writtenEnd >= end || this.log.isWritten(offset, end);
    if (!written()) {
      // Placed here but not written yet: wait for the write rather than send the peer away
      // (it would try elsewhere and come back a heartbeat later).
      const frame = { offset, length, term };
      if (!this.holdsFrame(frame) || !(await this.waitUntil('written', () => written() && this.holdsFrame(frame), FETCH_WAIT_MS))) {
        throw new LogError('not_found', `no written frame at ${offset}`);
      }
    }
    // read() checks that offset is a frame start (without a synchronous index load).
    const { data } = await this.log.read(offset, end - offset, end).catch((e: unknown) => {
      throw e instanceof LogError && e.code === 'bad_offset' ? new LogError('not_found', `no frame starts at ${offset}`) : e;
    });
    const h = decodeHeader(data);
    if (!h.ok || h.header.length !== length || h.header.term !== term) throw new LogError('not_found', `the frame at ${offset} is not the one asked for`);
    return data.subarray(HEADER_SIZE, HEADER_SIZE + length);
  }

  /** Written frames for a peer's catch-up copy, up to `to`, while this node is in `term`. */
  async readFramesForPeer(offset: number, maxBytes: number, to: number, term: number): Promise<{ data: Buffer; next: number }> {
    if (this.replica.term !== term) throw new LogError('unavailable', `this node is in term ${this.replica.term}, not ${term}`);
    return this.log.read(offset, maxBytes, Math.min(to, this.replica.writtenEnd));
  }

  async read(offset: number, maxBytes: number): Promise<{ data: Buffer; next: number }> {
    return this.log.read(offset, maxBytes, this.readableEnd());
  }

  /**
   * Deletes the log below `before` on every replica (whole segments; the leader's answer is
   * its new start). See spec/replica.ts, onTrim: a point past the commit end is refused, and
   * the answer waits for a majority to hold the point.
   */
  async trim(before: number): Promise<number> {
    const { reqId, result } = this.request();
    this.step({ type: 'trim', reqId, before });
    const r = await result;
    if (r.type === 'trimmed') return r.start;
    throw this.replyError(r) ?? new LogError('internal', `unexpected answer to a trim: ${r.type}`);
  }

  /** Says (an `info` event: loglogd prints it) when segments were deleted and the log start moved. */
  private noteStart(was: number, why: string): void {
    if (this.log.start > was) this.emit('info', `${why} deleted the segments below ${this.log.start} (the log started at ${was})`);
  }

  private async applyRetention(): Promise<void> {
    try {
      const before = this.log.start;
      await this.log.applyRetention({ maxAgeMs: this.config.retention.maxAgeMs ?? undefined, maxBytes: this.config.retention.maxBytes ?? undefined, limit: this.readableEnd() }, Date.now());
      this.noteStart(before, 'retention');
      if (this.log.start > before) this.step({ type: 'trimDone', start: this.log.start, upTo: this.log.start });
    } catch (e) {
      this.emit('warn', `retention failed: ${(e as Error).message}`);
    }
  }

  status(): Record<string, unknown> {
    const r = this.replica;
    return {
      id: this.config.id, cluster: this.config.clusterName, role: r.role, term: r.term, leader: r.knownLeader, abstaining: r.abstaining,
      start: this.log.start, trimPoint: r.trimPoint, end: r.end, commit: r.commitEnd, readable: this.readableEnd(), durable: r.durableEnd,
      segments: this.log.segmentCount, bytes: this.log.bytes,
      maxEntryBytes: this.config.maxEntryBytes,
      members: r.config.members,
      leaderUrl: this.peerUrl(r.knownLeader),
      peers: this.config.peers,
      traffic: this.traffic(),
      scrub: this.scrubber.status(),
    };
  }

  /**
   * Byte counters since start: client payload appended here as leader, and everything sent
   * to peers (the leader's egress, which client-offloaded replication keeps near zero).
   */
  traffic(): { appendedBytes: number; peerSentBytes: number; peerMessageBytes: number; peerPayloadBytes: number; peerCopyBytes: number; peerFetchRequests: number } {
    const messages = this.transport?.stats?.messageBytes ?? 0;
    return {
      appendedBytes: this.appendedBytes,
      peerSentBytes: messages + this.peerPayloadBytes + this.peerCopyBytes,
      peerMessageBytes: messages, peerPayloadBytes: this.peerPayloadBytes, peerCopyBytes: this.peerCopyBytes, peerFetchRequests: this.peerFetchRequests,
    };
  }

  /** Base URL of a cluster member, if known. */
  peerUrl(id: NodeId | null): string | null {
    if (id === null) return null;
    return this.config.peers.find((p) => p.id === id)?.url ?? null;
  }

  /** The HTTP error for a replica's error reply; not-leader answers carry the leader's URL. */
  replyError(r: ReplyResult): LogError | null {
    if (r.type !== 'error') return null;
    const details = { ...(r.details ?? {}) };
    if (r.code === 'not_leader') {
      // Not a leader this node has stopped hearing from (see Replica.knownLeader).
      if (details.leader === this.replica.leader) details.leader = this.replica.knownLeader;
      details.leaderUrl = this.peerUrl(details.leader ?? this.replica.knownLeader);
    }
    return new LogError(r.code, r.message, details);
  }

  /** True once close() has begun: waits end at once from then on. */
  get isClosed(): boolean {
    return this.closed;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    if (this.ticker) clearInterval(this.ticker);
    if (this.retentionTimer) clearInterval(this.retentionTimer);
    for (const sink of this.bodies.values()) sink.cancel();
    this.closed = true;
    this.emit('closing');
    try {
      await this.scrubber.stop();
      await this.transport?.close();
      await this.log.close();
    } finally {
      try {
        await this.fatesFile.close();
      } finally {
        this.lock.release();
        for (const [, p] of this.pending) p({ type: 'error', code: 'unavailable', message: 'the node is shutting down' });
        this.pending.clear();
      }
    }
  }
}
