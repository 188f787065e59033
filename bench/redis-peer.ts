/**
 * A peer measured in the same run as loglog: Redis Streams (`XADD`) with `appendfsync
 * always`, the brief's reference for a durable log on one node. It runs from `redis-server`
 * on PATH (Debian: `apt install redis-server`) on a free port, with its data in a temporary
 * folder, and is skipped with a note when it is not installed. It is spoken to over a plain
 * socket: the few lines of RESP needed here do not justify a client library.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { freePortRange } from '../client/cli/commands/dev.ts';
import { percentile, say } from './util.ts';

export interface RedisFigures {
  version: string;
  /** XADD of one record at a time, each acknowledged after Redis's fsync. */
  singleP50Ms: number;
  singleP99Ms: number;
  /** `inFlight` XADDs outstanding at a time (Redis fsyncs once per event-loop turn). */
  inFlight: number;
  msgPerSec: number;
  mbPerSec: number;
}

/** Figures of Redis on this machine now, or null when `redis-server` is not installed. */
export async function redisPeer(parent: string, opts: { singles: number; records: number; recordSize: number; inFlight: number }): Promise<RedisFigures | null> {
  const probe = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) return null;
  const version = /v=(\S+)/.exec(probe.stdout)?.[1] ?? 'unknown';
  const dir = await mkdtemp(join(parent, 'redis-'));
  const port = await freePortRange(1);
  const proc = spawn('redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '',
    '--appendonly', 'yes', '--appendfsync', 'always', '--daemonize', 'no', '--logfile', '',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  // Made now: redis-server may exit on its own (a taken port, say) before anyone waits.
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const kill = () => proc.kill('SIGKILL');
  process.once('exit', kill);
  try {
    await new Promise<void>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`redis-server was not ready within 10 s:\n${out.slice(-2000)}`)), 10_000);
      proc.stdout!.on('data', (d: Buffer) => { out += d; if (/Ready to accept connections/.test(out)) { clearTimeout(timer); resolve(); } });
      void exited.then(() => { clearTimeout(timer); reject(new Error(`redis-server exited (${proc.exitCode ?? proc.signalCode}) before it was ready:\n${out.slice(-2000)}`)); });
    });
    const conn = await RespConnection.open(port);
    try {
      const payload = Buffer.alloc(opts.recordSize, 0x61);
      const xadd = command(['XADD', 'bench', '*', 'd'], payload);
      for (let i = 0; i < 50; i++) await conn.call(xadd);
      const lat = new Float64Array(opts.singles);
      for (let i = 0; i < opts.singles; i++) {
        const t0 = performance.now();
        await conn.call(xadd);
        lat[i] = performance.now() - t0;
      }
      const sorted = Array.from(lat).sort((a, b) => a - b);
      const t0 = performance.now();
      await conn.pipeline(xadd, opts.records, opts.inFlight);
      const s = (performance.now() - t0) / 1000;
      return {
        version, singleP50Ms: percentile(sorted, 0.5), singleP99Ms: percentile(sorted, 0.99),
        inFlight: opts.inFlight, msgPerSec: opts.records / s, mbPerSec: (opts.records * opts.recordSize) / s / 1e6,
      };
    } finally {
      conn.close();
    }
  } finally {
    process.off('exit', kill);
    proc.kill('SIGTERM');
    const killer = setTimeout(kill, 5000);
    await exited;
    clearTimeout(killer);
    await rm(dir, { recursive: true, force: true });
  }
}

/** One RESP array command whose last argument is `last` (bytes). */
function command(args: string[], last: Buffer): Buffer {
  const head = [`*${args.length + 1}`, ...args.flatMap((a) => [`$${Buffer.byteLength(a)}`, a]), `$${last.length}`, ''].join('\r\n');
  return Buffer.concat([Buffer.from(head), last, Buffer.from('\r\n')]);
}

/** A connection that counts replies; every reply of XADD is one bulk string, or an error. */
class RespConnection {
  private buf: Buffer = Buffer.alloc(0);
  private waiters: Array<(err: Error | null) => void> = [];

