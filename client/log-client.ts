/**
 * `LogClient`: the thick client of a loglog cluster.
 *
 * - The cluster is discovered once, from the first configured server that answers
 *   `GET /v1/status` (`peers: [{id, url}]`, `leader`, `leaderUrl`): the configured list is
 *   only a seed, the members come from the cluster (a single node reports no peers, so a
 *   list of three default addresses still works with one node on the first of them).
 * - Appends go to the leader (cached; a 421 `not_leader` answer with a `leader` hint moves the
 *   cache and the request there). Each entry carries its CRC32C and an upload id; when an
 *   append's answer is lost (connection reset, timeout, 5xx) the client asks the server what
 *   became of that upload id (`GET /v1/fate/:id`) before sending it again, so a retry does not
 *   append the entry twice.
 * - Client-offloaded replication (default when the cluster has more than one member): while
 *   the leader receives the payload (`POST /v1/append` with `x-loglog-upload-id`), the client
 *   `PUT`s the same bytes to every follower (`/v1/upload/:id`), so the leader only sequences.
 *   A follower whose copy does not arrive fetches the bytes from a peer instead.
 * - Reads are spread over the replicas (round robin, skipping servers that just refused a
 *   connection). A read from a non-leader passes `minCommit` = the end of this client's last
 *   acknowledged append (read your writes). Every data frame's CRC32C is verified against its
 *   payload; a replica that serves bad bytes is reported (`onCorruption`) and the same range is
 *   read from the other replicas before giving up with `checksum_mismatch`.
 * - Retriable errors (see `spec/errors.ts`) are retried with exponential backoff and jitter,
 *   at most `retry.retries` times; non-retriable errors are thrown at once.
 */
import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { setTimeout as sleepTimer } from 'node:timers/promises';
import { LogError } from '../spec/errors.ts';
import type { ErrorDetails } from '../spec/errors.ts';
import { FrameError, crc32c, frameSize, kindName, parseFrames, decodeHeader } from '../spec/frame.ts';
import { ACK_LEVELS, UPLOAD_ID_RULE, isAckLevel, isUploadId } from '../spec/messages.ts';
import { childSignal, onAbort } from './abort.ts';
import { Transport, abortedError, normalizeServer, notLoglog, timeoutSignal, toLogError } from './http.ts';
import type { TransportOptions } from './http.ts';
import { TailSocket } from './tail-socket.ts';
import type {
  Acks, AppendOptions, AppendResult, Bounds, CorruptionReport, Entry, EntryKind, Fate, FromPosition, ReadOptions,
  RetryOptions, ServerStatus, TailOptions,
} from './types.ts';

/**
 * The servers used when neither `servers` nor `LOGLOG_SERVERS` says otherwise: the local
 * cluster `loglog dev` (`npm start`) runs. A single loglogd on the first of them works too:
 * discovery finds that it has no peers and the others are never asked again.
 */
export const DEFAULT_SERVERS: readonly string[] = ['http://127.0.0.1:7400', 'http://127.0.0.1:7401', 'http://127.0.0.1:7402'];
/** The first default server. */
export const DEFAULT_SERVER = DEFAULT_SERVERS[0];

/** Options of {@link LogClient}. */
export interface LogClientOptions extends TransportOptions {
  /**
   * Base URLs of the cluster's servers (any subset: the members and the leader are
   * discovered); at least one (an empty list throws `bad_request`). Default: the
   * comma-separated `LOGLOG_SERVERS` environment variable, else {@link DEFAULT_SERVERS}
   * (127.0.0.1 ports 7400-7402).
   */
  servers?: string[];
  retry?: RetryOptions;
  /** Default ack level of appends (default: the server's, `quorum`). */
  acks?: Acks;
  /**
   * Client-offloaded replication: also `PUT /v1/upload/:id` each appended payload to every
   * follower, so followers need not fetch it from the leader. Failures of these uploads are
   * ignored (followers fall back to fetching). Default: on when the cluster has more than one
   * member; `false` turns it off, `true` forces it on.
   */
  offload?: boolean;
  /** Called whenever a replica serves bytes that fail verification. */
  onCorruption?: (report: CorruptionReport) => void;
}

/** The URLs of a comma-separated server list (`--server`, LOGLOG_SERVERS), blanks dropped. */
export function splitServers(raw: string): string[] {
  return raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
}

/**
 * Servers from `LOGLOG_SERVERS` (comma-separated), else (unset) the default servers. Set to
 * nothing (`LOGLOG_SERVERS=`, say from a script's unset variable), it is an error rather than
 * the default cluster: appends would go to whatever listens on this machine.
 */
export function serversFromEnv(env: NodeJS.ProcessEnv = process.env): string[] {
  const v = env.LOGLOG_SERVERS;
  if (v === undefined) return [...DEFAULT_SERVERS];
  const list = splitServers(v);
  if (list.length === 0) throw new LogError('bad_request', `LOGLOG_SERVERS (${JSON.stringify(env.LOGLOG_SERVERS)}) names no server: set it to URLs like http://127.0.0.1:7400, or unset it for the default`);
  return list;
}

const DEFAULT_LIMIT = 1 << 20;
/** Discovery gives up on a silent server after this long (another may answer first). */
const DISCOVERY_TIMEOUT_MS = 3_000;
/** After a failed discovery, operations do not ask again for this long. */
const REDISCOVER_MS = 1_000;
/** A server that refused a connection is skipped by reads for this long. */
const DOWN_MS = 2_000;
/** How long a follower may wait to commit up to this client's own writes (`minCommit`). */
const MIN_COMMIT_WAIT_MS = 1_000;
/** Upload copies in flight per follower before the client stops offloading to it. */
const MAX_UPLOAD_BYTES_IN_FLIGHT = 64 << 20;
/** What every `/v1/status` answer has (another server's 200 must not pass for a member). */
const STATUS_SHAPE = { id: 'string', role: 'string', term: 'number', commit: 'number' } as const;
const APPEND_SHAPE = { offset: 'number', end: 'number', term: 'number' } as const;
/** How long close() lets upload copies still out finish before it stops them. */
const UPLOAD_GRACE_MS = 1000;
const DEFAULT_WAIT_MS = 10_000;
/** How long another replica may wait to catch up when it is asked for a range a corrupt replica served. */
const RECOVER_WAIT_MS = 2_000;

/** Tells a follow's or tail's `onOutage` once per outage. */
class Outage {
  private on = false;
  constructor(private readonly notify?: (error: LogError) => void) {}

  begin(e: LogError): void {
    if (this.on) return;
    this.on = true;
    try {
      this.notify?.(e);
    } catch {
      // a throwing observer must not end the read
    }
  }

  end(): void {
    this.on = false;
  }
}

/**
 * Counts what still reads an append's payload: the append itself, then each copy upload,
 * which may outlive it. `onReleased` (AppendOptions) runs when the last one lets go.
 */
class PayloadHolds {
  private n = 1;
  constructor(private readonly onReleased?: () => void) {}

  take(): void {
    this.n++;
  }

  drop(): void {
    if (--this.n > 0) return;
    try {
      this.onReleased?.();
    } catch {
      // a throwing hook must not fail an append that landed
    }
  }
}

