/**
 * The replica state machine: Raft over byte offsets with client-offloaded payloads.
 *
 * Synchronous and deterministic: `step(input)` returns the effects to execute, in order.
 * Time comes in as `tick` inputs, randomness from the injected `random`, and storage
 * completions as inputs. The server (server/executor.ts) and the simulator (sim/) execute
 * the effects; both run this exact code. See DESIGN.md "Cluster protocol".
 */
import { Kind } from './frame.ts';
import { type EntryMeta, type Epoch, entryEnd, noteEpoch, termAt, truncateEpochs } from './entry.ts';
import type { AckLevel, AppendMsg, AppendReplyMsg, Effect, Input, Message, NodeId, ProbeReplyMsg, ReplyResult, Role, VoteMsg, VoteReplyMsg } from './messages.ts';
import { NO_BUGS, type PlantedBugs } from './bugs.ts';

export interface ReplicaConfig {
  id: NodeId;
  /** Every member of the cluster, this node included. */
  members: NodeId[];
  /** Base election timeout; each timeout is drawn from [electionMs, 2 × electionMs). */
  electionMs: number;
  heartbeatMs: number;
  /** A body not complete this long after its head arrived becomes an aborted frame. */
  bodyDeadlineMs: number;
  /** A follower waits this long for a client's upload before fetching the bytes from a peer. */
  uploadDeadlineMs: number;
  /**
   * An `acks: 'all'` append that has been committed this long without being durable on every
   * replica is answered `unconfirmed` (it is in the log) instead of waiting for a replica
   * that may be down for good.
   */
  allAckTimeoutMs: number;
  maxEntryBytes: number;
  /** Most entries in one append message. */
  maxBatchEntries: number;
  /** Entry metadata kept for replication; a follower further behind copies frames instead. */
  windowEntries: number;
}

export const DEFAULT_CONFIG: Omit<ReplicaConfig, 'id' | 'members'> = {
  electionMs: 300,
  heartbeatMs: 50,
  bodyDeadlineMs: 10_000,
  uploadDeadlineMs: 200,
  allAckTimeoutMs: 5_000,
  maxEntryBytes: 16 * 1024 * 1024,
  maxBatchEntries: 1024,
  windowEntries: 200_000,
};

/** What a replica remembers across restarts: its hard state and its recovered log. */
export interface ReplicaInit {
  term: number;
  votedFor: NodeId | null;
  /**
   * This node may have forgotten votes and entries: its hard state was never saved, or was
   * lost (a new or emptied data directory; the executor cannot tell the two apart), or was
   * saved while abstaining. Raft assumes a node forgets neither. Voting again in a term it
   * voted in could elect a second leader there; voting with a log that lost committed
   * entries could elect a leader without them; acknowledging a deposed leader it no longer
   * knows is deposed could commit over them. So the node abstains (see
   * DESIGN.md "Emptied data directories"):
   * - Until it has heard, from every other member, that member's current term (probes
   *   tagged with `incarnation`, sent every heartbeat), it ignores appends and grants no
   *   vote. Any term it voted in was some candidate's, and a term never goes down, so the
   *   highest heard covers them: it takes that term, counted as voted in (for itself).
   * - Then it follows a leader as usual, but still neither votes nor stands until it holds,
   *   committed and durably, that leader's log up to the end it gave in answer to a probe
   *   (see checkCaughtUp). Elected without this node's vote, that leader holds every
   *   committed entry; from then on so does this node.
   * If every member answers term 0, nothing was ever elected or committed, and the node
   * stops abstaining at once (a new cluster's first start). Ignored in a cluster of one.
   */
  abstain?: boolean;
  /**
   * The operator says the cluster is new (loglogd --new-cluster): an abstaining node at term
   * 0 stops at once when a majority, itself included, answered term 0 and nobody answered
   * more, instead of waiting for every member. A new cluster with a member down or
   * misconfigured then still elects. Wrongly given to an emptied node of a cluster whose
   * other members never heard from each other, it could vote twice in a term; any answer
   * above term 0 voids it.
   */
  newCluster?: boolean;
  /** Differs between two starts of this node (tags its probes: see ProbeMsg). */
  incarnation?: number;
  /** First offset still in the log (after trims). */
  start: number;
  /** One past the last valid frame after recovery. */
  end: number;
  epochs: Epoch[];
  /** Metadata of the frames found in the recovered tail (ascending, ending at `end`). */
  tail: EntryMeta[];
  /** The commit end learned before, if the executor persisted a hint (else `start`). */
  commitHint?: number;
  /** Upload ids and the frames they were placed in, oldest first (fates across restarts). */
  fates?: EntryMeta[];
  /** The last `fatesFrom` the executor persisted (see {@link Replica.fatesFrom}). */
  fatesFrom?: number;
  /** The last trim point the executor persisted (`trim` effects). */
  trimPoint?: number;
}

export interface ReplicaOptions {
  config: ReplicaConfig;
  init: ReplicaInit;
  /** Uniform [0, 1): the only randomness the protocol uses (election timeouts). */
  random: () => number;
  now: number;
  bugs?: Partial<PlantedBugs>;
}

/** Where one entry of the local log stands. */
interface Slot {
  meta: EntryMeta;
  /** Bytes are in the file. */
  written: boolean;
  /** Seq of the outstanding write/fetch effect (0 when none). */
  seq: number;
  reqId: number | null;
  acks: AckLevel | null;
  /** Follower: when to fetch from a peer instead of waiting for the upload (Infinity: not waiting). */
  fetchAt: number;
  fetchTries: number;
  openDeadline: number;
  /** Leader: the CRC32C the client declared for its body, if any. */
  expectCrc: number | null;
  /** Leader, `acks: 'all'`: when the entry was first seen committed (Infinity before). */
  committedAt: number;
}

interface Progress {
  next: number;
  match: number;
  /** The heartbeat seq of the reply that last raised `match`: an older rejection does not lower it. */
  matchSeq: number;
  /** Last heartbeat seq acknowledged (read index, check-quorum). */
  ackedSeq: number;
  heardAt: number;
  /** A catch-up instruction was sent and not yet answered. */
  catchingUp: boolean;
  /** The follower's log ends below this leader's start (trimmed): only a catch-up from the start helps. */
  belowStart: boolean;
  /** The follower's durable trim point, as last reported. */
  trimTo: number;
}

interface ReadWait { reqId: number; commit: number; seq: number }
interface TrimWait { reqId: number; before: number }

export class Replica {
  readonly id: NodeId;
  readonly config: ReplicaConfig;
  /** Every member but this one (fixed for the replica's life). */
  private readonly peerIds: readonly NodeId[];
  private readonly bugs: PlantedBugs;
  private readonly random: () => number;

  role: Role = 'follower';
  term: number;
  votedFor: NodeId | null;
  leader: NodeId | null = null;

  start: number;
  /** One past the last frame placed in the log (allocated or received). */
  end: number;
  /** Contiguous end of frames whose bytes are in the file. */
  writtenEnd: number;
  /** Contiguous end covered by a completed fdatasync. */
  durableEnd: number;
  commitEnd: number;
  readonly epochs: Epoch[];

  /** Metadata window: slots for entries in [windowStart, end), ascending. */
  private slots: Slot[] = [];
  private windowStart: number;
  private bySeq = new Map<number, Slot>();
  /** Leader: slots whose body is still streaming (few; replication stops at the first). */
  private openSlots = new Set<Slot>();
  /** Leader: sealed slots whose client waits for an ack, by level, in offset order. */
  private ackQueues: Record<AckLevel, Slot[]> = { leader: [], quorum: [], all: [] };
  /** Follower: slots waiting for the client's upload, or for a fetch retry. */
  private awaitingUpload = new Map<string, Slot>();
  private fetchQueue = new Set<Slot>();
  private byReq = new Map<number, Slot>();
  private fates = new Map<string, EntryMeta>();
  /**
   * `fates` holds every upload id placed in this log at or past this offset. Below it an id
   * may be missing: evicted from the map, lost with the fates file's unsynced records
   * (power loss), or brought by a catch-up copy, which carries frames without their ids.
   */
  private _fatesFrom: number;

  /**
   * Upload ids below this offset may be unknown here. The executor persists it (durably)
   * after constructing the replica and on every `fatesFrom` effect, and passes it back as
   * `init.fatesFrom`: a restart must not forget what this node already knows it forgot.
   */
  get fatesFrom(): number {
    return this._fatesFrom;
  }

  /** `fatesFrom` rose during this step: persist it before the step's other effects. */
  private fatesFromToPersist = false;

