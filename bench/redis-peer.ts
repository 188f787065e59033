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
import { say } from './util.ts';

/** A redis-server with `appendfsync always` in a temporary folder, and one connection to it. */
export class RedisPeer {
  private constructor(
    readonly version: string,
    private readonly conn: RespConnection,
    private readonly stopFn: () => Promise<void>,
  ) {}

  /** Starts one under `parent`; null when `redis-server` is not installed. Throws when it will not start. */
  static async start(parent: string): Promise<RedisPeer | null> {
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
    let conn: RespConnection | null = null;
    const stop = async () => {
      conn?.close();
      process.off('exit', kill);
      proc.kill('SIGTERM');
      const killer = setTimeout(kill, 5000);
      await exited;
      clearTimeout(killer);
      await rm(dir, { recursive: true, force: true });
    };
    try {
      await new Promise<void>((resolve, reject) => {
        let out = '';
        const timer = setTimeout(() => reject(new Error(`redis-server was not ready within 10 s:\n${out.slice(-2000)}`)), 10_000);
        proc.stdout!.on('data', (d: Buffer) => { out += d; if (/Ready to accept connections/.test(out)) { clearTimeout(timer); resolve(); } });
        void exited.then(() => { clearTimeout(timer); reject(new Error(`redis-server exited (${proc.exitCode ?? proc.signalCode}) before it was ready:\n${out.slice(-2000)}`)); });
      });
      conn = await RespConnection.open(port);
      return new RedisPeer(version, conn, stop);
    } catch (e) {
      await stop();
      throw e;
    }
  }

  /** Times `n` XADDs of `payload`, one at a time, each acknowledged after Redis's fsync (ms each). */
  async singles(payload: Buffer, n: number): Promise<number[]> {
    const xadd = xaddCommand(payload);
    const lat: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      await this.conn.call(xadd);
      lat.push(performance.now() - t0);
    }
    return lat;
  }

  /** `total` XADDs of `payload` with `inFlight` outstanding (Redis fsyncs once per event-loop turn). */
  async pipelined(payload: Buffer, total: number, inFlight: number): Promise<{ msgPerSec: number; mbPerSec: number }> {
    const t0 = performance.now();
    await this.conn.pipeline(xaddCommand(payload), total, inFlight);
    const s = (performance.now() - t0) / 1000;
    return { msgPerSec: total / s, mbPerSec: (total * payload.length) / s / 1e6 };
  }

  stop(): Promise<void> {
    return this.stopFn();
  }
}

/** Starts the peer, or says why there is none; never throws (loglog's figures stand without it). */
export async function startRedisPeer(work: string): Promise<RedisPeer | null> {
  say('peer, same run: Redis Streams, XADD with appendfsync always (one node)');
  try {
    const peer = await RedisPeer.start(work);
    if (!peer) say('  skipped: redis-server is not installed (Debian: apt install redis-server)');
    else say(`  Redis ${peer.version} started`);
    return peer;
  } catch (e) {
    say(`  failed to start: ${(e as Error).message}`);
    return null;
  }
}

function xaddCommand(payload: Buffer): Buffer {
  return command(['XADD', 'bench', '*', 'd'], payload);
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

