/**
 * Replicas of one cluster (a, b, c) driven by hand, with instant storage and a message queue
 * the test delivers (or drops): the real spec/replica.ts, without the simulator's randomness.
 */
import { Replica, DEFAULT_CONFIG, type ReplicaInit } from '../../spec/replica.ts';
import type { Effect, Input, Message, NodeId } from '../../spec/messages.ts';
import type { EntryMeta } from '../../spec/entry.ts';
import { Kind } from '../../spec/frame.ts';

export const MEMBERS = ['a', 'b', 'c'];
export const EMPTY: ReplicaInit = { term: 0, votedFor: null, start: 0, end: 0, epochs: [], tail: [] };

/** Replicas with instant storage; messages wait in a queue the test delivers (or drops). */
export class Harness {
  readonly r = new Map<NodeId, Replica>();
  now = 0;
  net: { from: NodeId; to: NodeId; msg: Message }[] = [];
  /** Nodes whose outgoing and incoming messages are dropped. */
  cut = new Set<NodeId>();
  /** Links whose messages are dropped, as `from>to`. */
  blocked = new Set<string>();
  /** Effects seen, per node. */
  seen = new Map<NodeId, Effect[]>();
  uploads = new Set<string>();
  copyTerm = 1;
  /** Nodes that never get a payload: no client copy arrives, and their fetches never complete. */
  starved = new Set<NodeId>();
  /** Deletion runs raise the start to the point they run to (else they delete nothing). */
  deletes = false;
  /** Nodes whose fdatasyncs never complete: they write, but hold nothing durably. */
  unsynced = new Set<NodeId>();

  constructor(inits: Partial<Record<NodeId, ReplicaInit>> = {}) {
    for (const id of MEMBERS) {
      this.start(id, inits[id] ?? EMPTY);
      this.seen.set(id, []);
    }
  }

  /** (Re)starts `id` from `init`, as a process restarted on what its disk holds. */
  start(id: NodeId, init: ReplicaInit): void {
    let x = (MEMBERS.indexOf(id) + 1) * 7919;
    this.r.set(id, new Replica({
      config: { ...DEFAULT_CONFIG, id, members: MEMBERS, electionMs: 100, heartbeatMs: 20, uploadDeadlineMs: 30 },
      init,
      random: () => { x = (x * 48271) % 2147483647; return x / 2147483647; },
      now: this.now,
    }));
  }

  get(id: NodeId): Replica {
    return this.r.get(id)!;
  }

  step(id: NodeId, input: Input): void {
    const queue: Input[] = [input];
    while (queue.length) {
      const fx = this.get(id).step(queue.shift()!);
      for (const e of fx) {
        this.seen.get(id)!.push(e);
        switch (e.type) {
          case 'send': if (!this.cut.has(id) && !this.cut.has(e.to)) this.net.push({ from: id, to: e.to, msg: e.msg }); break;
          case 'write':
            if (e.source === 'upload' && (this.starved.has(id) || !this.uploads.has(e.meta.uploadId ?? ''))) queue.push({ type: 'writeFailed', seq: e.seq, reason: 'missing' });
            else queue.push({ type: 'writeDone', seq: e.seq });
            break;
          case 'sync': if (!this.unsynced.has(id)) queue.push({ type: 'syncDone', upTo: e.upTo, ok: true }); break;
          // Catch-up copies succeed at once, from a log of term-1 entries.
          case 'copy': queue.push({ type: 'copyDone', start: e.start, to: e.to, epochs: [{ term: this.copyTerm, offset: e.start }], ok: e.to > e.start }); break;
          // Segments too large to delete: a trim runs up to its point and deletes nothing
          // (unless `deletes`: then everything below it goes).
          case 'trim': {
            const upTo = Math.min(e.before, this.get(id).readableEnd());
            queue.push({ type: 'trimDone', start: this.deletes ? Math.max(upTo, this.get(id).start) : this.get(id).start, upTo });
            break;
          }
          default: break;
        }
      }
    }
  }

  /** Delivers queued messages (those `pick` takes, others stay queued) until none is left, or `max` deliveries. */
  deliver(max = 10_000, pick: (m: { msg: Message }) => boolean = () => true): void {
    for (let i = 0; i < max; i++) {
      const k = this.net.findIndex(pick);
      if (k < 0) return;
      const [m] = this.net.splice(k, 1);
      if (this.cut.has(m.from) || this.cut.has(m.to) || this.blocked.has(`${m.from}>${m.to}`)) continue;
      this.step(m.to, { type: 'message', from: m.from, msg: m.msg });
    }
  }

  /** Advances time by `ms` in 5 ms ticks on every node, delivering messages in between. */
  run(ms: number): void {
    for (let t = 0; t < ms; t += 5) {
      this.now += 5;
      for (const id of MEMBERS) this.step(id, { type: 'tick', now: this.now });
      this.deliver();
    }
  }

  /** A client's append of 100 bytes at `leader`, its copies uploaded, its body complete. */
  append(leader: NodeId, reqId: number, uploadId: string, acks: 'quorum' | 'all' = 'quorum'): void {
    this.uploads.add(uploadId);
    this.step(leader, { type: 'appendHead', reqId, uploadId, length: 100, crc: 5, acks });
    this.step(leader, { type: 'bodyDone', reqId, ok: true, crc: 5 });
  }

  leader(): Replica | undefined {
    let best: Replica | undefined;
    for (const r of this.r.values()) if (r.role === 'leader' && (!best || r.term > best.term)) best = r;
    return best;
  }

  effects(id: NodeId): Effect[] {
    return this.seen.get(id)!;
  }
}

export function noop(offset: number, term: number): EntryMeta {
  return { offset, length: 0, term, kind: Kind.Noop, crc: 0, uploadId: null };
}

