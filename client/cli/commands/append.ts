/**
 * `loglog append`: records from stdin (or --file), one per line, batched into envelope
 * entries by the Producer; prints one JSON summary line.
 */
import { open } from 'node:fs/promises';
import { Readable, addAbortSignal } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CAC } from 'cac';
import { LogError } from '../../../spec/errors.ts';
import { ACK_LEVELS } from '../../../spec/messages.ts';
import { Producer } from '../../producer.ts';
import { mayBeInLog } from '../../log-client.ts';
import type { Acks } from '../../types.ts';
import { UsageError, parseChoice, parseInteger, parseSize } from '../args.ts';
import { type CliContext, SERVER_OPTION } from '../context.ts';
import { AfterProgress } from '../errors.ts';
import { Progress } from '../output.ts';

/** Splits a byte stream on `\n` (the newline is not part of the record). Binary-safe. */
export async function* splitLines(input: AsyncIterable<Buffer | string>): AsyncGenerator<Buffer> {
  let carry: Buffer[] = [];
  for await (const c of input) {
    const chunk = typeof c === 'string' ? Buffer.from(c) : c;
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl < 0) break;
      const piece = chunk.subarray(start, nl);
      if (carry.length > 0) {
        carry.push(piece);
        yield Buffer.concat(carry);
        carry = [];
      } else {
        yield piece;
      }
      start = nl + 1;
    }
    if (start < chunk.length) carry.push(chunk.subarray(start));
  }
  if (carry.length > 0) yield Buffer.concat(carry);
}

async function readAll(input: AsyncIterable<Buffer | string>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of input) parts.push(typeof c === 'string' ? Buffer.from(c) : c);
  return Buffer.concat(parts);
}

/** Opens --file up front: a wrong path is the user's mistake, said before anything is sent. */
async function openInput(file: string): Promise<AsyncIterable<Buffer>> {
  let why: string;
  try {
    const fh = await open(file, 'r');
    if (!(await fh.stat()).isDirectory()) return fh.createReadStream();
    await fh.close();
    why = 'it is a directory';
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    why = err.code === 'ENOENT' ? 'no such file' : err.code === 'EACCES' ? 'permission denied' : err.message;
  }
  throw new UsageError(`cannot read --file ${file}: ${why}`);
}

/** The summary `loglog append` prints, also when it stops early (a failure, or Ctrl-C). */
export interface AppendSummary {
  /** Entries, records and bytes (of the records) acknowledged. */
  entries: number;
  records: number;
  bytes: number;
  /** Offset of the first entry written (lowest), null if nothing was written. */
  first: number | null;
  /** Offset of the last entry written (highest). */
  last: number | null;
  /** Stopped early: records read from the input and not acknowledged (the input after them is not read). */
  failed?: number;
  /** Of the failed records, those that may be in the log all the same (an answer lost, or still under way). */
  uncertain?: number;
  /**
   * With `--acks all`: of the records counted as appended, those committed (by a majority)
   * but not confirmed by every replica. They are in the log; the command still fails.
   */
  unconfirmed?: number;
  /** Stopped early by Ctrl-C (SIGINT) or SIGTERM. */
  interrupted?: boolean;
  /** Stopped early: why. */
  error?: { code?: string; message: string };
}

/** Flags that shape batches of records: with --raw there are none, and they would be ignored. */
const BATCH_FLAGS = ['linger', 'batch-bytes', 'max-in-flight', 'digest'] as const;

/** The offset of the entry that failed with `e` but is known to be committed (acks=all, not every replica confirmed), or null. */
function committedAt(e: unknown): number | null {
  return e instanceof LogError && e.code === 'unconfirmed' && typeof e.details.offset === 'number' ? e.details.offset : null;
}

