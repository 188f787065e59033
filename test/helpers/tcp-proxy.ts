/**
 * A TCP proxy (node:net) that tests place on a link between two nodes, to cut and heal it.
 *
 * One proxy carries every connection one node opens to one other node (its peer WebSocket,
 * on which it *sends* messages, and its HTTP payload fetches and catch-up reads from that
 * peer). A cluster uses one proxy per ordered pair, so a link can be cut per direction:
 * cutting a→b stops what a sends to b on its channel (and what a fetches from b), while b
 * may still reach a over b→a.
 *
 * Cut modes:
 * - `hold` (a network partition as TCP sees it): nothing is forwarded either way, bytes
 *   already sent wait in socket buffers, new connections are accepted but not connected
 *   upstream. On heal everything held is delivered late (stale messages included).
 * - `reset`: every connection on the link is destroyed and new ones are closed at once.
 */
import net from 'node:net';

export type CutMode = 'hold' | 'reset';

interface Pair {
  client: net.Socket;
  upstream: net.Socket | null;
  piped: boolean;
}

export class TcpProxy {
  private readonly server: net.Server;
  private readonly pairs = new Set<Pair>();
  private state: 'open' | CutMode = 'open';
  private closed = false;

  private constructor(server: net.Server, readonly port: number, public targetPort: number, readonly host: string) {
    this.server = server;
  }

  /** Listens on 127.0.0.1 at a port the OS picks; forwards to `targetPort`. */
  static async start(targetPort: number, host = '127.0.0.1'): Promise<TcpProxy> {
    const server = net.createServer({ pauseOnConnect: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, host, () => resolve());
    });
    const port = (server.address() as net.AddressInfo).port;
    const proxy = new TcpProxy(server, port, targetPort, host);
    server.on('connection', (c) => proxy.accept(c));
    return proxy;
  }

  get url(): string {
    return `http://${this.host}:${this.port}`;
  }

  private accept(client: net.Socket): void {
    if (this.closed || this.state === 'reset') { client.destroy(); return; }
    const pair: Pair = { client, upstream: null, piped: false };
    this.pairs.add(pair);
    client.on('error', () => this.drop(pair));
    client.on('close', () => this.drop(pair));
    if (this.state === 'open') this.connect(pair);
  }

  private connect(pair: Pair): void {
    const up = net.connect({ port: this.targetPort, host: this.host });
    pair.upstream = up;
    up.on('error', () => this.drop(pair));
    up.on('close', () => this.drop(pair));
    up.on('connect', () => { if (this.state === 'open') this.flow(pair); });
  }

  private flow(pair: Pair): void {
    if (pair.piped || !pair.upstream || pair.upstream.connecting) return;
    pair.piped = true;
    pair.client.pipe(pair.upstream);
    pair.upstream.pipe(pair.client);
    pair.client.resume();
    pair.upstream.resume();
  }

  private stall(pair: Pair): void {
    if (!pair.piped || !pair.upstream) return;
    pair.piped = false;
    pair.client.unpipe(pair.upstream);
    pair.upstream.unpipe(pair.client);
    pair.client.pause();
    pair.upstream.pause();
  }

  private drop(pair: Pair): void {
    if (!this.pairs.delete(pair)) return;
    pair.client.destroy();
    pair.upstream?.destroy();
  }

  /** Cuts the link (see the modes above). */
  cut(mode: CutMode = 'hold'): void {
    this.state = mode;
    for (const pair of [...this.pairs]) {
      if (mode === 'reset') this.drop(pair);
      else this.stall(pair);
    }
  }

  /** Restores the link: held connections resume (and connect upstream if they never did). */
  heal(): void {
    this.state = 'open';
    for (const pair of this.pairs) {
      if (!pair.upstream) this.connect(pair);
      else this.flow(pair);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const pair of [...this.pairs]) this.drop(pair);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
