/**
 * Simulated clients. Appenders append one entry at a time: each append sends the head and
 * body to the node they believe leads and upload copies to every other node (copies arrive
 * late, never, or corrupted per the run's mix; bodies stall, break off when the client
 * dies, or arrive corrupted). They follow not-leader redirects and, after losing a reply,
 * ask the append's fate by upload id, sending the entry again under the same id when the
 * leader says it never saw it (as LogClient does: the history then catches a duplicate if
 * "unknown" was wrong). Readers read committed frames from random replicas
 * and sometimes ask the leader for a linearizable end. Everything lands in the history.
 */
import type { ReplyResult } from '../spec/messages.ts';
import { Kind, checkFrame, crc32c, frameSize } from '../spec/frame.ts';
import type { AppendOp, AppendResult, HistoryOp } from '../spec/history.ts';
import type { AppendAttempt, BodyPlan, SimNode } from './node.ts';
import type { World } from './world.ts';

export interface ClientWorld extends World {
  history: HistoryOp[];
}

abstract class Client {
  /** No new operations once stopped (drain); `idle` once the last one finished. */
  stopped = false;
  busy = false;
  target: number;

  constructor(protected readonly w: ClientWorld, readonly name: string, readonly idx: number) {
    this.target = w.rng.clients.int(w.nodes.length);
  }

  protected think(fn: () => void): void {
    this.w.q.after(this.w.rng.clients.exp(this.w.params.clients.thinkMs), fn);
  }

  /** Sends a request to node `to`; the node's answer (whenever it comes) travels back. */
  protected rpc<T>(to: number, serve: (respond: (t: T) => void) => void, answer: (t: T) => void): void {
    const w = this.w;
    w.net.send(this.idx, to, () => {
      w.nodes[to].deliver(() => serve((t) => { w.net.send(to, this.idx, () => answer(t), false); }));
    }, false);
  }

  protected otherNode(): number {
    const n = this.w.nodes.length;
    return n === 1 ? 0 : (this.target + 1 + this.w.rng.clients.int(n - 1)) % n;
  }
}

/** Attempts of one append after the leader said it never saw the upload id. */
const MAX_RESENDS = 3;

/** One append as the history sees it, across its attempts (all under one upload id). */
interface LogicalAppend {
  uploadId: string;
  payload: Buffer;
  crc: number;
  /** When the first attempt started. */
  invoke: number;
  /** A commit end the client knew before the first attempt: every attempt lands past it. */
  after: number;
  /** Attempts sent again after a fate of `unknown`; also names the newest attempt. */
  resends: number;
  /** The attempt whose fate is being asked: its own answer no longer counts (LogClient gave up on it). */
  asking: number;
  settled: boolean;
}

export class Appender extends Client {
  private k = 0;
  /** The highest commit end this client has seen (its committed appends' ends), as LogClient keeps it. */
  private knownCommit = 0;
  /** Drain: keep appending until one append succeeds. */
  probe = false;
  probeOk = false;
  private deadUntil = 0;

  start(delay: number): void {
    this.w.q.after(delay, () => this.next());
  }

  private next(): void {
    const w = this.w;
    if (this.busy) return;
    if (this.stopped && !(this.probe && !this.probeOk)) return;
    if (w.q.now < this.deadUntil) { w.q.at(this.deadUntil, () => this.next()); return; }
    this.busy = true;
    const rng = w.rng.clients;
    const uploadId = `${this.name}-${++this.k}`;
    const len = Math.max(uploadId.length + 1, rng.int(w.params.clients.maxPayload + 1));
    const payload = Buffer.alloc(len);
    rng.fill(payload);
    payload.write(`${uploadId}:`, 0, 'latin1');
    const op: LogicalAppend = { uploadId, payload, crc: crc32c(payload), invoke: w.q.now, after: this.knownCommit, resends: 0, asking: -1, settled: false };
    this.send(op);
  }

  /** Ends the logical append: one history record, however many attempts it took. */
  private settle(op: LogicalAppend, a: AppendAttempt, result: AppendResult, offset: number | null): void {
    if (op.settled) return;
    op.settled = true;
    this.record(op, a, result, offset);
    if (result === 'ok' && this.probe) this.probeOk = true;
    this.busy = false;
    this.think(() => this.next());
  }

