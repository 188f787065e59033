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
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { Agent, request } from 'undici';
import { Kind, crc32c, parseFrames } from '../../spec/frame.ts';
import { type AppendOp, type FinalLog, type HistoryOp, type HistoryReport, type ReadOp, checkHistory, formatHistory } from '../../spec/history.ts';
import { type Cluster, type ClusterNode, dataEntries, until } from './cluster.ts';

export class History {
  readonly ops: HistoryOp[] = [];
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

  /** Writes the history as JSON lines if LOGLOG_HISTORY_DIR is set; returns the path. */
  save(name: string): string | null {
    const dir = process.env.LOGLOG_HISTORY_DIR;
    if (!dir) return null;
    mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `${name.replace(/[^A-Za-z0-9_.-]+/g, '-').replace(/^-|-$/g, '').slice(0, 120)}.jsonl`);
    writeFileSync(file, formatHistory(this.ops));
    return file;
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
  /** Name prefix of the writers in the history. */
  name?: string;
  /** Upload copies to the followers (default true). */
  upload?: boolean;
  /** Only these nodes are ever sent appends (default: whichever leads). */
  target?: () => ClusterNode | null;
}

type Outcome = { result: 'ok' | 'fail' | 'unknown'; offset: number | null; leaderHint: string | null; error?: string };

const appendAgent = new Agent({ connections: 64, keepAliveTimeout: 2000, connect: { timeout: 2000 } });

/** One append with upload copies; the outcome as the history records it. */
export async function appendOnce(cluster: Cluster, history: History, client: string, leader: ClusterNode, payload: Buffer, opts: { upload?: boolean; timeoutMs?: number } = {}): Promise<AppendOp & { leaderHint: string | null; error?: string }> {
  const uploadId = `${client}-${randomBytes(6).toString('hex')}`;
  const crc = crc32c(payload);
  const invoke = history.now();
  const uploads = opts.upload === false ? [] : cluster.alive().filter((n) => n !== leader).map((n) =>
    request(`${n.url}/v1/upload/${uploadId}`, { method: 'PUT', body: payload, dispatcher: appendAgent, headers: { 'content-length': String(payload.length) }, headersTimeout: 5000, bodyTimeout: 5000 })
      .then((r) => r.body.dump(), () => {}));
  const outcome = await postAppend(leader, payload, crc, uploadId, opts.timeoutMs ?? 15_000);
  const op: AppendOp = { client, op: 'append', invoke_ms: invoke, complete_ms: history.now(), result: outcome.result, upload_id: uploadId, offset: outcome.offset, len: payload.length, crc };
  history.add(op);
  await Promise.all(uploads);
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

/** Concurrent writers that follow the leader; every completed append goes into the history. */
export class AppendLoad {
  private stopped = false;
  private loops: Promise<void>[] = [];
  private cached: ClusterNode | null = null;
  private finding: Promise<ClusterNode | null> | null = null;
  readonly errors: string[] = [];
  ok = 0;
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
      const size = min + Math.floor(Math.random() * (max - min + 1));
      const op = await appendOnce(this.cluster, this.history, client, leader, makePayload(client, this.seq++, size), { upload: this.opts.upload });
      if (op.result === 'ok') {
        this.ok++;
        this.bytesOk += op.len;
      } else {
        if (this.errors.length < 50) this.errors.push(`${client} -> ${leader.id}: ${op.error}`);
        if (this.cached === leader) {
          const hint = op.leaderHint ? this.cluster.nodes.find((x) => x.id === op.leaderHint) : undefined;
          this.cached = hint && hint !== leader && hint.alive ? hint : null;
        }
      }
    }
  }

  /** Resolves once `n` more appends than now were acknowledged. */
  async waitMore(n: number, ms = 20_000): Promise<void> {
    const target = this.ok + n;
    await until(`${n} more acknowledged appends (have ${this.ok}, want ${target})`, ms, () => (this.ok >= target ? true : undefined), () => this.errors.slice(-5).join('\n'));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
  }
}

/** Reads committed frames from the replicas in turn (long-polling), recording each read. */
export class TailReader {
  private stopped = false;
  private loop: Promise<void> | null = null;
  from = 0;
  reads = 0;
  private turn = 0;

  constructor(readonly cluster: Cluster, readonly history: History, readonly client = 'r1') {}

  start(): this {
    this.loop = this.run();
    return this;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const alive = this.cluster.alive();
      if (alive.length === 0) { await new Promise((r) => setTimeout(r, 20)); continue; }
      const node = alive[this.turn++ % alive.length];
      const invoke = this.history.now();
      try {
        const q = `offset=${this.from}&limit=${256 * 1024}&wait=200${this.from > 0 ? `&minCommit=${this.from}` : ''}`;
        const r = await request(`${node.url}/v1/read?${q}`, { dispatcher: appendAgent, headersTimeout: 3000, bodyTimeout: 3000 });
        const body = Buffer.from(await r.body.arrayBuffer());
        if (r.statusCode !== 200 || body.length === 0) continue;
        const entries: [number, number, number][] = [];
        for (const f of parseFrames(body, this.from)) if (f.kind === Kind.Data) entries.push([f.offset, f.length, f.crc]);
        const op: ReadOp = { client: this.client, op: 'read', from: this.from, entries, invoke_ms: invoke, complete_ms: this.history.now(), node: node.id };
        this.history.add(op);
        this.reads++;
        this.from = Number(r.headers['x-loglog-next']);
      } catch {
        // node down or restarting: the next turn reads from another replica
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

/**
 * The end of every fault test: wait until the running replicas converge, read each one's
 * whole committed log, check the history against every replica (acknowledged appends at
 * their offsets exactly once, reads consistent), check that all replicas hold the same
 * frames, and compare their segment files byte for byte over the committed prefix.
 */
export async function verifyCluster(t: ExecutionContext, cluster: Cluster, history: History, opts: { convergeMs?: number } = {}): Promise<{ end: number; finals: Map<string, FinalLog> }> {
  let end: number;
  try {
    end = await cluster.waitConverged({ ms: opts.convergeMs ?? 30_000 });
  } catch (e) {
    history.save(t.title);
    t.log(cluster.logs());
    throw e;
  }
  const finals = new Map<string, FinalLog>();
  for (const n of cluster.alive()) {
    const final = await n.finalLog();
    finals.set(n.id, final);
    history.add({ client: `final-${n.id}`, op: 'read', from: final.start, entries: dataEntries(final), node: n.id });
  }
  const file = history.save(t.title);
  if (file) t.log(`history: ${file}`);
  for (const [id, final] of finals) {
    t.is(final.end, end, `${id} serves the converged end`);
    const report = history.check(t, final, id);
    if (id === cluster.alive()[0].id) t.log(`history: ${JSON.stringify(report.stats)}`);
  }
  const [ref, ...others] = [...finals.entries()];
  for (const [id, f] of others) t.deepEqual(f.frames, ref[1].frames, `${id} and ${ref[0]} hold the same frames`);
  cluster.compareSegments(end, cluster.alive());
  return { end, finals };
}
