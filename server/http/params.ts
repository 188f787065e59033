/** Strict parsing of query parameters: offsets and counts are decimal digit strings, nothing else. */
import { LogError, type ErrorDetails } from '../../spec/errors.ts';

/** A non-negative integer below 2^53 from a decimal string; null if `raw` is anything else. */
function wholeNumber(raw: string): number | null {
  // Past 2^53 - 1 the digits no longer round-trip through a double, so such a value is refused
  // rather than rounded to another offset.
  return /^\d+$/.test(raw) && Number.isSafeInteger(Number(raw)) ? Number(raw) : null;
}

/**
 * A byte offset, or a 400 `bad_offset` that names the parameter. `range` (the log's start and
 * commit end) goes into the error, so a client that sent a bad offset learns the valid ones.
 */
export function parseOffset(name: string, raw: string | null, range: ErrorDetails = {}): number {
  if (raw === null || raw === '') throw new LogError('bad_offset', `missing ${name}: pass ${name}=<byte offset>, e.g. ${name}=0`, range);
  const n = wholeNumber(raw);
  if (n === null) throw new LogError('bad_offset', `${name} must be a whole number of bytes from 0 to 2^53-1, got "${raw}"`, range);
  return n;
}

/** The first value of a header node:http may give as an array. */
function first(raw: string | string[]): string {
  return Array.isArray(raw) ? raw[0] : raw;
}

/** `x-loglog-after`: a byte offset, or undefined when the client sent none. */
export function parseAfter(raw: string | string[] | undefined): number | undefined {
  return raw === undefined ? undefined : parseOffset('x-loglog-after', first(raw));
}

/** A count such as a byte limit or a wait in milliseconds; `fallback` when absent, else a 400 `bad_request`. */
export function parseCount(name: string, raw: string | null, fallback: number, unit: string): number {
  if (raw === null || raw === '') return fallback;
  const n = wholeNumber(raw);
  if (n === null) throw new LogError('bad_request', `${name} must be a non-negative whole number of ${unit}, got "${raw}"`);
  return n;
}

export function parseAcks(raw: string | null | undefined): 'leader' | 'quorum' | 'all' {
  if (raw === undefined || raw === null || raw === '') return 'quorum';
  if (raw === 'leader' || raw === 'quorum' || raw === 'all') return raw;
  throw new LogError('bad_request', `acks must be leader, quorum or all, got "${raw}"`);
}

/** The client's CRC32C header: a decimal u32. */
export function parseCrc(raw: string | string[] | undefined): number | null {
  if (raw === undefined) return null;
  const s = first(raw);
  if (!/^\d{1,10}$/.test(s) || Number(s) > 0xffffffff) throw new LogError('bad_request', `x-loglog-crc32c must be a decimal CRC32C (0..4294967295), got "${s}"`);
  return Number(s);
}

/**
 * `x-loglog-copies`: `none` when the client uploads no copies to the followers (they fetch
 * the payload from a peer at once); `uploaded` (the default) when it does.
 */
export function parseCopies(raw: string | string[] | undefined): boolean {
  const s = raw === undefined ? undefined : first(raw);
  if (s === undefined || s === 'uploaded') return true;
  if (s === 'none') return false;
  throw new LogError('bad_request', `x-loglog-copies must be "uploaded" or "none", got "${s}"`);
}

export function parseUploadId(raw: string | string[] | undefined): string | null {
  if (raw === undefined) return null;
  const s = first(raw);
  if (!/^[A-Za-z0-9_.:-]{1,128}$/.test(s)) throw new LogError('bad_request', 'upload ids are 1-128 characters of A-Z a-z 0-9 _ . : -');
  return s;
}
