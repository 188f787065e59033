/**
 * The replica's vocabulary: peer messages, inputs (events in) and effects (effects out).
 * server/ and sim/ are the two executors of these effects; neither adds protocol logic.
 */
import type { EntryMeta, Epoch } from './entry.ts';
import type { ErrorCode, ErrorDetails } from './errors.ts';

export type NodeId = string;
export type Role = 'follower' | 'candidate' | 'leader';

/** How durable an append must be before the client hears back. */
export type AckLevel = 'leader' | 'quorum' | 'all';
export const ACK_LEVELS: readonly AckLevel[] = ['leader', 'quorum', 'all'];

export function isAckLevel(v: unknown): v is AckLevel {
  return (ACK_LEVELS as readonly unknown[]).includes(v);
}

/** What an upload id may be: 1-128 characters of A-Z a-z 0-9 _ . : - (a UUID by default). */
export const UPLOAD_ID_RULE = '1-128 characters of A-Z a-z 0-9 _ . : -';

export function isUploadId(v: unknown): v is string {
  return typeof v === 'string' && /^[A-Za-z0-9_.:-]{1,128}$/.test(v);
}

// ---------------------------------------------------------------- peer messages

/** RequestVote, or its pre-vote probe (`pre`: the sender does not change its term). */
export interface VoteMsg { type: 'vote'; term: number; pre: boolean; lastEnd: number; lastTerm: number }
export interface VoteReplyMsg { type: 'voteReply'; term: number; pre: boolean; granted: boolean }
/**
 * AppendEntries over byte offsets: `entries` follow the entry ending at `prevEnd` (whose
 * term is `prevTerm`). Empty `entries` is a heartbeat. `catchUp` tells a follower whose
 * position is below the leader's metadata window to copy the leader's frames up to `to`
 * instead (committed or not: `commit` alone says what is committed).
 */
export interface AppendMsg {
  type: 'append';
  term: number;
  prevEnd: number;
  prevTerm: number;
  entries: EntryMeta[];
  commit: number;
  /** Heartbeat round number, echoed in replies (read index, check-quorum). */
  seq: number;
  /**
   * The leader's trim point, when above 0: followers record it durably (the `trim` effect)
   * and delete their whole segments below it.
   */
  trimTo?: number;
  /**
   * `start`: the leader's log start. A follower whose whole log lies below it (the others
   * trimmed that range while it was away) starts its log over, empty, there.
   */
  catchUp?: { to: number; epochs: Epoch[]; start?: number };
}
/**
 * `ok`: `end` is the follower's durable end verified against this leader.
 * not ok: the prev check failed; `end` and `conflictTerm` let the leader skip back a whole term.
 */
export interface AppendReplyMsg {
  type: 'appendReply'; term: number; ok: boolean; end: number; conflictTerm: number; seq: number;
  /**
   * The follower's durable trim point, when above 0. The leader counts it toward a trim's
   * majority, and takes it up when it is higher (a trim a predecessor accepted).
   */
  trimTo?: number;
}

/**
 * Asks a peer for its current term. Only a node that is abstaining sends it (see
 * `ReplicaInit.abstain`): it may not vote again until it knows every peer's term. `nonce`
 * names the sender's incarnation, so that a reply to an earlier incarnation's probe, still
 * in the network, is not taken for a term heard since. The receiver changes nothing.
 */
export interface ProbeMsg { type: 'probe'; term: number; nonce: number }
/**
 * The answer to a probe: the replier's current term and the probe's nonce; from a leader,
 * its log end (`leaderEnd`): every acknowledgement the prober sent it before it forgot
 * lies below.
 */
export interface ProbeReplyMsg { type: 'probeReply'; term: number; nonce: number; leaderEnd?: number }

export type Message = VoteMsg | VoteReplyMsg | AppendMsg | AppendReplyMsg | ProbeMsg | ProbeReplyMsg;

// ---------------------------------------------------------------- inputs

export type Input =
  /** Time passes (milliseconds on the injected monotonic clock). */
  | { type: 'tick'; now: number }
  | { type: 'message'; from: NodeId; msg: Message }
  /** A client's append request head arrived: the length is known, the body is still coming. */
  | {
    type: 'appendHead'; reqId: number; uploadId: string | null; length: number; crc: number | null; acks: AckLevel; copies?: boolean;
    /**
     * A commit end the client knew before its first attempt under this upload id (as for
     * `fate`). A head whose id this node may have forgotten (`after` below its fatesFrom)
     * is refused: it may be a stale copy of an attempt that already landed.
     */
    after?: number;
  }
  /**
   * The body of an allocated append is complete (`ok`) or lost: the client went or stalled,
   * or (`writeError`, what the disk said) the node could not write it.
   */
  | { type: 'bodyDone'; reqId: number; ok: boolean; crc: number; writeError?: string }
  /** A `write` or `fetch` effect's bytes are in the file (not yet synced). */
  | { type: 'writeDone'; seq: number }
  /** A `write` from an upload found no upload (`missing`), a bad one (`corrupt`), or a fetch failed. */
  | { type: 'writeFailed'; seq: number; reason: 'missing' | 'corrupt' | 'fetch' }
  /** A client's upload copy for a follower has arrived. */
  | { type: 'uploadArrived'; uploadId: string }
  /** The `sync` effect finished; `ok` false means fdatasync failed (the replica stops). */
  | { type: 'syncDone'; upTo: number; ok: boolean }
  /** A `copy` effect finished: frames [start, to) are written verbatim, with these term boundaries (`to` may fall short of the request). */
  | { type: 'copyDone'; start: number; to: number; epochs: Epoch[]; ok: boolean }
  /** A linearizable read of the commit end (read index). */
  | { type: 'readIndex'; reqId: number }
  /** What became of the append with this upload id? */
  /**
   * What became of the append with this upload id? `after`: every attempt under this id was
   * placed at or past this offset (the commit end the client knew before its first attempt;
   * 0 when it knew none). `unknown` ("never placed: send it again") is only answered when
   * this node remembers every upload id placed from `after` on; else `forgotten`.
   */
  | { type: 'fate'; reqId: number; uploadId: string; after?: number }
  /** A client asks to delete the log below `before` (answered by the leader: see Replica.trim). */
  | { type: 'trim'; reqId: number; before: number }
  /**
   * A `trim` effect's deletion ran: whole segments below `upTo` are gone (`upTo` is the
   * point it trimmed toward, at most this node's readable end then) and the log now starts
   * at `start`. Also after retention deleted segments of its own accord.
   */
  | { type: 'trimDone'; start: number; upTo: number };