  private raiseFatesFrom(offset: number): void {
    if (offset <= this._fatesFrom) return;
    this._fatesFrom = offset;
    this.fatesFromToPersist = true;
  }

  private now: number;
  private electionAt = 0;
  private heartbeatAt = 0;
  private checkQuorumAt = 0;
  private lastLeaderContact = -Infinity;
  private votes = new Set<NodeId>();
  private preVoting = false;
  /** See ReplicaInit.abstain. */
  private _abstaining: boolean;
  /** While abstaining: the term each peer answered a probe of this incarnation with. */
  private heardTerms = new Map<NodeId, number>();
  /** Abstaining, and every peer's term was heard: only the catching up is left. */
  private termsKnown = false;
  /** Abstaining: the first leader's answer in the newest term heard, its term and log end. */
  private leaderEndHeard: { term: number; end: number } | null = null;
  private probeAt = 0;
  private readonly incarnation: number;
  /** See ReplicaInit.newCluster; cleared by any term above 0. */
  private newCluster: boolean;
  private progress = new Map<NodeId, Progress>();
  private hbSeq = 0;
  private readWaits: ReadWait[] = [];
  private trimWaits: TrimWait[] = [];
  /** Durable (init.trimPoint): everything below it is to be deleted here. See {@link trimPoint}. */
  private _trimPoint: number;
  /** The executor deleted what it could below this point (`trimDone`). */
  private trimmedTo: number;
  /** The trim point was recovered above the start: ask the executor to carry on deleting. */
  private resumeTrim: boolean;
  /** Follower: end of the log verified against the current leader in this term. */
  private matchedEnd = 0;
  private syncInFlight = false;
  private syncFloor = Infinity;
  private copying = false;
  /** Term in which the outstanding copy was requested. */
  private copyTerm = 0;
  private nextSeq = 1;
  private stopped = false;
  private out: Effect[] = [];

  constructor(opts: ReplicaOptions) {
    this.config = opts.config;
    this.id = opts.config.id;
    this.peerIds = opts.config.members.filter((m) => m !== opts.config.id);
    this.bugs = { ...NO_BUGS, ...(opts.bugs ?? {}) };
    this.random = opts.random;
    this.now = opts.now;
    const i = opts.init;
    this.term = i.term;
    this.votedFor = i.votedFor;
    this._abstaining = i.abstain === true && this.peerIds.length > 0 && !this.bugs.voteAfterWipe;
    this.incarnation = i.incarnation ?? 0;
    this.newCluster = i.newCluster === true;
    this.start = i.start;
    this._trimPoint = Math.max(i.start, i.trimPoint ?? 0);
    this.trimmedTo = i.start;
    this.resumeTrim = this._trimPoint > i.start;
    this.end = i.end;
    this.writtenEnd = i.end;
    this.durableEnd = i.end;
    this.commitEnd = Math.min(Math.max(i.commitHint ?? i.start, i.start), i.end);
    this.epochs = i.epochs.map((e) => ({ ...e }));
    this.windowStart = i.tail.length > 0 ? i.tail[0].offset : i.end;
    const named = (i.fates ?? []).filter((f) => f.uploadId !== null);
    const fates = named.slice(-this.config.windowEntries);
    for (const f of fates) this.fates.set(f.uploadId!, { ...f });
    this._fatesFrom = Math.max(i.start, Math.min(i.fatesFrom ?? 0, i.end));
    // Records beyond the window are dropped, and with them what they knew.
    for (const f of named.slice(0, named.length - fates.length)) this.raiseFatesFrom(Math.min(entryEnd(f), i.end));
    // Frames carry no upload ids: the recovered ones get theirs back from the fates records
    // (so that followers learn them too), and those without one are marked. A record lost
    // with unsynced pages may have named one (the fates file is only fdatasynced before each
    // checkpoint, and recovery scans from the checkpoint).
    const ids = new Map(fates.map((f) => [`${f.offset}/${f.term}`, f.uploadId!]));
    for (const t of i.tail) {
      const meta = { ...t };
      const id = ids.get(`${t.offset}/${t.term}`);
      // No client copy is coming for a recovered entry: followers fetch it at once.
      if (id !== undefined) Object.assign(meta, { uploadId: id, copies: false });
      else if (meta.kind === Kind.Data) meta.idLost = true;
      if (meta.idLost) this.raiseFatesFrom(entryEnd(meta));
      this.slots.push(this.newSlot(meta, true));
    }
    this.fatesFromToPersist = false;
    this.resetElectionTimer();
  }

  // ------------------------------------------------------------------ queries

  /**
   * The leader as far as anyone outside should be told: this node when it leads, a leader
   * heard from within the longest election timeout, else null. `leader` itself stays until
   * another leader is heard (nothing in the protocol needs it cleared), so status and 421
   * hints named a dead leader for as long as no new one could be elected (found by an
   * acceptance test). A query only: the state machine is unchanged.
   */
  get knownLeader(): NodeId | null {
    if (this.role === 'leader') return this.id;
    return this.leader !== null && this.now - this.lastLeaderContact < 2 * this.config.electionMs ? this.leader : null;
  }

  /** Not voting or standing yet: see ReplicaInit.abstain. */
  get abstaining(): boolean {
    return this._abstaining;
  }

  get majority(): number {
    return Math.floor(this.config.members.length / 2) + 1;
  }

  /**
   * Everything below this offset is to be deleted on this node, durably: a client's trim
   * that a leader accepted and passed on. The log may still start below it (whole segments
   * go, and only up to what the node can serve).
   */
  get trimPoint(): number {
    return Math.max(this._trimPoint, this.start);
  }

  /** Reads may serve whole frames below this offset. */
  readableEnd(): number {
    if (this.bugs.readPastCommit) return this.writtenEnd;
    return Math.min(this.commitEnd, this.writtenEnd);
  }

  lastTerm(): number {
    return this.end > 0 ? termAt(this.epochs, this.end - 1) : 0;
  }

  /** Term of the entry ending exactly at `end` (0 for the empty prefix). */
  termBefore(end: number): number {
    return end > 0 ? termAt(this.epochs, end - 1) : 0;
  }

  // ------------------------------------------------------------------ the one entry point

  step(input: Input): Effect[] {
    this.out = [];
    if (this.stopped) return this.out;
    if (this.resumeTrim) {
      this.resumeTrim = false;
      this.out.push({ type: 'trim', before: this._trimPoint });
    }
    switch (input.type) {
      case 'tick': this.onTick(input.now); break;
      case 'message': this.onMessage(input.from, input.msg); break;
      case 'appendHead': this.onAppendHead(input.reqId, input.uploadId, input.length, input.crc, input.acks, input.copies ?? true, input.after); break;
      case 'bodyDone': this.onBodyDone(input.reqId, input.ok, input.crc, input.writeError); break;
      case 'writeDone': this.onWriteDone(input.seq); break;
      case 'writeFailed': this.onWriteFailed(input.seq, input.reason); break;
      case 'uploadArrived': this.onUploadArrived(input.uploadId); break;
      case 'syncDone': this.onSyncDone(input.upTo, input.ok); break;
      case 'copyDone': this.onCopyDone(input.start, input.to, input.epochs, input.ok); break;
      case 'readIndex': this.onReadIndex(input.reqId); break;
      case 'fate': this.onFate(input.reqId, input.uploadId, input.after ?? 0); break;
      case 'trim': this.onTrim(input.reqId, input.before); break;
      case 'trimDone': this.onTrimDone(input.start, input.upTo); break;
    }
    if (this._abstaining && this.termsKnown) this.checkCaughtUp();
    if (this.fatesFromToPersist) {
      this.fatesFromToPersist = false;
      this.out.unshift({ type: 'fatesFrom', offset: this._fatesFrom });
    }
    return this.out;
  }

  // ------------------------------------------------------------------ time

  private onTick(now: number): void {
    this.now = Math.max(this.now, now);
    if (this.role === 'leader') {
      for (const s of [...this.openSlots]) {
        if (this.now >= s.openDeadline) this.abortBody(s, 'timeout', 'the request body stalled past the deadline');
      }
      if (this.now >= this.checkQuorumAt) this.checkQuorum();
      if (this.role === 'leader') this.expireAllAcks();
      if (this.role === 'leader' && this.now >= this.heartbeatAt) this.broadcast(true);
    } else if (this._abstaining) {
      if (this.now >= this.probeAt) this.probe();
    } else if (this.now >= this.electionAt) {
      this.startPreVote();
    }
    // A leader may still lack the bytes of entries it received as a follower: keep fetching.
    this.retryFetches();
  }

