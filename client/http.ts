/**
 * HTTP transport of the SDK: one undici `Pool` per server origin for ordinary requests and a
 * second, separate pool per origin for long-poll reads, so a reader waiting on `wait=` never
 * occupies a connection an append needs.
 *
 * Every call maps failures onto {@link LogError}:
 * - an HTTP error status with a `{"error":{...}}` body → `LogError.fromBody`; without one
 *   (another web server's answer) → `bad_response`, which is not retriable;
 * - a transport failure (undici `UND_ERR_*`, `ECONNREFUSED`, `ECONNRESET`, ...) →
 *   `LogError('network', ..., { cause })`, which is retriable;
 * - an aborted `AbortSignal` → `LogError('aborted')`.
 *
 * Response bodies are always consumed (or dumped), as undici requires.
 */
import { Pool } from 'undici';
import type { IncomingHttpHeaders } from 'node:http';
import { LogError, errorOfBody } from '../spec/errors.ts';
import { childSignal, onAbort } from './abort.ts';

/** Options of a {@link Transport}. */
export interface TransportOptions {
  /** Connections per server in the main pool (default 16). */
  connections?: number;
  /** Connections per server in the long-poll pool (default 8). */
  longPollConnections?: number;
  /**
   * Time allowed for response headers and between body chunks, in ms (default 30 000).
   * Long-poll requests get this plus their `wait` time.
   */
  requestTimeoutMs?: number;
}

/** One HTTP request, relative to a server base URL. */
export interface HttpRequest {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** Path with a leading slash, e.g. `/v1/append`. */
  path: string;
  /** Query parameters; `undefined` values are left out. */
  query?: Record<string, string | number | boolean | undefined>;
  headers?: Record<string, string>;
  body?: Uint8Array;
  signal?: AbortSignal;
  /** Route over the long-poll pool and allow `longPollMs` extra for the answer. */
  longPollMs?: number;
}

/** A successful (2xx) response with its whole body. */
export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** The error to throw when `signal` was aborted. */
export function abortedError(signal?: AbortSignal): LogError {
  const reason: unknown = signal?.reason;
  // The client's own stop (close()) says so; a caller's abort is "the operation was aborted".
  const message = reason instanceof LogError && reason.code === 'aborted' ? reason.message : 'the operation was aborted';
  return new LogError('aborted', message, {}, { cause: reason });
}

/**
 * A signal that aborts after `ms`, or when `parent` does. Not `AbortSignal.any([parent,
 * AbortSignal.timeout(ms)])`: in Node 20 the timeout signal inside it can be garbage
 * collected before it fires (nodejs/node#57736), and a request to a frozen server then
 * waits out its whole request timeout. Here the timer holds the controller.
 */
export function timeoutSignal(ms: number, parent?: AbortSignal): AbortSignal {
  const ctl = new AbortController();
  if (parent?.aborted) {
    ctl.abort(parent.reason);
    return ctl.signal;
  }
  if (parent) {
    const stop = onAbort(parent, () => ctl.abort(parent.reason));
    ctl.signal.addEventListener('abort', stop, { once: true });
  }
  setTimeout(() => ctl.abort(new DOMException(`no answer within ${ms} ms`, 'TimeoutError')), ms).unref();
  return ctl.signal;
}

/** `bad_response`: `server` answered `what` in a way no loglogd does. */
export function notLoglog(server: string, what: string, how: string, cause?: unknown): LogError {
  return new LogError('bad_response', `${server} answered ${what} ${how}: is it a loglogd? (check the address)`, { server }, { cause });
}

/**
 * The error an HTTP error status with `body` stands for: a loglog error as such, with
 * `server` in its details; `bad_response` when the body is no loglog error. Every error a
 * loglogd sends has one: classed by its status alone, another web server's 5xx passed for
 * a node failing after it may have written the entry, and an append to a wrong address
 * ended in outcome_unknown.
 */
export function errorOfResponse(server: string, what: string, status: number, body: Buffer): LogError {
  let parsed: unknown = null;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    // not JSON: not a loglog error either
  }
  const known = errorOfBody(parsed);
  const foreign = (parsed as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  if (!known && typeof foreign?.code !== 'string') return notLoglog(server, what, `with HTTP ${status} and no loglog error`);
  const err = LogError.fromBody(status, parsed);
  if (err.details.server === undefined) err.details.server = server;
  if (!known) {
    err.message = `${server}: ${String(foreign?.message ?? foreign?.code)} (error code "${String(foreign?.code)}", which this client does not know: a newer loglogd?)`;
  }
  return err;
}

/** Converts anything thrown by undici (or a body read) into a LogError. */
export function toLogError(e: unknown, server: string, signal?: AbortSignal): LogError {
  if (e instanceof LogError) return e;
  if (signal?.aborted) return abortedError(signal);
  const err = e as { name?: string; code?: string; message?: string };
  if (err?.name === 'AbortError') return abortedError(signal);
  // undici's own words ("Headers Timeout Error") do not say how long it waited.
  const timedOut = err?.code === 'UND_ERR_HEADERS_TIMEOUT' || err?.code === 'UND_ERR_BODY_TIMEOUT';
  const msg = timedOut ? 'no response in time (requestTimeoutMs)' : err?.message || String(err?.code ?? e);
  const text = err?.code && !msg.includes(err.code) ? `${msg} (${err.code})` : msg;
  return new LogError('network', `${server}: ${text}`, timedOut ? { server, timedOut: true } : { server }, { cause: e });
}

