/** Fixtures for the storage tests: temporary data directories and frames. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { Kind, crc32c, encodeFrame, frameSize } from '../../spec/frame.ts';
import { SegmentLog, type SegmentLogOptions } from '../../server/storage/segment-log.ts';

/** A fresh directory under the OS temp dir, removed when the test ends. */
export async function tmpDir(t: ExecutionContext): Promise<string> {
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'loglog-storage-'));
  t.teardown(() => fs.promises.rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Payload bytes that differ per (seed, length), so misplaced bytes show. */
export function payload(seed: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (seed * 31 + i * 7) & 0xff;
  return b;
}

export function dataFrame(term: number, body: Buffer): Buffer {
  return encodeFrame({ kind: Kind.Data, term, length: body.length, crc: crc32c(body) }, body);
}

/** Opens a log and closes it when the test ends (unless the test closed it). */
export async function openLog(t: ExecutionContext, dir: string, opts: SegmentLogOptions = {}): Promise<SegmentLog> {
  const log = await SegmentLog.open(dir, opts);
  t.teardown(() => log.close().catch(() => {}));
  return log;
}

/** Places and writes one data frame at the end; returns its offset. */
export async function append(log: SegmentLog, term: number, body: Buffer): Promise<number> {
  const offset = log.end;
  log.place(offset, body.length, term);
  await log.writeAt(offset, dataFrame(term, body));
  return offset;
}

/** Appends `n` frames of `length` bytes (payload seeded by index) and syncs; returns their offsets. */
export async function fill(log: SegmentLog, n: number, length: number, term = 1): Promise<number[]> {
  const offsets: number[] = [];
  for (let i = 0; i < n; i++) offsets.push(await append(log, term, payload(offsets.length + log.end, length)));
  await log.sync();
  return offsets;
}

export function segmentFiles(dir: string): string[] {
  return fs.readdirSync(dir).filter((f) => f.endsWith('.seg')).sort();
}

export { frameSize };

/**
 * Copies a data directory (while its log may still be open): what a crash would leave if
 * the page cache survived. Tests then damage the copy and recover from it.
 */
export async function crashImage(t: ExecutionContext, dir: string): Promise<string> {
  const copy = await tmpDir(t);
  for (const f of fs.readdirSync(dir)) fs.copyFileSync(path.join(dir, f), path.join(copy, f));
  return copy;
}

/** Reads every frame in [from, to) through `log.read`, looping like a client. */
export async function readAll(log: SegmentLog, from: number, to: number, maxBytes = 1 << 20): Promise<Buffer> {
  const parts: Buffer[] = [];
  let at = from;
  while (at < to) {
    const r = await log.read(at, maxBytes, to);
    if (r.next === at) throw new Error(`no progress at ${at}`);
    parts.push(r.data);
    at = r.next;
  }
  return Buffer.concat(parts);
}