// ---------------------------------------------------------------- effects

/**
 * `committed`/`pending`/`aborted`: the entry is at `offset` (pending: not committed yet);
 * `unknown`: never placed, safe to send again; `forgotten`: this node no longer remembers
 * every upload id placed since the offset asked about (`since` is how far back it does: a
 * restart, a catch-up copy or many appends since), so sending again could duplicate it.
 */
export type FateState = 'committed' | 'aborted' | 'pending' | 'unknown' | 'forgotten';

export type ReplyResult =
  | { type: 'appended'; offset: number; end: number; term: number }
  | { type: 'readIndex'; end: number }
  | { type: 'fate'; state: FateState; offset?: number; end?: number; term?: number; since?: number }
  /** The trim is on a majority (durably) and this node deleted what it could: its log starts at `start`. */
  | { type: 'trimmed'; start: number }
  | { type: 'error'; code: ErrorCode; message: string; details?: ErrorDetails };

export type Effect =
  | { type: 'send'; to: NodeId; msg: Message }
  /**
   * Make (term, votedFor, abstain) durable before executing any later effect. `abstain`:
   * the node is still abstaining (see `ReplicaInit.abstain`), and must be again after a
   * restart; absent once it has stopped.
   */
  | { type: 'persist'; term: number; votedFor: NodeId | null; abstain?: true }
  /**
   * Leader: a frame is allocated at meta.offset. Place it in storage now (in effect order)
   * and stream the request body into the payload area; then input `bodyDone`.
   */
  | { type: 'allocated'; reqId: number; meta: EntryMeta }
  /** Stop streaming this request's body; the replica has already answered or will abort it. */
  | { type: 'cancelBody'; reqId: number }
  /**
   * Write a frame and input `writeDone`/`writeFailed` with `seq`.
   * source 'body': the payload is already streamed (allocated); write header + trailer, and
   *   zero the payload first if the meta says aborted.
   * source 'zero': place, then write a frame with an all-zero payload (noop, aborted, config).
   * source 'upload': place, then write the client's uploaded copy for meta.uploadId
   *   (checking its length and CRC32C against meta).
   */
  | { type: 'write'; seq: number; meta: EntryMeta; source: 'body' | 'zero' | 'upload' }
  /** Fetch the payload of an already placed frame from `peer`, write it, input writeDone/writeFailed. */
  | { type: 'fetch'; seq: number; meta: EntryMeta; peer: NodeId }
  /**
   * Copy frames [start, to) verbatim from `peer`, the leader of `term` (catch-up); input
   * `copyDone` with the end actually reached. The frames are the leader's log, not
   * necessarily committed: the peer serves whole frames it has written, up to `to`, and
   * only while its own term is still `term` (else nothing: its log may have changed).
   */
  | { type: 'copy'; peer: NodeId; start: number; to: number; term: number }
  /**
   * Upload ids placed below `offset` may be unknown to this node from now on (frames are
   * about to arrive by copy, without them): persist it durably before executing the rest
   * of this step's effects, and pass it back as `init.fatesFrom` after a restart.
   */
  | { type: 'fatesFrom'; offset: number }
  /**
   * This node's trim point rose to `before`: save it durably before executing any later
   * effect (pass it back as `init.trimPoint` after a restart), then delete whole segments
   * below it as far as this node's readable end allows now, and the rest as it gets there;
   * input `trimDone` after each deletion (even one that deleted nothing).
   */
  | { type: 'trim'; before: number }
  /** fdatasync everything written so far (covers at least up to `upTo`); input `syncDone`. */
  | { type: 'sync'; upTo: number }
  /**
   * Drop the log from `to` on (after in-flight writes to that range have settled), durably
   * (ftruncate + fsync) before any later write lands: otherwise a crash could keep some of
   * the new frames written in that range and bring back stale ones around them, a log that
   * passes every frame check but is not any leader's log.
   */
  | { type: 'truncate'; to: number }
  /**
   * Drop the whole log and continue it, empty, at `to` (a follower whose log ends below
   * the leader's start: everything below `to` is committed and was trimmed by the others).
   * `epochs` are the leader's term boundaries below `to`: the executor keeps them (its epochs
   * file) in place of its own, so that a restart still knows the term before `to` (the last
   * term of an empty log, which votes compare).
   */
  | { type: 'reset'; to: number; epochs: Epoch[] }
  | { type: 'reply'; reqId: number; result: ReplyResult }
  /** The commit end advanced (wake readers and tails). */
  | { type: 'commit'; end: number }
  /** Role, term or known leader changed (for logs and status). */
  | { type: 'role'; role: Role; term: number; leader: NodeId | null }
  /** An unrecoverable condition (fsync failure): the executor must stop this node. */
  | { type: 'fatal'; reason: string };