  private resetElectionTimer(): void {
    const e = this.config.electionMs;
    // A cluster of one has nobody to compete with: elect at once.
    this.electionAt = this.config.members.length === 1 ? this.now : this.now + e + Math.floor(this.random() * e);
  }

  // ------------------------------------------------------------------ elections

  /**
   * Asks the peers not heard yet for their terms; once every term is known, the leader of
   * this term for its log end, until it has answered (see ReplicaInit.abstain).
   */
  private probe(): void {
    this.probeAt = this.now + this.config.heartbeatMs;
    const ask = (p: NodeId) => (this.termsKnown
      ? this.leaderEndHeard?.term !== this.term && (this.leader === null || p === this.leader)
      : !this.heardTerms.has(p));
    for (const p of this.peers()) if (ask(p)) this.send(p, { type: 'probe', term: this.term, nonce: this.incarnation });
  }

  private onProbe(from: NodeId, nonce: number): void {
    this.send(from, { type: 'probeReply', term: this.term, nonce, ...(this.role === 'leader' ? { leaderEnd: this.end } : {}) });
  }

  private onProbeReply(from: NodeId, m: ProbeReplyMsg): void {
    if (!this._abstaining || m.nonce !== this.incarnation) return;
    // The first answer of a term is kept: a later one only moves the target while it is chased.
    if (m.leaderEnd !== undefined && m.term > (this.leaderEndHeard?.term ?? -1)) this.leaderEndHeard = { term: m.term, end: m.leaderEnd };
    if (this.termsKnown) return;
    this.heardTerms.set(from, Math.max(m.term, this.heardTerms.get(from) ?? 0));
    if (m.term > 0 || this.term > 0) this.newCluster = false;
    const enough = this.newCluster ? this.majority - 1 : this.peerIds.length;
    if (this.heardTerms.size < enough) return;
    // Every peer's current term is known: no vote this node may have cast is in a later one.
    let top = this.term;
    for (const t of this.heardTerms.values()) top = Math.max(top, t);
    this.heardTerms.clear();
    this.termsKnown = true;
    if (top > this.term) this.becomeRole('follower', top, null);
    // Counted as voted in `top`: it may have voted for anyone in it before. (In term 0
    // nobody ever stood: nothing was voted for, elected or committed anywhere.)
    if (top > 0) this.votedFor ??= this.id;
    if (top === 0 || this.bugs.voteBeforeCatchUp) {
      this._abstaining = false;
      this.resetElectionTimer();
    } else {
      this.probeAt = this.now;
    }
    this.persist();
  }

  /**
   * Abstaining with every term known: stops once it holds, committed and durably, its
   * leader's log as it stood when the leader answered a probe. Every committed entry is in
   * that leader's log (elected without this node's vote), and every entry it counted this
   * node's forgotten acknowledgements for lies below that end: those may still arrive, and
   * its record of this node drops only with this node's first refusal.
   */
  private checkCaughtUp(): void {
    const heard = this.leaderEndHeard;
    if (!heard || heard.term !== this.term || this.role !== 'follower' || this.leader === null) return;
    // commitEnd is matched with this term's leader; durable, so that it outlives a crash.
    if (this.commitEnd < heard.end || this.durableEnd < heard.end) return;
    this._abstaining = false;
    this.leaderEndHeard = null;
    this.persist();
    this.resetElectionTimer();
  }

  private startPreVote(): void {
    this.resetElectionTimer();
    if (!this.config.members.includes(this.id)) return;
    // A node copying frames does not stand: a copy may run past the commit end, and a leader
    // elected mid-copy would write its noop into bytes the copy is still placing.
    if (this.copying) return;
    this.preVoting = true;
    this.votes = new Set([this.id]);
    const msg: VoteMsg = { type: 'vote', term: this.term + 1, pre: true, lastEnd: this.writtenEnd, lastTerm: this.termBefore(this.writtenEnd) };
    for (const p of this.peers()) this.send(p, msg);
    if (this.votes.size >= this.majority) this.startElection();
  }

  private startElection(): void {
    this.preVoting = false;
    if (this.copying) return; // a copy began while the pre-vote was out (see startPreVote)
    this.becomeRole('candidate', this.term + 1, null);
    this.votedFor = this.id;
    this.persist();
    this.votes = new Set([this.id]);
    this.resetElectionTimer();
    const msg: VoteMsg = { type: 'vote', term: this.term, pre: false, lastEnd: this.writtenEnd, lastTerm: this.termBefore(this.writtenEnd) };
    for (const p of this.peers()) this.send(p, msg);
    if (this.votes.size >= this.majority) this.becomeLeader();
  }

  /**
   * Elections compare *written* logs: the prefix whose bytes a node holds. Metadata of an
   * entry whose payload never reached this node's file does not make its log more up to date
   * (the bytes may exist nowhere: a leader that lost an unsynced body after replicating its
   * metadata). Safe: a committed entry is durable, hence written, on a majority.
   */
  private logUpToDate(lastTerm: number, lastEnd: number): boolean {
    const mine = this.termBefore(this.writtenEnd);
    return lastTerm > mine || (lastTerm === mine && lastEnd >= this.writtenEnd);
  }

  private onVote(from: NodeId, m: VoteMsg): void {
    // Leader stickiness (Raft thesis §4.2.3): while a leader is being heard, ignore votes.
    const leaderAlive = this.role === 'leader' || this.now - this.lastLeaderContact < this.config.electionMs;
    if (m.pre) {
      // An abstaining node grants no pre-vote either: the real vote that follows it would fail.
      const granted = !this._abstaining && m.term > this.term && !leaderAlive && this.logUpToDate(m.lastTerm, m.lastEnd);
      // A denial carries our own term: a candidate that is behind in terms adopts it, else it
      // could never win our pre-vote (its proposed term is not above ours) while we could not
      // win its (its log is more up to date): two connected nodes stuck without a leader.
      this.send(from, { type: 'voteReply', term: granted ? m.term : this.term, pre: true, granted });
      return;
    }
    if (m.term > this.term) {
      if (leaderAlive && !this.bugs.voteTwice) return;
      this.stepDown(m.term, null);
    }
    const free = (this.votedFor === null || this.votedFor === from || this.bugs.voteTwice) && !this._abstaining;
    const granted = m.term === this.term && free && this.logUpToDate(m.lastTerm, m.lastEnd);
    if (granted) {
      this.votedFor = from;
      this.persist();
      this.resetElectionTimer();
    }
    this.send(from, { type: 'voteReply', term: this.term, pre: false, granted });
  }

  private onVoteReply(from: NodeId, m: VoteReplyMsg): void {
    if (m.pre) {
      if (!m.granted && m.term > this.term) { this.stepDown(m.term, null); return; }
      if (!this.preVoting || m.term !== this.term + 1 || !m.granted) return;
      this.votes.add(from);
      if (this.votes.size >= this.majority) this.startElection();
      return;
    }
    if (m.term > this.term) { this.stepDown(m.term, null); return; }
    if (this.role !== 'candidate' || m.term !== this.term || !m.granted) return;
    this.votes.add(from);
    if (this.votes.size >= this.majority) this.becomeLeader();
  }

  private becomeLeader(): void {
    this.becomeRole('leader', this.term, this.id);
    // The leader's log is what it won the election with: its written prefix (never less than
    // its commit end). Entries it holds only as metadata may have no bytes anywhere; dropping
    // them (uncommitted: see logUpToDate) keeps the log from stalling on them forever.
    this.truncateTo(Math.max(this.writtenEnd, this.commitEnd));
    this.progress.clear();
    for (const p of this.peers()) {
      this.progress.set(p, { next: this.end, match: 0, matchSeq: 0, ackedSeq: 0, heardAt: this.now, catchingUp: false, belowStart: false, trimTo: 0 });
    }
    this.checkQuorumAt = this.now + this.config.electionMs * 2;
    this.readWaits = [];
    // A noop in the new term lets entries of older terms commit (Raft §5.4.2). The planted
    // commitOldTerm bug commits them by counting replicas instead, and like the
    // implementations that make that mistake it has no use for the noop (Raft's Figure 8).
    if (!this.bugs.commitOldTerm) {
      const meta = this.placeNew(Kind.Noop, 0, 0, null);
      this.writeSlot(this.slotAt(meta.offset)!, 'zero');
    }
    this.broadcast(true);
    this.advanceCommit();
  }

