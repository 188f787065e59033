/**
 * Histories of real-process cluster tests, and the load that makes them.
 *
 * A `History` records one JSON line per completed operation in the format of
 * spec/history.ts (the checker the simulator uses too), writes it to
 * `$LOGLOG_HISTORY_DIR/<test>.jsonl` when that variable is set, and always checks it.
 *
 * `AppendLoad` runs concurrent writers against whichever node leads: each append uploads
 * the payload to every other running node (`PUT /v1/upload/:id`) in parallel with the
 * `POST /v1/append` to the leader, with plain undici so the test sees every outcome.
 * `TailReader` reads committed frames from the replicas in turn, recording what it saw.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { Agent, request } from 'undici';
import { Kind, crc32c, parseFrames } from '../../spec/frame.ts';
import { type AppendOp, type FinalLog, type HistoryOp, type HistoryReport, type ReadOp, checkHistory, formatHistory } from '../../spec/history.ts';
import { type Cluster, type ClusterNode, dataEntries, until } from './cluster.ts';

export class History {
  readonly ops: HistoryOp[] = [];
  /** The node each append was sent to (not part of the history format). */
  readonly sentTo = new Map<AppendOp, string>();
  private readonly t0 = performance.now();

  now(): number {
    return Math.round((performance.now() - this.t0) * 1000) / 1000;
  }

  add(op: HistoryOp): void {
    this.ops.push(op);
  }

  appends(): AppendOp[] {
    return this.ops.filter((o): o is AppendOp => o.op === 'append');
  }

  acked(): AppendOp[] {
    return this.appends().filter((a) => a.result === 'ok');
  }

  /**
   * The history as seen from `offset` on (the log below it was trimmed): appends
   * acknowledged below it, reads from below it and linearizable ends below it are left out.
   */
  from(offset: number): History {
    const h = new History();
    for (const op of this.ops) {
      if (op.op === 'append') {
        if (op.result === 'ok' && op.offset !== null && op.offset < offset) continue;
        h.ops.push(op);
      } else if (op.op === 'read') {
        if (op.from < offset) continue;
        h.ops.push(op);
      } else if (op.end >= offset) {
        h.ops.push(op);
      }
    }
    return h;
  }

  /**
   * Writes the history as JSON lines if LOGLOG_HISTORY_DIR is set (and, given, the final
   * log it was checked against next to it, as `<name>.final.json`); returns the path.
   */
  save(name: string, final?: FinalLog): string | null {
    const dir = process.env.LOGLOG_HISTORY_DIR;
    if (!dir) return null;
    mkdirSync(dir, { recursive: true });
    const base = path.join(dir, name.replace(/[^A-Za-z0-9_.-]+/g, '-').replace(/^-|-$/g, '').slice(0, 120));
    writeFileSync(`${base}.jsonl`, formatHistory(this.ops));
    if (final) writeFileSync(`${base}.final.json`, JSON.stringify(final));
    return `${base}.jsonl`;
  }

  /** Runs the shared checker against one replica's final log; fails the test with its violations. */
  check(t: ExecutionContext, final: FinalLog, label: string, opts: { checkUnseen?: boolean } = {}): HistoryReport {
    const report = checkHistory(this.ops, final, { checkUnseen: opts.checkUnseen ?? true, maxPerCheck: 5 });
    if (!report.ok) t.fail(`history check against ${label}:\n${report.violations.map((v) => `  ${v.check}: ${v.message}`).join('\n')}`);
    return report;
  }
}

/** Unique payload bytes (the checker identifies entries by length and CRC32C). */
function makePayload(client: string, seq: number, size: number): Buffer {
  const head = Buffer.from(`${client}:${seq}:${randomBytes(8).toString('hex')}:`);
  if (head.length >= size) return head;
  const b = Buffer.alloc(size);
  head.copy(b);
  // Cheap pseudo-random filler, different per payload.
  let x = crc32c(head) || 1;
  for (let i = head.length; i + 4 <= size; i += 4) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    b.writeUInt32LE(x, i);
  }
  return b;
}