/** Connect-phase failures: the request certainly never reached the server. */
const NEVER_SENT = new Set(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL']);

/**
 * True if an append that failed with `e` may nevertheless have been written. Failures to
 * connect are certain not to have written anything, and so is a 421 refusing the request
 * itself; a 421 for a placed entry comes from a leader deposed after it had sequenced it
 * (which the new leader may then commit).
 */
function mayHaveLanded(e: LogError): boolean {
  if (!e.retriable) return false;
  if (e.code === 'not_leader') return e.details.placed === true;
  if (e.code === 'network') {
    const code = (e.cause as { code?: string } | undefined)?.code;
    return !(code && NEVER_SENT.has(code));
  }
  return true;
}

/**
 * Whether an append that failed with `e` is, or may be, in the log all the same: `unconfirmed`
 * (committed, not confirmed by every replica), `outcome_unknown`, or `aborted` while an attempt
 * was out (`details.mayHaveLanded`). Appending such an entry again may duplicate it: ask
 * `fate(e.details.uploadId, { after: e.details.after })` first. Any other error means nothing
 * was appended.
 */
export function mayBeInLog(e: unknown): boolean {
  return e instanceof LogError && (e.code === 'outcome_unknown' || e.code === 'unconfirmed' || e.details.mayHaveLanded === true);
}

/** The result of an entry whose append failed with `e` although it is committed (`unconfirmed`), or null. */
function committedResult(e: LogError): AppendResult | null {
  const { offset, end, term } = e.details;
  return e.code === 'unconfirmed' && typeof offset === 'number' && typeof end === 'number' && typeof term === 'number' ? { offset, end, term } : null;
}

/** `outcome_unknown` for an append whose earlier attempt may have landed where the leader no longer remembers upload ids. */
function forgottenError(uploadId: string, after: number, since: number | undefined, cause?: unknown): LogError {
  return new LogError(
    'outcome_unknown',
    `an earlier attempt of append ${uploadId} may have been written, and the leader no longer remembers upload ids placed before offset ${String(since)} (it restarted or took many appends since): read from offset ${after} to look for the entry before appending it again`,
    { uploadId, after, since }, { cause },
  );
}

/** Resolves when `p` settles, or as soon as `signal` aborts: one caller's way out of a wait others share. */
function settledOrAborted(p: Promise<unknown>, signal?: AbortSignal): Promise<void> {
  if (!signal) return p.then(() => undefined, () => undefined);
  if (signal.aborted) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const stop = onAbort(signal, resolve);
    p.then(() => { stop(); resolve(); }, () => { stop(); resolve(); });
  });
}

/**
 * Refuses malformed options by name. Unchecked, a NaN retry count retried until the time
 * budget ran out, a negative delay hammered the servers, and a negative or NaN request
 * timeout failed every request as a retriable network error.
 */
function checkOptions(opts: LogClientOptions): void {
  const check = (name: string, v: number | undefined, ok: (v: number) => boolean, what: string) => {
    if (v !== undefined && !ok(v)) throw new LogError('bad_request', `${name} must be ${what}, got ${String(v)}`);
  };
  const whole = (min: number) => (v: number) => Number.isSafeInteger(v) && v >= min;
  const ms = (v: number) => Number.isFinite(v) && v >= 0;
  check('retry.retries', opts.retry?.retries, whole(0), 'a whole number, 0 or more');
  check('retry.minDelayMs', opts.retry?.minDelayMs, ms, 'a number of milliseconds, 0 or more');
  check('retry.maxDelayMs', opts.retry?.maxDelayMs, ms, 'a number of milliseconds, 0 or more');
  check('retry.maxElapsedMs', opts.retry?.maxElapsedMs, (v) => v === Infinity || ms(v), 'a number of milliseconds, 0 or more (Infinity: no budget)');
  check('requestTimeoutMs', opts.requestTimeoutMs, whole(0), 'a whole number of milliseconds, 0 or more (0: no limit)');
  check('connections', opts.connections, whole(1), 'a whole number, 1 or more');
  check('longPollConnections', opts.longPollConnections, whole(1), 'a whole number, 1 or more');
  assertAcks(opts.acks);
}

/** Refuses an `acks` option other than leader, quorum, all (or none: the default). */
export function assertAcks(acks: unknown): void {
  if (acks !== undefined && !isAckLevel(acks)) throw new LogError('bad_request', `acks must be ${ACK_LEVELS.join(', ')} (or left out: quorum), got ${JSON.stringify(acks)}`);
}

function assertOffset(name: string, v: number, what = 'a non-negative safe integer'): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new LogError('bad_request', `${name} must be ${what}, got ${shown(v)}`);
}

/** A value as an error message shows it: a string in quotes and named as one ("got 0" for '0' read as if 0 were refused). */
function shown(v: unknown): string {
  return typeof v === 'string' ? `${JSON.stringify(v)} (a string)` : String(v);
}

function headerNumber(h: string | string[] | undefined): number | undefined {
  const s = Array.isArray(h) ? h[0] : h;
  if (s === undefined || !/^\d+$/.test(s)) return undefined;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : undefined;
}

function isVisible(kind: EntryKind, all: boolean | undefined): boolean {
  return all === true || kind === 'data';
}

/** Frames of one read answer, verified. */
interface Chunk {
  server: string;
  entries: Entry[];
  /** Offset after the last entry. */
  next: number;
  /** The replica's commit end at the time of the answer. */
  commit: number;
}

/** A read answer whose first frame failed verification. */
class CorruptRead extends Error {
  constructor(readonly report: CorruptionReport) {
    super(`${report.replica} served a bad frame at offset ${report.offset} (${report.reason})`);
  }
}

/**
 * A replica's `damaged` answer (its copy of the range is unreadable) as a CorruptRead, so
 * that the range is read from the other replicas as for bad bytes; null for other errors.
 */
function damagedRead(e: unknown, server: string, offset: number): CorruptRead | null {
  if (!(e instanceof LogError) || e.code !== 'damaged') return null;
  return new CorruptRead({ offset: typeof e.details.offset === 'number' ? e.details.offset : offset, replica: server, reason: 'damaged' });
}

/**
 * Verifies whole frames served from `base`. Returns the verified prefix; throws CorruptRead
 * when the very first frame is bad (so the caller retries it elsewhere).
 */
function verifyFrames(buf: Buffer, base: number, server: string): { entries: Entry[]; next: number } {
  const entries: Entry[] = [];
  let next = base;
  try {
    // parseFrames verifies each data frame's CRC32C (FrameError 'checksum', handled below).
    for (const f of parseFrames(buf, base)) {
      const end = f.offset + frameSize(f.length);
      entries.push({ offset: f.offset, end, term: f.term, kind: kindName(f.kind) as EntryKind, payload: f.payload });
      next = end;
    }
  } catch (e) {
    if (!(e instanceof FrameError)) throw e;
    if (entries.length > 0) return { entries, next };
    throw new CorruptRead({ offset: e.offset, replica: server, reason: e.reason });
  }
  return { entries, next };
}

/** A member as `/v1/status` lists it. */
function peersOf(st: ServerStatus): { id: string; url: string }[] | null {
  const peers = st.peers;
  if (!peers || typeof peers !== 'object') return null;
  const pairs: [unknown, unknown][] = Array.isArray(peers)
    ? peers.map((p) => [(p as { id?: unknown })?.id, (p as { url?: unknown })?.url])
    : Object.entries(peers);
  const out: { id: string; url: string }[] = [];
  for (const [id, u] of pairs) {
    const url = asUrl(u);
    if (typeof id === 'string' && url) out.push({ id, url });
  }
  return out;
}