  private checkQuorum(): void {
    this.checkQuorumAt = this.now + this.config.electionMs * 2;
    if (!this.onMajority((pr) => this.now - pr.heardAt < this.config.electionMs * 2)) this.stepDown(this.term, null);
  }

  /** Whether this leader and the followers for which `has` holds make a majority. */
  private onMajority(has: (pr: Progress) => boolean): boolean {
    let n = 1;
    for (const pr of this.progress.values()) if (has(pr)) n++;
    return n >= this.majority;
  }

  private becomeRole(role: Role, term: number, leader: NodeId | null): void {
    const changed = role !== this.role || term !== this.term || leader !== this.leader;
    // Heartbeat sequence numbers are only meaningful per leader and term: the same node
    // leading again in a later term counts from 1 again, and a follower that kept the old
    // count would confirm its read-index rounds without hearing them.
    if (leader !== this.leader || term !== this.term) this.hbSeq = 0;
    if (term !== this.term) {
      this.term = term;
      this.votedFor = null;
      this.matchedEnd = 0;
    }
    const wasLeader = this.role === 'leader';
    this.role = role;
    this.leader = leader;
    if (wasLeader && role !== 'leader') this.loseLeadership();
    if (changed) this.out.push({ type: 'role', role, term, leader });
  }

  /** Moves to follower of `term`; persists if the term changed. */
  private stepDown(term: number, leader: NodeId | null): void {
    const termChanged = term !== this.term;
    this.preVoting = false;
    this.becomeRole('follower', term, leader);
    if (termChanged) this.persist();
    this.resetElectionTimer();
  }

  /** A deposed leader aborts open bodies and fails waiting clients: their fate is unknown. */
  private loseLeadership(): void {
    let firstOpen: number = Infinity;
    for (const s of this.openSlots) firstOpen = Math.min(firstOpen, s.meta.offset);
    for (const s of this.byReq.values()) {
      if (s.reqId === null) continue;
      if (this.openSlots.has(s)) this.out.push({ type: 'cancelBody', reqId: s.reqId });
      this.replyError(s, 'not_leader', 'leadership was lost before the append was acknowledged; ask its fate by upload id');
    }
    this.byReq.clear();
    this.openSlots.clear();
    this.ackQueues = { leader: [], quorum: [], all: [] };
    for (const w of this.readWaits) this.reply(w.reqId, { type: 'error', code: 'not_leader', message: 'leadership lost', details: { leader: null } });
    this.readWaits = [];
    for (const w of this.trimWaits) {
      this.reply(w.reqId, { type: 'error', code: 'not_leader', message: 'leadership was lost before a majority had the trim; send it again (a trim is idempotent)', details: { leader: null } });
    }
    this.trimWaits = [];
    this.progress.clear();
    // Nothing at or after an open entry was replicated or committed: drop it.
    if (firstOpen !== Infinity) this.truncateTo(firstOpen);
  }

  // ------------------------------------------------------------------ messages

  private onMessage(from: NodeId, msg: Message): void {
    if (!this.config.members.includes(from) || from === this.id) return;
    switch (msg.type) {
      case 'vote': this.onVote(from, msg); break;
      case 'voteReply': this.onVoteReply(from, msg); break;
      // Until it knows the current term it cannot tell a deposed leader: see ReplicaInit.abstain.
      case 'append': if (!this._abstaining || this.termsKnown) this.onAppend(from, msg); break;
      case 'appendReply': this.onAppendReply(from, msg); break;
      case 'probe': this.onProbe(from, msg.nonce); break;
      case 'probeReply': this.onProbeReply(from, msg); break;
    }
  }

  private send(to: NodeId, msg: Message): void {
    this.out.push({ type: 'send', to, msg });
  }

  private peers(): readonly NodeId[] {
    return this.peerIds;
  }

  private persist(): void {
    this.out.push({ type: 'persist', term: this.term, votedFor: this.votedFor, ...(this._abstaining ? { abstain: true as const } : {}) });
  }

  // ------------------------------------------------------------------ leader: appends

  private onAppendHead(reqId: number, uploadId: string | null, length: number, crc: number | null, acks: AckLevel, copies: boolean, after?: number): void {
    if (this.role !== 'leader') {
      this.reply(reqId, { type: 'error', code: 'not_leader', message: 'this node is not the leader', details: { leader: this.leader } });
      return;
    }
    if (length > this.config.maxEntryBytes) {
      this.reply(reqId, { type: 'error', code: 'too_large', message: `entry of ${length} bytes exceeds the maximum of ${this.config.maxEntryBytes}`, details: { max: this.config.maxEntryBytes } });
      return;
    }
    const placed = uploadId === null || this.bugs.placeDuplicateIds ? null : this.placedFate(uploadId);
    if (placed) {
      // A second head under an id already in the log: an earlier attempt delayed in the
      // network (its client gave up, asked the fate, and may have sent it again since), or
      // an id used twice. Placing it could land the entry twice.
      const { state, offset, end, term } = placed;
      const differs = this.differsFromPlaced(uploadId!, length, crc);
      if (differs !== null) {
        // Answering with the first entry's offset would tell the caller that this, other,
        // payload is in the log.
        this.reply(reqId, { type: 'error', code: 'conflict', message: `upload id ${uploadId} already names another entry (${differs}) at offset ${offset}: give new data a new upload id`, details: { offset, end, state: 'reused' } });
        return;
      }
      this.reply(reqId, state === 'committed'
        ? { type: 'appended', offset, end, term }
        : { type: 'error', code: 'conflict', message: `upload id ${uploadId} is already placed at offset ${offset} (${state}): ask its fate`, details: { offset, end, state } });
      return;
    }
    if (uploadId !== null && after !== undefined && after < this._fatesFrom && !this.bugs.fateIgnoresForgotten) {
      // This node may have forgotten the id (evicted, copied in, lost with a power loss): it
      // cannot tell a new append from a stale copy of one that landed. A first attempt is
      // sent again with `after` = since; a resend cannot be (see LogClient).
      this.reply(reqId, { type: 'error', code: 'conflict', message: `upload id ${uploadId}: this leader no longer knows every upload id placed since offset ${after} (only since ${this._fatesFrom}), so it cannot rule out that an earlier attempt landed`, details: { state: 'forgotten', since: this._fatesFrom } });
      return;
    }
    const meta = this.placeNew(Kind.Data, length, crc ?? 0, uploadId);
    if (!copies) meta.copies = false;
    const slot = this.slotAt(meta.offset)!;
    slot.expectCrc = crc;
    this.openSlots.add(slot);
    slot.reqId = reqId;
    slot.acks = acks;
    slot.openDeadline = this.now + this.config.bodyDeadlineMs;
    this.byReq.set(reqId, slot);
    this.out.push({ type: 'allocated', reqId, meta: { ...meta } });
  }

  private onBodyDone(reqId: number, ok: boolean, crc: number, writeError?: string): void {
    const slot = this.byReq.get(reqId);
    if (!slot || !this.openSlots.has(slot)) return;
    this.seal(slot);
    if (!ok) {
      this.sealAborted(slot);
      this.replyError(slot, 'aborted', writeError === undefined ? 'the request body did not arrive complete' : `this node could not write the body (${writeError}): nothing was appended`);
    } else if (slot.expectCrc !== null && slot.expectCrc !== crc) {
      // Never store a frame whose checksum lies: recovery would cut the log there.
      this.sealAborted(slot);
      this.replyError(slot, 'checksum_mismatch', 'the body does not match the x-loglog-crc32c header');
    } else {
      slot.meta.crc = crc;
      this.enqueueAck(slot);
    }
    this.writeSlot(slot, 'body');
    this.broadcast(false);
  }

  private seal(slot: Slot): void {
    this.openSlots.delete(slot);
  }

  private enqueueAck(slot: Slot): void {
    const q = this.ackQueues[slot.acks ?? 'quorum'];
    let i = q.length;
    while (i > 0 && q[i - 1].meta.offset > slot.meta.offset) i--;
    q.splice(i, 0, slot);
  }

  private abortBody(slot: Slot, code: 'timeout' | 'aborted', message: string): void {
    if (slot.reqId !== null) this.out.push({ type: 'cancelBody', reqId: slot.reqId });
    this.seal(slot);
    this.sealAborted(slot);
    this.replyError(slot, code, message);
    this.writeSlot(slot, 'body');
    this.broadcast(false);
  }

  private sealAborted(slot: Slot): void {
    slot.meta.kind = Kind.Aborted;
    slot.meta.crc = 0;
  }

