/**
 * `Producer`: batches small records into envelope entries (see `envelope.ts`).
 *
 * Records accumulate in an open batch. It is sealed when it reaches `maxBatchBytes`, or
 * once `lingerMs` have passed since its first record and an append slot is free: at most
 * `maxInFlight` appends are outstanding, and while all are busy a lingered batch stays open
 * and keeps taking records (as Kafka's accumulator does), instead of being sealed small and
 * then waiting for a slot anyway. Every record's promise settles with its entry:
 * it resolves to `{offset, index}` once the entry is acknowledged, or rejects with the
 * entry's error (the producer does not retry on its own; the client's retry policy applies).
 * Handle every promise `send` returns, as with any promise: a failed record's rejection left
 * unhandled ends a Node process. `flush()` and `close()` resolve once every record has
 * settled, failed or not; `stats().failed` counts the failed ones. An `unconfirmed` record
 * (acks=all) is in the log all the same: its error carries `offset` and `index`.
 *
 * Memory is bounded: `send` waits while the bytes of accepted but unacknowledged records
 * exceed `maxBufferedBytes` (a record larger than that is accepted when nothing is buffered).
 * Loops that do not await each send can wait on {@link Producer.whenWritable}.
 *
 * Ordering: records of one batch keep their send order. With `maxInFlight > 1`, batches may
 * land in the log in a different order than they were sealed (the appends race); use
 * `maxInFlight: 1` when records of one producer must appear in send order. A failed batch
 * leaves a gap that later batches land after, unless `stopOnError` is set.
 */
import { LogError } from '../spec/errors.ts';
import { onAbort } from './abort.ts';
import { abortedError } from './http.ts';
import { assertAcks } from './log-client.ts';
import { batchSize, encodeBatch, envelopeCrc } from './envelope.ts';
import type { Acks, AppendOptions, AppendResult, RecordPosition } from './types.ts';

const noop = () => {};

/** What the producer needs of a client: appending one entry. `LogClient` satisfies it. */
export interface EntryAppender {
  append(data: Uint8Array, opts?: AppendOptions): Promise<AppendResult>;
  /** The largest entry the servers accept, when known: batches stay within it. */
  readonly maxEntryBytes?: number;
  /** Learns the cluster (and its entry limit); the producer waits for it before its first append. */
  discover?(): Promise<unknown>;
}

/** Options of {@link Producer}. */
export interface ProducerOptions {
  client: EntryAppender;
  /** How long an open batch waits for more records, in ms (default 5); longer while every append slot is busy. */
  lingerMs?: number;
  /** Seal a batch once its envelope reaches this size (default 1 MiB; lower if the servers take smaller entries). */
  maxBatchBytes?: number;
  /** Appends outstanding at once (default 4). */
  maxInFlight?: number;
  /**
   * `send` waits while this many record bytes are unacknowledged (default: room for the
   * batches in flight plus two being filled, `(maxInFlight + 2) × maxBatchBytes`, 6 MiB).
   * More only queues sealed batches behind the ones in flight: latency without throughput,
   * and records that live long enough to be promoted by the garbage collector, which cost
   * the producer about a third of its CPU in measurements.
   */
  maxBufferedBytes?: number;
  /** Add a SHA-256 digest to each envelope (default none; CRC32C is always there). */
  digest?: 'sha256';
  /** Ack level of the appends (default: the client's). */
  acks?: Acks;
  /**
   * After a batch fails, fail every record not yet handed to an append and every later
   * `send` (code `aborted`, the batch's error as `cause`), so that nothing lands after the
   * gap. Appends already in flight (`maxInFlight > 1`) still complete. Default false: the
   * producer goes on with the next batch.
   */
  stopOnError?: boolean;
}

interface Pending {
  record: Uint8Array;
  resolve: (p: RecordPosition) => void;
  reject: (e: unknown) => void;
  /** Drops the abort listener of a send waiting for room. */
  unlisten?: () => void;
}

