/**
 * WebSocket /v1/tail: committed frames pushed as they commit. Sends are paced on the
 * socket's bufferedAmount so a slow reader never makes the server buffer without bound.
 */
import type { WebSocket } from 'ws';
import type { LogNode } from '../log-node.ts';
import { parseOffset } from './params.ts';
import { checkReadable, readableRange } from './read.ts';
import { toLogError } from './respond.ts';

const CHUNK = 1024 * 1024;
const HIGH_WATER = 4 * 1024 * 1024;

export async function serveTail(node: LogNode, ws: WebSocket, url: URL): Promise<void> {
  const closed = new AbortController();
  ws.on('close', () => closed.abort());
  ws.on('error', () => closed.abort());
  try {
    const range = readableRange(node);
    // No offset: follow only what commits from now on, as `tail -f` does.
    let offset = parseOffset('offset', url.searchParams.get('offset'), range, range.end);
    checkReadable(node, offset);
    while (!closed.signal.aborted) {
      if (offset >= node.readableEnd()) {
        // A closed node ends every wait at once: without this check the loop would spin in
        // microtasks and starve the event loop, the stop's own signal handlers included.
        if (!(await node.waitReadable(offset, 30_000, closed.signal)) && node.isClosed) {
          ws.close(1001, 'the server is stopping');
          break;
        }
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
