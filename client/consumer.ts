/**
 * The consumer helper: reads entries and unpacks record batch envelopes into records.
 *
 * An entry that is not an envelope (e.g. one appended with `LogClient.append` directly) is
 * yielded as a single opaque record with index 0 (mode `auto`, the default): one whose
 * payload does not start with the `LLB1` magic, or does but whose record lengths do not add
 * up to its size (the log is content-oblivious: raw bytes may begin with anything). An
 * envelope of an unknown version or flags, or whose checksum fails, is an error. Mode
 * `require` rejects every entry that is not an envelope; mode `none` never unpacks and
 * yields every payload as one record.
 */
import { LogError } from '../spec/errors.ts';
import { decodeBatch, decodeIfBatch } from './envelope.ts';
import type { Entry, FromPosition, ReadOptions, RecordEntry } from './types.ts';

/** How entries map to records. */
export type EnvelopeMode = 'auto' | 'require' | 'none';

/** Options of {@link records}: those of `LogClient.read`, plus the envelope mode. */
export interface RecordsOptions extends Omit<ReadOptions, 'all'> {
  envelope?: EnvelopeMode;
}

/** What {@link records} needs of a client. `LogClient` satisfies it. */
export interface EntryReader {
  read(from: number | FromPosition, opts?: ReadOptions): AsyncIterable<Entry>;
}

/**
 * The records of one entry (verifying the envelope's CRC32C and digest).
 * @throws LogError `checksum_mismatch` / `bad_request` with details.offset = the entry's offset.
 */
export function entryRecords(entry: Entry, mode: EnvelopeMode = 'auto'): RecordEntry[] {
  // Judged by layout, not checksum: every read has verified the entry's own checksum, so
  // these are the bytes the appender sent; a well-formed envelope is still checked against
  // its CRC32C.
  if (mode === 'none') return [{ offset: entry.offset, index: 0, value: entry.payload }];
  let values: Buffer[] | null;
  try {
    values = mode === 'auto' ? decodeIfBatch(entry.payload) : decodeBatch(entry.payload);
  } catch (e) {
    if (e instanceof LogError) {
      throw new LogError(e.code, `entry at offset ${entry.offset}: ${e.message}`, { ...e.details, offset: entry.offset }, { cause: e });
    }
    throw e;
  }
  if (values === null) return [{ offset: entry.offset, index: 0, value: entry.payload }];
  return values.map((value, index) => ({ offset: entry.offset, index, value }));
}

/** Unpacks a stream of entries (from `read` or `tail`) into records. */
export async function* decodeRecords(entries: AsyncIterable<Entry>, mode: EnvelopeMode = 'auto'): AsyncGenerator<RecordEntry> {
  for await (const entry of entries) {
    if (entry.kind !== 'data') continue;
    yield* entryRecords(entry, mode);
  }
}

/** Reads records from entry offset `from` (see {@link EnvelopeMode} for non-envelope entries). */
export function records(client: EntryReader, from: number | FromPosition, opts: RecordsOptions = {}): AsyncGenerator<RecordEntry> {
  const { envelope, ...readOpts } = opts;
  return decodeRecords(client.read(from, readOpts), envelope ?? 'auto');
}