/** Waits to be called from `waiters`, or rejects `aborted` when `signal` aborts first. */
function waitFor(waiters: (() => void)[], signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(abortedError(signal));
  return new Promise<void>((resolve, reject) => {
    const unlisten = signal ? onAbort(signal, () => {
      const i = waiters.indexOf(wake);
      if (i >= 0) waiters.splice(i, 1);
      reject(abortedError(signal));
    }) : undefined;
    const wake = () => { unlisten?.(); resolve(); };
    waiters.push(wake);
  });
}

/** Parallel arrays rather than one object per record: the per-record path is the hot one. */
interface Batch {
  records: Uint8Array[];
  resolves: ((p: RecordPosition) => void)[];
  rejects: ((e: unknown) => void)[];
  /** Sum of record lengths. */
  bytes: number;
  /** Its linger time has passed: seal it as soon as an append slot is free. */
  ready: boolean;
}

/** What every record fails with once a producer under `stopOnError` has stopped. */
function notAppended(what: string, cause: unknown): LogError {
  return new LogError('aborted', `not appended: ${what} (${cause instanceof Error ? cause.message : String(cause)})`, {}, { cause });
}

/** Records `from` to `to` of `b`, as a batch of their own (sealed: not lingering). */
function sliceBatch(b: Batch, from: number, to: number): Batch {
  const records = b.records.slice(from, to);
  let bytes = 0;
  for (const r of records) bytes += r.byteLength;
  return { records, resolves: b.resolves.slice(from, to), rejects: b.rejects.slice(from, to), bytes, ready: true };
}

/** Counters of a producer's activity. */
export interface ProducerStats {
  /** Records accepted by `send` (excluding those still waiting for buffer space). */
  records: number;
  /** Entries appended (acknowledged). */
  entries: number;
  /** Payload bytes of the acknowledged entries (envelopes included). */
  bytes: number;
  /** Records acknowledged. */
  acked: number;
  /** Records whose entry failed. */
  failed: number;
  /** Bytes of accepted, unacknowledged records. */
  bufferedBytes: number;
  /** Appends outstanding. */
  inFlight: number;
}

/** Batches records into envelope entries and appends them with bounded concurrency and memory. */
export class Producer {
  readonly lingerMs: number;
  readonly maxBatchBytes: number;
  readonly maxInFlight: number;
  readonly maxBufferedBytes: number;
  private readonly client: EntryAppender;
  private readonly digest?: 'sha256';
  /** The ack level every append asks for (`{}`: the client's default). */
  private readonly acksOpt: AppendOptions;

  private open: Batch | null = null;
  private readonly sealed: Batch[] = [];
  private readonly blocked: Pending[] = [];
  private inFlight = 0;
  private buffered = 0;
  private timer: NodeJS.Timeout | null = null;
  private flushing = 0;
  private closed = false;
  private readonly stopOnError: boolean;
  /** Settles once the client has tried to discover the cluster. */
  private readonly discovered: Promise<void>;
  /** Set once a batch failed under `stopOnError`: what every later record fails with. */
  private stopped: LogError | null = null;
  /**
   * Batch buffers the client has let go of (`onReleased`), for the next batches, as Kafka's
   * producer keeps a BufferPool: a fresh megabyte per batch cost its page faults and zeroing
   * in the kernel (encoding took 0.38-0.55 ms per MiB into a fresh buffer, 0.23 into a
   * reused one, 0.18 of that the CRC). At most `maxInFlight` are kept.
   */
  private readonly spare: Buffer[] = [];
  private idleWaiters: (() => void)[] = [];
  private writableWaiters: (() => void)[] = [];
  private readonly counters = { records: 0, entries: 0, bytes: 0, acked: 0, failed: 0 };

