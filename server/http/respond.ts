/** JSON and raw-bytes replies, and the one error shape of the API: `{"error":{"code","message",...}}`. */
import type { ServerResponse } from 'node:http';
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
  sendJson(res, e.status >= 400 ? e.status : 500, e.toJSON(), headers);
}

export function toLogError(err: unknown): LogError {
  if (err instanceof LogError) return err;
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'ENOSPC') return new LogError('disk_full', 'the disk is full: free space or trim the log');
  return new LogError('internal', (err as Error)?.message ?? String(err));
}
