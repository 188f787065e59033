/**
 * Strict parsing of query parameters: offsets and counts are decimal digit strings, nothing
 * else, and an empty value is refused for every parameter (see emptyValue).
 */
import { LogError, type ErrorDetails } from '../../spec/errors.ts';
import { UPLOAD_ID_RULE, isAckLevel, isUploadId } from '../../spec/messages.ts';

/** A non-negative integer below 2^53 from a decimal string; null if `raw` is anything else. */
function wholeNumber(raw: string): number | null {
  // Past 2^53 - 1 the digits no longer round-trip through a double, so such a value is refused
  // rather than rounded to another offset.
  return /^\d+$/.test(raw) && Number.isSafeInteger(Number(raw)) ? Number(raw) : null;
}

/**
 * A parameter given with an empty value (`?p=`, or a bare `?p`). That is an error for every
 * parameter, required or optional: an empty value is most likely a client's unset variable,
 * and read as absent it would change what the request does (a tail from the end rather than
 * from the offset meant). Its code is the one the parameter's other bad values get.
 */
function emptyValue(name: string, takes: string, optional: boolean, code: 'bad_offset' | 'bad_request', details: ErrorDetails = {}): LogError {
  return new LogError(code, `${name} is empty: it takes ${takes}${optional ? ', or leave it out for its default' : ''}`, details);
}

const OFFSET_TAKES = 'a byte offset in decimal digits, from 0 to 2^53-1 (e.g. 0)';

/**
 * A byte offset, or a 400 `bad_offset` that names the parameter. `range` (the log's start and
 * commit end) goes into the error, so a client that sent a bad offset learns the valid ones.
 * Absent (`raw` null), it is `fallback` if there is one (an optional parameter), else an error.
 */
export function parseOffset(name: string, raw: string | null, range: ErrorDetails = {}, fallback?: number): number {
  if (raw === null) {
    if (fallback !== undefined) return fallback;
    throw new LogError('bad_offset', `missing ${name}: pass ${name}=<byte offset>, e.g. ${name}=0`, range);
  }
  if (raw === '') throw emptyValue(name, OFFSET_TAKES, fallback !== undefined, 'bad_offset', range);
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
  if (raw === null) return fallback;
  if (raw === '') throw emptyValue(name, `a non-negative whole number of ${unit} (default ${fallback})`, true, 'bad_request');
  const n = wholeNumber(raw);
  if (n === null) throw new LogError('bad_request', `${name} must be a non-negative whole number of ${unit}, got "${raw}"`);
  return n;
}

/** A yes/no parameter such as `linearizable`: `1`/`true` or `0`/`false`; false when absent. */
export function parseFlag(name: string, raw: string | null): boolean {
  if (raw === null) return false;
  if (raw === '1' || raw === 'true') return true;
  if (raw === '0' || raw === 'false') return false;
  if (raw === '') throw emptyValue(name, '1 or true, 0 or false', true, 'bad_request');
  throw new LogError('bad_request', `${name} takes 1 or true, 0 or false, got "${raw}"`);
}

export function parseAcks(raw: string | null | undefined): 'leader' | 'quorum' | 'all' {
  if (raw === undefined || raw === null) return 'quorum';
  if (isAckLevel(raw)) return raw;
  if (raw === '') throw emptyValue('acks', 'leader, quorum or all (default quorum)', true, 'bad_request');
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
  if (!isUploadId(s)) throw new LogError('bad_request', `upload ids are ${UPLOAD_ID_RULE}`);
  return s;
}
