/**
 * Peer transport of a loglogd cluster. Replication metadata, acknowledgements, votes and
 * heartbeats travel as JSON over one persistent WebSocket per ordered pair (each node
 * dials every peer and sends on its own connection). Payload fetches and catch-up copies
 * are HTTP requests (bulk bytes stay off the message channel).
 *
 * The transport is lossy on purpose: a message to a peer that is down, or whose socket is
 * over its high-water mark, is dropped. The replica's retries (heartbeats, resends on
 * replies) are what makes delivery eventually happen, exactly as in the simulator.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { type Dispatcher, Pool } from 'undici';
import WebSocket, { WebSocketServer } from 'ws';
import type { EntryMeta } from '../../spec/entry.ts';
import { LogError } from '../../spec/errors.ts';
import type { Message, NodeId } from '../../spec/messages.ts';
import type { PeerAddress } from '../config.ts';
import type { PeerTransport } from '../log-node.ts';
import { type PeerCheck, signPeer, verifyPeer } from './peer-auth.ts';
import { sendSocketError } from '../http/respond.ts';

const HIGH_WATER = 8 * 1024 * 1024;
const PEER_PATH = '/v1/peer';
const COPY_CHUNK = 16 * 1024 * 1024;

export interface PeerTransportOptions {
  self: NodeId;
  /** The cluster's name: peers of another one are refused, and refuse this node. */
  cluster: string;
  peers: PeerAddress[];
  secret: string;
  onMessage: (from: NodeId, msg: Message) => void;
  log: (line: string) => void;
}

interface Link {
  peer: PeerAddress;
  ws: WebSocket | null;
  retryMs: number;
  timer: NodeJS.Timeout | null;
  pool: Pool;
  refusedLogged: boolean;
}