export interface LoadOptions {
  clients?: number;
  minBytes?: number;
  maxBytes?: number;
  /** Chance that a writer sends only half of an append's body and disconnects (an aborted frame). */
  abandonChance?: number;
  /** Chance that an entry is large: 64..320 KiB (larger than a small test segment). */
  largeChance?: number;
  /** Name prefix of the writers in the history. */
  name?: string;
  /** Upload copies to the followers (default true). */
  upload?: boolean;
  /**
   * Chance that an append skips its upload to one follower (default 0.1), so that
   * followers also fetch payloads from peers while faults happen.
   */
  skipUpload?: number;
  /** Only these nodes are ever sent appends (default: whichever leads). */
  target?: () => ClusterNode | null;
}

type Outcome = { result: 'ok' | 'fail' | 'unknown'; offset: number | null; leaderHint: string | null; error?: string };

const uploadsInFlight = new Map<ClusterNode, number>();

const appendAgent = new Agent({ connections: 64, keepAliveTimeout: 2000, connect: { timeout: 2000 } });

/** One append with upload copies; the outcome as the history records it. */
export async function appendOnce(cluster: Cluster, history: History, client: string, leader: ClusterNode, payload: Buffer, opts: { upload?: boolean; skipUpload?: number; timeoutMs?: number } = {}): Promise<AppendOp & { leaderHint: string | null; error?: string }> {
  const uploadId = `${client}-${randomBytes(6).toString('hex')}`;
  const crc = crc32c(payload);
  const invoke = history.now();
  const skip = opts.skipUpload ?? 0;
  // Uploads are not waited for (a slow or frozen follower must not slow the writer); a node
  // with too many uploads outstanding is skipped, as a client with bounded buffers would.
  const targets = opts.upload === false ? [] : cluster.alive().filter((n) => n !== leader && !(skip > 0 && Math.random() < skip) && (uploadsInFlight.get(n) ?? 0) < 16);
  for (const n of targets) {
    uploadsInFlight.set(n, (uploadsInFlight.get(n) ?? 0) + 1);
    request(`${n.url}/v1/upload/${uploadId}`, { method: 'PUT', body: payload, dispatcher: appendAgent, headers: { 'content-length': String(payload.length) }, headersTimeout: 3000, bodyTimeout: 3000 })
      .then((r) => r.body.dump(), () => {})
      .finally(() => uploadsInFlight.set(n, uploadsInFlight.get(n)! - 1));
  }
  const outcome = await postAppend(leader, payload, crc, uploadId, opts.timeoutMs ?? 5000);
  const op: AppendOp = { client, op: 'append', invoke_ms: invoke, complete_ms: history.now(), result: outcome.result, upload_id: uploadId, offset: outcome.offset, len: payload.length, crc };
  history.add(op);
  history.sentTo.set(op, leader.id);
  return { ...op, leaderHint: outcome.leaderHint, error: outcome.error };
}

async function postAppend(leader: ClusterNode, payload: Buffer, crc: number, uploadId: string, timeoutMs: number): Promise<Outcome> {
  try {
    const r = await request(`${leader.url}/v1/append`, {
      method: 'POST', body: payload, dispatcher: appendAgent, headersTimeout: timeoutMs, bodyTimeout: timeoutMs,
      headers: { 'content-length': String(payload.length), 'x-loglog-crc32c': String(crc), 'x-loglog-upload-id': uploadId },
    });
    const text = await r.body.text();
    if (r.statusCode === 200) {
      const j = JSON.parse(text) as { offset: number };
      return { result: 'ok', offset: j.offset, leaderHint: null };
    }
    let err: { code?: string; message?: string; leader?: string | null } = {};
    try { err = (JSON.parse(text) as { error: typeof err }).error; } catch { /* not JSON */ }
    // Only a refusal before anything was allocated is a certain failure; a leader deposed
    // after allocating may still see its entry committed by the next leader.
    const refusedAtHead = err.code === 'not_leader' && /is not the leader/.test(err.message ?? '');
    return { result: refusedAtHead ? 'fail' : 'unknown', offset: null, leaderHint: err.leader ?? null, error: `${r.statusCode} ${err.code}: ${err.message}` };
  } catch (e) {
    const code = (e as { code?: string }).code;
    return { result: code === 'ECONNREFUSED' ? 'fail' : 'unknown', offset: null, leaderHint: null, error: `${code ?? ''} ${(e as Error).message}` };
  }
}