/** Normalizes a server address: adds `http://` when no scheme is given, drops trailing slashes. */
export function normalizeServer(s: string): string {
  const t = s.trim();
  if (t === '') throw new LogError('bad_request', 'empty server address');
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(t) ? t : `http://${t}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new LogError('bad_request', `invalid server address: ${s}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new LogError('bad_request', `unsupported server address (http or https only): ${s}`);
  }
  return url.origin + url.pathname.replace(/\/+$/, '');
}

/** Origin and path prefix of each server base URL, parsed once (URL parsing is not free). */
const parsedBases = new Map<string, { origin: string; prefix: string }>();

function parseBase(base: string): { origin: string; prefix: string } {
  let p = parsedBases.get(base);
  if (!p) {
    const u = new URL(base);
    p = { origin: u.origin, prefix: u.pathname.replace(/\/+$/, '') };
    if (parsedBases.size > 1024) parsedBases.clear();
    parsedBases.set(base, p);
  }
  return p;
}

function buildPath(base: string, req: HttpRequest): string {
  let path = parseBase(base).prefix + req.path;
  if (req.query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(req.query)) if (v !== undefined) q.set(k, String(v));
    const s = q.toString();
    if (s) path += `?${s}`;
  }
  return path;
}

/** How long one request may wait for its answer, unless `requestTimeoutMs` says otherwise. */
const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

/** The undici-based transport shared by all calls of one {@link LogClient}. */
export class Transport {
  private readonly pools = new Map<string, Pool>();
  private readonly longPools = new Map<string, Pool>();
  /** How long one request may wait for its answer (`requestTimeoutMs`; 0: no limit). */
  readonly timeoutMs: number;
  private closed = false;

  constructor(private readonly opts: TransportOptions = {}) {
    this.timeoutMs = opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  }

  private pool(server: string, longPoll: boolean): Pool {
    if (this.closed) throw new LogError('aborted', 'the client is closed');
    const { origin } = parseBase(server);
    const map = longPoll ? this.longPools : this.pools;
    let p = map.get(origin);
    if (!p) {
      p = new Pool(origin, {
        connections: longPoll ? (this.opts.longPollConnections ?? 8) : (this.opts.connections ?? 16),
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
        keepAliveTimeout: 10_000,
      });
      map.set(origin, p);
    }
    return p;
  }

  /**
   * Sends one request to `server` and returns the whole 2xx response.
   * Throws a {@link LogError} for error statuses, transport failures and aborts.
   */
  async request(server: string, req: HttpRequest): Promise<HttpResponse> {
    const { signal } = req;
    if (signal?.aborted) throw abortedError(signal);
    const longPoll = req.longPollMs !== undefined;
    const timeout = this.timeoutMs + (req.longPollMs ?? 0);
    const headers: Record<string, string> = { ...req.headers };
    if (req.body) headers['content-length'] = String(req.body.byteLength);
    let res;
    // undici listens to a signal of this request's own (see abort.ts).
    const own = childSignal(signal);
    let body: Buffer;
    try {
      res = await this.pool(server, longPoll).request({
        method: req.method,
        path: buildPath(server, req),
        headers,
        body: req.body,
        signal: own.signal,
        headersTimeout: timeout,
        bodyTimeout: timeout,
      });
      body = Buffer.from(await res.body.arrayBuffer());
    } catch (e) {
      throw toLogError(e, server, signal);
    } finally {
      own.release();
    }
    if (res.statusCode >= 200 && res.statusCode < 300) return { status: res.statusCode, headers: res.headers, body };
    throw errorOfResponse(server, `${req.method} ${req.path}`, res.statusCode, body);
  }

  /**
   * Like {@link request}, parsing the body as JSON; `shape` names the fields the answer must
   * have (a number or a string each), so that another server's 200 is not taken for loglog's.
   */
  async json<T>(server: string, req: HttpRequest, shape: Record<string, 'number' | 'string'> = {}): Promise<T> {
    const res = await this.request(server, req);
    let v: unknown;
    try {
      v = JSON.parse(res.body.toString('utf8'));
    } catch (e) {
      throw notLoglog(server, `${req.method} ${req.path}`, 'with something that is not JSON', e);
    }
    // On every append: no arrays unless the answer is refused.
    let fits = typeof v === 'object' && v !== null;
    for (const k in shape) if (fits && typeof (v as Record<string, unknown>)[k] !== shape[k]) fits = false;
    if (!fits) {
      const missing = Object.keys(shape).filter((k) => typeof (v as Record<string, unknown> | null)?.[k] !== shape[k]);
      throw notLoglog(server, `${req.method} ${req.path}`, `without ${missing.join(', ') || 'a JSON object'}`);
    }
    return v as T;
  }

  /** Closes every pool (in-flight requests finish first). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const all = [...this.pools.values(), ...this.longPools.values()];
    this.pools.clear();
    this.longPools.clear();
    await Promise.all(all.map((p) => p.close().catch(() => undefined)));
  }
}
