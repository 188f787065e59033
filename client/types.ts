import type { LogError } from '../spec/errors.ts';

/**
 * Public types of the SDK, shared by the client, the producer, the consumer and the CLI.
 */

/**
 * How durable an append must be before the server answers:
 * - `leader`: fsynced on the leader only (lost if the leader's disk is lost before replication);
 * - `quorum`: committed, i.e. fsynced on a majority (the server default);
 * - `all`: fsynced on every replica of the current configuration.
 */
export type Acks = 'leader' | 'quorum' | 'all';

/** Retry policy for retriable errors (network, 421 without a leader hint, 5xx). */
export interface RetryOptions {
  /** Retries after the first attempt (default 8: about 3-5 s of backoff, enough to ride out a leader election). 0 disables retrying. */
  retries?: number;
  /** First backoff delay in ms (default 25); doubles per retry, with jitter. */
  minDelayMs?: number;
  /** Cap of the backoff delay in ms (default 2000). */
  maxDelayMs?: number;
  /**
   * No retry after the first starts once this many ms have passed since the call began
   * (default: two request timeouts, 60,000). A server that accepts connections but never
   * answers then costs two request timeouts, not one per retry; a frozen leader costs one,
   * and then the call moves to the new leader. The call fails with the last error.
   */
  maxElapsedMs?: number;
}

/** Where an appended entry landed. */
export interface AppendResult {
  /** Byte offset of the entry's frame header: the entry's identity in the log. */
  offset: number;
  /** One past the last byte of the entry's frame: the offset of the next entry. */
  end: number;
  /** Raft term in which the entry was appended. */
  term: number;
}

/** Per-call options of `LogClient.append`. */
export interface AppendOptions {
  signal?: AbortSignal;
  /** Overrides the client's default ack level for this call. */
  acks?: Acks;
  /**
   * Upload id of the entry (default: a random UUID). The server remembers it, so the client
   * can ask what became of an append whose answer it lost (`fate`). Only for a single entry.
   * 1-128 characters of A-Z a-z 0-9 _ . : - (anything else is refused before sending).
   */
  uploadId?: string;
  /**
   * The payload's CRC32C when the caller already has it (the Producer derives it from the
   * envelope's own CRC), saving the client a pass over the bytes. A wrong value is caught:
   * the server refuses the append with `checksum_mismatch`.
   */
  crc32c?: number;
  /**
   * Called once the client no longer reads the payload: the append has settled and every
   * copy of it the client uploads to a follower has finished. From then on the caller may
   * overwrite the buffer (the Producer reuses its batch buffers this way). Only for a single
   * entry.
   */
  onReleased?: () => void;
}

/** Kind of a log entry, from its frame header. */
export type EntryKind = 'data' | 'noop' | 'config' | 'aborted';

/** One entry read from the log. */
export interface Entry {
  /** Byte offset of the entry's frame. */
  offset: number;
  /** Offset of the next entry. */
  end: number;
  term: number;
  /** `data` for user entries; the others only appear when reading with `all: true`. */
  kind: EntryKind;
  /** The payload bytes (a view into a response buffer; copy it if you keep it for long). */
  payload: Buffer;
}

/** Where a read or tail may start besides an offset: the log start or the commit end, as of the call. */
export type FromPosition = 'start' | 'end';

/** Options of `LogClient.read`. */
export interface ReadOptions {
  /** Bytes per read request (the server still sends at least one whole frame). Default 1 MiB. */
  limit?: number;
  /** Stop before the first entry whose offset is at or past `to`. */
  to?: number;
  /**
   * Keep reading past the commit end, long-polling for new entries (until `to`, or forever).
   * Without it the read stops at the commit end seen by its first request. A follow rides
   * out servers that are down for any time, as `tail -F` does: retriable errors are retried
   * until the servers are back or `signal` aborts (see `onOutage`).
   */
  follow?: boolean;
  /**
   * Called (follow and tail only) when the servers stop answering and the read starts
   * waiting for them, once per outage, with the error that began it.
   */
  onOutage?: (error: LogError) => void;
  /** Long-poll time per request in ms when following (default 10 000). */
  waitMs?: number;
  /**
   * Ask the replica to answer only once its commit end is at least this. The client's own
   * acknowledged appends are always waited for (read your writes); another client's are
   * not: pass `await client.end({ linearizable: true })` to read all that was acknowledged.
   */
  minCommit?: number;
  /** Also yield noop, config and aborted entries (default: data entries only). */
  all?: boolean;
  /** Read from this server instead of the client's current read server. */
  server?: string;
  signal?: AbortSignal;
}

