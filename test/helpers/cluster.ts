/**
 * Real multi-process loglogd clusters for fault tests.
 *
 * `Cluster.start` picks free ports first (peers must know each other's addresses before any
 * node listens, so port 0 is not an option), generates a cluster secret, gives every node a
 * temporary data directory, and kills every process in teardown. With `proxied`, every
 * ordered pair of nodes talks through its own TCP proxy (see tcp-proxy.ts), so a test can
 * cut and heal links per direction. Clients (the tests) always talk to nodes directly.
 *
 * Nothing here sleeps for a fixed time: waits poll with a deadline and fail with what they saw.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { Agent, request } from 'undici';
import type { ConfigFile } from '../../server/config.ts';
import { FRAME_OVERHEAD, Kind, kindName, parseFrames } from '../../spec/frame.ts';
import type { FinalLog, FrameKindName } from '../../spec/history.ts';
import { spawnLoglogd } from './node-process.ts';
import { TcpProxy } from './tcp-proxy.ts';

export interface NodeStatus {
  id: string;
  role: 'leader' | 'follower' | 'candidate';
  term: number;
  /** Not voting yet: a new or emptied data directory (see ServerStatus). */
  abstaining?: boolean;
  leader: string | null;
  start: number;
  end: number;
  commit: number;
  readable: number;
  durable: number;
  segments: number;
  /** Bytes placed in the segment files (grows during a catch-up copy, before the replica's ends do). */
  bytes: number;
  /** Byte counters since the process started (payloads served to peers' fetches, frames served to catch-up copies). */
  traffic?: { peerPayloadBytes: number; peerCopyBytes: number; peerFetchRequests?: number };
}

export interface ClusterOptions {
  size?: number;
  /** Route peer traffic through one TCP proxy per ordered pair of nodes. */
  proxied?: boolean;
  /** Options written to a JSON config file every node reads. */
  config?: ConfigFile;
  /** Per-node cluster secret overrides (e.g. one node with the wrong secret). */
  secrets?: Record<string, string>;
  /** Per-node extra loglogd flags (e.g. one node with another --cluster-name). */
  args?: Record<string, string[]>;
  /**
   * Per node, peers whose address in its --peers list is another member's: `{ n1: { n2: 'n3' } }`
   * has n1 dial n3's address for n2.
   */
  misdial?: Record<string, Record<string, string>>;
  /** Don't wait for a leader after starting. */
  noWait?: boolean;
}