  constructor(opts: ProducerOptions) {
    if (!opts || typeof opts.client?.append !== 'function') throw new LogError('bad_request', 'Producer needs a client with append()');
    this.client = opts.client;
    this.lingerMs = opts.lingerMs ?? 5;
    this.maxBatchBytes = opts.maxBatchBytes ?? 1 << 20;
    this.maxInFlight = opts.maxInFlight ?? 4;
    this.maxBufferedBytes = opts.maxBufferedBytes ?? (this.maxInFlight + 2) * this.maxBatchBytes;
    this.digest = opts.digest;
    assertAcks(opts.acks);
    this.acksOpt = opts.acks ? { acks: opts.acks } : {};
    this.stopOnError = opts.stopOnError === true;
    if (this.digest !== undefined && this.digest !== 'sha256') throw new LogError('bad_request', `unsupported digest: ${String(this.digest)} (sha256 or none)`);
    if (!Number.isFinite(this.lingerMs) || this.lingerMs < 0) throw new LogError('bad_request', `lingerMs must be a number of milliseconds, 0 or more, got ${this.lingerMs}`);
    // Counts and sizes are whole: maxInFlight 1.5 let two appends fly.
    for (const [k, v] of [['maxBatchBytes', this.maxBatchBytes], ['maxInFlight', this.maxInFlight], ['maxBufferedBytes', this.maxBufferedBytes]] as const) {
      if (!Number.isSafeInteger(v) || v < 1) throw new LogError('bad_request', `${k} must be a whole number, 1 or more, got ${v}`);
    }
    // Started now, so that the entry limit is most likely known by the first append.
    this.discovered = this.client.discover ? this.client.discover().then(noop, noop) : Promise.resolve();
  }

  /**
   * Queues one record. Resolves with the record's position once its entry is acknowledged;
   * waits first (backpressure) while too many bytes are buffered. `signal` stops that wait
   * (rejecting `aborted`, the record not sent); a record already accepted goes with its batch.
   * The record's bytes are copied when its batch is sent, not here (no copy per record):
   * do not change them before the promise settles, or send a copy. Kafka's producer
   * serializes at send; this one leaves that copy to callers who reuse their buffers.
   */
  send(record: Uint8Array, opts?: { signal?: AbortSignal }): Promise<RecordPosition> {
    if (this.stopped) return Promise.reject(this.stopped);
    if (this.closed) return Promise.reject(new LogError('aborted', 'the producer is closed'));
    if (!(record instanceof Uint8Array)) return Promise.reject(new LogError('bad_request', 'send takes a Uint8Array'));
    const max = this.client.maxEntryBytes;
    if (max !== undefined && batchSize(record.byteLength, 1, this.digest) > max) {
      // Refused on its own, as Kafka refuses a record over max.request.size: sent, it would
      // fail its whole batch. Under stopOnError nothing sent later goes either.
      const err = this.tooLarge(record.byteLength, max);
      if (this.stopOnError) this.stopped ??= notAppended('an earlier record was refused', err);
      return Promise.reject(err);
    }
    const signal = opts?.signal;
    if (signal?.aborted) return Promise.reject(abortedError(signal));
    return new Promise<RecordPosition>((resolve, reject) => {
      if (this.blocked.length === 0 && this.hasRoom(record.byteLength)) {
        this.admit(record, resolve, reject);
        return;
      }
      const p: Pending = { record, resolve, reject };
      if (signal) {
        // Only the wait for room is stopped: an accepted record goes with its batch.
        p.unlisten = onAbort(signal, () => {
          const i = this.blocked.indexOf(p);
          if (i < 0) return;
          this.blocked.splice(i, 1);
          reject(abortedError(signal));
          this.afterRoom();
        });
      }
      this.blocked.push(p);
    });
  }

  /** True when a `send` now would be accepted without waiting. */
  get writable(): boolean {
    return this.blocked.length === 0 && this.buffered < this.maxBufferedBytes;
  }

  /** Resolves when {@link writable} (at once if it already is); `signal` stops the wait. */
  whenWritable(opts?: { signal?: AbortSignal }): Promise<void> {
    if (this.writable) return Promise.resolve();
    return waitFor(this.writableWaiters, opts?.signal);
  }

  /**
   * Seals the open batch now and resolves when every record sent so far has settled.
   * `signal` stops the wait (rejecting `aborted`), not the appends under way.
   */
  async flush(opts?: { signal?: AbortSignal }): Promise<void> {
    this.flushing++;
    try {
      if (this.open) this.seal();
      this.pump();
      if (!this.idle()) await waitFor(this.idleWaiters, opts?.signal);
    } finally {
      this.flushing--;
    }
  }