/** Options of `LogClient.tail`. */
export interface TailOptions {
  /** Also yield noop, config and aborted entries (default: data entries only). */
  all?: boolean;
  /** Tail this server instead of the client's current read server. */
  server?: string;
  signal?: AbortSignal;
  /** As in {@link ReadOptions.onOutage}: a tail waits for its servers for as long as they are down. */
  onOutage?: (error: LogError) => void;
}

/** The readable range of the log on one replica. */
export interface Bounds {
  /** First offset still stored (everything below was trimmed). */
  start: number;
  /** The commit end. */
  end: number;
}

/** What became of an append, by upload id (`GET /v1/fate/:id`). */
export interface Fate {
  /**
   * `committed` / `pending` (placed, not committed yet) / `aborted` (its body never arrived
   * whole): the entry is at `offset`. `unknown`: never placed, and it will not be: safe to
   * send again. `forgotten`: the leader no longer remembers every upload id placed since the
   * lookup's `after` (only since `since`): sending again could duplicate the entry.
   */
  state: 'committed' | 'aborted' | 'pending' | 'unknown' | 'forgotten';
  /** With `forgotten`: the offset from which the leader remembers every upload id. */
  since?: number;
  /** The entry's offset, when committed (or pending, if allocated). */
  offset?: number;
  /** One past the entry's frame, when the offset is known. */
  end?: number;
  term?: number;
  [k: string]: unknown;
}

/** A replica's `GET /v1/status` answer. Fields beyond these may be present. */
export interface ServerStatus {
  id: string;
  /** The cluster's name (loglogd --cluster-name; absent from older nodes). */
  cluster?: string;
  role: string;
  term: number;
  leader: string | null;
  /**
   * The node neither votes nor stands yet: its data directory is new or was emptied, so it
   * may have voted before and forgotten. It stops once every member has told it its term
   * and it holds what the leader has committed (absent from older nodes).
   */
  abstaining?: boolean;
  start: number;
  end: number;
  commit: number;
  durable: number;
  segments: number;
  bytes: number;
  /** The largest entry payload this node accepts (its `--max-entry-bytes`). */
  maxEntryBytes?: number;
  /** Base URL of the leader, when the replica knows it. */
  leaderUrl?: string | null;
  /** Every member of the cluster (empty for a cluster of one). */
  peers?: { id: string; url: string }[];
  /**
   * Byte counters since the node started: client payload appended here as leader, and bytes
   * sent to peers (channel messages, payloads they fetched, frames they copied), and the
   * fetch requests peers made. On the leader, `peerSentBytes / appendedBytes` is its
   * replication egress ratio.
   */
  traffic?: { appendedBytes: number; peerSentBytes: number; peerMessageBytes: number; peerPayloadBytes: number; peerCopyBytes: number; peerFetchRequests?: number };
  /**
   * The node's scrubber, which re-checks committed frames on disk and rewrites rotten ones
   * from another replica (absent from older nodes). `position` is where the pass under way
   * stands; `passes` and `lastPassEndedAt` (ms since the epoch) last across restarts; the
   * byte and frame counts are since the node started.
   */
  scrub?: {
    enabled: boolean; running: boolean; position: number | null; passes: number; lastPassEndedAt: number | null;
    checkedBytes: number; damaged: number; repaired: number;
  };
  [k: string]: unknown;
}

/** A replica served bytes that failed verification. */
export interface CorruptionReport {
  /** Offset of the first bad frame. */
  offset: number;
  /** Base URL of the replica that served it. */
  replica: string;
  /** What was wrong: `checksum` (payload CRC32C), `header-crc`, `magic`, `trailer`, `short`, ... */
  reason: string;
}

/** Position of one record written through the Producer. */
export interface RecordPosition {
  /** Offset of the entry (envelope) holding the record. */
  offset: number;
  /** Index of the record within that entry. */
  index: number;
}

/** One record read through the consumer helper. */
export interface RecordEntry {
  /** Offset of the entry holding the record. */
  offset: number;
  /** Index of the record within its entry (0 for non-envelope entries). */
  index: number;
  value: Buffer;
}
