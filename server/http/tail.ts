/**
 * WebSocket /v1/tail: committed frames pushed as they commit. Sends are paced on the
 * socket's bufferedAmount so a slow reader never makes the server buffer without bound.
 */
import type { WebSocket } from 'ws';
import { LogError } from '../../spec/errors.ts';
import type { LogNode } from '../log-node.ts';
import { parseOffset } from './params.ts';
import { toLogError } from './respond.ts';

const CHUNK = 1024 * 1024;
const HIGH_WATER = 4 * 1024 * 1024;

export async function serveTail(node: LogNode, ws: WebSocket, url: URL): Promise<void> {
  const closed = new AbortController();
  ws.on('close', () => closed.abort());
  ws.on('error', () => closed.abort());
  try {
    let offset = parseOffset('offset', url.searchParams.get('offset'), node.readableEnd());
    if (offset < node.log.start) throw new LogError('trimmed', `offset ${offset} was trimmed; the log now starts at ${node.log.start}`, { start: node.log.start });
    if (offset > node.readableEnd()) throw new LogError('out_of_range', `offset ${offset} is beyond the commit end ${node.readableEnd()}`, { start: node.log.start, end: node.readableEnd() });
    while (!closed.signal.aborted) {
      if (offset >= node.readableEnd()) {
        await node.waitReadable(offset, 30_000, closed.signal);
        continue;
      }
      const { data, next } = await node.read(offset, CHUNK);
      if (closed.signal.aborted) break;
      offset = next;
      await new Promise<void>((resolve, reject) => {
        ws.send(data, { binary: true }, (err) => (err ? reject(err) : resolve()));
        // Below the high-water mark, keep reading while the socket drains.
        if (ws.bufferedAmount < HIGH_WATER) resolve();
      });
    }
  } catch (err) {
    if (closed.signal.aborted) return;
    const e = toLogError(err);
    ws.send(JSON.stringify(e.toJSON()));
    ws.close(4000 + Math.min(e.status, 999), e.code);
  }
}