  /** Flushes, then refuses further sends. Does not close the client. `signal` as for flush. */
  async close(opts?: { signal?: AbortSignal }): Promise<void> {
    this.closed = true;
    await this.flush(opts);
    this.spare.length = 0;
  }

  /** Activity counters (a snapshot). */
  stats(): ProducerStats {
    return { ...this.counters, bufferedBytes: this.buffered, inFlight: this.inFlight };
  }

  private hasRoom(n: number): boolean {
    return this.buffered === 0 || this.buffered + n <= this.maxBufferedBytes;
  }

  private idle(): boolean {
    return this.blocked.length === 0 && this.open === null && this.sealed.length === 0 && this.inFlight === 0;
  }

  private admit(record: Uint8Array, resolve: (p: RecordPosition) => void, reject: (e: unknown) => void): void {
    const n = record.byteLength;
    this.buffered += n;
    this.counters.records++;
    // The envelope with this record: seal the open batch first if it would not fit.
    let b = this.open;
    const limit = this.batchLimit();
    if (b && batchSize(b.bytes + n, b.records.length + 1, this.digest) > limit) {
      this.seal();
      this.pump();
      b = null;
    }
    if (!b) {
      b = this.open = { records: [], resolves: [], rejects: [], bytes: 0, ready: false };
      this.timer = setTimeout(() => {
        this.timer = null;
        if (this.open) {
          this.open.ready = true;
          this.pump();
        }
      }, this.flushing > 0 ? 0 : this.lingerMs);
    }
    b.records.push(record);
    b.resolves.push(resolve);
    b.rejects.push(reject);
    b.bytes += n;
    if (batchSize(b.bytes, b.records.length, this.digest) >= limit) {
      this.seal();
      this.pump();
    }
  }

  /** `maxBatchBytes`, or the servers' entry limit when that is lower. */
  private batchLimit(): number {
    return Math.min(this.maxBatchBytes, this.client.maxEntryBytes ?? Infinity);
  }

  private seal(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const b = this.open;
    this.open = null;
    if (b && b.records.length > 0) this.sealed.push(b);
  }

  private pump(): void {
    while (this.inFlight < this.maxInFlight) {
      if (this.sealed.length === 0 && this.open?.ready) this.seal();
      else if (this.sealed.length > 0) this.dispatch(this.sealed.shift()!);
      else break;
    }
  }

  /**
   * `b` cut to the servers' entry limit when that was learned after `b` was built (the first
   * batches may be built before discovery has heard it): the records past the cut go back to
   * the front of the queue. A first record too large for an entry of its own comes back
   * alone with `refused`, to fail as at `send`.
   */
  private fitted(b: Batch): { batch: Batch; refused?: LogError } {
    const limit = this.client.maxEntryBytes;
    if (limit === undefined || batchSize(b.bytes, b.records.length, this.digest) <= limit) return { batch: b };
    let n = 0;
    let bytes = 0;
    while (n < b.records.length && batchSize(bytes + b.records[n].byteLength, n + 1, this.digest) <= limit) bytes += b.records[n++].byteLength;
    const cut = Math.max(n, 1);
    if (cut < b.records.length) this.sealed.unshift(sliceBatch(b, cut, b.records.length));
    const batch = sliceBatch(b, 0, cut);
    return n > 0 ? { batch } : { batch, refused: this.tooLarge(b.records[0].byteLength, limit) };
  }

  private tooLarge(recordBytes: number, max: number): LogError {
    return new LogError('too_large', `a record of ${recordBytes} bytes cannot be appended: in its envelope it is ${batchSize(recordBytes, 1, this.digest)} bytes, and the servers take entries of at most ${max} bytes`, { max, recordBytes });
  }