  /** One attempt of `op`: copies to the followers, the head and body to the believed leader. */
  private send(op: LogicalAppend): void {
    const w = this.w;
    const c = w.params.clients;
    const rng = w.rng.clients;
    const faulty = !w.healed;
    const { uploadId, payload, crc } = op;
    const declaredCrc = rng.chance(c.declareCrcP) ? crc : null;
    let body: BodyPlan = { kind: 'ok', delay: rng.exp(c.bodyDelayMs) };
    if (faulty) {
      const x = rng.float();
      if (x < c.bodyStallP) body = { kind: 'stall', delay: 0 };
      else if (x < c.bodyStallP + c.bodyDieP) body = { kind: 'die', delay: rng.exp(Math.max(1, c.bodyDelayMs)) };
      else if (declaredCrc !== null && x < c.bodyStallP + c.bodyDieP + c.bodyCorruptP) body = { ...body, kind: 'corrupt' };
    }
    // Only drawn when enabled, so runs without it draw exactly as before.
    const copies = !(c.noCopiesP > 0 && rng.chance(c.noCopiesP));
    const invoke = w.q.now;
    const target = this.target;
    const a: AppendAttempt = {
      client: this.idx, uploadId, payload, crc, declaredCrc, acks: rng.chance(c.acksAllP) ? 'all' : 'quorum', copies, body, invoke,
      closeAt: body.kind === 'die' ? invoke + body.delay + w.params.net.minDelay : invoke + c.appendTimeoutMs,
      after: op.after,
    };
    if (body.kind !== 'ok') w.countFault(`body-${body.kind}`);
    w.trace.mix(60, this.idx, target, payload.length);
    if (w.trace.on) w.trace.line(w.q.now, this.name, `append ${uploadId}${op.resends > 0 ? ` (resend ${op.resends})` : ''} (${payload.length} B, acks=${a.acks}${declaredCrc === null ? '' : ', crc declared'}${copies ? '' : ', no copies'}, body ${body.kind}) to ${w.nodes[target].id}`);

    // Upload copies to every other node.
    for (let j = 0; j < w.nodes.length && copies; j++) {
      if (j === target) continue;
      let data = payload;
      let delay = 0;
      if (faulty) {
        if (rng.chance(c.uploadLossP)) { w.stats.uploadsLost++; continue; }
        if (rng.chance(c.uploadCorruptP)) { data = Buffer.from(payload); data[rng.int(data.length)] ^= 0xa5; w.stats.uploadsCorrupted++; }
        if (rng.chance(c.uploadLateP)) delay = rng.exp(w.params.replica.uploadDeadlineMs * 3);
      }
      const node = w.nodes[j];
      w.q.after(delay, () => w.net.send(this.idx, j, () => node.deliver(() => node.clientUpload(uploadId, data)), false));
    }

    // Only the newest attempt speaks for the append: an older one's late answer is ignored.
    const resends = op.resends;
    const current = () => !op.settled && op.resends === resends && op.asking !== resends;
    // The head goes out; the node's reply comes back over the network.
    w.net.send(this.idx, target, () => {
      const node = w.nodes[target];
      node.deliver(() => node.clientAppend(a, (r, allocated) => {
        w.net.send(target, this.idx, () => {
          if (current()) this.onReply(op, a, r, allocated);
        }, false);
      }));
    }, false);
    if (body.kind === 'die') {
      // The client process dies mid-body: the outcome is unknown, and it comes back later.
      w.q.at(a.closeAt, () => {
        if (!current()) return;
        this.deadUntil = w.q.now + rng.exp(100);
        this.target = rng.int(w.nodes.length);
        if (w.trace.on) w.trace.line(w.q.now, this.name, `dies mid-body of ${uploadId}`);
        this.settle(op, a, 'unknown', null);
      });
    }
    w.q.at(invoke + c.appendTimeoutMs, () => {
      if (!current()) return;
      if (w.trace.on) w.trace.line(w.q.now, this.name, `append ${uploadId} timed out`);
      this.target = this.otherNode();
      this.askFate(op, a, 0);
    });
  }

