/**
 * `loglog read` and `loglog tail`: print entries as records (lines or JSON) or raw payloads.
 */
import type { CAC } from 'cac';
import { entryRecords } from '../../consumer.ts';
import type { EnvelopeMode } from '../../consumer.ts';
import type { LogClient } from '../../log-client.ts';
import type { CorruptionReport, Entry } from '../../types.ts';
import type { LogError } from '../../../spec/errors.ts';
import { UsageError, parseChoice, parseSize } from '../args.ts';
import { type CliContext, SERVER_OPTION } from '../context.ts';
import { FORMATS, Progress, formatRecord } from '../output.ts';
import type { Format } from '../output.ts';

interface PrintOptions {
  format: Format;
  envelope: EnvelopeMode;
  /** Flush after every entry (live output) instead of every 64 KiB. */
  live: boolean;
}

function printOptions(ctx: CliContext, live: boolean): PrintOptions {
  const f = ctx.raw('format');
  const e = ctx.raw('envelope');
  return {
    format: f === undefined ? 'lines' : parseChoice(f, 'format', FORMATS),
    envelope: e === undefined ? 'auto' : parseChoice<EnvelopeMode>(e, 'envelope', ['auto', 'none']),
    live,
  };
}

/** Writes entries to stdout in the chosen format. */
async function print(ctx: CliContext, entries: AsyncIterable<Entry>, p: PrintOptions, progress?: Progress): Promise<void> {
  try {
    for await (const entry of entries) {
      if (p.format === 'raw') {
        await ctx.out.write(entry.payload);
        progress?.add(1, entry.payload.length);
      } else {
        const recs = entryRecords(entry, p.envelope);
        for (const r of recs) await ctx.out.write(formatRecord(r, p.format));
        progress?.add(recs.length, entry.payload.length);
      }
      if (p.live) await ctx.out.flush();
    }
  } catch (e) {
    // What was read before the failure is printed before the error.
    await ctx.out.flush().catch(() => {});
    throw e;
  }
  await ctx.out.flush();
}

/** What a follow or a tail says when its servers stop answering (it then waits for them). */
function outageNote(ctx: CliContext): (e: LogError) => void {
  return (e) => ctx.note(`loglog: ${e.message}; waiting for the servers to come back (Ctrl-C stops)`);
}

/** A CorruptionReport's reason in words. */
const CORRUPTION_REASONS: Record<string, string> = {
  checksum: 'checksum mismatch',
  'header-crc': 'header checksum mismatch',
  magic: 'no frame header there',
  kind: 'unknown frame kind',
  trailer: 'bad trailer',
  short: 'frame cut short',
  zero: 'zeroed header',
  damaged: 'the replica reports that range damaged on its disk',
};

/**
 * The client of `read` and `tail`. A replica that serves a bad frame is skipped over (the
 * SDK reads the frame from another one), so its bit rot would go unnoticed: each report is
 * a warning line on stderr.
 */
function readerClient(ctx: CliContext): LogClient {
  return ctx.getClient({
    onCorruption: (r: CorruptionReport) => ctx.note(
      `loglog: warning: ${r.replica} served a corrupt frame at offset ${r.offset} (${CORRUPTION_REASONS[r.reason] ?? r.reason}); ` +
        'reading it from another replica (check that replica\'s disk)',
    ),
  });
}

/** `--from`: an offset, or `start` / `end` (the log's start or commit end now); `fallback` when absent. */
async function fromOption(ctx: CliContext, client: LogClient, fallback: 'start' | 'end'): Promise<number> {
  const raw = ctx.raw('from');
  const where = raw === 'start' || raw === 'end' ? raw : raw === undefined ? fallback : null;
  if (where === null) return ctx.offset('from')!;
  return client.offsetOf(where, { signal: ctx.signal });
}

async function runRead(ctx: CliContext, o: Record<string, unknown>): Promise<void> {
  const follow = o.follow === true;
  const p = printOptions(ctx, follow);
  const to = ctx.offset('to');
  const limitRaw = ctx.raw('limit');
  const limit = limitRaw === undefined ? undefined : parseSize(limitRaw, 'limit');
  if (limit === 0) throw new UsageError('--limit must be at least 1 byte');
  const client = readerClient(ctx);
  const from = await fromOption(ctx, client, 'start');
  if (to !== undefined && to < from) throw new UsageError(`--to ${to} is below --from ${from}`);
  const progress = ctx.interactive ? new Progress(ctx.io.stderr, 'read') : undefined;
  try {
    await print(ctx, client.read(from, { to, follow, limit, signal: ctx.signal, onOutage: outageNote(ctx) }), p, progress);
  } finally {
    progress?.done();
  }
}

async function runTail(ctx: CliContext): Promise<void> {
  const p = printOptions(ctx, true);
  const client = readerClient(ctx);
  const from = await fromOption(ctx, client, 'end');
  await print(ctx, client.tail(from, { signal: ctx.signal, onOutage: outageNote(ctx) }), p);
}

const FORMAT_HELP = 'Output: lines (each record + newline), json (one {offset,index,value} per line; ' +
  'value is UTF-8 text, or base64 with "encoding":"base64"), raw (entry payloads as stored)';
const ENVELOPE_HELP = 'auto: unpack record batches, other entries are one record (default); none: never unpack';

export function register(cli: CAC, ctx: CliContext): void {
  cli
    .command('read', 'Print committed records from an offset')
    .option(...SERVER_OPTION)
    .option('--from <offset>', 'Offset of an entry (as append and --format json print them) to start at, or start / end (default: the log start)')
    .option('--to <offset>', 'Stop before the first entry at or past this offset')
    .option('--follow', 'Keep waiting for new entries after the commit end (Ctrl-C to stop)')
    .option('--format <format>', FORMAT_HELP)
    .option('--envelope <mode>', ENVELOPE_HELP)
    .option('--limit <size>', 'Bytes per read request, e.g. 4MiB (default 1MiB)')
    .example('loglog read --from 0')
    .example('loglog read --from 0 --to 4096 --format json')
    .example('loglog read --from end --follow | grep error')
    .action((o: Record<string, unknown>) => runRead(ctx, o));

  cli
    .command('tail', 'Follow the log live over a WebSocket (default: from the current end)')
    .option(...SERVER_OPTION)
    .option('--from <offset>', 'Entry offset to start at, or start / end (default: the current commit end)')
    .option('--format <format>', FORMAT_HELP)
    .option('--envelope <mode>', ENVELOPE_HELP)
    .example('loglog tail')
    .example('loglog tail --from 0 --format json')
    .action(() => runTail(ctx));
}
