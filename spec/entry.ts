import { Kind, frameSize } from './frame.ts';

/**
 * What the replica knows of one entry: everything but the payload bytes. This is exactly
 * what the leader replicates to followers (metadata-only replication).
 */
export interface EntryMeta {
  offset: number;
  /** Payload length in bytes. */
  length: number;
  term: number;
  kind: Kind;
  /** CRC32C of the payload (0 for noop/aborted). */
  crc: number;
  /** The client's upload id, so a follower can match the uploaded copy; null for noop/aborted. */
  uploadId: string | null;
  /**
   * False when the client sends followers no copy of the payload (an SDK with offload off):
   * they fetch the bytes from a peer at once instead of waiting out the upload deadline.
   * Absent means copies are on their way (the field is left out to keep messages small).
   */
  copies?: false;
  /**
   * True when this data entry's upload id, if it had one, is not known: the entry was
   * recovered from disk without its fates record. Whoever holds it cannot say "never placed"
   * of an upload id (see Replica.fatesFrom). Absent otherwise.
   */
  idLost?: true;
}

export function entryEnd(e: { offset: number; length: number }): number {
  return e.offset + frameSize(e.length);
}

/** A term boundary: entries from `offset` on have term `term` (until the next epoch). */
export interface Epoch {
  term: number;
  offset: number;
}

/** Term of the entry covering byte `offset`, from an ascending epoch list; 0 before any. */
export function termAt(epochs: readonly Epoch[], offset: number): number {
  let lo = 0, hi = epochs.length - 1, found = 0;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (epochs[mid].offset <= offset) { found = epochs[mid].term; lo = mid + 1; } else hi = mid - 1;
  }
  return found;
}

/** Drops epochs that start at or after `end` (after a truncation to `end`). */
export function truncateEpochs(epochs: Epoch[], end: number): void {
  while (epochs.length > 0 && epochs[epochs.length - 1].offset >= end) epochs.pop();
}

/** Records that an entry of `term` starts at `offset` (a no-op if the term is unchanged). */
export function noteEpoch(epochs: Epoch[], term: number, offset: number): void {
  const last = epochs[epochs.length - 1];
  if (!last || last.term !== term) epochs.push({ term, offset });
}
