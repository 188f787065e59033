/**
 * Staging buffers for append bodies on their way to the segment file.
 *
 * Why copy at all: the socket hands us a fresh 64 KiB Buffer per read. Kept until its
 * positional write completes (a threadpool round trip, often more than one young-generation
 * collection later), each one is promoted to the old generation and is freed only by a full
 * mark-sweep: measured, that garbage collection cost the server more CPU than the HTTP
 * parsing, the checksum and the write together. Copying each chunk into a reused staging
 * buffer (a memcpy at several GB/s) lets the socket's chunk die young instead.
 */

/** Size of one staging buffer: the unit of a positional write. */
export const STAGING_BYTES = 256 * 1024;
/** Free buffers kept for reuse; more are allocated on demand and dropped when returned. */
const KEEP = 64;

const free: Buffer[] = [];

/** A staging buffer of {@link STAGING_BYTES}; give it back with {@link releaseStaging}. */
export function takeStaging(): Buffer {
  return free.pop() ?? Buffer.allocUnsafeSlow(STAGING_BYTES);
}

/** Returns a buffer from {@link takeStaging} once nothing reads it any more. */
export function releaseStaging(buf: Buffer): void {
  if (free.length < KEEP) free.push(buf);
}
