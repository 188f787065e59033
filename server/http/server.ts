/** The HTTP + WebSocket front of one node: routing, JSON errors, the tail upgrade. */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { LogError } from '../../spec/errors.ts';
import type { LogNode } from '../log-node.ts';
import { handleAppend } from './append.ts';
import { handleRead, readableRange } from './read.ts';
import { serveTail } from './tail.ts';
import { parseFlag, parseOffset, parseUploadId } from './params.ts';
import { sendError, sendJson, sendSocketError } from './respond.ts';

/** Extra routes a cluster transport mounts (peer endpoints). */
export type RouteHandler = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<void> | void;

export interface ApiServer {
  server: Server;
  /** Routes by "METHOD /path" (exact) for peers and extensions. */
  routes: Map<string, RouteHandler>;
  /** WebSocket paths handed to other handlers (e.g. the peer channel). */
  upgrades: Map<string, (req: IncomingMessage, socket: Duplex, head: Buffer) => void>;
  close(): Promise<void>;
}

const MAX_UPLOAD = 64 * 1024 * 1024;

export function createApiServer(node: LogNode): ApiServer {
  const routes = new Map<string, RouteHandler>();
  const upgrades = new Map<string, (req: IncomingMessage, socket: Duplex, head: Buffer) => void>();
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 1024 });
  /** Aborts when close() begins: long polls are answered at once rather than holding the stop. */
  const stopping = new AbortController();

  routes.set('POST /v1/append', (req, res, url) => handleAppend(node, req, res, url));
  routes.set('GET /v1/read', (req, res, url) => handleRead(node, req, res, url, stopping.signal));
  routes.set('GET /v1/end', async (_req, res, url) => {
    if (parseFlag('linearizable', url.searchParams.get('linearizable'))) {
      const r = await node.readIndex();
      const err = node.replyError(r);
      if (err) throw err;
      sendJson(res, 200, { start: node.log.start, end: r.type === 'readIndex' ? r.end : node.readableEnd(), linearizable: true });
      return;
    }
    sendJson(res, 200, { start: node.log.start, end: node.readableEnd() });
  });
  routes.set('GET /v1/status', (_req, res) => sendJson(res, 200, node.status()));
  routes.set('POST /v1/trim', async (req, res, url) => {
    req.resume();
    const before = parseOffset('before', url.searchParams.get('before'), readableRange(node));
    sendJson(res, 200, { start: await node.trim(before) });
  });
  routes.set('GET /v1/fate', async (_req, res, url) => {
    const id = parseUploadId(url.searchParams.get('id') ?? undefined);
    if (id === null) throw new LogError('bad_request', 'pass id=<upload id>');
    const after = parseOffset('after', url.searchParams.get('after'), {}, 0);
    const r = await node.fate(id, after);
    const err = node.replyError(r);
    if (err) throw err;
    sendJson(res, 200, r.type === 'fate' ? { state: r.state, offset: r.offset, end: r.end, term: r.term, since: r.since } : {});
  });

  // Upgrades are handled apart (server.on('upgrade')); this only makes the path known, so a
  // plain request to it learns what to do, and another method gets 405.
  routes.set('GET /v1/tail', () => {
    throw new LogError('bad_request', '/v1/tail is a WebSocket endpoint: connect with "Upgrade: websocket"');
  });
  /** Routes whose path ends in an id, keyed "METHOD /prefix/". */
  const prefixed = new Map<string, RouteHandler>([
    ['PUT /v1/upload/', (req, res, url) => handleUpload(node, req, res, url)],
    ['GET /v1/fate/', (req, res, url) => {
      url.searchParams.set('id', pathId(url, '/v1/fate/'));
      return routes.get('GET /v1/fate')!(req, res, url);
    }],
  ]);
  /** Every route at `path`, by method (read at each request: peers mount routes later). A GET route answers HEAD too. */
  const routesAt = (path: string): Map<string, RouteHandler> => {
    const found = new Map<string, RouteHandler>();
    for (const [key, handler] of [...routes, ...prefixed]) {
      const [method, at] = key.split(' ');
      if (at === path || (prefixed.has(key) && path.startsWith(at))) {
        found.set(method, handler);
        if (method === 'GET') found.set('HEAD', handler);
      }
    }
    return found;
  };

  /** The 404 of a path no route has. */
  const noRoute = (method: string | undefined, path: string) => new LogError('not_found', `no route ${method} ${path}; see DESIGN.md "HTTP API"`);

  const server = createServer({ keepAliveTimeout: 65_000, requestTimeout: 0 }, (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    // HEAD is answered as GET, headers and all: node:http leaves the body out.
    const method = req.method === 'HEAD' ? 'GET' : req.method;
    // The exact lookup first: appends and reads should not pay for the scan.
    let route = routes.get(`${method} ${url.pathname}`);
    if (!route) {
      const at = routesAt(url.pathname);
      route = at.get(method ?? '');
      if (!route) {
        req.resume();
        // A known path asked with another method: say which methods it takes.
        const allow = [...at.keys()].sort();
        if (allow.length > 0) {
          const msg = `${req.method} is not allowed on ${url.pathname}: use ${allow.join(' or ')}`;
          sendError(res, new LogError('method_not_allowed', msg, { allow }), { allow: allow.join(', ') });
        } else {
          sendError(res, noRoute(req.method, url.pathname));
        }
        return;
      }
    }
    try {
      const p = route(req, res, url);
      if (p) p.catch((e) => { req.resume(); sendError(res, e); });
    } catch (e) {
      req.resume();
      sendError(res, e);
    }
  });

  // Upgraded sockets (peer channels, tails) still count as the server's connections:
  // server.close() would wait for them, so close() ends them itself.
  const upgraded = new Set<Duplex>();
  server.on('upgrade', (req, socket, head) => {
    upgraded.add(socket);
    socket.once('close', () => upgraded.delete(socket));
    const url = new URL(req.url ?? '/', 'http://x');
    const other = upgrades.get(url.pathname);
    if (other) { other(req, socket, head); return; }
    // Every refusal is an HTTP answer with the JSON error (a dropped socket told the client
    // nothing), and the connection closes.
    if (url.pathname !== '/v1/tail') {
      const plain = routesAt(url.pathname).size > 0;
      sendSocketError(socket, plain
        ? new LogError('bad_request', `${url.pathname} is not a WebSocket endpoint (/v1/tail is): send the request without "Upgrade"`)
        : noRoute(req.method, url.pathname));
      return;
    }
    if (req.method !== 'GET') {
      sendSocketError(socket, new LogError('method_not_allowed', `a WebSocket on /v1/tail opens with GET, not ${req.method}`, { allow: ['GET'] }), { allow: 'GET' });
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => void serveTail(node, ws, url));
  });
  // A malformed handshake (no Sec-WebSocket-Key, another version): ws would answer in text/html.
  wss.on('wsClientError', (err, socket) => {
    sendSocketError(socket, new LogError('bad_request', `WebSocket handshake refused: ${err.message}`));
  });
  server.on('clientError', (_err, socket) => { if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\n\r\n'); });

  return {
    server, routes, upgrades,
    async close() {
      stopping.abort();
      for (const ws of wss.clients) ws.terminate();
      wss.close();
      for (const socket of upgraded) socket.destroy();
      server.closeIdleConnections();
      await new Promise<void>((resolve) => { server.close(() => resolve()); setTimeout(() => { server.closeAllConnections(); resolve(); }, 2000).unref(); });
    },
  };
}

/** The id at the end of `url`'s path after `prefix`, percent-decoded; 400 when it is malformed. */
function pathId(url: URL, prefix: string): string {
  const raw = url.pathname.slice(prefix.length);
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new LogError('bad_request', `malformed percent-encoding in the id "${raw}": encode it with encodeURIComponent`);
  }
}

/** PUT /v1/upload/:id — a client's copy of an entry for this follower. */
function handleUpload(node: LogNode, req: IncomingMessage, res: ServerResponse, url: URL): void {
  const id = parseUploadId(pathId(url, '/v1/upload/'));
  if (id === null) throw new LogError('bad_request', 'missing upload id');
  const len = Number(req.headers['content-length'] ?? NaN);
  if (!Number.isSafeInteger(len)) throw new LogError('length_required', 'Content-Length is required');
  if (len > Math.min(MAX_UPLOAD, node.config.maxEntryBytes)) throw new LogError('too_large', `upload of ${len} bytes exceeds the maximum entry size`);
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    node.upload(id, Buffer.concat(chunks));
    sendJson(res, 200, { ok: true });
  });
}