/** A short-lived agent for control-plane requests (status, reads): no pooling across nodes' restarts. */
const control = new Agent({ connections: 8, keepAliveTimeout: 1000, connect: { timeout: 2000 } });

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `probe` until it returns a value other than undefined, or throws after `ms` with `what` and the last state. */
export async function until<T>(what: string, ms: number, probe: () => Promise<T | undefined> | T | undefined, describe?: () => string): Promise<T> {
  const deadline = Date.now() + ms;
  let pause = 10;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}${describe ? `: ${describe()}` : ''}`);
    await sleep(pause);
    pause = Math.min(pause * 2, 50);
  }
}

/**
 * A free port outside the kernel's ephemeral range (so no outgoing connection can take it
 * between the check and the node's listen), checked by binding and closing it.
 */
const usedPorts = new Set<number>();
async function freePort(): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    if (usedPorts.has(port)) continue;
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (ok) { usedPorts.add(port); return port; }
  }
  throw new Error('no free port found');
}

export class ClusterNode {
  proc: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  /** stderr of every run of this node, runs separated by a marker line. */
  log = '';
  runs = 0;

  constructor(readonly cluster: Cluster, readonly id: string, public port: number, readonly dataDir: string, readonly secret: string) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get alive(): boolean {
    return this.proc !== null && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Starts the process and resolves once it says it is serving. */
  async start(): Promise<void> {
    if (this.alive) throw new Error(`${this.id} is already running`);
    this.runs++;
    this.log += `----- run ${this.runs} of ${this.id} -----\n`;
    const peers = this.cluster.nodes.map((n) => `${n.id}=${this.cluster.peerUrl(this.id, n.id)}`).join(',');
    const args = ['--id', this.id, '--data', this.dataDir, '--listen', `127.0.0.1:${this.port}`, '--peers', peers, '--cluster-secret', this.secret];
    if (this.cluster.configFile) args.push('--config', this.cluster.configFile);
    // Its first start is a new cluster's: the others elect even with one member refused.
    if (this.runs === 1) args.push('--new-cluster');
    args.push(...(this.cluster.options.args?.[this.id] ?? []));
    const env = { ...process.env };
    delete env.LOGLOG_CLUSTER_SECRET;
    const daemon = spawnLoglogd(args, { name: this.id, env, onStderr: (chunk) => { this.log += chunk; } });
    this.proc = daemon.proc;
    this.exited = daemon.exited.then(() => undefined);
    await daemon.serving;
  }

  /** kill -9, and wait until the process is gone. */
  async kill(): Promise<void> {
    if (this.alive) this.proc!.kill('SIGKILL');
    await this.exited;
  }

  /** SIGSTOP: the process freezes (a long GC pause, a stalled VM) until `resume`. */
  pause(): void {
    if (this.alive) this.proc!.kill('SIGSTOP');
  }

  resume(): void {
    if (this.alive) this.proc!.kill('SIGCONT');
  }

  /** kill -9 (if running), then start again on the same data directory and port. */
  async restart(): Promise<void> {
    await this.kill();
    await this.start();
  }

  async status(timeoutMs = 1000): Promise<NodeStatus | null> {
    if (!this.alive) return null;
    try {
      const r = await request(`${this.url}/v1/status`, { dispatcher: control, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
      if (r.statusCode !== 200) { await r.body.dump(); return null; }
      return (await r.body.json()) as NodeStatus;
    } catch {
      return null;
    }
  }

  /** The node's committed log from its start, as served by its read API. */
  async readCommitted(): Promise<{ start: number; end: number; bytes: Buffer }> {
    const parts: Buffer[] = [];
    let start = -1;
    let offset = 0;
    for (;;) {
      const r = await request(`${this.url}/v1/read?offset=${offset}&limit=${16 * 1024 * 1024}`, { dispatcher: control, headersTimeout: 10_000, bodyTimeout: 30_000 });
      const body = Buffer.from(await r.body.arrayBuffer());
      if (r.statusCode === 410 && start < 0) {
        offset = (JSON.parse(body.toString()) as { error: { start: number } }).error.start;
        continue;
      }
      if (r.statusCode !== 200) throw new Error(`${this.id}: read at ${offset} answered ${r.statusCode}: ${body.toString().slice(0, 300)}`);
      if (start < 0) start = offset;
      if (body.length === 0) break;
      parts.push(body);
      offset = Number(r.headers['x-loglog-next']);
    }
    return { start, end: offset, bytes: Buffer.concat(parts) };
  }

  /** The committed log as the history checker's final log (frames verified while parsing). */
  async finalLog(): Promise<FinalLog> {
    const { start, end, bytes } = await this.readCommitted();
    return toFinalLog(start, end, bytes);
  }

  /** Bytes [from, to) of the log as stored in this node's segment files (read from disk). */
  segmentBytes(from: number, to: number): Buffer {
    const bases = fs.readdirSync(this.dataDir).map((n) => /^([0-9a-f]{16})\.seg$/.exec(n)).filter((m) => m !== null).map((m) => Number.parseInt(m[1], 16)).sort((a, b) => a - b);
    const out = Buffer.alloc(to - from);
    let filled = from;
    for (let i = 0; i < bases.length && filled < to; i++) {
      const base = bases[i];
      const next = bases[i + 1] ?? Infinity;
      if (next <= filled) continue;
      if (base > filled) throw new Error(`${this.id}: no segment holds offset ${filled} (segments ${bases.join(',')})`);
      const fd = fs.openSync(path.join(this.dataDir, `${base.toString(16).padStart(16, '0')}.seg`), 'r');
      try {
        const upto = Math.min(to, next);
        const n = fs.readSync(fd, out, filled - from, upto - filled, filled - base);
        if (n !== upto - filled) throw new Error(`${this.id}: segment ${base} is short: read ${n} of ${upto - filled} bytes at ${filled}`);
        filled = upto;
      } finally {
        fs.closeSync(fd);
      }
    }
    if (filled < to) throw new Error(`${this.id}: segments end at ${filled}, wanted ${to}`);
    return out;
  }

  /** Base offsets of this node's segment files. */
  segmentBases(): number[] {
    return fs.readdirSync(this.dataDir).map((n) => /^([0-9a-f]{16})\.seg$/.exec(n)).filter((m) => m !== null).map((m) => Number.parseInt(m[1], 16)).sort((a, b) => a - b);
  }
}

export function toFinalLog(start: number, end: number, bytes: Buffer): FinalLog {
  const frames: FinalLog['frames'] = [];
  for (const f of parseFrames(bytes, start)) frames.push([f.offset, f.length, f.crc, kindName(f.kind) as FrameKindName]);
  let at = start;
  for (const f of frames) at = f[0] + FRAME_OVERHEAD + f[1];
  if (at !== end) throw new Error(`frames end at ${at}, the read ended at ${end}`);
  return { start, end, frames };
}

/** Data frames of a final log as read entries [offset, len, crc]. */
export function dataEntries(log: FinalLog): [number, number, number][] {
  return log.frames.filter((f) => f[3] === kindName(Kind.Data)).map((f) => [f[0], f[1], f[2]]);
}

export class Cluster {
  readonly nodes: ClusterNode[] = [];
  /** proxies.get(from).get(to): the link `from` uses to reach `to`. */
  readonly proxies = new Map<string, Map<string, TcpProxy>>();
  configFile: string | null = null;
  readonly secret = randomBytes(16).toString('hex');

  private constructor(readonly t: ExecutionContext, readonly root: string, readonly options: ClusterOptions = {}) {}

  static async start(t: ExecutionContext, opts: ClusterOptions = {}): Promise<Cluster> {
    const size = opts.size ?? 3;
    const root = await mkdtemp(path.join(tmpdir(), 'loglog-cluster-'));
    const c = new Cluster(t, root, opts);
    t.teardown(async () => {
      await c.shutdown();
      if (process.env.LOGLOG_KEEP_CLUSTER) {
        for (const n of c.nodes) await writeFile(path.join(root, `${n.id}.log`), n.log);
        t.log(`kept ${root} (node logs in ${root}/n*.log)`);
      } else await rm(root, { recursive: true, force: true });
    });
    if (opts.config) {
      c.configFile = path.join(root, 'config.json');
      await writeFile(c.configFile, JSON.stringify(opts.config));
    }
    for (let i = 1; i <= size; i++) {
      const id = `n${i}`;
      const dataDir = path.join(root, id);
      fs.mkdirSync(dataDir);
      c.nodes.push(new ClusterNode(c, id, await freePort(), dataDir, opts.secrets?.[id] ?? c.secret));
    }
    if (opts.proxied) {
      for (const a of c.nodes) {
        const m = new Map<string, TcpProxy>();
        for (const b of c.nodes) if (a !== b) m.set(b.id, await TcpProxy.start(b.port));
        c.proxies.set(a.id, m);
      }
    }
    for (let attempt = 1; ; attempt++) {
      try {
        await Promise.all(c.nodes.map((n) => n.start()));
        break;
      } catch (e) {
        if (attempt >= 3 || !/EADDRINUSE/.test((e as Error).message)) throw e;
        // Another process took a port between the check and the listen: every node gets a
        // new one (each node's peer list names them all) and a fresh data directory.
        await Promise.all(c.nodes.map((n) => n.kill()));
        for (const n of c.nodes) {
          n.port = await freePort();
          fs.rmSync(n.dataDir, { recursive: true, force: true });
          fs.mkdirSync(n.dataDir);
          for (const m of c.proxies.values()) { const p = m.get(n.id); if (p) p.targetPort = n.port; }
        }
      }
    }
    if (!opts.noWait) await c.waitLeader();
    return c;
  }

  /** The URL node `from` has for node `dialed` in its --peers list (another member's under `misdial`). */
  peerUrl(from: string, dialed: string): string {
    if (from === dialed) return this.node(dialed).url;
    const to = this.options.misdial?.[from]?.[dialed] ?? dialed;
    const p = this.proxies.get(from)?.get(to);
    return p ? p.url : this.node(to).url;
  }

  node(id: string): ClusterNode {
    const n = this.nodes.find((x) => x.id === id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  alive(): ClusterNode[] {
    return this.nodes.filter((n) => n.alive);
  }

  async statuses(nodes: ClusterNode[] = this.alive()): Promise<Map<string, NodeStatus>> {
    const all = await Promise.all(nodes.map(async (n) => [n.id, await n.status()] as const));
    const m = new Map<string, NodeStatus>();
    for (const [id, s] of all) if (s) m.set(id, s);
    return m;
  }

  /**
   * Waits until, among `among` (default: the running nodes), exactly one node is leader in
   * the highest term any of them reports, and at least a majority of the cluster answers.
   */
  async waitLeader(opts: { among?: ClusterNode[]; ms?: number; minTerm?: number; not?: string } = {}): Promise<ClusterNode> {
    let last = new Map<string, NodeStatus>();
    const majority = Math.floor(this.nodes.length / 2) + 1;
    return until('a single leader', opts.ms ?? 15_000, async () => {
      const among = opts.among ?? this.alive();
      last = await this.statuses(among);
      if (last.size < Math.min(majority, among.length)) return undefined;
      const top = Math.max(...[...last.values()].map((s) => s.term));
      const leaders = [...last.values()].filter((s) => s.role === 'leader' && s.term === top);
      if (leaders.length !== 1 || top < (opts.minTerm ?? 0) || leaders[0].id === opts.not) return undefined;
      // A majority agrees on the term's leader (followers heard from it).
      const followers = [...last.values()].filter((s) => s.term === top && (s.leader === leaders[0].id));
      if (followers.length < majority) return undefined;
      return this.node(leaders[0].id);
    }, () => JSON.stringify([...last.values()].map((s) => ({ id: s.id, role: s.role, term: s.term, leader: s.leader, end: s.end, commit: s.commit }))));
  }

  /**
   * Waits until every running node (or `nodes`) serves the same committed prefix, equal to
   * the leader's commit end, which covers the leader's whole log. Returns that end.
   */
  async waitConverged(opts: { nodes?: ClusterNode[]; ms?: number } = {}): Promise<number> {
    let last = new Map<string, NodeStatus>();
    return until('replicas to converge', opts.ms ?? 30_000, async () => {
      const nodes = opts.nodes ?? this.alive();
      last = await this.statuses(nodes);
      if (last.size !== nodes.length) return undefined;
      const ss = [...last.values()];
      const leaders = ss.filter((s) => s.role === 'leader');
      if (leaders.length !== 1) return undefined;
      const L = leaders[0];
      if (L.commit !== L.end || L.readable !== L.commit) return undefined;
      for (const s of ss) if (s.readable !== L.commit || s.commit !== L.commit || s.term !== L.term) return undefined;
      return L.commit;
    }, () => JSON.stringify([...last.values()].map((s) => ({ id: s.id, role: s.role, term: s.term, end: s.end, commit: s.commit, readable: s.readable, durable: s.durable }))));
  }

  /**
   * Asserts that every node's segment files hold exactly the same bytes over [from, to)
   * (the committed prefix every node shares). Returns how the nodes' segment files split
   * that range where they differ; with `sameSplits` a difference fails too.
   */
  compareSegments(to: number, nodes: ClusterNode[] = this.nodes, opts: { from?: number; sameSplits?: boolean } = {}): string[] {
    const from = opts.from ?? 0;
    const [first, ...rest] = nodes;
    const ref = first.segmentBytes(from, to);
    const refBases = first.segmentBases().filter((b) => b < to);
    const splits: string[] = [];
    for (const n of rest) {
      const mine = n.segmentBytes(from, to);
      if (!mine.equals(ref)) {
        let i = 0;
        while (i < ref.length && ref[i] === mine[i]) i++;
        throw new Error(`segment bytes of ${n.id} differ from ${first.id} at offset ${from + i} (compared ${from}..${to})`);
      }
      const bases = n.segmentBases().filter((b) => b < to);
      if (bases.join(',') !== refBases.join(',')) {
        let i = 0;
        while (i < bases.length && bases[i] === refBases[i]) i++;
        splits.push(`${n.id} has ${bases.length} segments below ${to}, ${first.id} ${refBases.length}; the first split that differs: ${n.id} at ${bases[i] ?? '-'}, ${first.id} at ${refBases[i] ?? '-'}`);
      }
    }
    if (opts.sameSplits && splits.length > 0) throw new Error(splits.join('\n'));
    return splits;
  }

  /** Cuts the links between the groups (both directions unless `oneWay`: only a→b). */
  partition(a: string[], b: string[], opts: { oneWay?: boolean; mode?: 'hold' | 'reset' } = {}): void {
    for (const x of a) for (const y of b) {
      this.link(x, y).cut(opts.mode);
      if (!opts.oneWay) this.link(y, x).cut(opts.mode);
    }
  }

  heal(): void {
    for (const m of this.proxies.values()) for (const p of m.values()) p.heal();
  }

  link(from: string, to: string): TcpProxy {
    const p = this.proxies.get(from)?.get(to);
    if (!p) throw new Error(`no proxy from ${from} to ${to} (start the cluster with proxied: true)`);
    return p;
  }

  /** Payload bytes served to peers' fetches and frame bytes served to catch-up copies, summed over the running nodes (since each started). */
  async peerTraffic(): Promise<{ payload: number; copy: number }> {
    let payload = 0, copy = 0;
    for (const s of (await this.statuses()).values()) {
      payload += s.traffic?.peerPayloadBytes ?? 0;
      copy += s.traffic?.peerCopyBytes ?? 0;
    }
    return { payload, copy };
  }

  /** Every node's log, for failure messages. */
  logs(): string {
    return this.nodes.map((n) => `===== ${n.id} (port ${n.port}) =====\n${n.log}`).join('\n');
  }

  async shutdown(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.kill()));
    for (const m of this.proxies.values()) for (const p of m.values()) await p.close();
  }
}