  /** Allocates the next frame in this term at the end of the log. */
  private placeNew(kind: Kind, length: number, crc: number, uploadId: string | null): EntryMeta {
    const meta: EntryMeta = { offset: this.end, length, term: this.term, kind, crc, uploadId };
    this.appendSlot(meta);
    return meta;
  }

  private appendSlot(meta: EntryMeta): void {
    if (this.slots.length === 0) this.windowStart = meta.offset;
    this.slots.push(this.newSlot(meta, false));
    noteEpoch(this.epochs, meta.term, meta.offset);
    this.end = entryEnd(meta);
    if (meta.uploadId !== null) {
      this.fates.set(meta.uploadId, meta);
      if (this.fates.size > this.config.windowEntries) {
        const [oldest, m] = this.fates.entries().next().value!;
        this.fates.delete(oldest);
        // Not persisted: a restart keeps only the newest records anyway (see the constructor).
        this._fatesFrom = Math.max(this._fatesFrom, entryEnd(m));
      }
    }
    if (meta.idLost) this.raiseFatesFrom(entryEnd(meta));
    this.trimWindow();
  }

  private newSlot(meta: EntryMeta, written: boolean): Slot {
    return { meta, written, seq: 0, reqId: null, acks: null, fetchAt: Infinity, fetchTries: 0, openDeadline: Infinity, expectCrc: null, committedAt: Infinity };
  }

  private writeSlot(slot: Slot, source: 'body' | 'zero' | 'upload'): void {
    slot.seq = this.nextSeq++;
    this.bySeq.set(slot.seq, slot);
    this.out.push({ type: 'write', seq: slot.seq, meta: { ...slot.meta }, source });
  }

  /** Slot of the entry starting at `offset`, if it is inside the window. */
  private slotAt(offset: number): Slot | undefined {
    const i = this.slotIndex(offset);
    return i >= 0 ? this.slots[i] : undefined;
  }