/**
 * An append whose client vanishes mid-body: the head and half the body go out on a raw
 * socket, which is then destroyed. The node cannot have the whole body, so the append
 * certainly fails (the range becomes an aborted frame, or nothing if the node was not the
 * leader): recorded as `fail`, which the checker holds against the final log.
 */
export async function abandonOnce(history: History, client: string, leader: ClusterNode, payload: Buffer): Promise<AppendOp> {
  const uploadId = `${client}-${randomBytes(6).toString('hex')}`;
  const crc = crc32c(payload);
  const invoke = history.now();
  await new Promise<void>((resolve) => {
    const s = net.connect(leader.port, '127.0.0.1', () => {
      s.write(`POST /v1/append HTTP/1.1\r\nHost: x\r\nContent-Length: ${payload.length}\r\nx-loglog-crc32c: ${crc}\r\nx-loglog-upload-id: ${uploadId}\r\n\r\n`);
      s.write(payload.subarray(0, payload.length >> 1), () => setTimeout(() => { s.destroy(); resolve(); }, 5));
    });
    s.on('error', () => resolve());
  });
  const op: AppendOp = { client, op: 'append', invoke_ms: invoke, complete_ms: history.now(), result: 'fail', upload_id: uploadId, offset: null, len: payload.length, crc };
  history.add(op);
  history.sentTo.set(op, leader.id);
  return op;
}

/** Concurrent writers that follow the leader; every completed append goes into the history. */
export class AppendLoad {
  private stopped = false;
  private loops: Promise<void>[] = [];
  private cached: ClusterNode | null = null;
  private finding: Promise<ClusterNode | null> | null = null;
  readonly errors: string[] = [];
  ok = 0;
  failures = 0;
  abandoned = 0;
  bytesOk = 0;
  private seq = 0;

  constructor(readonly cluster: Cluster, readonly history: History, readonly opts: LoadOptions = {}) {}

  start(): this {
    const n = this.opts.clients ?? 4;
    for (let i = 1; i <= n; i++) this.loops.push(this.writer(`${this.opts.name ?? 'w'}${i}`));
    return this;
  }

  private async leader(): Promise<ClusterNode | null> {
    if (this.opts.target) return this.opts.target();
    if (this.cached?.alive) return this.cached;
    this.finding ??= this.cluster.waitLeader({ ms: 2000 }).then((l) => l, () => null).finally(() => { this.finding = null; });
    const l = await this.finding;
    if (l) this.cached = l;
    return l;
  }