  private onReply(op: LogicalAppend, a: AppendAttempt, r: ReplyResult, allocated: boolean): void {
    const settle = (result: AppendResult, offset: number | null) => this.settle(op, a, result, offset);
    const w = this.w;
    if (w.trace.on) w.trace.line(w.q.now, this.name, `reply for ${a.uploadId}: ${JSON.stringify(r)}`);
    if (r.type === 'appended') {
      if (r.end - r.offset !== a.payload.length + 33) w.checker.violation('ack-wrong-length', `${a.uploadId} acknowledged as [${r.offset}, ${r.end}) for ${a.payload.length} bytes`);
      settle('ok', r.offset);
      return;
    }
    if (r.type !== 'error') { settle('unknown', null); return; }
    switch (r.code) {
      case 'conflict':
        // As LogClient: a first attempt the leader refused because it may have forgotten
        // ids goes again from where it remembers; otherwise the id is placed: ask its fate.
        if (r.details?.state === 'forgotten' && op.resends === 0 && typeof r.details.since === 'number') {
          op.after = r.details.since;
          op.resends++;
          this.send(op);
          return;
        }
        this.askFate(op, a, 0);
        return;
      case 'unconfirmed':
        // Committed (the checker holds the leader to it), only not on every replica yet.
        settle('ok', Number(r.details?.offset));
        return;
      case 'not_leader': {
        const hint = r.details?.leader;
        const i = typeof hint === 'string' ? w.nodeIndex.get(hint) : undefined;
        this.target = i !== undefined && i !== this.target ? i : this.otherNode();
        if (!allocated) { settle('fail', null); return; }
        this.askFate(op, a, 0);
        return;
      }
      case 'aborted':
      case 'checksum_mismatch':
      case 'timeout':
      case 'too_large':
        settle('fail', null);
        return;
      default:
        this.askFate(op, a, 0);
    }
  }

  /**
   * Asks what became of an attempt whose outcome is unknown, and sends it again under the
   * same upload id when the leader has never seen it, as LogClient does: the server must not
   * let the two attempts both land.
   */
  private askFate(op: LogicalAppend, a: AppendAttempt, tries: number): void {
    if (op.settled) return; // a late answer of the attempt settled it meanwhile
    if (tries === 0) op.asking = op.resends;
    const w = this.w;
    const settle = (result: AppendResult, offset: number | null) => this.settle(op, a, result, offset);
    if (tries === 0 && !w.rng.clients.chance(w.params.clients.fateP)) { settle('unknown', null); return; }
    if (tries >= 6) { settle('unknown', null); return; }
    const to = this.target;
    let answered = false;
    const retry = (delay: number, moveOn: boolean) => {
      if (moveOn) this.target = this.otherNode();
      w.q.after(delay, () => this.askFate(op, a, tries + 1));
    };
    w.q.after(w.params.clients.readTimeoutMs, () => { if (!answered) { answered = true; retry(0, true); } });
    this.rpc<ReplyResult>(to, (respond) => w.nodes[to].clientFate(a.uploadId, op.after, respond), (r) => {
      if (answered || op.settled) return;
      answered = true;
      if (w.trace.on) w.trace.line(w.q.now, this.name, `fate of ${a.uploadId} from ${w.nodes[to].id}: ${JSON.stringify(r)}`);
      if (r.type === 'fate') {
        if (r.state === 'committed' && r.offset !== undefined) { settle('ok', r.offset); return; }
        if (r.state === 'aborted') { settle('fail', null); return; }
        // The leader cannot tell: sending again could land the entry twice.
        if (r.state === 'forgotten') { settle('unknown', null); return; }
        if (r.state === 'unknown' && op.resends < MAX_RESENDS) {
          op.resends++;
          this.send(op);
          return;
        }
        retry(50, r.state === 'unknown');
        return;
      }
      if (r.type === 'error' && r.code === 'not_leader' && typeof r.details?.leader === 'string') {
        const i = w.nodeIndex.get(r.details.leader);
        if (i !== undefined) this.target = i;
        retry(10, false);
        return;
      }
      retry(50, true);
    });
  }

  private record(op: LogicalAppend, a: AppendAttempt, result: AppendResult, offset: number | null): void {
    const w = this.w;
    w.stats.appends[result]++;
    if (result === 'ok') this.knownCommit = Math.max(this.knownCommit, offset! + frameSize(a.payload.length));
    w.history.push({
      client: this.name, op: 'append', invoke_ms: op.invoke, complete_ms: w.q.now, result,
      upload_id: a.uploadId, offset, len: a.payload.length, crc: a.crc,
    } satisfies AppendOp);
    w.trace.mix(61, this.idx, result === 'ok' ? offset! : result === 'fail' ? -1 : -2);
    if (w.trace.on) w.trace.line(w.q.now, this.name, `append ${a.uploadId} -> ${result}${offset !== null ? ` at ${offset}` : ''}`);
  }
}

export class Reader extends Client {
  private cursor = 0;

  start(delay: number): void {
    this.w.q.after(delay, () => this.next());
  }