async function run(ctx: CliContext, o: Record<string, unknown>): Promise<void> {
  if (o.raw) {
    const given = BATCH_FLAGS.filter((f) => ctx.raw(f) !== undefined).map((f) => `--${f}`);
    if (given.length > 0) {
      throw new UsageError(`--raw appends the input as one entry, as is, so ${given.join(' and ')} (for batches of records) cannot apply; leave ${given.length === 1 ? 'it' : 'them'} out, or append lines without --raw`);
    }
  }
  const acksRaw = ctx.raw('acks');
  const acks = acksRaw === undefined ? undefined : parseChoice<Acks>(acksRaw, 'acks', ACK_LEVELS);
  const lingerRaw = ctx.raw('linger');
  const batchRaw = ctx.raw('batch-bytes');
  const inFlightRaw = ctx.raw('max-in-flight');
  const digestRaw = ctx.raw('digest');
  const lingerMs = lingerRaw === undefined ? undefined : parseInteger(lingerRaw, 'linger', 0, 60_000);
  const maxBatchBytes = batchRaw === undefined ? undefined : parseSize(batchRaw, 'batch-bytes');
  if (maxBatchBytes !== undefined && maxBatchBytes < 64) throw new UsageError('--batch-bytes must be at least 64 bytes');
  // One append at a time by default: lines land in the log in input order, as a pipe implies.
  const maxInFlight = inFlightRaw === undefined ? 1 : parseInteger(inFlightRaw, 'max-in-flight', 1, 1024);
  const digest = digestRaw === undefined ? undefined : parseChoice(digestRaw, 'digest', ['sha256'] as const);
  const file = ctx.raw('file');
  const opened: AsyncIterable<Buffer | string> = file !== undefined && file !== '-' ? await openInput(file) : ctx.io.stdin;
  // Ctrl-C also ends a wait for input that may never come (a quiet pipe, a terminal).
  const input = opened instanceof Readable ? addAbortSignal(ctx.signal, opened) : opened;

  const client = ctx.getClient(o.offload === false ? { offload: false } : {});
  const summary: AppendSummary = { entries: 0, records: 0, bytes: 0, first: null, last: null };
  const noteOffset = (offset: number) => {
    if (summary.first === null || offset < summary.first) summary.first = offset;
    if (summary.last === null || offset > summary.last) summary.last = offset;
  };
  // Why the command stops early (the first failure), and what became of the records read.
  let failure: unknown = null;
  const interrupted = () => new LogError('aborted', 'interrupted');
  const inputFailure = (e: unknown) => (ctx.signal.aborted ? interrupted() : e);
  let read = 0;
  let refused = 0;
  let maybeIn = 0;
  const noteFailed = (e: unknown) => {
    refused++;
    if (mayBeInLog(e)) maybeIn++;
  };
  // A committed entry that not every replica confirmed is still in the log: counted as
  // appended (appending it again would duplicate it), and the command fails all the same.
  // Returns its offset, or null for any other failure.
  const noteUnconfirmed = (e: unknown): number | null => {
    const at = committedAt(e);
    if (at === null) return null;
    summary.unconfirmed = (summary.unconfirmed ?? 0) + 1;
    failure ??= e;
    return at;
  };
  if (o.raw) {
    try {
      const payload = await readAll(input);
      // No input, nothing to append (as without --raw): an empty entry is nobody's record.
      if (payload.length > 0) {
        read = 1;
        const r = await client.append(payload, { acks, signal: ctx.signal }).catch((e: unknown) => {
          const offset = noteUnconfirmed(e);
          if (offset === null) throw e;
          return { offset };
        });
        summary.entries = 1;
        summary.records = 1;
        summary.bytes = payload.length;
        noteOffset(r.offset);
      }
    } catch (e) {
      if (read === 0) {
        failure = inputFailure(e);
      } else {
        noteFailed(e);
        failure = e;
      }
    }
  } else {
    // Stops at the first failed batch: no line after it is appended (the summary says where
    // the log stops holding the input).
    const producer = new Producer({ client, acks, lingerMs, maxBatchBytes, maxInFlight, digest, stopOnError: true });
    // Someone typing records: a progress line redrawn over their typing helps nobody.
    const typing = opened === ctx.io.stdin && (ctx.io.stdin as { isTTY?: boolean }).isTTY === true;
    if (typing) ctx.note('loglog: reading records from the terminal, one per line; Ctrl-D ends the input (or pipe them in, or use --file)');
    const progress = new Progress(ctx.io.stderr, 'appended', !typing && ctx.io.stderr.isTTY === true);
    const offsets = new Set<number>();
    // The servers' entry limit, so that a record too large for it is refused alone, by line.
    await client.discover({ signal: ctx.signal });
    try {
      for await (const line of splitLines(input)) {
        if (failure !== null) break;
        // Ctrl-C (also while waiting for buffer space): stop reading, let what was sent
        // finish (within the CLI's grace time), and say how much got in.
        const stop = ctx.signal.aborted || (!producer.writable && !(await producer.whenWritable({ signal: ctx.signal }).then(() => true, () => false)));
        if (stop) { failure = interrupted(); break; }
        const n = line.length;
        const at = ++read;
        const appended = (offset: number) => {
          summary.records++;
          summary.bytes += n;
          progress.add(1, n);
          if (!offsets.has(offset)) {
            offsets.add(offset);
            summary.entries++;
            noteOffset(offset);
          }
        };
        producer.send(line).then(
          (pos) => appended(pos.offset),
          (e) => {
            const committed = noteUnconfirmed(e);
            if (committed !== null) return appended(committed);
            noteFailed(e);
            failure ??= recordFailure(e, at, ctx.signal.aborted);
          },
        );
      }
    } catch (e) {
      failure ??= inputFailure(e);
    }
    try {
      await producer.close({ signal: ctx.signal });
    } catch {
      // Ctrl-C. The CLI exits soon after it (its grace time): wait a little for appends under
      // way, then say what is known, not nothing.
      failure ??= interrupted();
      await Promise.race([producer.close().catch(() => {}), sleep(INTERRUPT_WAIT_MS, undefined, { ref: false })]);
    } finally {
      progress.done();
    }
  }
  if (failure === null) {
    await ctx.out.write(`${JSON.stringify(summary)}\n`);
    await ctx.out.flush();
    return;
  }
  // Stopped early: the summary still says what got in (a script's only account of it), and
  // the error goes to stderr as always. A snapshot: acknowledgements may still arrive while
  // it is written, and stderr must say the same.
  const { entries, records: acked, first, last } = summary;
  const underWay = read - acked - refused;
  const error = failure instanceof Error ? { code: failure instanceof LogError ? failure.code : undefined, message: failure.message } : { message: String(failure) };
  const stopped: AppendSummary = { ...summary, failed: read - acked, uncertain: underWay + maybeIn, interrupted: ctx.signal.aborted, error };
  await ctx.out.write(`${JSON.stringify(stopped)}\n`);
  await ctx.out.flush();
  if (acked === 0 && !ctx.signal.aborted) throw failure;
  const { unconfirmed } = summary;
  const done = acked === 0
    ? 'no records were appended'
    : unconfirmed !== undefined
      ? `${acked} records are in the log (${entries} entries, offsets ${first}..${last}), ${unconfirmed} of them committed but not confirmed by every replica: do not append them again`
      : `${maxInFlight === 1 ? `the first ${acked} records` : `${acked} records`} were appended before it (${entries} entries, offsets ${first}..${last})`;
  const pending = underWay > 0 ? '; appends still under way may land too' : '';
  throw new AfterProgress(failure, `${done}${pending}`);
}

