/**
 * POST /v1/append: the leader allocates the range as soon as it has the request head and
 * streams body chunks straight into the segment file at that offset.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { HEADER_SIZE, crc32c } from '../../spec/frame.ts';
import type { EntryMeta } from '../../spec/entry.ts';
import { LogError } from '../../spec/errors.ts';
import type { LogNode } from '../log-node.ts';
import { parseAcks, parseAfter, parseCopies, parseCrc, parseUploadId } from './params.ts';
import { sendError, sendJson } from './respond.ts';

/** Chunks are coalesced to this size before a positional write. */
const WRITE_CHUNK = 256 * 1024;
/** A too-large body up to this size is read and dropped after the 413 rather than cut off. */
const DRAIN_TOO_LARGE_BYTES = 64 * 1024 * 1024;
/** Writes in flight per request before the socket is paused. */
const MAX_INFLIGHT_WRITES = 8;

export function handleAppend(node: LogNode, req: IncomingMessage, res: ServerResponse, url: URL): void {
  const lengthHeader = req.headers['content-length'];
  if (lengthHeader === undefined) {
    req.resume();
    throw new LogError('length_required', 'Content-Length is required: the leader allocates the offset range before the body arrives');
  }
  if (!/^\d+$/.test(lengthHeader)) throw new LogError('bad_request', `invalid Content-Length "${lengthHeader}"`);
  const length = Number(lengthHeader);
  const max = node.config.maxEntryBytes;
  if (length > max) {
    // Answer before reading the body. A body of moderate size is then read and dropped, so
    // the client gets this answer: closing with its bytes unread makes the kernel reset the
    // connection, and the client may see the reset (EPIPE, ECONNRESET) instead. A huge one
    // is not worth reading; closing tells that client to stop.
    if (length <= DRAIN_TOO_LARGE_BYTES) req.resume();
    else res.setHeader('connection', 'close');
    throw new LogError('too_large', `entry of ${length} bytes exceeds the maximum of ${max} bytes (maxEntryBytes)`, { max });
  }
  const crc = parseCrc(req.headers['x-loglog-crc32c']);
  const uploadId = parseUploadId(req.headers['x-loglog-upload-id']);
  const copies = parseCopies(req.headers['x-loglog-copies']);
  const acks = parseAcks((req.headers['x-loglog-acks'] as string | undefined) ?? url.searchParams.get('acks'));
  const after = parseAfter(req.headers['x-loglog-after']);

  let meta: EntryMeta | null = null;
  let received = 0;
  let running = 0;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let inflight = 0;
  const writes: Promise<void>[] = [];
  let finished = false;
  let reqId = 0;

  const flush = () => {
    if (!meta || pendingBytes === 0) return;
    // Handed to writev as they came off the socket: no copy.
    const chunk = pending;
    const at = meta.offset + HEADER_SIZE + received - pendingBytes;
    pending = [];
    pendingBytes = 0;
    inflight++;
    const w = node.writeBody(meta.offset, at, chunk).finally(() => {
      inflight--;
      if (inflight < MAX_INFLIGHT_WRITES && req.isPaused() && !finished) req.resume();
    });
    // Settled by Promise.all at the body's end, if it comes; the node handles the failure
    // itself (writeBody), so a rejection before then must not count as unhandled.
    w.catch(() => {});
    writes.push(w);
    if (inflight >= MAX_INFLIGHT_WRITES) req.pause();
  };

  const fail = () => {
    if (finished) return;
    finished = true;
    node.bodyDone(reqId, false, 0);
  };

  const sink = {
    start(m: EntryMeta) { meta = m; },
    cancel() {
      finished = true;
      req.unpipe();
      // The replica answers the client (timeout) and then we drop the connection.
      setImmediate(() => req.destroy());
    },
  };
  const started = node.beginAppend({ length, crc, uploadId, acks, copies, after, sink });
  reqId = started.reqId;
  started.result.then((r) => {
    const err = bodyTimeout(node.replyError(r));
    if (err) {
      if (!req.complete) res.setHeader('connection', 'close');
      sendError(res, err);
      if (!req.complete) req.resume();
    } else if (r.type === 'appended') {
      sendJson(res, 200, { offset: r.offset, end: r.end, term: r.term });
    }
  }, (e) => sendError(res, e));
  if (!meta) {
    // The replica answered at once (not leader, too large): drain nothing more.
    req.resume();
    return;
  }

  req.on('data', (chunk: Buffer) => {
    if (finished) return;
    if (received + chunk.length > length) { fail(); req.destroy(); return; }
    running = crc32c(chunk, running);
    received += chunk.length;
    pending.push(chunk);
    pendingBytes += chunk.length;
    if (pendingBytes >= WRITE_CHUNK) flush();
  });
  req.on('end', () => {
    if (finished) return;
    if (received !== length) { fail(); return; }
    finished = true;
    if (writes.length === 0 && meta) {
      // The whole body is still in memory (small): the node writes it with the frame's
      // header and trailer in one writev, and replication starts without waiting for a write.
      node.appendedBytes += length;
      node.bodyDone(reqId, true, running, { offset: meta.offset, chunks: pending });
      pending = [];
      pendingBytes = 0;
      return;
    }
    flush();
    Promise.all(writes).then(
      () => { node.appendedBytes += length; node.bodyDone(reqId, true, running); },
      (err) => node.bodyDone(reqId, false, 0, undefined, (err as Error).message),
    );
  });
  req.on('aborted', fail);
  req.on('error', fail);
  req.on('close', () => { if (!req.complete) fail(); });
}

/**
 * The replica answers an append with `timeout` only when its body stalled past the deadline
 * (spec/replica.ts, onTick). That is the client not sending, so it is told 408, not the 504 of
 * a server that did not answer in time.
 */
function bodyTimeout(err: LogError | null): LogError | null {
  return err?.code === 'timeout' ? new LogError('body_timeout', err.message, err.details) : err;
}
