/**
 * One WebSocket connection to `GET /v1/tail?offset=O`, exposed as an async iterator of binary
 * messages. The socket is paused while the consumer lags (bounded queue), errors become
 * {@link LogError}s, and ending the iteration (break, return, abort) closes it cleanly.
 */
import WebSocket from 'ws';
import { LogError } from '../spec/errors.ts';
import { abortedError, errorOfResponse } from './http.ts';
import { onAbort } from './abort.ts';

const HIGH_WATER = 16;
const LOW_WATER = 4;

/** The ws:// URL of a server's tail endpoint. */
export function tailUrl(server: string, offset: number): string {
  const u = new URL(server);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  u.pathname = `${u.pathname.replace(/\/+$/, '')}/v1/tail`;
  u.search = `?offset=${offset}`;
  return u.toString();
}

function errorFromClose(server: string, code: number, reason: string): LogError {
  if (reason) {
    try {
      const body = JSON.parse(reason) as unknown;
      if (body && typeof body === 'object' && 'error' in body) {
        const e = LogError.fromBody(0, body);
        e.details.server ??= server;
        return e;
      }
    } catch {
      // plain text reason
    }
  }
  return new LogError('network', `${server}: tail closed (code ${code}${reason ? `: ${reason}` : ''})`, { server, closeCode: code });
}

/** Opens a tail socket; iterate it to receive each binary message as a Buffer. */
export class TailSocket implements AsyncIterable<Buffer> {
  private readonly ws: WebSocket;
  private readonly queue: Buffer[] = [];
  private failure: LogError | null = null;
  private ended = false;
  private wake: (() => void) | null = null;
  private readonly onAbort: () => void;
  private readonly unlisten: () => void;
  private pinger: NodeJS.Timeout | null = null;
  private heardAt = 0;

  /**
   * `onOpen`: the server took the connection (a tail of an idle log may get no message for
   * long). `liveMs` (0: never): how long the server may stay silent, to the opening handshake
   * and then to pings, before the connection counts as lost: a frozen or wedged server
   * keeps a TCP connection open, and an idle log sends nothing anyway.
   */
  constructor(readonly server: string, offset: number, private readonly signal?: AbortSignal, onOpen?: () => void, liveMs = 0) {
    this.ws = new WebSocket(tailUrl(server, offset), { perMessageDeflate: false, ...(liveMs > 0 ? { handshakeTimeout: liveMs } : {}) });
    this.ws.binaryType = 'nodebuffer';
    if (onOpen) this.ws.once('open', onOpen);
    if (liveMs > 0) this.ws.once('open', () => this.watch(liveMs));
    this.onAbort = () => {
      this.queue.length = 0;
      this.fail(abortedError(signal));
    };
    this.unlisten = signal ? onAbort(signal, this.onAbort) : () => {};
    this.ws.on('message', (data, isBinary) => {
      if (this.pinger) this.heardAt = Date.now();
      if (!isBinary) {
        // A text message can only be an error report.
        const text = Buffer.isBuffer(data) ? data.toString('utf8') : String(data);
        this.fail(errorFromClose(server, 1011, text));
        return;
      }
      const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
      this.queue.push(buf);
      if (this.queue.length >= HIGH_WATER && !this.ws.isPaused) this.ws.pause();
      this.notify();
    });
    this.ws.on('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      // A loglogd refuses a tail with its JSON error; anything else is another server.
      res.on('end', () => this.fail(errorOfResponse(server, 'the WebSocket upgrade of /v1/tail', res.statusCode ?? 0, Buffer.concat(chunks))));
      res.on('error', (err) => this.fail(new LogError('network', `${server}: ${err.message}`, { server }, { cause: err })));
    });
    this.ws.on('error', (err: Error & { code?: string }) => {
      this.fail(new LogError('network', `${server}: ${err.code ?? err.message}`, { server }, { cause: err }));
    });
    this.ws.on('close', (code, reason) => {
      if (!this.failure && !this.ended) {
        // Any close we did not ask for ends this connection; the caller decides whether to reconnect.
        this.failure = code === 1000 && reason.length === 0
          ? new LogError('network', `${server}: tail closed by the server`, { server, closeCode: code })
          : errorFromClose(server, code, reason.toString('utf8'));
      }
      this.notify();
    });
  }

  /** Pings the server; fails the connection if nothing comes back for `liveMs`. */
  private watch(liveMs: number): void {
    const heard = () => { this.heardAt = Date.now(); };
    heard();
    this.ws.on('pong', heard);
    this.pinger = setInterval(() => {
      // Paused, we read nothing (pongs included): the reader is slow, not the server.
      if (this.ws.isPaused) heard();
      if (Date.now() - this.heardAt > liveMs) {
        this.fail(new LogError('network', `${this.server}: tail got no answer in ${liveMs} ms (requestTimeoutMs)`, { server: this.server, timedOut: true }));
        this.ws.terminate();
        return;
      }
      this.ws.ping();
    }, Math.max(10, Math.floor(liveMs / 3)));
    this.pinger.unref();
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private fail(e: LogError): void {
    if (!this.failure) this.failure = e;
    this.shutdown();
    this.notify();
  }

  private shutdown(): void {
    this.unlisten();
    if (this.pinger) clearInterval(this.pinger);
    this.pinger = null;
    const s = this.ws.readyState;
    if (s === WebSocket.OPEN) this.ws.close(1000);
    else if (s === WebSocket.CONNECTING) this.ws.terminate();
  }

  /** Closes the connection cleanly (close frame 1000); pending messages are dropped. */
  close(): void {
    this.ended = true;
    this.queue.length = 0;
    this.shutdown();
    this.notify();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Buffer> {
    try {
      for (;;) {
        const next = this.queue.shift();
        if (next) {
          if (this.queue.length <= LOW_WATER && this.ws.isPaused) this.ws.resume();
          yield next;
          continue;
        }
        if (this.failure) throw this.failure;
        if (this.ended) return;
        await new Promise<void>((resolve) => { this.wake = resolve; });
      }
    } finally {
      this.close();
    }
  }
}