  private async writer(client: string): Promise<void> {
    const min = this.opts.minBytes ?? 16, max = this.opts.maxBytes ?? 2048;
    while (!this.stopped) {
      const leader = await this.leader();
      if (this.stopped) return;
      if (!leader) continue;
      const large = Math.random() < (this.opts.largeChance ?? 0);
      const size = large ? 64 * 1024 + Math.floor(Math.random() * 256 * 1024) : min + Math.floor(Math.random() * (max - min + 1));
      if (Math.random() < (this.opts.abandonChance ?? 0)) {
        await abandonOnce(this.history, client, leader, makePayload(client, this.seq++, Math.max(size, 64)));
        this.abandoned++;
        continue;
      }
      const op = await appendOnce(this.cluster, this.history, client, leader, makePayload(client, this.seq++, size), { upload: this.opts.upload, skipUpload: this.opts.skipUpload ?? 0.1 });
      if (op.result === 'ok') {
        this.ok++;
        this.bytesOk += op.len;
      } else {
        if (this.errors.length < 50) this.errors.push(`${client} -> ${leader.id}: ${op.error}`);
        this.failures++;
        if (this.cached === leader) {
          const hint = op.leaderHint ? this.cluster.nodes.find((x) => x.id === op.leaderHint) : undefined;
          this.cached = hint && hint !== leader && hint.alive ? hint : null;
        }
        // Pace retries against a node that keeps refusing (e.g. a deposed leader).
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  /** Resolves once `n` more appends than now were acknowledged. */
  async waitMore(n: number, ms = 30_000): Promise<void> {
    const target = this.ok + n;
    await until(`${n} more acknowledged appends (have ${this.ok}, want ${target})`, ms, () => (this.ok >= target ? true : undefined), () => this.errors.slice(-5).join('\n'));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
  }
}

/** A background loop that asks the live replicas in turn, until stopped. */
abstract class RoundRobinPoller {
  private stopped = false;
  private loop: Promise<void> | null = null;
  private turn = 0;

  constructor(readonly cluster: Cluster, readonly history: History, readonly client: string) {}

  start(): this {
    this.loop = this.run();
    return this;
  }

  /** One request to `node`; errors mean it is down or deposed, and the next turn asks another. */
  protected abstract poll(node: ClusterNode): Promise<void>;

  private async run(): Promise<void> {
    while (!this.stopped) {
      const alive = this.cluster.alive();
      if (alive.length === 0) { await new Promise((r) => setTimeout(r, 20)); continue; }
      try {
        await this.poll(alive[this.turn++ % alive.length]);
      } catch {
        // node down, restarting or deposed
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

/** Reads committed frames from the replicas in turn (long-polling), recording each read. */
export class TailReader extends RoundRobinPoller {
  from = 0;
  reads = 0;

  constructor(cluster: Cluster, history: History, client = 'r1') {
    super(cluster, history, client);
  }

  protected async poll(node: ClusterNode): Promise<void> {
    const invoke = this.history.now();
    const q = `offset=${this.from}&limit=${256 * 1024}&wait=200${this.from > 0 ? `&minCommit=${this.from}` : ''}`;
    const r = await request(`${node.url}/v1/read?${q}`, { dispatcher: appendAgent, headersTimeout: 3000, bodyTimeout: 3000 });
    const body = Buffer.from(await r.body.arrayBuffer());
    if (r.statusCode !== 200 || body.length === 0) return;
    const entries: [number, number, number][] = [];
    for (const f of parseFrames(body, this.from)) if (f.kind === Kind.Data) entries.push([f.offset, f.length, f.crc]);
    const op: ReadOp = { client: this.client, op: 'read', from: this.from, entries, invoke_ms: invoke, complete_ms: this.history.now(), node: node.id };
    this.history.add(op);
    this.reads++;
    this.from = Number(r.headers['x-loglog-next']);
  }
}

/** Asks the replicas in turn for a linearizable end (read index at the leader), recording each answer. */
export class EndProbe extends RoundRobinPoller {
  answers = 0;

  constructor(cluster: Cluster, history: History, client = 'e1') {
    super(cluster, history, client);
  }

  protected async poll(node: ClusterNode): Promise<void> {
    try {
      const invoke = this.history.now();
      const r = await request(`${node.url}/v1/end?linearizable=1`, { dispatcher: appendAgent, headersTimeout: 3000, bodyTimeout: 3000 });
      const text = await r.body.text();
      if (r.statusCode === 200) {
        const j = JSON.parse(text) as { end: number; linearizable?: boolean };
        this.history.add({ client: this.client, op: 'end', invoke_ms: invoke, complete_ms: this.history.now(), end: j.end });
        this.answers++;
      }
    } finally {
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

/**
 * The end of every fault test: wait until the running replicas converge, read each one's
 * whole committed log, check the history against every replica (acknowledged appends at
 * their offsets exactly once, reads consistent), check that all replicas hold the same
 * frames, and compare their segment files byte for byte over the committed prefix.
 */
export async function verifyCluster(t: ExecutionContext, cluster: Cluster, history: History, opts: { convergeMs?: number; nodes?: ClusterNode[]; sameSplits?: boolean } = {}): Promise<{ end: number; finals: Map<string, FinalLog> }> {
  let end: number;
  try {
    end = await cluster.waitConverged({ ms: opts.convergeMs ?? 30_000, nodes: opts.nodes });
  } catch (e) {
    history.save(t.title);
    t.log(cluster.logs());
    throw e;
  }
  const finals = new Map<string, FinalLog>();
  const nodes = opts.nodes ?? cluster.alive();
  for (const n of nodes) {
    const final = await n.finalLog();
    finals.set(n.id, final);
    history.add({ client: `final-${n.id}`, op: 'read', from: final.start, entries: dataEntries(final), node: n.id });
  }
  const file = history.save(t.title, finals.get(nodes[0].id));
  if (file) t.log(`history: ${file}`);
  for (const [id, final] of finals) {
    t.is(final.end, end, `${id} serves the converged end`);
    const report = history.check(t, final, id);
    if (id === nodes[0].id) t.log(`history: ${JSON.stringify(report.stats)}`);
  }
  const [ref, ...others] = [...finals.entries()];
  for (const [id, f] of others) t.deepEqual(f.frames, ref[1].frames, `${id} and ${ref[0]} hold the same frames`);
  const splits = cluster.compareSegments(end, nodes, { sameSplits: opts.sameSplits });
  // Known: a truncation exactly at a segment's base keeps that (empty) segment file, so a
  // replica that cut a divergent suffix may split the same bytes at other offsets.
  if (splits.length > 0) t.log(`same bytes, different segment splits:\n${splits.join('\n')}`);
  await checkFates(t, cluster, history, ref[1]);
  return { end, finals };
}

/**
 * Asks the leader what became of every append whose outcome the client did not learn
 * (`GET /v1/fate/:id`): "committed at X" must be true of the final log, "aborted" must
 * not be data in it, and "unknown" (never placed: a client would send it again) must not
 * be anywhere in it. ("forgotten" promises nothing: the leader cannot tell.)
 */
async function checkFates(t: ExecutionContext, cluster: Cluster, history: History, final: FinalLog): Promise<void> {
  const leader = await cluster.waitLeader();
  const byOffset = new Map(final.frames.map((f) => [f[0], f]));
  // Payloads are random: a data frame of the same length and CRC is the append's own.
  const landed = new Set(final.frames.filter((f) => f[3] === 'data').map((f) => `${f[1]}/${f[2]}`));
  const unknown = history.appends().filter((a) => a.result === 'unknown' && a.upload_id !== null);
  const states = new Map<string, number>();
  for (const a of unknown) {
    const r = await request(`${leader.url}/v1/fate/${a.upload_id}`, { dispatcher: appendAgent, headersTimeout: 5000, bodyTimeout: 5000 });
    const j = (await r.body.json()) as { state: string; offset?: number };
    if (r.statusCode !== 200) { t.fail(`fate of ${a.upload_id}: ${r.statusCode} ${JSON.stringify(j)}`); continue; }
    states.set(j.state, (states.get(j.state) ?? 0) + 1);
    const f = j.offset !== undefined ? byOffset.get(j.offset) : undefined;
    if (j.state === 'committed') {
      if (!f || f[3] !== 'data' || f[1] !== a.len || f[2] !== a.crc) t.fail(`fate says ${a.upload_id} is committed at ${j.offset}, but the log holds ${JSON.stringify(f ?? null)} there`);
    } else if (j.state === 'aborted') {
      if (f && f[3] === 'data') t.fail(`fate says ${a.upload_id} was aborted, but the log holds data at ${j.offset}`);
    } else if (j.state === 'pending') {
      t.fail(`fate of ${a.upload_id} is still pending after the cluster converged`);
    } else if (j.state === 'unknown' && landed.has(`${a.len}/${a.crc}`)) {
      t.fail(`fate says ${a.upload_id} was never placed, but the log holds it: a client that sent it again would have duplicated it`);
    }
  }
  if (unknown.length > 0) t.log(`fates of ${unknown.length} unknown appends: ${JSON.stringify(Object.fromEntries(states))}`);
}

/** Writers, a tail reader and a linearizable-end probe, started and stopped together. */
export function startWorkload(cluster: Cluster, history: History, opts: LoadOptions = {}): { load: AppendLoad; reader: TailReader; ends: EndProbe; stop(): Promise<void>; summary(): string } {
  const load = new AppendLoad(cluster, history, opts).start();
  const reader = new TailReader(cluster, history).start();
  const ends = new EndProbe(cluster, history).start();
  return {
    load, reader, ends,
    async stop() { await Promise.all([load.stop(), reader.stop(), ends.stop()]); },
    summary: () => `acknowledged ${load.ok} appends (${load.failures} not, ${load.abandoned} abandoned mid-body), ${reader.reads} reads, ${ends.answers} linearizable ends`,
  };
}