  private dispatch(batch: Batch): void {
    this.inFlight++;
    let payload: Buffer | null = null;
    let b = batch;
    // Handed to the client (fitted() refusing a record is no answer from the servers).
    let sent = false;
    // Encoded inside the chain: a failure settles the batch later, never inside pump() or
    // admit(), which would then lose track of the open batch settle() may have started.
    this.discovered
      .then(() => {
        const fit = this.fitted(batch);
        b = fit.batch;
        if (fit.refused) throw fit.refused;
        const buf = this.batchBuffer(batchSize(b.bytes, b.records.length, this.digest));
        payload = encodeBatch(b.records, { digest: this.digest, into: buf });
        sent = true;
        return this.client.append(payload, { ...this.acksOpt, crc32c: envelopeCrc(payload), onReleased: () => this.recycle(buf) });
      })
      .then(
        (r) => this.settle(b, r, null, payload!.length),
        (e) => {
          if (!(sent && this.refit(b, e))) this.settle(b, null, e);
        },
      );
  }

  /**
   * A batch the servers refused as too large, built before their limit was known (discovery
   * had failed, so the refusal is how the client learned it): nothing was written (413 comes
   * before any byte), so it goes back to the front of the queue to be cut to the limit by
   * fitted(). A batch already within the limit it was refused by fails as before, so this
   * happens at most once per batch.
   */
  private refit(b: Batch, e: unknown): boolean {
    const limit = this.client.maxEntryBytes;
    if (!(e instanceof LogError && e.code === 'too_large') || limit === undefined) return false;
    if (batchSize(b.bytes, b.records.length, this.digest) <= limit || this.stopped) return false;
    this.sealed.unshift(b);
    this.afterSlot();
    return true;
  }

  /** A buffer of at least `size` bytes for a batch: a spare one, or a new one (a spare too small is dropped). */
  private batchBuffer(size: number): Buffer {
    const spare = this.spare.pop();
    return spare && spare.length >= size ? spare : Buffer.allocUnsafeSlow(size);
  }

  private recycle(buf: Buffer): void {
    if (!this.closed && this.spare.length < this.maxInFlight) this.spare.push(buf);
  }

  /** Fails every record that has not reached an append, and every later send. */
  private stop(cause: unknown): void {
    this.stopped ??= notAppended('an earlier batch failed', cause);
    const rest = this.sealed.splice(0);
    if (this.open) rest.push(this.open);
    this.open = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const b of rest) {
      this.buffered -= b.bytes;
      this.counters.failed += b.records.length;
      for (const reject of b.rejects) reject(this.stopped);
    }
    for (const p of this.blocked.splice(0)) {
      p.unlisten?.();
      p.reject(this.stopped);
    }
  }

  private settle(b: Batch, r: AppendResult | null, err: unknown, entryBytes = 0): void {
    this.buffered -= b.bytes;
    if (r) {
      this.counters.entries++;
      this.counters.bytes += entryBytes;
      this.counters.acked += b.records.length;
      const offset = r.offset;
      const rs = b.resolves;
      for (let index = 0; index < rs.length; index++) rs[index]({ offset, index });
    } else {
      this.counters.failed += b.records.length;
      if (err instanceof LogError && err.code === 'unconfirmed') {
        // Committed all the same: each record's error gives its whole position, offset and index.
        b.rejects.forEach((reject, index) => reject(new LogError(err.code, err.message, { ...err.details, index }, { cause: err })));
      } else {
        for (const reject of b.rejects) reject(err);
      }
      if (this.stopOnError) this.stop(err);
    }
    this.afterSlot();
  }

  /** An append slot is free again. */
  private afterSlot(): void {
    this.inFlight--;
    this.afterRoom();
  }

  /** Room or a slot was freed: admit waiting records, send what is due, wake waiters. */
  private afterRoom(): void {
    while (this.blocked.length > 0 && this.hasRoom(this.blocked[0].record.byteLength)) {
      const p = this.blocked.shift()!;
      p.unlisten?.();
      this.admit(p.record, p.resolve, p.reject);
    }
    if (this.flushing > 0 && this.open) this.seal();
    this.pump();
    if (this.writable && this.writableWaiters.length > 0) {
      const ws = this.writableWaiters;
      this.writableWaiters = [];
      for (const w of ws) w();
    }
    if (this.idle() && this.idleWaiters.length > 0) {
      const ws = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of ws) w();
    }
  }
}
