/** GET /v1/read: whole committed frames from an offset, optionally long-polling for more. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { LogError } from '../../spec/errors.ts';
import type { LogNode } from '../log-node.ts';
import { parseCount, parseOffset } from './params.ts';
import { sendBytes, sendError } from './respond.ts';

const DEFAULT_LIMIT = 1024 * 1024;
const MAX_LIMIT = 64 * 1024 * 1024;
const MAX_WAIT_MS = 60_000;

/**
 * `node.waitReadable` for a request (`closed` aborts when its client goes), cut short when the
 * API stops (`stop`): then `unavailable`. A stop closes the API before the node (requests
 * under way still need the log), and the API's close waits for open requests: a long poll
 * held every stop for the 2 s after which it gives up on them.
 */
async function waitReadable(node: LogNode, offset: number, ms: number, closed: AbortSignal, stop: AbortSignal): Promise<boolean> {
  const ok = await node.waitReadable(offset, ms, AbortSignal.any([closed, stop]));
  if (!ok && (stop.aborted || node.isClosed)) {
    throw new LogError('unavailable', 'this node is stopping; read from another replica', { end: node.readableEnd() });
  }
  return ok;
}

/** GET /v1/read. `stop` aborts when the API begins to close: waiting reads are answered at once. */
export async function handleRead(node: LogNode, req: IncomingMessage, res: ServerResponse, url: URL, stop: AbortSignal): Promise<void> {
  try {
    await read(node, res, url, stop);
  } catch (e) {
    if (!stop.aborted) throw e;
    // During a stop the connection goes too: kept alive, it would hold the stop as the long poll did.
    sendError(res, e, { connection: 'close' });
  }
}

async function read(node: LogNode, res: ServerResponse, url: URL, stop: AbortSignal): Promise<void> {
  const q = url.searchParams;
  const range = readableRange(node);
  const offset = parseOffset('offset', q.get('offset'), range);
  const limit = Math.min(parseCount('limit', q.get('limit'), DEFAULT_LIMIT, 'bytes'), MAX_LIMIT);
  const wait = Math.min(parseCount('wait', q.get('wait'), 0, 'milliseconds'), MAX_WAIT_MS);
  const minCommit = parseOffset('minCommit', q.get('minCommit'), range, 0);

  const closed = new AbortController();
  res.on('close', () => closed.abort());
  // Read-your-writes on a follower: wait until this replica has committed what the client saw.
  if (minCommit > 0 && !(await waitReadable(node, minCommit - 1, Math.max(wait, 1), closed.signal, stop))) {
    throw new LogError('timeout', `this replica has not yet committed up to ${minCommit}; retry, or read from another replica`, { end: node.readableEnd() });
  }
  const { end } = checkReadable(node, offset);
  if (offset === end && wait > 0) await waitReadable(node, offset, wait, closed.signal, stop);
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