/** After Ctrl-C, how long appends under way get before the summary (below the CLI's 2 s grace). */
const INTERRUPT_WAIT_MS = 1000;

/**
 * What to report for a record of line `line` that failed with `e`. Under stopOnError the
 * records after a failed batch fail `aborted` with the batch's error as the cause, and one
 * of them may settle first: the cause is reported (unless the user interrupted). A record
 * refused for its size is named by its line.
 */
export function recordFailure(e: unknown, line: number, interrupted: boolean): unknown {
  const real = e instanceof LogError && e.code === 'aborted' && e.cause instanceof LogError && !interrupted ? e.cause : e;
  return real instanceof LogError && real.details.recordBytes !== undefined ? new LogError(real.code, `line ${line}: ${real.message}`, real.details, { cause: real }) : real;
}

export function register(cli: CAC, ctx: CliContext): void {
  const cmd = cli
    .command('append', 'Append records from stdin (one per line) or a file, batched into entries')
    .option(...SERVER_OPTION)
    .option('--file <path>', 'Read records from this file instead of stdin (--file - is stdin)')
    .option('--raw', 'Append the whole input as one entry, as is (no envelope, no line splitting; empty input appends nothing; not with --linger, --batch-bytes, --max-in-flight or --digest)')
    .option('--acks <level>', 'Durability before an entry is acknowledged: leader, quorum (default), all')
    .option('--linger <ms>', 'How long a batch waits for more records (default 5)')
    .option('--batch-bytes <size>', 'Largest batch (entry) size, e.g. 256KiB (default 1MiB)')
    .option('--max-in-flight <n>', 'Appends outstanding at once (default 1: input order is kept; more is faster but batches may land out of order)')
    .option('--digest <algo>', 'Add a SHA-256 digest to each batch (sha256)')
    .option('--no-offload', 'Do not upload copies of the entries to the followers (they fetch each one from the leader)')
    .example('printf "a\\nb\\nc\\n" | loglog append')
    .example('loglog append --file events.ndjson --acks all --batch-bytes 256KiB')
    .example('loglog append --raw < image.png')
    .action((o: Record<string, unknown>) => run(ctx, o));
  // cac gives negated flags a default of true and prints it; "offload" means "the client's default".
  for (const opt of cmd.options) if (opt.name === 'offload') delete opt.config.default;
}