  private next(): void {
    const w = this.w;
    if (this.stopped || this.busy) return;
    this.busy = true;
    const c = w.params.clients;
    if (w.rng.clients.chance(c.endP)) { this.linearizableEnd(); return; }
    // Drawn only when trims are on: runs without them replay as they did before trims.
    if (c.trimP > 0 && w.rng.clients.chance(c.trimP)) { this.trim(); return; }
    const to = w.rng.clients.int(w.nodes.length);
    const from = this.cursor;
    const limit = w.rng.clients.pick([256, 4096, 65536]);
    const invoke = w.q.now;
    let done = false;
    const finish = () => { done = true; this.busy = false; this.think(() => this.next()); };
    w.q.after(c.readTimeoutMs, () => { if (!done) finish(); });
    this.rpc<ReturnType<SimNode['serveRead']>>(to, (respond) => respond(w.nodes[to].serveRead(from, limit, this.name)), (res) => {
      if (done) return;
      if ('error' in res) {
        // Trimmed below the replica's start: go on from there (as a consumer whose position
        // was deleted restarts at the earliest offset); whoever trimmed read what is skipped.
        if (res.error === 'trimmed' && res.start > this.cursor) {
          w.trace.mix(65, this.idx, res.start);
          if (w.trace.on) w.trace.line(w.q.now, this.name, `read ${from} from ${w.nodes[to].id}: trimmed, the log starts at ${res.start}`);
          this.cursor = res.start;
        }
        finish();
        return;
      }
      const entries: [number, number, number][] = [];
      let at = 0;
      while (at < res.bytes.length) {
        const f = checkFrame(res.bytes, at, from, true);
        if (!f.ok) {
          w.checker.violation('read-corrupt', `${w.nodes[to].id} served an invalid frame at ${from + at} (${f.reason}) to ${this.name}`, w.nodes[to].id);
          finish();
          return;
        }
        if (f.frame.kind === Kind.Data) entries.push([f.frame.offset, f.frame.length, f.frame.crc]);
        at = f.next;
      }
      w.stats.reads++;
      w.stats.readEntries += entries.length;
      w.history.push({ client: this.name, op: 'read', from, entries, invoke_ms: invoke, complete_ms: w.q.now, node: w.nodes[to].id });
      w.trace.mix(62, this.idx, from, res.next);
      if (w.trace.on && res.next > from) w.trace.line(w.q.now, this.name, `read [${from}, ${res.next}) from ${w.nodes[to].id}: ${entries.length} entries`);
      this.cursor = res.next;
      finish();
    });
  }

  /**
   * A trim at the node believed to lead, up to where this reader has read (a committed
   * boundary). Checked: an acknowledged trim point is on a majority and never lost; the
   * nodes delete their bytes below it (SimNode.followTrim), a follower left behind starts
   * over at the leader's start (`reset`), and what remains still holds the committed log.
   */
  private trim(): void {
    const w = this.w;
    const before = this.cursor;
    this.atLeader((node, respond) => node.clientTrim(before, respond), (r, node) => {
      w.trace.mix(64, this.idx, before, r.type === 'trimmed' ? 1 : 0);
      if (w.trace.on) w.trace.line(w.q.now, this.name, `trim before ${before} at ${node.id}: ${JSON.stringify(r)}`);
    });
  }

  /** A linearizable end at the node believed to lead (read index). */
  private linearizableEnd(): void {
    const w = this.w;
    const invoke = w.q.now;
    this.atLeader((node, respond) => node.clientReadIndex(respond), (r, node) => {
      if (r.type !== 'readIndex') return;
      w.history.push({ client: this.name, op: 'end', invoke_ms: invoke, complete_ms: w.q.now, end: r.end });
      w.trace.mix(63, this.idx, r.end);
      if (w.trace.on) w.trace.line(w.q.now, this.name, `linearizable end from ${node.id}: ${r.end}`);
    });
  }

  /**
   * One request to the node believed to lead: `answered` sees its answer, a not-leader answer
   * moves the target to the leader it names (or another node), and so does no answer in time.
   */
  private atLeader(call: (node: SimNode, respond: (r: ReplyResult) => void) => void, answered: (r: ReplyResult, node: SimNode) => void): void {
    const w = this.w;
    const to = this.target;
    let done = false;
    const finish = () => { done = true; this.busy = false; this.think(() => this.next()); };
    w.q.after(w.params.clients.readTimeoutMs, () => { if (!done) { this.target = this.otherNode(); finish(); } });
    this.rpc<ReplyResult>(to, (respond) => call(w.nodes[to], respond), (r) => {
      if (done) return;
      answered(r, w.nodes[to]);
      if (r.type === 'error' && r.code === 'not_leader') {
        const i = typeof r.details?.leader === 'string' ? w.nodeIndex.get(r.details.leader) : undefined;
        this.target = i ?? this.otherNode();
      }
      finish();
    });
  }
}
