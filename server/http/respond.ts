/** JSON and raw-bytes replies, and the one error shape of the API: `{"error":{"code","message",...}}`. */
import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { LogError } from '../../spec/errors.ts';

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string | number> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const data = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': data.length, ...headers });
  res.end(data);
}

/**
 * A raw bytes reply (frames, payloads). Unlike sendJson it does not skip a response that is
 * already answered or gone: a caller that may find the client gone checks `res.destroyed`
 * itself (as handleRead does).
 */
export function sendBytes(res: ServerResponse, status: number, data: Uint8Array, headers: Record<string, string | number> = {}): void {
  res.writeHead(status, { 'content-type': 'application/octet-stream', 'content-length': data.length, ...headers });
  res.end(data);
}

/** Any thrown value becomes a JSON error reply; unknown errors are 500 `internal`. */
export function sendError(res: ServerResponse, err: unknown, headers: Record<string, string | number> = {}): void {
  const e = toLogError(err);
  sendJson(res, httpStatus(e), e.toJSON(), headers);
}

/**
 * The same JSON error reply written on a raw socket, then closed: for requests node:http
 * hands over without a response (WebSocket upgrades), which would otherwise get nothing.
 */
export function sendSocketError(socket: Duplex, err: unknown, headers: Record<string, string | number> = {}): void {
  // The client may be gone already: nothing to tell it then.
  socket.on('error', () => {});
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const e = toLogError(err);
  const status = httpStatus(e);
  const body = Buffer.from(JSON.stringify(e.toJSON()));
  const head = { 'content-type': 'application/json', 'content-length': body.length, connection: 'close', ...headers };
  const lines = [`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}`, ...Object.entries(head).map(([k, v]) => `${k}: ${v}`)];
  socket.once('finish', () => socket.destroy());
  socket.end(Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`), body]));
}

/** The HTTP status of an error reply: an error without one (client-side codes) is a 500. */
function httpStatus(e: LogError): number {
  return e.status >= 400 ? e.status : 500;
}

export function toLogError(err: unknown): LogError {
  if (err instanceof LogError) return err;
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'ENOSPC') return new LogError('disk_full', 'the disk is full: free space or trim the log');
  return new LogError('internal', (err as Error)?.message ?? String(err));
}