  private constructor(private readonly socket: Socket) {
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => this.onData(d));
    // Redis gone mid-run: fail every call still waiting rather than hang the benchmark.
    const lost = (e?: Error) => {
      const ws = this.waiters;
      this.waiters = [];
      for (const w of ws) w(e ?? new Error('redis closed the connection'));
    };
    socket.on('error', lost);
    socket.on('close', () => lost());
  }

  static open(port: number): Promise<RespConnection> {
    return new Promise((resolve, reject) => {
      const s = connect(port, '127.0.0.1', () => resolve(new RespConnection(s)));
      s.once('error', reject);
    });
  }

  call(cmd: Buffer): Promise<void> {
    if (this.socket.destroyed) return Promise.reject(new Error('redis closed the connection'));
    return new Promise((resolve, reject) => {
      this.waiters.push((err) => (err ? reject(err) : resolve()));
      this.socket.write(cmd);
    });
  }

  /** Sends `total` copies of `cmd`, `inFlight` outstanding at a time; resolves on the last reply. */
  async pipeline(cmd: Buffer, total: number, inFlight: number): Promise<void> {
    if (this.socket.destroyed) throw new Error('redis closed the connection');
    let sent = 0;
    await new Promise<void>((resolve, reject) => {
      let done = 0;
      const one = () => {
        sent++;
        this.waiters.push((err) => {
          if (err) { reject(err); return; }
          if (++done === total) resolve();
          else if (sent < total) one();
        });
        this.socket.write(cmd);
      };
      for (let i = 0; i < Math.min(inFlight, total); i++) one();
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(d: Buffer): void {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    for (;;) {
      const eol = this.buf.indexOf('\r\n');
      if (eol < 0) return;
      const line = this.buf.toString('latin1', 0, eol);
      let size = eol + 2;
      let err: Error | null = null;
      if (line[0] === '$') {
        const n = Number(line.slice(1));
        if (n >= 0) size += n + 2;
        if (this.buf.length < size) return;
      } else if (line[0] === '-') {
        err = new Error(`redis: ${line.slice(1)}`);
      }
      this.buf = this.buf.subarray(size);
      this.waiters.shift()?.(err);
    }
  }
}

/**
 * Runs the Redis peer and prints it beside loglog's figures from the same run. Returns the
 * `peers` fragment of the benchmark's JSON (`redis: null` when it was skipped).
 */
export async function comparePeers(work: string, loglog: { singleP50Ms: number; mbPerSec: number; what: string }): Promise<Record<string, unknown>> {
  const opts = { singles: 2000, records: 100_000, recordSize: 1024, inFlight: 256 };
  say(`peer, same run: Redis Streams, XADD of ${opts.recordSize} B records with appendfsync always (one node)`);
  let r: RedisFigures | null;
  try {
    r = await redisPeer(work, opts);
  } catch (e) {
    // loglog's own figures stand without the peer's.
    say(`  failed: ${(e as Error).message}`);
    return { redis: { error: (e as Error).message } };
  }
  if (!r) {
    say('  skipped: redis-server is not installed (Debian: apt install redis-server)');
    return { redis: null };
  }
  say(`  Redis ${r.version}: one at a time p50 ${r.singleP50Ms.toFixed(2)} ms, p99 ${r.singleP99Ms.toFixed(2)} ms; ${r.inFlight} in flight ${r.msgPerSec.toFixed(0)} msg/s, ${r.mbPerSec.toFixed(1)} MB/s`);
  const latency = loglog.singleP50Ms / r.singleP50Ms;
  const rate = loglog.mbPerSec / r.mbPerSec;
  say(`  ${loglog.what} / Redis: single append p50 ${latency.toFixed(1)}x (lower is better), MB/s ${rate.toFixed(1)}x (higher is better)`);
  return {
    redis: {
      version: r.version, singleP50Ms: +r.singleP50Ms.toFixed(3), singleP99Ms: +r.singleP99Ms.toFixed(3),
      inFlight: r.inFlight, msgPerSec: Math.round(r.msgPerSec), mbPerSec: +r.mbPerSec.toFixed(1),
      loglogSingleP50Ratio: +latency.toFixed(2), loglogMbPerSecRatio: +rate.toFixed(2),
    },
  };
}