/** A leader hint or peer address as a base URL, or null if it is not one (e.g. a node id). */
function asUrl(h: unknown): string | null {
  if (typeof h !== 'string' || !(/^https?:\/\//i.test(h) || /^[^/\s]+:\d+$/.test(h))) return null;
  try {
    return normalizeServer(h);
  } catch {
    return null;
  }
}

/** The client of a loglog cluster. Create one per process and share it; `close()` when done. */
export class LogClient {
  private readonly configured: string[];
  private members: string[];
  private readonly transport: Transport;
  private readonly retries: number;
  private readonly minDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly maxElapsedMs: number;
  private readonly acks?: Acks;
  private readonly offload?: boolean;
  private readonly onCorruption?: (report: CorruptionReport) => void;
  private leaderUrl: string;
  private leaderKnown = false;
  private readonly tails = new Set<TailSocket>();
  private readonly uploads = new Set<Promise<unknown>>();
  private readonly uploadBytes = new Map<string, number>();
  private readonly idToUrl = new Map<string, string>();
  private readonly downUntil = new Map<string, number>();
  /** Servers that have answered as a loglogd (a status with its fields). */
  private readonly loglogds = new Set<string>();
  private discovery: Promise<void> | null = null;
  private discovered = false;
  private nextDiscoveryAt = 0;
  private rr = 0;
  /** End of this client's last append acknowledged at `quorum` or `all` (read your writes). */
  private ackedEnd = 0;
  /**
   * The highest commit end this client has seen (acknowledged appends, status answers).
   * Every later append lands past it, so a fate lookup sends it as `after`: the leader then
   * answers "never placed" only if it remembers every upload id from there on.
   */
  private knownCommit = 0;
  private closed = false;
  /** Aborted by close(): requests nobody waits for (status asks of other members), and follows. */
  private readonly closing = new AbortController();
  /** Aborted by close() after UPLOAD_GRACE_MS: upload copies still out (a follower fetches what it misses). */
  private readonly uploadsStop = new AbortController();
  private maxEntry: number | undefined;

  constructor(opts: LogClientOptions = {}) {
    const list = opts.servers ?? serversFromEnv();
    if (!Array.isArray(list)) throw new LogError('bad_request', `servers must be an array of URLs, e.g. servers: ['http://127.0.0.1:7400'], got ${typeof list}`);
    // An empty list is a mistake (a filter that left nothing, say): the default servers in its
    // place would send appends to whatever listens on this machine.
    if (list.length === 0) throw new LogError('bad_request', 'servers must name at least one server, e.g. servers: [\'http://127.0.0.1:7400\'] (leave it out for LOGLOG_SERVERS or the default)');
    checkOptions(opts);
    this.configured = [...new Set(list.map(normalizeServer))];
    this.members = [...this.configured];
    this.transport = new Transport(opts);
    this.retries = opts.retry?.retries ?? 8;
    this.minDelayMs = opts.retry?.minDelayMs ?? 25;
    this.maxDelayMs = Math.max(this.minDelayMs, opts.retry?.maxDelayMs ?? 2000);
    // Room for a second attempt after one that timed out: a frozen leader must cost one
    // request timeout and then a failover, not an error.
    const requestTimeoutMs = this.transport.timeoutMs;
    // Requests that never time out (0) leave nothing to measure a budget in.
    this.maxElapsedMs = opts.retry?.maxElapsedMs ?? (requestTimeoutMs > 0 ? 2 * requestTimeoutMs : Infinity);
    this.acks = opts.acks;
    this.offload = opts.offload;
    this.onCorruption = opts.onCorruption;
    this.leaderUrl = this.members[0];
    this.rr = Math.floor(Math.random() * this.members.length);
    // One listener per request in flight (undici's): many uploads at once are no leak.
    setMaxListeners(0, this.closing.signal, this.uploadsStop.signal);
  }

  /**
   * The largest entry payload the cluster accepts, as far as this client has heard: the
   * smallest `maxEntryBytes` of the members asked (discovery's seeds at once, the other
   * members in the background) and of any `too_large` answer. Undefined before discovery.
   */
  get maxEntryBytes(): number | undefined {
    return this.maxEntry;
  }

  /**
   * Known servers: the configured ones until the cluster is discovered, then the cluster's
   * members (plus leaders learned from hints).
   */
  get servers(): string[] {
    return this.members;
  }

  /** The server currently believed to be the leader. */
  get leader(): string {
    return this.leaderUrl;
  }

  /** The end of this client's last append acknowledged at `quorum` or `all` (0 if none). */
  get lastAckedEnd(): number {
    return this.ackedEnd;
  }

  // ---------------------------------------------------------------- cluster discovery

  /**
   * Learns the cluster from the first configured server that answers `GET /v1/status`: its
   * members (`peers`) and leader. Done once, lazily, before the first operation; call it to
   * do it now. A server that lists no peers is a cluster of one. Resolves with what is known
   * (the configured servers when nothing answered). `signal` stops this caller's wait
   * (rejecting `aborted`), not the discovery others may be waiting for.
   */
  async discover(opts: { signal?: AbortSignal } = {}): Promise<{ members: string[]; leader: string | null; discovered: boolean }> {
    if (opts.signal?.aborted) throw abortedError(opts.signal);
    if (!this.discovered) {
      // One discovery serves every caller, so only close() stops it: the first caller's
      // signal used to end it for all, and a later caller waited it out (3 s for a frozen
      // seed) whatever its own signal said. Each caller stops waiting on its own.
      this.discovery ??= this.runDiscovery().finally(() => {
        this.discovery = null;
      });
      await settledOrAborted(this.discovery, opts.signal);
      if (opts.signal?.aborted) throw abortedError(opts.signal);
    }
    return { members: [...this.members], leader: this.leaderKnown ? this.leaderUrl : null, discovered: this.discovered };
  }

  private async ensureDiscovered(signal?: AbortSignal): Promise<void> {
    if (this.discovered || (this.discovery === null && Date.now() < this.nextDiscoveryAt)) return;
    await this.discover({ signal });
  }

  /**
   * The members discovery did not ask, asked in the background: each tells its own entry
   * limit (the smallest is the cluster's), which the seeds cannot tell for it.
   */
  private askOtherMembers(asked: readonly string[], signal: AbortSignal): void {
    const both = AbortSignal.any([signal, this.closing.signal]);
    for (const m of this.members) {
      if (asked.includes(m)) continue;
      this.transport.json<ServerStatus>(m, { method: 'GET', path: '/v1/status', signal: both }, STATUS_SHAPE).then(
        (st) => {
          this.loglogds.add(m);
          if (typeof st.maxEntryBytes === 'number') this.noteMaxEntry(st.maxEntryBytes);
        },
        () => {},
      );
    }
  }

  private runDiscovery(): Promise<void> {
    const seeds = [...new Set([...this.configured, ...this.members])];
    const sig = timeoutSignal(DISCOVERY_TIMEOUT_MS, this.closing.signal);
    return new Promise<void>((resolve) => {
      let pending = seeds.length;
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        if (!this.discovered) this.nextDiscoveryAt = Date.now() + REDISCOVER_MS;
        else this.askOtherMembers(seeds, sig);
        resolve();
      };
      for (const s of seeds) {
        this.transport.json<ServerStatus>(s, { method: 'GET', path: '/v1/status', signal: sig }, STATUS_SHAPE).then(
          (st) => {
            this.learn(s, st, !done);
            if (!done && this.discovered) finish();
          },
          (e) => {
            const err = toLogError(e, s, sig);
            if (err.code === 'network') this.markDown(s, err);
          },
        ).finally(() => {
          if (--pending === 0) finish();
        });
      }
    });
  }

  private noteMaxEntry(max: number): void {
    this.maxEntry = Math.min(this.maxEntry ?? Infinity, max);
  }

  /**
   * Takes in one server's status. `first`: this answer defines the membership; later answers
   * only fill in the leader and node ids.
   */
  private learn(server: string, st: ServerStatus, first: boolean): void {
    this.loglogds.add(server);
    if (typeof st.id === 'string' && st.id !== '') this.idToUrl.set(st.id, server);
    if (typeof st.maxEntryBytes === 'number') this.noteMaxEntry(st.maxEntryBytes);
    if (typeof st.commit === 'number' && st.commit > this.knownCommit) this.knownCommit = st.commit;
    const peers = peersOf(st);
    if (first && !this.discovered) {
      this.discovered = true;
      if (peers !== null) {
        this.members = peers.length === 0
          ? [server]
          : [...new Set(peers.map((p) => (p.id === st.id ? server : (this.idToUrl.get(p.id) ?? p.url))))];
        if (!this.members.includes(server) && peers.length > 0) this.members.push(server);
      }
      for (const p of peers ?? []) if (!this.idToUrl.has(p.id)) this.idToUrl.set(p.id, p.url);
      if (!this.members.includes(this.leaderUrl)) this.leaderUrl = this.members[0];
      this.rr = Math.floor(Math.random() * this.members.length);
    }
    if (this.leaderKnown) return;
    let leader: string | null = null;
    if (st.role === 'leader') leader = server;
    else if (typeof st.leader === 'string' && st.leader !== '') leader = this.idToUrl.get(st.leader) ?? asUrl(st.leaderUrl);
    if (leader !== null) {
      this.leaderUrl = leader;
      this.leaderKnown = true;
      if (!this.members.includes(leader)) this.members.push(leader);
    }
  }

  private markDown(server: string, err: LogError): void {
    const code = (err.cause as { code?: string } | undefined)?.code;
    if (code && NEVER_SENT.has(code)) this.downUntil.set(server, Date.now() + DOWN_MS);
  }

  private isDown(server: string): boolean {
    const t = this.downUntil.get(server);
    if (t === undefined) return false;
    if (Date.now() >= t) {
      this.downUntil.delete(server);
      return false;
    }
    return true;
  }

  /** The next replica to read from: round robin over the members, skipping ones that are down. */
  private nextReader(): string {
    const n = this.members.length;
    for (let i = 0; i < n; i++) {
      const s = this.members[this.rr++ % n];
      if (!this.isDown(s)) return s;
    }
    return this.members[this.rr++ % n];
  }

  /** Whether appends are offloaded: the option, else whether the cluster has several members. */
  get offloading(): boolean {
    return this.offload ?? this.members.length > 1;
  }

  // ---------------------------------------------------------------- append

  /**
   * Appends one entry, or each element of an array as its own entry (sent concurrently;
   * results in input order). Resolves once the entry is durable per the ack level.
   *
   * Entries of one array call are not ordered among themselves in the log; append them one
   * at a time (or pack them into one envelope) when their order matters. If one fails, the
   * error (the first failure's) says what became of each entry: `details.results[i]` is the
   * entry's result if it is in the log (an `unconfirmed` entry is), else null, and
   * `details.errors[i]` its error, or null. Of the failed entries, resend only those whose
   * error {@link mayBeInLog} rejects; ask the fate of the others first.
   */
  append(data: Uint8Array, opts?: AppendOptions): Promise<AppendResult>;
  append(data: Uint8Array[], opts?: AppendOptions): Promise<AppendResult[]>;
  append(data: Uint8Array | Uint8Array[], opts?: AppendOptions): Promise<AppendResult | AppendResult[]>;
  append(data: Uint8Array | Uint8Array[], opts: AppendOptions = {}): Promise<AppendResult | AppendResult[]> {
    if (Array.isArray(data)) {
      const single = (['uploadId', 'crc32c', 'onReleased'] as const).find((k) => opts[k] !== undefined);
      if (single) return Promise.reject(new LogError('bad_request', `${single} applies to a single entry, not an array`));
      // Checked before any is sent: a bad element found by its own append left the ones
      // before it in the log, and the caller with an array to fix and resend in part.
      const bad = data.findIndex((d) => !(d instanceof Uint8Array));
      if (bad >= 0) return Promise.reject(new LogError('bad_request', `entry ${bad} of ${data.length} is not a Uint8Array (append takes a Uint8Array, or an array of them): nothing was appended`, { index: bad }));
      return this.appendEach(data, opts);
    }
    return this.appendOne(data, opts);
  }

  /**
   * What a 409 to an append head means for the next attempt. The id is in the leader's log
   * (an earlier attempt of ours, delayed, landed first): ask its fate. Or the leader may have
   * forgotten ids placed since `after`: a first attempt goes again with `after` = its
   * `since` (nothing of ours can be there); after earlier attempts, nobody can tell.
   */
  private onConflict(err: LogError, uploadId: string, earlier: number, after: number): { error: LogError; askFate?: true; after?: number } {
    const since = err.details.since;
    // The id names other data: asking its fate would only report that entry.
    if (err.details.state === 'reused') return { error: err };
    if (err.details.state !== 'forgotten') {
      return { error: new LogError('unavailable', `${err.message}; asking its fate`, err.details, { cause: err }), askFate: true };
    }
    if (earlier === 0 && typeof since === 'number') {
      return { error: new LogError('unavailable', `${err.message}; sending it again from offset ${since} on`, err.details, { cause: err }), after: since };
    }
    return { error: forgottenError(uploadId, after, since, err) };
  }

  /**
   * Several entries, each appended on its own (concurrently). If any fails, the error is the
   * first failure's, and says what became of every entry: `details.results` has, per index,
   * the entry's AppendResult if it is in the log (an `unconfirmed` one is), else null, and
   * `details.errors` each entry's error (null for those that succeeded). Appending the whole
   * array again would duplicate what landed; an entry whose error {@link mayBeInLog} says
   * may have landed needs its fate asked first.
   */
  private async appendEach(data: Uint8Array[], opts: AppendOptions): Promise<AppendResult[]> {
    const settled = await Promise.allSettled(data.map((d) => this.appendOne(d, opts)));
    const failed = settled.findIndex((r) => r.status === 'rejected');
    if (failed < 0) return settled.map((r) => (r as PromiseFulfilledResult<AppendResult>).value);
    const errors = settled.map((r) => (r.status === 'fulfilled' ? null : r.reason instanceof LogError ? r.reason : new LogError('internal', String(r.reason), {}, { cause: r.reason })));
    const results = settled.map((r, i) => (r.status === 'fulfilled' ? r.value : committedResult(errors[i]!)));
    const landed = results.filter((r) => r !== null).length;
    const maybe = errors.filter((e, i) => e && !results[i] && mayBeInLog(e)).length;
    const notAppended = data.length - landed - maybe;
    const e = errors[failed]!;
    const told = [`${landed} of the ${data.length} entries are in the log (details.results)`];
    if (maybe > 0) told.push(`${maybe} may be: ask their fate (details.errors[i].details.uploadId and after) before appending them again`);
    if (notAppended > 0) told.push(`${notAppended} were not appended: append only those again`);
    throw new LogError(e.code, `entry ${failed} of ${data.length}: ${e.message}; ${told.join('; ')}`, { ...e.details, index: failed, results, errors }, { cause: e });
  }

  private appendOne(data: Uint8Array, opts: AppendOptions): Promise<AppendResult> {
    const holds = new PayloadHolds(opts.onReleased);
    return this.appendHeld(data, opts, holds).finally(() => holds.drop());
  }

  /** appendOne, with `holds` taken by every copy upload that reads `data` after the append settles. */
  private async appendHeld(data: Uint8Array, opts: AppendOptions, holds: PayloadHolds): Promise<AppendResult> {
    if (!(data instanceof Uint8Array)) throw new LogError('bad_request', 'append takes a Uint8Array (or an array of them)');
    if (opts.crc32c !== undefined && !(Number.isInteger(opts.crc32c) && opts.crc32c >= 0 && opts.crc32c <= 0xffffffff)) {
      throw new LogError('bad_request', `crc32c must be a u32, got ${opts.crc32c}`);
    }
    if (opts.uploadId !== undefined && !isUploadId(opts.uploadId)) {
      const id = String(opts.uploadId);
      throw new LogError('bad_request', `uploadId must be a string of ${UPLOAD_ID_RULE}, got ${typeof opts.uploadId === 'string' ? '' : `the ${typeof opts.uploadId} `}${JSON.stringify(id.slice(0, 40))}${id.length > 40 ? ` (the first 40 of ${id.length} characters)` : ''}`);
    }
    assertAcks(opts.acks);
    const crc = opts.crc32c ?? crc32c(data);
    const acks = opts.acks ?? this.acks;
    let uploadId = opts.uploadId ?? randomUUID();
    // The commit end known before the first attempt (after discovery): every attempt lands past it.
    let after = -1;
    // Set when a failed attempt may have been written: ask the server before resending.
    let uncertain = false;
    // Where the attempts that may have been written went.
    const maybeAt = new Set<string>();
    // Servers holding (or being sent) a copy under the current upload id.
    let copies = new Set<string>();
    // Known only from a fate: committed, but not whether every replica has it.
    let fromFate = false;
    // Attempts sent under the current upload id (a stale one of them may yet arrive).
    let sent = 0;
    const attempts = this.withRetry('leader', opts.signal, undefined, async (server) => {
      fromFate = false;
      if (uncertain) {
        const fate = await this.fateAt(server, uploadId, after, opts.signal);
        if (fate.state === 'forgotten') throw forgottenError(uploadId, after, fate.since);
        if (fate.state === 'committed' && typeof fate.offset === 'number') {
          const res = await this.resultFromFate(server, fate, data.byteLength, crc, opts.signal);
          fromFate = true;
          return res;
        }
        if (fate.state === 'pending') {
          throw new LogError('unavailable', `append ${uploadId} is still pending`, { uploadId });
        }
        // aborted: the id is spent, send under a new one; unknown: never written, resend.
        if (fate.state === 'aborted') {
          uploadId = randomUUID();
          copies = new Set();
          after = -1;
          sent = 0;
        }
        uncertain = false;
      }
      if (after < 0) after = this.knownCommit;
      const earlier = sent++;
      const headers: Record<string, string> = {
        'content-type': 'application/octet-stream',
        'x-loglog-crc32c': String(crc),
        'x-loglog-upload-id': uploadId,
        'x-loglog-after': String(after),
      };
      if (acks) headers['x-loglog-acks'] = acks;
      // Followers fetch at once what no client copy will bring (instead of waiting for it).
      if (!this.offloading) headers['x-loglog-copies'] = 'none';
      // The leader's copy goes out first: it gates everything (the followers can only write
      // their copies once the leader has sequenced the entry and sent them its metadata).
      const post = this.transport.json<AppendResult>(server, { method: 'POST', path: '/v1/append', headers, body: data, signal: opts.signal }, APPEND_SHAPE);
      if (this.offloading) this.uploadCopies(server, uploadId, data, crc, copies, holds);
      try {
        const res = await post;
        return { offset: res.offset, end: res.end, term: res.term };
      } catch (e) {
        const err = toLogError(e, server, opts.signal);
        if (err.code === 'too_large' && typeof err.details.max === 'number') this.noteMaxEntry(err.details.max);
        // Stopped by the caller while the request was out: the server may have it all the same.
        if (mayHaveLanded(err) || err.code === 'aborted') {
          uncertain = true;
          maybeAt.add(server);
        }
        err.details.uploadId ??= uploadId;
        if (err.code === 'conflict') {
          const next = this.onConflict(err, uploadId, earlier, after);
          if (next.askFate) uncertain = true;
          if (next.after !== undefined) after = next.after;
          throw next.error;
        }
        throw err;
      }
    });
    let r: AppendResult;
    try {
      r = await attempts;
    } catch (e) {
      // The last failure may be a refused connection, but an earlier attempt's answer was
      // lost: whoever retries on `retriable` would append the entry twice. Unless every such
      // attempt went to the server that has now shown it is no loglogd (a connection it cut,
      // then a page of its own): nothing of ours can be there.
      if (uncertain && e instanceof LogError && e.code !== 'outcome_unknown' && !this.notLoglogAt(e, maybeAt)) {
        // With the `after` its attempts were sent with: asked from 0, a leader that has trimmed
        // its log, or taken more appends than it remembers ids of, can only say "forgotten".
        const ask = `an earlier attempt may have been written: ask fate("${uploadId}", { after: ${after} }) before appending it again`;
        // Stopped by the caller (signal, close): still an abort, but one that says what may be in the log.
        if (e.code === 'aborted') throw new LogError('aborted', `${e.message}; ${ask}`, { ...e.details, uploadId, after, mayHaveLanded: true }, { cause: e });
        throw new LogError('outcome_unknown', `${e.message}; ${ask}`, { ...e.details, uploadId, after }, { cause: e });
      }
      throw e;
    }
    if (acks !== 'leader' && r.end > this.ackedEnd) this.ackedEnd = r.end;
    if (acks !== 'leader' && r.end > this.knownCommit) this.knownCommit = r.end;
    if (fromFate && acks === 'all') {
      throw new LogError(
        'unconfirmed',
        `the entry was committed at offset ${r.offset}, but its answer was lost, and nothing shows that every replica has it (acks=all; is a replica down?): it is in the log, do not append it again`,
        { offset: r.offset, end: r.end, term: r.term, uploadId },
      );
    }
    return r;
  }

  /** Whether `e` shows that every server in `servers` is no loglogd (and none ever answered as one). */
  private notLoglogAt(e: LogError, servers: ReadonlySet<string>): boolean {
    return e.code === 'bad_response' && [...servers].every((s) => s === e.details.server && !this.loglogds.has(s));
  }

  /**
   * Client-offloaded replication: best-effort copies of the payload to every member but the
   * one the append goes to (each at most once per upload id). A follower with too many copies
   * in flight is skipped: it fetches those bytes from a peer instead.
   */
  private uploadCopies(leader: string, uploadId: string, data: Uint8Array, crc: number, copies: Set<string>, holds: PayloadHolds): void {
    copies.add(leader);
    for (const s of this.members) {
      if (copies.has(s)) continue;
      copies.add(s);
      const inFlight = this.uploadBytes.get(s) ?? 0;
      if (inFlight + data.byteLength > MAX_UPLOAD_BYTES_IN_FLIGHT || this.isDown(s)) continue;
      this.uploadBytes.set(s, inFlight + data.byteLength);
      holds.take();
      const p = this.transport
        .request(s, {
          method: 'PUT',
          path: `/v1/upload/${encodeURIComponent(uploadId)}`,
          headers: { 'content-type': 'application/octet-stream', 'x-loglog-crc32c': String(crc) },
          body: data,
          signal: this.uploadsStop.signal,
        })
        .catch(() => undefined)
        .finally(() => {
          this.uploadBytes.set(s, (this.uploadBytes.get(s) ?? data.byteLength) - data.byteLength);
          this.uploads.delete(p);
          holds.drop();
        });
      this.uploads.add(p);
    }
  }

  private async resultFromFate(server: string, fate: Fate, length: number, crc: number, signal?: AbortSignal): Promise<AppendResult> {
    const offset = fate.offset as number;
    const end = typeof fate.end === 'number' ? fate.end : offset + frameSize(length);
    if (typeof fate.term === 'number') return { offset, end, term: fate.term };
    // The fate answer has no term: read it from the entry's header (and check it is ours).
    const res = await this.transport.request(server, {
      method: 'GET', path: '/v1/read', query: { offset, limit: 1, minCommit: end, wait: MIN_COMMIT_WAIT_MS }, signal, longPollMs: MIN_COMMIT_WAIT_MS,
    });
    const h = decodeHeader(res.body, 0);
    if (!h.ok || h.header.length !== length || h.header.crc !== crc) {
      throw new LogError('internal', `fate says offset ${offset} holds the append, but the entry there does not match it`, { offset, server });
    }
    return { offset, end, term: h.header.term };
  }

  // ---------------------------------------------------------------- read

  /**
   * Reads entries from `from`: an entry offset (e.g. 0, or an `end` of an earlier entry), or
   * `'start'` (the log start now, wherever trims left it: Kafka's "earliest") or `'end'` (the
   * commit end: "latest"). Yields data entries only (noop/config/aborted are skipped unless `all`).
   * Without `follow`, stops at the commit end seen by the first request (or `to`).
   *
   * Each call reads from one replica (the next in round robin, moving on if it fails). The
   * replica is asked (`minCommit`) to answer only once it serves this client's acknowledged
   * appends, so a lagging replica waits (or the read moves on) instead of answering "nothing
   * there"; an "out of range" from a follower is checked with the leader.
   *
   * @throws LogError `trimmed` (details.start), `bad_offset`, `out_of_range`,
   *   `checksum_mismatch` (details.offset, details.replica) when no replica serves good bytes.
   */
  async *read(start: number | FromPosition, opts: ReadOptions = {}): AsyncGenerator<Entry> {
    const from = await this.offsetOf(start, { signal: opts.signal, server: opts.server });
    if (opts.to !== undefined) assertOffset('to', opts.to);
    if (opts.minCommit !== undefined) assertOffset('minCommit', opts.minCommit);
    const limit = opts.limit ?? DEFAULT_LIMIT;
    if (!Number.isSafeInteger(limit) || limit <= 0) throw new LogError('bad_request', `limit must be a positive integer, got ${limit}`);
    const wait = opts.follow ? (opts.waitMs ?? DEFAULT_WAIT_MS) : undefined;
    // A follow may wait forever: close() stops it rather than waiting out its long poll.
    const signal = !opts.follow ? opts.signal : opts.signal ? AbortSignal.any([opts.signal, this.closing.signal]) : this.closing.signal;
    let offset = from;
    let stopAt = opts.to;
    let first = true;
    const pinned = opts.server ? normalizeServer(opts.server) : undefined;
    if (!pinned) await this.ensureDiscovered(signal);
    let server = pinned ?? this.nextReader();
    // What the replica must have committed before it answers (this client's own writes).
    let mustSee = Math.max(opts.minCommit ?? 0, this.ackedEnd);
    const outage = new Outage(opts.onOutage);
    // A loglogd has answered this client (discovery, or the position asked of one): a failure
    // from here on is an outage, not a wrong address. The first long poll of a follow at the
    // end may be cut by a stop before it ever answers.
    let contacted = this.discovered || start === 'start' || start === 'end';
    for (;;) {
      if (stopAt !== undefined && offset >= stopAt) return;
      let chunk: Chunk;
      try {
        chunk = await this.readChunk(offset, { limit, wait, mustSee, signal, pinned, start: server });
      } catch (e) {
        // A follow waits for its servers however long they are down; a plain read does not,
        // nor a follow that never reached one (a wrong address, more likely).
        if (!opts.follow || !contacted || !(e instanceof LogError)) throw e;
        if (e.code === 'out_of_range' && !pinned) {
          // The commit end is volatile: a replica back from a restart calls every offset
          // "beyond the commit end" until a leader has committed in its term. Only the
          // leader's word ends a follow there; until it can be asked, wait as for an outage.
          const lagging = await this.beforeCommitEnd(offset, signal);
          if (lagging === false) throw e;
          if (lagging === true) {
            server = this.leaderKnown ? this.leaderUrl : this.rotate(server);
            await this.sleep(1, signal);
            continue;
          }
        } else if (!e.retriable) throw e;
        outage.begin(e);
        await this.sleep(this.retries + 1, signal);
        continue;
      }
      outage.end();
      contacted = true;
      server = chunk.server;
      if (first && !opts.follow) {
        // A plain read ends at the commit end as of now. A follower that is catching up, or
        // cut off from the leader, knows a shorter log: ended at its commit end, the read came
        // back short with no error. The leader says where the log ends; the rest of the read
        // waits for that (minCommit), or moves to a replica that has it.
        let until = chunk.commit;
        if (!pinned && this.leaderKnown && chunk.server !== this.leaderUrl && (stopAt === undefined || until < stopAt)) {
          const leaderEnd = await this.leaderCommitEnd(signal);
          if (leaderEnd > until) {
            until = leaderEnd;
            mustSee = Math.max(mustSee, Math.min(leaderEnd, stopAt ?? Infinity));
          }
        }
        stopAt = Math.min(stopAt ?? Infinity, until);
      }
      first = false;
      for (const e of chunk.entries) {
        if (stopAt !== undefined && e.offset >= stopAt) return;
        if (isVisible(e.kind, opts.all)) yield e;
      }
      if (chunk.entries.length === 0 && !opts.follow) return;
      offset = chunk.next;
    }
  }

  private async readChunk(
    offset: number,
    q: { limit: number; wait?: number; mustSee: number; signal?: AbortSignal; pinned?: string; start: string },
  ): Promise<Chunk> {
    try {
      return await this.withRetry('read', q.signal, q.pinned, async (server) => {
        // Any replica may lag, the leader too (followers holding the client's copies can
        // commit an entry before the leader has written its own frame): have it answer only
        // once it serves our acknowledged writes.
        const minCommit = q.mustSee > 0 ? q.mustSee : undefined;
        let wait = q.wait;
        if (wait === undefined && minCommit !== undefined && minCommit > offset) wait = MIN_COMMIT_WAIT_MS;
        const req = { limit: q.limit, wait, minCommit, signal: q.signal };
        try {
          return await this.fetchChunk(server, offset, req);
        } catch (e) {
          // "Beyond the commit end" from a follower may only mean it lags: the leader decides.
          if (!q.pinned && e instanceof LogError && e.code === 'out_of_range' && this.leaderKnown && server !== this.leaderUrl) {
            return await this.fetchChunk(this.leaderUrl, offset, req);
          }
          throw e;
        }
      }, q.start);
    } catch (e) {
      if (!(e instanceof CorruptRead)) throw e;
      return this.recover(e.report, q);
    }
  }

  /** One read request, verified. Throws CorruptRead if its first frame is bad. */
  private async fetchChunk(
    server: string,
    offset: number,
    q: { limit: number; wait?: number; minCommit?: number; signal?: AbortSignal },
  ): Promise<Chunk> {
    let res: Awaited<ReturnType<Transport['request']>>;
    try {
      res = await this.transport.request(server, {
        method: 'GET',
        path: '/v1/read',
        query: { offset, limit: q.limit, wait: q.wait, minCommit: q.minCommit },
        signal: q.signal,
        longPollMs: q.wait,
      });
    } catch (e) {
      throw damagedRead(e, server, offset) ?? e;
    }
    const announced = headerNumber(res.headers['x-loglog-commit']);
    // Every loglogd read says its commit end; bytes without it are not frames of ours.
    if (announced === undefined) throw notLoglog(server, 'GET /v1/read', 'without an x-loglog-commit header');
    const { entries, next } = verifyFrames(res.body, offset, server);
    return { server, entries, next, commit: Math.max(announced, next) };
  }

  /** A replica served a bad frame: report it and read the same offset from the others. */
  private async recover(report: CorruptionReport, q: { limit: number; signal?: AbortSignal }): Promise<Chunk> {
    const bad = [report.replica];
    this.reportCorruption(report);
    for (const server of this.members) {
      if (bad.includes(server)) continue;
      let chunk: Chunk;
      try {
        chunk = await this.fetchChunk(server, report.offset, { limit: q.limit, wait: RECOVER_WAIT_MS, minCommit: report.offset + 1, signal: q.signal });
      } catch (e) {
        if (e instanceof CorruptRead) {
          bad.push(server);
          this.reportCorruption(e.report);
          continue;
        }
        const err = toLogError(e, server, q.signal);
        if (err.code === 'aborted') throw err;
        continue; // unreachable or behind: try the next one
      }
      if (chunk.entries.length === 0) continue;
      return chunk;
    }
    throw new LogError(
      'checksum_mismatch',
      `bad frame at offset ${report.offset} (${report.reason}) from ${bad.join(', ')}` +
        (this.members.length > 1 ? '; no other replica served it intact' : ''),
      { offset: report.offset, replica: report.replica, replicas: bad, reason: report.reason },
    );
  }

  private reportCorruption(r: CorruptionReport): void {
    try {
      this.onCorruption?.(r);
    } catch {
      // a throwing observer must not break the read
    }
  }

  /**
   * An offset to read from: as given (checked), or the log's start or commit end now, as
   * `server` sees it when given (a lagging replica's end may be below another's).
   */
  async offsetOf(from: number | FromPosition, opts: { signal?: AbortSignal; server?: string } = {}): Promise<number> {
    if (from === 'start' || from === 'end') return (await this.bounds(opts))[from];
    assertOffset('from', from, 'an entry offset (a non-negative safe integer), \'start\' or \'end\'');
    return from;
  }

  // ---------------------------------------------------------------- tail

  /**
   * Follows the log live over the WebSocket `/v1/tail?offset=from` (`from` as for
   * {@link read}: an offset, `'start'` or `'end'`), yielding entries as they
   * commit. Verifies and skips like {@link read}; reconnects (with backoff) when the socket
   * drops, for as long as the servers are down (`onOutage` hears of it). Ends only on a
   * non-retriable error or when `signal` aborts (the socket is closed cleanly and the
   * iteration throws `aborted`); breaking out of the loop also closes it.
   */
  async *tail(start: number | FromPosition, opts: TailOptions = {}): AsyncGenerator<Entry> {
    const from = await this.offsetOf(start, { signal: opts.signal, server: opts.server });
    const pinned = opts.server ? normalizeServer(opts.server) : undefined;
    if (!pinned) await this.ensureDiscovered(opts.signal);
    let server = pinned ?? this.nextReader();
    let offset = from;
    let attempt = 0;
    const outage = new Outage(opts.onOutage);
    // Until a loglogd has answered (discovery, the position, or this tail's socket), a failure
    // is more likely a wrong address than an outage.
    let contacted = this.discovered || start === 'start' || start === 'end';
    for (;;) {
      if (opts.signal?.aborted) throw abortedError(opts.signal);
      if (this.closed) throw new LogError('aborted', 'the client is closed');
      // An open ends an outage (an idle log may send nothing for long); the backoff only
      // starts over once entries flow, or a server that opens and then fails would be
      // hammered.
      const sock = new TailSocket(server, offset, opts.signal, () => {
        contacted = true;
        outage.end();
      }, this.transport.timeoutMs);
      this.tails.add(sock);
      try {
        for await (const msg of sock) {
          attempt = 0;
          let rest = msg;
          while (rest.length > 0) {
            const verified = verifyFrames(rest, offset, server);
            for (const en of verified.entries) if (isVisible(en.kind, opts.all)) yield en;
            rest = rest.subarray(verified.next - offset);
            offset = verified.next;
          }
        }
        throw new LogError('network', `${server}: tail ended`, { server });
      } catch (e) {
        const report = e instanceof CorruptRead ? e.report : damagedRead(e, server, offset)?.report;
        if (report) {
          // Bad bytes on the tail, or a replica whose copy of the range is damaged: read that
          // range from the other replicas, then tail from there.
          const chunk = await this.recover(report, { limit: DEFAULT_LIMIT, signal: opts.signal });
          for (const en of chunk.entries) if (isVisible(en.kind, opts.all)) yield en;
          offset = chunk.next;
          if (!pinned) server = chunk.server;
          continue;
        }
        const err = toLogError(e, server, opts.signal);
        // "Beyond the commit end" may only mean the replica lags behind the leader.
        const lagging = err.code === 'out_of_range' && !pinned ? await this.beforeCommitEnd(offset, opts.signal) : false;
        if (lagging === true) {
          server = this.leaderKnown ? this.leaderUrl : this.rotate(server);
          await this.sleep(1, opts.signal);
          continue;
        }
        // Unless the leader could not be asked (null): then wait, as for an outage.
        if (err.code === 'aborted' || (!err.retriable && lagging !== null)) throw err;
        // A tail waits for its servers however long they are down (as `tail -F` does).
        if (attempt >= this.retries) {
          if (!contacted) throw err;
          outage.begin(err);
        }
        attempt++;
        if (!pinned) server = this.rotate(server);
        await this.sleep(attempt, opts.signal);
      } finally {
        sock.close();
        this.tails.delete(sock);
      }
    }
  }

  /**
   * Whether `offset` is within the log the leader has committed (a replica that called it
   * "beyond the commit end" only lags); null if the leader cannot be asked now.
   */
  /** The known leader's commit end (one request, no retries); 0 when it does not answer. */
  private async leaderCommitEnd(signal?: AbortSignal): Promise<number> {
    try {
      return (await this.fetchBounds(this.leaderUrl, false, signal)).end;
    } catch (e) {
      if (signal?.aborted) throw abortedError(signal);
      return 0;
    }
  }

  private async beforeCommitEnd(offset: number, signal?: AbortSignal): Promise<boolean | null> {
    try {
      return offset <= (await this.end({ linearizable: true, signal }));
    } catch (e) {
      if (signal?.aborted) throw abortedError(signal);
      if (e instanceof LogError && e.retriable) return null;
      throw e;
    }
  }

  // ---------------------------------------------------------------- metadata

  /**
   * The log's `{start, end}` (end = commit end) from one replica (round robin), never below
   * this client's own acknowledged appends (read your writes); asked of one `server`, that
   * server's own. `linearizable` asks the leader, which confirms its leadership with a
   * heartbeat round first.
   */
  async bounds(opts: { linearizable?: boolean; signal?: AbortSignal; server?: string } = {}): Promise<Bounds> {
    const pinned = opts.server ? normalizeServer(opts.server) : undefined;
    const r = await this.withRetry(opts.linearizable ? 'leader' : 'read', opts.signal, pinned, (server) =>
      this.fetchBounds(server, opts.linearizable === true, opts.signal));
    // The cluster has committed what it acknowledged, though a follower a heartbeat behind
    // may not know it yet: `end()` came back below the client's own appends, and a read or
    // tail from 'end' yielded them.
    return { start: r.start, end: pinned ? r.end : Math.max(r.end, this.ackedEnd) };
  }

  /** One GET /v1/end to `server`. */
  private fetchBounds(server: string, linearizable: boolean, signal?: AbortSignal): Promise<Bounds> {
    return this.transport.json<Bounds>(server, {
      method: 'GET',
      path: '/v1/end',
      query: { linearizable: linearizable ? 1 : undefined },
      signal,
    }, { start: 'number', end: 'number' });
  }

  /** The commit end: the offset the next entry will get once everything in flight commits. */
  async end(opts: { linearizable?: boolean; signal?: AbortSignal; server?: string } = {}): Promise<number> {
    return (await this.bounds(opts)).end;
  }

  /** A replica's status (default: the next replica in round robin). */
  async status(opts: { server?: string; signal?: AbortSignal } = {}): Promise<ServerStatus> {
    const pinned = opts.server ? normalizeServer(opts.server) : undefined;
    return this.withRetry('read', opts.signal, pinned, (server) =>
      this.transport.json<ServerStatus>(server, { method: 'GET', path: '/v1/status', signal: opts.signal }, STATUS_SHAPE),
    );
  }

  /**
   * Deletes whole segments entirely below `before`; returns the new log start (which may be
   * lower than `before`: only whole segments go).
   */
  async trim(before: number, opts: { signal?: AbortSignal } = {}): Promise<number> {
    assertOffset('before', before);
    const r = await this.withRetry('leader', opts.signal, undefined, (server) =>
      this.transport.json<{ start: number }>(server, { method: 'POST', path: '/v1/trim', query: { before }, signal: opts.signal }, { start: 'number' }),
    );
    return r.start;
  }

  /**
   * What became of the append with this upload id. `after`: a commit end known before the
   * append's first attempt (every attempt landed past it; default 0). `unknown` means it was
   * never placed and will not be (safe to send again); `forgotten`, that the leader cannot
   * tell, because it no longer remembers every upload id placed since `after`.
   */
  async fate(uploadId: string, opts: { signal?: AbortSignal; after?: number } = {}): Promise<Fate> {
    if (opts.after !== undefined) assertOffset('after', opts.after);
    return this.withRetry('leader', opts.signal, undefined, (server) => this.fateAt(server, uploadId, opts.after ?? 0, opts.signal));
  }

  private fateAt(server: string, uploadId: string, after: number, signal?: AbortSignal): Promise<Fate> {
    return this.transport.json<Fate>(server, { method: 'GET', path: `/v1/fate/${encodeURIComponent(uploadId)}`, query: { after }, signal }, { state: 'string' });
  }

  /**
   * Closes connection pools, tails and follows (they end with `aborted`). Other requests
   * in flight finish first; upload copies still out get UPLOAD_GRACE_MS (1 s), then stop
   * (the followers fetch those payloads from a peer).
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.tails) t.close();
    this.tails.clear();
    this.closing.abort(new LogError('aborted', 'the client is closed'));
    // Copies still out get a moment (each one a follower then need not fetch), not a
    // request timeout: a frozen member would hold every close for 30 s.
    const uploads = Promise.all([...this.uploads]);
    await Promise.race([uploads, sleepTimer(UPLOAD_GRACE_MS, undefined, { ref: false })]);
    this.uploadsStop.abort();
    await uploads;
    await this.discovery?.catch(() => undefined);
    await this.transport.close();
  }

  // ---------------------------------------------------------------- retry machinery

  /**
   * Turns the leader hint of a 421 answer into a server URL. The hint is `details.leaderUrl`
   * if present, else `details.leader`, which may be a base URL (`http://host:port`), a
   * `host:port`, or a node id. Ids are resolved through what discovery learned, else the
   * known servers' `/v1/status`: a server's own `id`, its `leaderUrl` when its `leader` is
   * that id, and its `peers` (`[{id, url}]` or `{id: url}`) if it lists them. Unresolvable
   * hints give null.
   */
  private async resolveLeader(details: ErrorDetails, signal?: AbortSignal): Promise<string | null> {
    const hint = details.leader;
    let url = asUrl(details.leaderUrl) ?? asUrl(hint);
    if (url === null && typeof hint === 'string' && hint !== '') {
      if (!this.idToUrl.has(hint)) {
        await Promise.all(this.members.map(async (s) => {
          try {
            const st = await this.transport.json<ServerStatus>(s, { method: 'GET', path: '/v1/status', signal }, STATUS_SHAPE);
            if (typeof st.id === 'string') this.idToUrl.set(st.id, s);
            const lu = asUrl(st.leaderUrl);
            if (typeof st.leader === 'string' && lu) this.idToUrl.set(st.leader, lu);
            for (const p of peersOf(st) ?? []) if (!this.idToUrl.has(p.id)) this.idToUrl.set(p.id, p.url);
          } catch {
            // unreachable: it cannot tell us anything
          }
        }));
      }
      url = this.idToUrl.get(hint) ?? null;
    }
    if (url === null) return null;
    if (!this.members.includes(url)) this.members.push(url);
    return url;
  }

  /** The member after `server` (skipping ones that just refused connections, unless all did). */
  private rotate(server: string): string {
    const n = this.members.length;
    const i = this.members.indexOf(server);
    for (let k = 1; k <= n; k++) {
      const s = this.members[(i + k) % n];
      if (!this.isDown(s)) return s;
    }
    return this.members[(i + 1) % n];
  }

  private backoff(attempt: number): number {
    const cap = Math.min(this.maxDelayMs, this.minDelayMs * 2 ** Math.min(attempt - 1, 30));
    return cap / 2 + Math.random() * (cap / 2);
  }

  private async sleep(attempt: number, signal?: AbortSignal): Promise<void> {
    const own = childSignal(signal);
    try {
      await sleepTimer(this.backoff(attempt), undefined, { signal: own.signal });
    } catch {
      throw abortedError(signal);
    } finally {
      own.release();
    }
  }

  /**
   * Runs `fn` against a server, retrying retriable failures with backoff. `target` picks the
   * starting server: the cached leader, or `start` / the next replica in round robin for
   * reads (unless `pinned`). 421 with a leader hint moves to the hinted server at once
   * (without sleeping, bounded); network errors, 421 without a usable hint, 503, and (reads)
   * 504 move to the next server.
   */
  private async withRetry<T>(
    target: 'leader' | 'read',
    signal: AbortSignal | undefined,
    pinned: string | undefined,
    fn: (server: string) => Promise<T>,
    start?: string,
  ): Promise<T> {
    if (!pinned) await this.ensureDiscovered(signal);
    let server = pinned ?? (target === 'leader' ? this.leaderUrl : (start ?? this.nextReader()));
    let attempt = 0;
    let redirects = 0;
    const began = Date.now();
    // The last "no leader here" from a server that did answer: when the attempts end on an
    // unreachable server, that is the better account (a lost quorum, not servers down).
    let noLeader: LogError | null = null;
    for (;;) {
      if (this.closed) throw new LogError('aborted', 'the client is closed');
      if (signal?.aborted) throw abortedError(signal);
      try {
        const r = await fn(server);
        if (!pinned && target === 'leader') {
          this.leaderUrl = server;
          this.leaderKnown = true;
        }
        return r;
      } catch (e) {
        if (e instanceof CorruptRead) throw e;
        const err = toLogError(e, server, signal);
        if (err.code === 'aborted') throw err;
        if (err.code === 'network') this.markDown(server, err);
        if (!err.retriable) throw err;
        if (err.code === 'unavailable' || err.code === 'not_leader') noLeader = err;
        let unknownLeader: string | null = null;
        if (err.code === 'not_leader' && !pinned) {
          const hint = await this.resolveLeader(err.details, signal);
          if (hint !== null && hint !== server && !this.isDown(hint) && redirects < 2 * this.members.length) {
            redirects++;
            server = hint;
            this.leaderUrl = hint;
            continue;
          }
          if (hint === null && typeof err.details.leader === 'string' && err.details.leader !== '') unknownLeader = err.details.leader;
        }
        // The budget never denies the first retry: after an attempt that timed out (a frozen
        // leader), the next one goes elsewhere.
        if (attempt >= this.retries || (attempt >= 1 && Date.now() - began >= this.maxElapsedMs)) {
          if (unknownLeader !== null) {
            throw new LogError(
              'not_leader',
              `${err.message}; the leader is "${unknownLeader}", which is none of the known servers (${this.members.join(', ')}): add its URL to the server list`,
              err.details,
              { cause: err },
            );
          }
          if (err.code === 'network' && noLeader !== null) {
            throw new LogError(noLeader.code, `${noLeader.message}; then no server answered (${err.message})`, noLeader.details, { cause: err });
          }
          throw err;
        }
        attempt++;
        // Another server may do better: it is reachable, knows a leader, or (reads) has
        // committed far enough for `minCommit`.
        if (!pinned && (err.code === 'network' || err.code === 'not_leader' || err.code === 'unavailable' || (target === 'read' && err.code === 'timeout'))) {
          server = this.rotate(server);
          if (target === 'leader') this.leaderUrl = server;
        }
        await this.sleep(attempt, signal);
      }
    }
  }
}