  private slotIndex(offset: number): number {
    let lo = 0, hi = this.slots.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const o = this.slots[mid].meta.offset;
      if (o === offset) return mid;
      if (o < offset) lo = mid + 1; else hi = mid - 1;
    }
    return -1;
  }

  /** Forgets metadata nobody needs: committed, written, matched by every follower (or the window is full). */
  private trimWindow(): void {
    const excess = this.slots.length - this.config.windowEntries;
    if (excess <= 0) return;
    let floor = Math.min(this.commitEnd, this.writtenEnd);
    let drop = 0;
    while (drop < excess && drop < this.slots.length && entryEnd(this.slots[drop].meta) <= floor) drop++;
    if (drop === 0) return;
    this.slots.splice(0, drop);
    this.windowStart = this.slots.length > 0 ? this.slots[0].meta.offset : this.end;
  }

  // ------------------------------------------------------------------ storage completions

  private onWriteDone(seq: number): void {
    const slot = this.bySeq.get(seq);
    if (!slot) return;
    this.bySeq.delete(seq);
    if (slot.seq !== seq) return;
    slot.seq = 0;
    slot.written = true;
    slot.fetchAt = Infinity;
    this.advanceWritten();
  }

  private onWriteFailed(seq: number, reason: 'missing' | 'corrupt' | 'fetch'): void {
    const slot = this.bySeq.get(seq);
    if (!slot) return;
    this.bySeq.delete(seq);
    if (slot.seq !== seq) return;
    slot.seq = 0;
    if (reason === 'missing') {
      // Without an upload id, or when the client said it sends none, no copy can come: fetch
      // at once instead of waiting.
      slot.fetchAt = slot.meta.uploadId === null || slot.meta.copies === false ? this.now : this.now + this.config.uploadDeadlineMs;
      if (slot.meta.uploadId !== null) this.awaitingUpload.set(slot.meta.uploadId, slot);
    } else {
      slot.fetchTries++;
      slot.fetchAt = this.now + (reason === 'corrupt' ? 0 : this.config.heartbeatMs);
    }
    this.fetchQueue.add(slot);
    this.retryFetches();
  }

  private onUploadArrived(uploadId: string): void {
    const s = this.awaitingUpload.get(uploadId);
    if (!s) return;
    this.awaitingUpload.delete(uploadId);
    if (s.written || s.seq !== 0) return;
    this.fetchQueue.delete(s);
    this.writeSlot(s, 'upload');
  }

  /** Follower: entries whose upload never came are fetched from the leader, or another peer. */
  private retryFetches(): void {
    for (const s of this.fetchQueue) {
      if (s.written || s.seq !== 0) { this.fetchQueue.delete(s); continue; }
      if (s.fetchAt > this.now) continue;
      const peers = this.peers();
      if (peers.length === 0) continue;
      // Every other try goes to the leader, the rest in turn to the other peers: a leader whose
      // own copy is damaged must not be asked every time (with two peers, `peers[tries % 2]`
      // on odd tries was always the same one, and could be the leader).
      const leader = this.leader !== null && this.leader !== this.id ? this.leader : null;
      const others = leader === null ? peers : peers.filter((p) => p !== leader);
      const preferred = leader !== null && (s.fetchTries % 2 === 0 || others.length === 0)
        ? leader
        : others[Math.floor(s.fetchTries / (leader === null ? 1 : 2)) % others.length];
      this.fetchQueue.delete(s);
      if (s.meta.uploadId !== null) this.awaitingUpload.delete(s.meta.uploadId);
      s.seq = this.nextSeq++;
      s.fetchAt = Infinity;
      this.bySeq.set(s.seq, s);
      this.out.push({ type: 'fetch', seq: s.seq, meta: { ...s.meta }, peer: preferred });
    }
  }

  private advanceWritten(): void {
    let i = this.slotIndex(this.writtenEnd);
    if (i < 0 && this.writtenEnd < this.windowStart) return;
    while (i >= 0 && i < this.slots.length && this.slots[i].written && this.slots[i].meta.offset === this.writtenEnd) {
      this.writtenEnd = entryEnd(this.slots[i].meta);
      i++;
    }
    if (this.bugs.ackBeforeFsync) this.onDurable(this.writtenEnd);
    this.maybeSync();
    if (this.role !== 'leader') this.advanceFollowerCommit();
  }

  private maybeSync(): void {
    if (this.syncInFlight || this.writtenEnd <= this.durableEnd) return;
    this.syncInFlight = true;
    this.syncFloor = Infinity;
    this.out.push({ type: 'sync', upTo: this.writtenEnd });
  }

  private onSyncDone(upTo: number, ok: boolean): void {
    this.syncInFlight = false;
    if (!ok) {
      // After a failed fdatasync the page cache state is unknown (fsyncgate): stop.
      this.stopped = true;
      this.out.push({ type: 'fatal', reason: 'fdatasync failed' });
      return;
    }
    this.onDurable(Math.min(upTo, this.syncFloor, this.writtenEnd));
    this.maybeSync();
  }

  private onDurable(end: number): void {
    if (end <= this.durableEnd) return;
    this.durableEnd = end;
    if (this.role === 'leader') {
      this.answerAcks();
      this.advanceCommit();
    } else if (this.leader !== null) {
      this.sendAck(this.leader, this.hbSeq);
    }
  }

  /**
   * Drops the log from `to` on. Only uncommitted entries may go, except during catch-up,
   * where committed-but-unwritten entries are dropped to be copied back verbatim.
   */
  private truncateTo(to: number, refill = false): void {
    if (to >= this.end) return;
    if (to < this.commitEnd && !(refill && to >= this.writtenEnd)) {
      throw new Error(`invariant: truncating committed log at ${to} < commit ${this.commitEnd}`);
    }
    const i = this.slots.findIndex((s) => s.meta.offset >= to);
    if (i >= 0) {
      for (const s of this.slots.slice(i)) {
        if (s.seq) this.bySeq.delete(s.seq);
        if (s.reqId !== null) this.byReq.delete(s.reqId);
        if (s.meta.uploadId !== null) this.awaitingUpload.delete(s.meta.uploadId);
        this.fetchQueue.delete(s);
        this.openSlots.delete(s);
      }
      this.slots.length = i;
    }
    if (this.slots.length === 0) this.windowStart = to;
    this.end = to;
    this.writtenEnd = Math.min(this.writtenEnd, to);
    this.durableEnd = Math.min(this.durableEnd, to);
    this.syncFloor = Math.min(this.syncFloor, to);
    this.matchedEnd = Math.min(this.matchedEnd, to);
    truncateEpochs(this.epochs, to);
    this.out.push({ type: 'truncate', to });
  }

  // ------------------------------------------------------------------ leader: replication and commit

  /** Sends each follower the entries it lacks (or a heartbeat). */
  private broadcast(heartbeat: boolean): void {
    if (this.role !== 'leader') return;
    if (heartbeat) {
      this.hbSeq++;
      this.heartbeatAt = this.now + this.config.heartbeatMs;
    }
    for (const [peer, pr] of this.progress) this.sendAppend(peer, pr, heartbeat);
  }

  /** End of the sealed prefix: replication stops at the first body still streaming. */
  private sealedEnd(): number {
    let end = this.end;
    for (const s of this.openSlots) end = Math.min(end, s.meta.offset);
    return end;
  }

  private sendAppend(peer: NodeId, pr: Progress, heartbeat: boolean): void {
    const sealed = this.sealedEnd();
    if (pr.next < this.windowStart || pr.next < this.start || pr.belowStart) {
      if (!heartbeat && pr.catchingUp) return;
      pr.catchingUp = true;
      // Copy what the metadata window no longer describes: everything below it (the leader
      // wrote all of it), committed or not. Only `commit` says what is committed.
      const to = Math.max(this.commitEnd, Math.min(this.windowStart, this.writtenEnd));
      this.send(peer, {
        type: 'append', term: this.term, prevEnd: pr.next, prevTerm: this.termBefore(pr.next), entries: [],
        commit: this.commitEnd, seq: this.hbSeq, catchUp: { to, epochs: this.epochs.map((e) => ({ ...e })), start: this.start }, ...this.trimField(),
      });
      return;
    }
    const entries: EntryMeta[] = [];
    let i = pr.next === this.end ? this.slots.length : this.slotIndex(pr.next);
    if (i < 0) { pr.next = this.windowStart; i = 0; }
    for (; i < this.slots.length && entries.length < this.config.maxBatchEntries; i++) {
      const m = this.slots[i].meta;
      if (m.offset >= sealed) break;
      entries.push({ ...m });
    }
    if (entries.length === 0 && !heartbeat) return;
    const msg: AppendMsg = { type: 'append', term: this.term, prevEnd: pr.next, prevTerm: this.termBefore(pr.next), entries, commit: this.commitEnd, seq: this.hbSeq, ...this.trimField() };
    if (entries.length > 0) pr.next = entryEnd(entries[entries.length - 1]);
    this.send(peer, msg);
  }

  private onAppendReply(from: NodeId, m: AppendReplyMsg): void {
    if (m.term > this.term) { this.stepDown(m.term, null); return; }
    if (this.role !== 'leader' || m.term !== this.term) return;
    const pr = this.progress.get(from);
    if (!pr) return;
    // A member with a higher trim point (accepted by an earlier leader): the highest wins,
    // and goes on to the others with this leader's messages.
    this.raiseTrimPoint(m.trimTo);
    if (m.trimTo !== undefined && m.trimTo > pr.trimTo) {
      pr.trimTo = m.trimTo;
      this.answerTrims();
    }
    pr.heardAt = this.now;
    pr.ackedSeq = Math.max(pr.ackedSeq, m.seq);
    // A follower that holds (durably) less than this leader still has cannot get the rest
    // here: it may hold their metadata, but a fetch below the start finds nothing. A
    // catch-up carrying the start sends it over (see restartLogAt).
    pr.belowStart = m.end < this.start;
    if (m.ok) {
      if (m.end > pr.match) {
        pr.match = Math.min(m.end, this.end);
        pr.matchSeq = m.seq;
      }
      // A follower acknowledges a catch-up instruction at once; until its copy reached the
      // window (and, below the start, until it holds the start durably), more instructions
      // would only bounce back and forth (heartbeats repeat them). Answering each such
      // acknowledgement with another instruction was a message storm (3 nodes, seed 1760).
      if (pr.match >= this.windowStart && !pr.belowStart) pr.catchingUp = false;
      if (pr.next < pr.match) pr.next = pr.match;
      this.advanceCommit();
      this.answerAcks();
      this.answerReads();
      if (pr.next < this.sealedEnd()) this.sendAppend(from, pr, false);
      return;
    }
    // A follower that lost frames it had acknowledged (its data directory emptied, a
    // recovery that cut a damaged tail) answers below its match. Raft assumes stable storage;
    // without this the leader would go on sending from where the follower has nothing, and
    // count bytes it no longer holds. A rejection from an older round than the
    // acknowledgement that set the match says nothing new.
    if (m.end < pr.match && m.seq >= pr.matchSeq) pr.match = m.end;
    // Skip back a whole term at a time (Raft's fast backup, Kafka's epoch lookup).
    pr.catchingUp = false;
    const next = Math.min(m.end, this.endOfTerm(m.conflictTerm));
    pr.next = Math.max(Math.min(next, pr.next, this.end), pr.match, this.start);
    this.sendAppend(from, pr, true);
  }

  /** Where this leader's entries of `term` end: the start of the first later term. */
  private endOfTerm(term: number): number {
    for (const e of this.epochs) if (e.term > term) return e.offset;
    return this.end;
  }

  private advanceCommit(): void {
    if (this.role !== 'leader') return;
    const ends = [this.durableEnd];
    for (const pr of this.progress.values()) ends.push(pr.match);
    ends.sort((a, b) => b - a);
    let candidate = this.bugs.commitWithoutMajority ? this.writtenEnd : ends[this.majority - 1];
    candidate = Math.min(candidate, this.end);
    if (candidate <= this.commitEnd) return;
    // Raft §5.4.2: only an entry of the current term commits by counting replicas.
    if (!this.bugs.commitOldTerm && this.termBefore(candidate) !== this.term) return;
    this.setCommit(candidate);
    this.answerAcks();
    this.answerReads();
  }

  private setCommit(end: number): void {
    if (end <= this.commitEnd) return;
    this.commitEnd = end;
    this.out.push({ type: 'commit', end });
    this.trimWindow();
  }

  /** Answers every append whose ack level is now satisfied. */
  private answerAcks(): void {
    if (this.role !== 'leader') return;
    let allEnd = this.durableEnd;
    for (const pr of this.progress.values()) allEnd = Math.min(allEnd, pr.match);
    const needed: Record<AckLevel, number> = { leader: this.durableEnd, quorum: this.commitEnd, all: Math.min(allEnd, this.commitEnd) };
    for (const level of ['leader', 'quorum', 'all'] as const) {
      const q = this.ackQueues[level];
      let n = 0;
      for (; n < q.length; n++) {
        const s = q[n];
        if (s.reqId === null) continue;
        const end = entryEnd(s.meta);
        if (end > needed[level]) break;
        const reqId = s.reqId;
        s.reqId = null;
        this.byReq.delete(reqId);
        this.reply(reqId, { type: 'appended', offset: s.meta.offset, end, term: s.meta.term });
      }
      if (n > 0) q.splice(0, n);
    }
  }

  /**
   * Answers `unconfirmed` to `acks: 'all'` appends committed more than `allAckTimeoutMs` ago
   * that some replica has still not made durable: the client learns at once that its entry
   * is in the log, rather than after its own timeout, and does not append it again.
   */
  private expireAllAcks(): void {
    const q = this.ackQueues.all;
    for (const s of q) {
      if (entryEnd(s.meta) > this.commitEnd) break;
      if (s.committedAt === Infinity) s.committedAt = this.now;
    }
    let n = 0;
    for (; n < q.length; n++) {
      const s = q[n];
      if (s.reqId === null) continue;
      if (this.now - s.committedAt < this.config.allAckTimeoutMs) break;
      const end = entryEnd(s.meta);
      const missing = [...this.progress].filter(([, pr]) => pr.match < end).map(([id]) => id);
      if (this.durableEnd < end) missing.unshift(this.id);
      const reqId = s.reqId;
      s.reqId = null;
      this.byReq.delete(reqId);
      this.reply(reqId, {
        type: 'error', code: 'unconfirmed',
        message: `committed at offset ${s.meta.offset}, but ${missing.join(', ')} did not confirm it within ${this.config.allAckTimeoutMs} ms (acks=all; is a replica down?): it is in the log, do not append it again`,
        details: { offset: s.meta.offset, end, term: s.meta.term, missing },
      });
    }
    if (n > 0) q.splice(0, n);
  }

  private reply(reqId: number, result: ReplyResult): void {
    this.out.push({ type: 'reply', reqId, result });
  }

  private replyError(slot: Slot, code: 'not_leader' | 'aborted' | 'checksum_mismatch' | 'timeout', message: string): void {
    if (slot.reqId === null) return;
    const reqId = slot.reqId;
    slot.reqId = null;
    this.byReq.delete(reqId);
    // `placed`: the entry had an offset when leadership was lost, so it may yet commit (a
    // not_leader answered to a request head placed nothing).
    this.reply(reqId, { type: 'error', code, message, details: code === 'not_leader' ? { leader: this.leader, placed: true } : { offset: slot.meta.offset } });
  }

  // ------------------------------------------------------------------ follower

  private onAppend(from: NodeId, m: AppendMsg): void {
    if (m.term < this.term) {
      this.send(from, { type: 'appendReply', term: this.term, ok: false, end: this.end, conflictTerm: this.lastTerm(), seq: m.seq });
      return;
    }
    if (m.term > this.term || this.role !== 'follower' || this.leader !== from) this.stepDown(m.term, from);
    this.lastLeaderContact = this.now;
    this.resetElectionTimer();
    // A heartbeat round (a new seq) is answered at once: check-quorum and read index wait on it.
    const newRound = m.seq > this.hbSeq;
    this.hbSeq = Math.max(this.hbSeq, m.seq);
    if (m.catchUp && !this.copying && (m.catchUp.start ?? 0) > this.heldOf(m.catchUp.epochs)) this.restartLogAt(m.catchUp.start!, m.catchUp.epochs);
    // A user's trim, passed on by the leader (retention is each node's own): record it
    // (durably, before the acknowledgement below reports it) and delete below it.
    this.raiseTrimPoint(m.trimTo);

    if (!this.bugs.skipPrevCheck && m.prevEnd > this.commitEnd) {
      if (m.prevEnd > this.end) {
        this.send(from, { type: 'appendReply', term: this.term, ok: false, end: this.end, conflictTerm: this.lastTerm(), seq: m.seq });
        return;
      }
      const mine = this.termBefore(m.prevEnd);
      if (mine !== m.prevTerm) {
        const epochStart = this.epochs.find((e) => e.term === mine)?.offset ?? 0;
        this.send(from, { type: 'appendReply', term: this.term, ok: false, end: Math.max(epochStart, this.commitEnd), conflictTerm: mine, seq: m.seq });
        return;
      }
    }
    if (this.copying) { this.sendAck(from, m.seq); return; }
    if (m.catchUp) { this.startCatchUp(from, m.prevEnd, m.catchUp.to, m.catchUp.epochs, m.commit); this.sendAck(from, m.seq); return; }

    let matched = m.prevEnd;
    let placed = false;
    for (const e of m.entries) {
      if (e.offset < this.end) {
        const within = entryEnd(e) <= this.end;
        // Same term at both ends of the range: the same leader wrote it, so it is the same entry.
        if (within && this.termAt(e.offset) === e.term && this.termBefore(entryEnd(e)) === e.term) { matched = entryEnd(e); continue; }
        if (this.bugs.noSuffixTruncation && within) { matched = entryEnd(e); continue; }
        this.truncateTo(e.offset);
      }
      if (e.offset !== this.end) break;
      this.appendSlot({ ...e });
      const slot = this.slotAt(e.offset)!;
      this.writeSlot(slot, e.kind === Kind.Data ? 'upload' : 'zero');
      matched = entryEnd(e);
      placed = true;
    }
    if (matched > this.matchedEnd || this.bugs.skipPrevCheck) this.matchedEnd = matched;
    this.advanceFollowerCommit(m.commit);
    // New entries are acknowledged once they are durable (onDurable): an acknowledgement now
    // would only repeat the old durable end, and it cost every append two more messages and
    // wake-ups (measured: 8% of the cluster's CPU per single append, 0.2 ms of latency).
    // A full batch is answered at once all the same: the leader sends a follower that is
    // behind its next batch on each answer, and should not wait for this one's disk.
    if (!placed || newRound || m.entries.length >= this.config.maxBatchEntries) this.sendAck(from, m.seq);
  }

  private termAt(offset: number): number {
    return termAt(this.epochs, offset);
  }

  private leaderCommit = 0;

  private advanceFollowerCommit(leaderCommit?: number): void {
    if (leaderCommit !== undefined) this.leaderCommit = Math.max(this.leaderCommit, leaderCommit);
    const c = Math.min(this.leaderCommit, this.matchedEnd, this.end);
    if (c > this.commitEnd) this.setCommit(c);
  }

  private sendAck(to: NodeId, seq: number): void {
    const end = this.bugs.skipPrevCheck ? this.durableEnd : Math.min(this.durableEnd, this.matchedEnd);
    this.send(to, { type: 'appendReply', term: this.term, ok: true, end, conflictTerm: 0, seq, ...this.trimField() });
  }

  /**
   * Everything of the leader's log this follower has written lies below the leader's log
   * start (see heldOf): the others trimmed it (trims, retention) while this node was away,
   * on another leader's branch, or still waiting for payloads, so no peer may be able to
   * serve what it lacks (entries it holds only as metadata included: their fetches would
   * find nothing), and the leader cannot send entries from below its start. Start the log
   * over, empty, at the leader's start, with the leader's terms below it; the catch-up then
   * copies from there. Nothing is lost: below the leader's start the log was committed
   * (trims never pass the commit end) and deleted on purpose; what the node drops at or
   * above it is either not the leader's (uncommitted) or not written contiguously (never
   * acknowledged), and the copy brings the leader's back.
   */
  private restartLogAt(start: number, leaderEpochs: Epoch[]): void {
    for (const s of this.slots) {
      if (s.seq) this.bySeq.delete(s.seq);
      if (s.meta.uploadId !== null) this.awaitingUpload.delete(s.meta.uploadId);
      this.fetchQueue.delete(s);
    }
    this.slots = [];
    this.windowStart = start;
    this.start = start;
    this.trimmedTo = Math.max(this.trimmedTo, start);
    this.end = start;
    this.writtenEnd = start;
    this.durableEnd = start;
    this.syncFloor = Math.min(this.syncFloor, start);
    this.matchedEnd = start;
    this.epochs.length = 0;
    for (const e of leaderEpochs) if (e.offset < start) this.epochs.push({ ...e });
    // Nothing below `start` is here any more, nor are its upload ids (saved first: the
    // fatesFrom effect goes to the front of this step's effects).
    this.raiseFatesFrom(start);
    this.out.push({ type: 'reset', to: start, epochs: this.epochs.map((e) => ({ ...e })) });
    // Answers report max(trim point, start) as this node's trim point, and a leader counts it
    // toward the majority an acknowledged trim needs: save it first (a reset's own durability
    // is the file system's: the server's unlinks wait for a later directory fsync).
    if (start > this._trimPoint) {
      this._trimPoint = start;
      this.out.push({ type: 'trim', before: start });
    }
    this.setCommit(start);
  }

  /**
   * Where this log stops being the leader's, searching [from, upTo): the first offset
   * whose term differs from the leader's epochs (equal terms at a position mean the same
   * leader wrote it), or `upTo`.
   */
  private divergence(from: number, upTo: number, leaderEpochs: Epoch[]): number {
    let keep = upTo;
    for (let o = from; o < keep;) {
      const mineTerm = this.termAt(o), theirs = termAt(leaderEpochs, o);
      if (mineTerm !== theirs) { keep = o; break; }
      const nextMine = this.epochs.find((e) => e.offset > o)?.offset ?? Infinity;
      const nextTheirs = leaderEpochs.find((e) => e.offset > o)?.offset ?? Infinity;
      const step = Math.min(nextMine, nextTheirs);
      if (step === Infinity) break;
      if (nextMine !== nextTheirs && step < keep) { keep = step; break; }
      o = step;
    }
    return keep;
  }

  /**
   * How far this follower holds the leader's log (whose epochs a catch-up carries): its
   * written prefix, up to where it diverges. Below the commit end it cannot diverge. A
   * leader whose start is above this can serve none of what the follower lacks.
   */
  private heldOf(leaderEpochs: Epoch[]): number {
    // PLANTED BUG (resetHoldingLog): measure against the own start, not what is held.
    if (this.bugs.resetHoldingLog) return this.start;
    if (this.writtenEnd <= this.commitEnd) return this.writtenEnd;
    return this.divergence(this.commitEnd, this.writtenEnd, leaderEpochs);
  }

  /** Far behind the leader's metadata window: copy committed frames verbatim from a peer. */
  private startCatchUp(leader: NodeId, from: number, to: number, leaderEpochs: Epoch[], commit: number): void {
    // Our log below `to` may diverge from the leader's: find the first term mismatch. Not
    // below our start: nothing is held there, and the terms there may be unknown (a node
    // that started over at a leader's start keeps none below it across a restart).
    const known = Math.min(this.end, to);
    let keep = this.divergence(Math.max(from, this.start), known, leaderEpochs);
    if (keep === known && this.end >= to) {
      // We already hold [from, to) as the leader has it (a repeated or stale catch-up, still
      // on the wire when an earlier one completed): nothing to drop. What lies past `to` was
      // possibly acknowledged already; later appends check it as usual.
      this.matchedEnd = Math.max(this.matchedEnd, to);
      this.advanceFollowerCommit(commit);
      return;
    }
    // Entries not yet written locally are copied again rather than waited for.
    keep = Math.min(keep, this.writtenEnd);
    if (keep < this.end) this.truncateTo(keep, true);
    this.matchedEnd = Math.max(this.matchedEnd, this.end);
    this.advanceFollowerCommit(commit);
    this.copying = true;
    this.copyTerm = this.term;
    // Copied frames come without their upload ids: said durably before any of them lands.
    this.raiseFatesFrom(to);
    this.out.push({ type: 'copy', peer: leader, start: this.end, to, term: this.term });
  }

  private onCopyDone(start: number, to: number, epochs: Epoch[], ok: boolean): void {
    this.copying = false;
    if (!ok || start !== this.end || to <= start) return;
    for (const e of epochs) if (e.offset >= start && e.offset < to) noteEpoch(this.epochs, e.term, e.offset);
    if (this.termAt(start) === 0 && epochs.length > 0) noteEpoch(this.epochs, termAt(epochs, start), start);
    // Copied frames are committed: the window restarts after them.
    this.slots = [];
    this.windowStart = to;
    this.end = to;
    this.writtenEnd = to;
    // The frames are the log of the leader of the copy's term: matched only in that term.
    if (this.term === this.copyTerm) this.matchedEnd = to;
    this.maybeSync();
    this.advanceFollowerCommit();
    if (this.leader) this.sendAck(this.leader, this.hbSeq);
  }

  // ------------------------------------------------------------------ trims

  /**
   * A client's trim. The leader takes any point up to its commit end (Kafka's deleteRecords
   * refuses one past the high watermark too) as its trim point and passes it on with its
   * messages. It answers once a majority holds the point durably, so that no later leader
   * can lose it (any majority that elects one includes a holder, which passes it back), and
   * once it has deleted what it could itself.
   */
  private onTrim(reqId: number, before: number): void {
    if (this.role !== 'leader') {
      this.reply(reqId, { type: 'error', code: 'not_leader', message: 'a trim goes to the leader, which passes it on to the followers', details: { leader: this.leader } });
      return;
    }
    if (before > this.commitEnd) {
      this.reply(reqId, { type: 'error', code: 'out_of_range', message: `trim point ${before} is beyond the commit end ${this.commitEnd}; trim at most up to ${this.commitEnd}`, details: { start: this.start, end: this.commitEnd } });
      return;
    }
    this.raiseTrimPoint(before);
    this.trimWaits.push({ reqId, before });
    this.answerTrims();
    if (this.trimWaits.length > 0) this.broadcast(true);
  }

  private answerTrims(): void {
    if (this.role !== 'leader' || this.trimWaits.length === 0) return;
    const remaining: TrimWait[] = [];
    for (const w of this.trimWaits) {
      const held = this.bugs.trimAckAlone || this.onMajority((pr) => pr.trimTo >= w.before);
      if (held && this.trimmedTo >= w.before) this.reply(w.reqId, { type: 'trimmed', start: this.start });
      else remaining.push(w);
    }
    this.trimWaits = remaining;
  }

  /** Takes up a higher trim point: the `trim` effect saves it before anything later in this step (an acknowledgement that reports it). */
  private raiseTrimPoint(to: number | undefined): void {
    if (to === undefined || to <= this.trimPoint) return;
    this._trimPoint = to;
    this.out.push({ type: 'trim', before: to });
  }

  private onTrimDone(start: number, upTo: number): void {
    // Never lower: a deletion that finished after a reset (restartLogAt) reports an older start.
    this.start = Math.max(this.start, start);
    this.trimmedTo = Math.max(this.trimmedTo, upTo);
    this.answerTrims();
  }

  /** The trim point for a message, when there is one to pass on. */
  private trimField(): { trimTo?: number } {
    return this.trimPoint > 0 ? { trimTo: this.trimPoint } : {};
  }

  // ------------------------------------------------------------------ reads and queries

  private onReadIndex(reqId: number): void {
    if (this.role !== 'leader') {
      this.reply(reqId, { type: 'error', code: 'not_leader', message: 'linearizable reads go to the leader', details: { leader: this.leader } });
      return;
    }
    this.readWaits.push({ reqId, commit: -1, seq: 0 });
    this.answerReads();
    if (this.readWaits.length > 0) this.broadcast(true);
  }

  /** Read index (Raft §6.4): the commit end counts once the leader has committed in its term and a majority confirmed a later heartbeat. */
  private answerReads(): void {
    if (this.role !== 'leader' || this.readWaits.length === 0) return;
    const committedInTerm = this.termBefore(this.commitEnd) === this.term;
    if (!committedInTerm) return;
    for (const w of this.readWaits) if (w.commit < 0) { w.commit = this.commitEnd; w.seq = this.progress.size === 0 ? 0 : this.hbSeq + 1; }
    const remaining: ReadWait[] = [];
    for (const w of this.readWaits) {
      if (this.onMajority((pr) => pr.ackedSeq >= w.seq)) this.reply(w.reqId, { type: 'readIndex', end: w.commit });
      else remaining.push(w);
    }
    this.readWaits = remaining;
  }

  private onFate(reqId: number, uploadId: string, after: number): void {
    // "Never written" is the leader's word alone: a client resends on it, and a follower that
    // lags has not heard of entries the leader has (and may commit). Nor can it be said of
    // a range whose upload ids this node does not all know.
    //
    // Nor before this leader has committed in its own term: until then an entry an older
    // leader placed and this one never had may still commit, under a later leader that has
    // it (Raft §5.4.2). Once it has, every later leader's log starts with this one's, and an
    // entry missing here is gone for good.
    const placed = this.placedFate(uploadId);
    this.reply(reqId, placed ? { type: 'fate', ...placed } : this.neverPlacedAnswer(after));
  }

  /** The fate answer for an upload id this node does not hold (see onFate). */
  private neverPlacedAnswer(after: number): ReplyResult {
    if (this.role !== 'leader') return { type: 'error', code: 'not_leader', message: 'only the leader can tell an upload id it has never seen', details: { leader: this.leader } };
    if (this.termBefore(this.commitEnd) !== this.term && !this.bugs.fateBeforeTermCommit) {
      return { type: 'error', code: 'unavailable', message: 'a new leader cannot tell yet whether an upload id it has never seen may still commit: ask again shortly' };
    }
    if (after < this._fatesFrom && !this.bugs.fateIgnoresForgotten) return { type: 'fate', state: 'forgotten', since: this._fatesFrom };
    return { type: 'fate', state: 'unknown' };
  }

  /**
   * Why an append head under an already placed upload id cannot be a resend of that entry
   * (its length, or its checksum where both are known, differ), or null if it may be one.
   */
  private differsFromPlaced(uploadId: string, length: number, crc: number | null): string | null {
    const meta = this.fates.get(uploadId)!;
    if (meta.length !== length) return `${meta.length} bytes, not ${length}`;
    const slot = this.slotAt(meta.offset);
    // The fates records keep no checksum: only a frame still in the window tells it. An
    // aborted frame's is zeroed, and an open one's is the head's claim until the body ends.
    const known = !slot || slot.meta.kind !== Kind.Data ? null : this.openSlots.has(slot) ? slot.expectCrc : slot.meta.crc;
    if (crc !== null && known !== null && known !== crc) return `checksum ${known.toString(16)}, not ${crc.toString(16)}`;
    return null;
  }

  /** Where an upload id's entry is in this log now, and whether it is committed or aborted; null if it is not. */
  private placedFate(uploadId: string): { state: 'committed' | 'aborted' | 'pending'; offset: number; end: number; term: number } | null {
    const meta = this.fates.get(uploadId);
    if (!meta || meta.offset >= this.end || this.termAt(meta.offset) !== meta.term) return null;
    const end = entryEnd(meta);
    const slot = this.slotAt(meta.offset);
    const kind = slot ? slot.meta.kind : meta.kind;
    const state = end > this.commitEnd ? 'pending' : kind === Kind.Aborted ? 'aborted' : 'committed';
    return { state, offset: meta.offset, end, term: meta.term };
  }
}