export class WsPeerTransport implements PeerTransport {
  private links = new Map<NodeId, Link>();
  private wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });
  private closed = false;
  /** Messages this node sent to peers on the channel (bytes include the WebSocket framing). */
  readonly stats = { messageBytes: 0 };

  constructor(private readonly opts: PeerTransportOptions) {
    this.check = { self: opts.self, cluster: opts.cluster, members: opts.peers.map((p) => p.id) };
    for (const peer of opts.peers) {
      if (peer.id === opts.self) continue;
      this.links.set(peer.id, { peer, ws: null, retryMs: 50, timer: null, pool: new Pool(peer.url, { connections: 4, pipelining: 1 }), refusedLogged: false });
    }
  }

  /** Starts dialing every peer. */
  start(): void {
    for (const link of this.links.values()) this.dial(link);
  }

  /** Why peers were refused, each said once (a refused peer dials again every second). */
  private refusals = new Set<string>();
  /** What every peer's credentials are checked against. */
  private readonly check: PeerCheck;

  private sign(to: NodeId, path: string) {
    return signPeer(this.opts.secret, { node: this.opts.self, to, cluster: this.opts.cluster }, path);
  }

  private logRefusal(what: string, why: string): void {
    if (this.refusals.has(why)) return;
    if (this.refusals.size >= 100) this.refusals.clear();
    this.refusals.add(why);
    this.opts.log(`refused a peer ${what}: ${why}`);
  }

  private dial(link: Link): void {
    if (this.closed) return;
    const url = `${link.peer.url.replace(/^http/, 'ws')}${PEER_PATH}`;
    const ws = new WebSocket(url, { perMessageDeflate: false, headers: { ...this.sign(link.peer.id, PEER_PATH) } });
    link.ws = ws;
    ws.on('open', () => {
      link.retryMs = 50;
      if (link.refusedLogged) this.opts.log(`peer ${link.peer.id} accepted this node again`);
      link.refusedLogged = false;
    });
    ws.on('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => { if (chunks.length < 16) chunks.push(c); });
      res.on('error', () => ws.terminate());
      res.on('end', () => {
        ws.terminate();
        if (link.refusedLogged) return;
        link.refusedLogged = true;
        let why = res.statusCode === 401 ? 'wrong cluster secret?' : 'is that address a loglogd of this cluster?';
        try {
          why = String(JSON.parse(Buffer.concat(chunks).toString()).error.message ?? why);
        } catch {
          // no loglog error body: the guess stands
        }
        this.opts.log(`peer ${link.peer.id} at ${link.peer.url} refused this node: ${why} (HTTP ${res.statusCode})`);
      });
    });
    ws.on('error', () => {});
    ws.on('close', () => {
      if (link.ws === ws) link.ws = null;
      if (this.closed) return;
      link.timer = setTimeout(() => this.dial(link), link.retryMs);
      link.timer.unref();
      link.retryMs = Math.min(link.retryMs * 2, 1000);
    });
  }

  /** Upgrade handler for the inbound channel (mounted on the API server). */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const v = verifyPeer(this.opts.secret, req.headers, PEER_PATH, this.check);
    if (!v.ok) {
      this.logRefusal('connection', v.why);
      sendSocketError(socket, new LogError('unauthorized', v.why));
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('message', (data: Buffer) => {
        let msg: Message;
        try { msg = JSON.parse(data.toString()) as Message; } catch { return; }
        this.opts.onMessage(v.node, msg);
      });
      ws.on('error', () => {});
    });
  }

  /** Checks a peer HTTP request's credentials; throws a 401-ish error when wrong. */
  authorize(req: IncomingMessage, path: string): NodeId {
    const v = verifyPeer(this.opts.secret, req.headers, path, this.check);
    if (!v.ok) {
      this.logRefusal('request', v.why);
      throw new LogError('unauthorized', `peer authentication failed: ${v.why}`);
    }
    return v.node;
  }

  send(to: NodeId, msg: Message): void {
    const ws = this.links.get(to)?.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || ws.bufferedAmount > HIGH_WATER) return;
    const data = JSON.stringify(msg);
    const n = Buffer.byteLength(data);
    // + the frame header of a masked (client-side) WebSocket frame
    this.stats.messageBytes += n + (n < 126 ? 6 : n < 65536 ? 8 : 14);
    ws.send(data);
  }

  private link(peer: NodeId): Link {
    const link = this.links.get(peer);
    if (!link) throw new Error(`unknown peer ${peer}`);
    return link;
  }

  /**
   * A signed GET of `path?query` from a peer. The whole body is read, then an answer other
   * than 200 throws an Error with the message `failure(status, body)`.
   */
  private async peerGet(
    link: Link, path: string, query: string, timeouts: { headersTimeout: number; bodyTimeout: number },
    failure: (status: number, body: Buffer) => string, signal?: AbortSignal,
  ): Promise<{ body: Buffer; headers: Dispatcher.ResponseData['headers'] }> {
    const r = await link.pool.request({
      method: 'GET', path: `${path}?${query}`, ...timeouts, signal,
      headers: { ...this.sign(link.peer.id, path) },
    });
    const body = Buffer.from(await r.body.arrayBuffer());
    if (r.statusCode !== 200) throw new Error(failure(r.statusCode, body));
    return { body, headers: r.headers };
  }

  async fetchPayload(peer: NodeId, meta: EntryMeta): Promise<Buffer> {
    const { body } = await this.peerGet(
      this.link(peer), '/v1/peer/payload', `offset=${meta.offset}&length=${meta.length}&term=${meta.term}`, { headersTimeout: 5000, bodyTimeout: 10_000 },
      (status) => `peer ${peer} answered ${status} for payload at ${meta.offset}`,
    );
    return body;
  }

  async fetchFrameRun(peer: NodeId, offset: number, to: number, term: number): Promise<Buffer> {
    // The catch-up route: written frames (not only committed ones), while the peer is in `term`.
    const { body } = await this.peerGet(
      this.link(peer), '/v1/peer/frames', `offset=${offset}&limit=${to - offset}&to=${to}&term=${term}&fetch=1`, { headersTimeout: 5000, bodyTimeout: 30_000 },
      (status, b) => `peer ${peer} answered ${status} for frames at ${offset}: ${b.toString().slice(0, 200)}`,
    );
    return body;
  }

  async fetchFrames(peer: NodeId, offset: number, signal?: AbortSignal): Promise<Buffer> {
    // The public read: it serves only frames the peer has committed, the ones a scrub mends.
    const { body } = await this.peerGet(
      this.link(peer), '/v1/read', `offset=${offset}&limit=1`, { headersTimeout: 5000, bodyTimeout: 30_000 },
      (status, b) => `answered ${status}: ${b.toString().slice(0, 200)}`, signal,
    );
    return body;
  }

  async copyFrames(peer: NodeId, start: number, to: number, term: number, onChunk: (offset: number, frames: Buffer) => Promise<void>): Promise<number> {
    const link = this.link(peer);
    let at = start;
    while (at < to) {
      const { body, headers } = await this.peerGet(
        link, '/v1/peer/frames', `offset=${at}&limit=${COPY_CHUNK}&to=${to}&term=${term}`, { headersTimeout: 10_000, bodyTimeout: 60_000 },
        (status, b) => `peer ${peer} answered ${status} reading at ${at}: ${b.toString().slice(0, 200)}`,
      );
      if (body.length === 0) break;
      const next = Number(headers['x-loglog-next']);
      // A peer that answers bytes without moving forward would have us ask again forever.
      if (!Number.isSafeInteger(next) || next <= at) throw new Error(`peer ${peer} answered frames at ${at} with next offset ${String(headers['x-loglog-next'])}`);
      const upto = Math.min(next, to);
      await onChunk(at, body.subarray(0, upto - at));
      at = upto;
      if (next > to) break;
    }
    return at;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const link of this.links.values()) {
      if (link.timer) clearTimeout(link.timer);
      link.ws?.terminate();
      await link.pool.close().catch(() => {});
    }
    for (const ws of this.wss.clients) ws.terminate();
    this.wss.close();
  }
}
