/** GET /v1/read: whole committed frames from an offset, optionally long-polling for more. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { LogError } from '../../spec/errors.ts';
import type { LogNode } from '../log-node.ts';
import { parseCount, parseOffset } from './params.ts';
import { sendBytes } from './respond.ts';

const DEFAULT_LIMIT = 1024 * 1024;
const MAX_LIMIT = 64 * 1024 * 1024;
const MAX_WAIT_MS = 60_000;

export async function handleRead(node: LogNode, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  const q = url.searchParams;
  const range = readableRange(node);
  const offset = parseOffset('offset', q.get('offset'), range);
  const limit = Math.min(parseCount('limit', q.get('limit'), DEFAULT_LIMIT, 'bytes'), MAX_LIMIT);
  const wait = Math.min(parseCount('wait', q.get('wait'), 0, 'milliseconds'), MAX_WAIT_MS);
  const minCommit = q.has('minCommit') ? parseOffset('minCommit', q.get('minCommit'), range) : null;

  const closed = new AbortController();
  res.on('close', () => closed.abort());
  // Read-your-writes on a follower: wait until this replica has committed what the client saw.
  if (minCommit !== null && minCommit > 0 && !(await node.waitReadable(minCommit - 1, Math.max(wait, 1), closed.signal))) {
    throw new LogError('timeout', `this replica has not yet committed up to ${minCommit}; retry, or read from another replica`, { end: node.readableEnd() });
  }
  const { end } = checkReadable(node, offset);
  if (offset === end && wait > 0) await node.waitReadable(offset, wait, closed.signal);
  const { data, next } = await node.read(offset, limit);
  if (res.destroyed) return;
  sendBytes(res, 200, data, { 'x-loglog-start': node.log.start, 'x-loglog-commit': node.readableEnd(), 'x-loglog-next': next });
}

/** Where a read may start on this replica: the log start up to the commit end (both included). */
export function readableRange(node: LogNode): { start: number; end: number } {
  return { start: node.log.start, end: node.readableEnd() };
}

/** The readable range, or the error for an offset outside it (carrying the range). */
export function checkReadable(node: LogNode, offset: number): { start: number; end: number } {
  const range = readableRange(node);
  const { start, end } = range;
  if (offset < start) throw new LogError('trimmed', `offset ${offset} was trimmed; the log now starts at ${start}`, range);
  if (offset > end) throw new LogError('out_of_range', `offset ${offset} is beyond the commit end ${end}; valid offsets are ${start}..${end}`, range);
  return range;
}
