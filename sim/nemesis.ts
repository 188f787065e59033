/**
 * The nemesis: injects the faults of a run's mix at random times during the fault phase,
 * and heals everything at its end. The same primitives serve scripted scenarios.
 */
import type { World } from './world.ts';
import type { FaultKind } from './faults.ts';
import type { SimNode } from './node.ts';

/** The node that currently leads in the highest term, if any. */
export function currentLeader(w: World): SimNode | null {
  let best: SimNode | null = null;
  for (const n of w.nodes) {
    const r = n.replica;
    if (n.up && r && r.role === 'leader' && (!best || r.term > best.replica!.term)) best = n;
  }
  return best;
}

export class Nemesis {
  private partitionUntil = 0;
  constructor(private readonly w: World) {}

  /** Starts injecting random faults until `until` (virtual ms). */
  start(until: number): void {
    const w = this.w;
    if (w.params.faults.includes('churn')) {
      // Leader churn: a new leader is struck (crashed, powered off or isolated) within a few
      // milliseconds of its election, while its first entries are still in flight. This is
      // where Raft's subtle cases live (e.g. committing a previous term's entries).
      // Half the strikes isolate the leader at once, before its first append leaves: its noop
      // then exists on that node alone (the "entry on one node" of Raft's Figure 8).
      w.onLeader = (node) => {
        const f = w.rng.faults;
        if (w.healed || w.q.now >= until || !f.chance(w.params.churnP)) return;
        const dur = 20 + f.exp(w.params.faultMeanDurationMs);
        w.countFault('churn');
        if (f.chance(0.5)) { this.isolateFromPeers(node, dur); return; }
        const inc = node.incarnation;
        w.q.after(f.exp(w.params.churnDelayMs), () => {
          if (w.healed || node.incarnation !== inc || !node.up) return;
          this.inject(f.pick(['kill', 'power', 'isolate', 'isolatePeers'] as const), node, dur);
        });
      };
    }
    const wipeAt = w.params.wipeAtMs;
    if (wipeAt !== null && wipeAt < until) {
      w.q.at(wipeAt, () => {
        if (w.healed) return;
        const l = currentLeader(w);
        const node = l && w.rng.wipe.chance(0.5) ? l : w.rng.wipe.pick(w.nodes);
        this.wipe(node, 10 + w.rng.wipe.exp(w.params.faultMeanDurationMs));
      });
    }
    const timed = w.params.faults.filter((k) => k !== 'churn');
    if (timed.length === 0) return;
    const next = () => {
      const t = w.q.now + w.rng.faults.exp(w.params.faultMeanIntervalMs);
      if (t >= until) return;
      w.q.at(t, () => {
        if (w.healed) return;
        this.inject(w.rng.faults.pick(timed));
        next();
      });
    };
    next();
  }

  private duration(): number {
    return 10 + this.w.rng.faults.exp(this.w.params.faultMeanDurationMs);
  }

  private randomNode(): SimNode {
    return this.w.rng.faults.pick(this.w.nodes);
  }

  /** Picks the leader half the time (faults at the leader find the most bugs), else any node. */
  private targetNode(): SimNode {
    const l = currentLeader(this.w);
    return l && this.w.rng.faults.chance(0.5) ? l : this.randomNode();
  }

  inject(kind: FaultKind, target?: SimNode, ms?: number): void {
    const w = this.w;
    const f = w.rng.faults;
    const dur = ms ?? this.duration();
    const node = target ?? this.targetNode();
    const note = (text: string) => {
      w.countFault(kind);
      w.trace.mix(90, w.q.now, node.idx);
      w.trace.mixText(kind);
      if (w.trace.on) w.trace.line(w.q.now, 'NEM', text);
    };
    switch (kind) {
      case 'kill':
      case 'power': {
        if (!node.up) return;
        note(`${kind} ${node.id}, restart in ${dur.toFixed(0)} ms`);
        node.crash(kind, kind === 'kill' ? 'killed by the nemesis' : 'power loss');
        w.q.after(dur, () => { if (!node.up) node.start(); });
        return;
      }
      case 'pause':
        if (!node.up || node.paused) return;
        note(`pause ${node.id} for ${dur.toFixed(0)} ms`);
        node.pause(dur);
        return;
      case 'fsyncError':
        note(`next fdatasync on ${node.id} fails`);
        node.disk.failSyncs = 1;
        return;
      case 'diskFull': {
        const slack = f.int(4096);
        note(`disk of ${node.id} full at ${node.disk.liveLen + slack} for ${dur.toFixed(0)} ms`);
        node.disk.spaceLimit = node.disk.liveLen + slack;
        w.q.after(dur, () => { node.disk.spaceLimit = Infinity; });
        return;
      }
      case 'churn':
        return;
      case 'isolatePeers':
        if (w.q.now < this.partitionUntil) return;
        this.partitionUntil = w.q.now + dur;
        this.isolateFromPeers(node, dur);
        return;
      case 'clog': {
        const a = this.randomNode(), b = this.randomNode();
        if (a === b) return;
        const factor = f.pick([10, 100, 1000]);
        note(`clog ${a.id}<->${b.id} ×${factor} for ${dur.toFixed(0)} ms`);
        w.net.clog(a.idx, b.idx, factor, w.q.now + dur);
        w.net.clog(b.idx, a.idx, factor, w.q.now + dur);
        return;
      }
      default:
        this.partition(kind, node, dur, note);
    }
  }

  /**
   * Empties `node`'s data directory: powered off, everything it stored gone (log, hard
   * state, fates, trim point), restarted `ms` later with nothing (see SimParams.wipeAtMs).
   */
  wipe(node: SimNode, ms: number): void {
    const w = this.w;
    w.countFault('wipe');
    w.trace.mix(92, w.q.now, node.idx);
    if (w.trace.on) w.trace.line(w.q.now, 'NEM', `empty the data directory of ${node.id}, restart in ${ms.toFixed(0)} ms`);
    node.crash('power', 'data directory emptied');
    node.wipe();
    w.q.after(ms, () => { if (!node.up) node.start(); });
  }

  private partition(kind: FaultKind, node: SimNode, dur: number, note: (t: string) => void): void {
    const w = this.w;
    // One timed partition at a time (churn's cuts may overlap it): overlapping random
    // partitions mostly leave no majority at all, which tests little.
    if (w.q.now < this.partitionUntil) return;
    const n = w.nodes.length;
    const all = w.net.size;
    const links: [number, number][] = [];
    switch (kind) {
      case 'isolate':
        note(`isolate ${node.id} for ${dur.toFixed(0)} ms`);
        for (let i = 0; i < all; i++) if (i !== node.idx) { links.push([node.idx, i], [i, node.idx]); }
        break;
      case 'halves': {
        const side = w.nodes.map(() => w.rng.faults.chance(0.5));
        note(`halves {${w.nodes.filter((_, i) => side[i]).map((x) => x.id)}} | {${w.nodes.filter((_, i) => !side[i]).map((x) => x.id)}} for ${dur.toFixed(0)} ms`);
        for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) if (side[i] !== side[j]) links.push([i, j]);
        break;
      }
      case 'oneway': {
        const other = this.randomNode();
        if (other === node) return;
        note(`one-way ${node.id} -> ${other.id} blocked for ${dur.toFixed(0)} ms`);
        links.push([node.idx, other.idx]);
        break;
      }
      case 'clientFollower': {
        const leader = currentLeader(w);
        const followers = w.nodes.filter((x) => x !== leader);
        note(`clients cannot reach ${followers.map((x) => x.id)} for ${dur.toFixed(0)} ms`);
        for (const f of followers) for (let c = n; c < all; c++) links.push([c, f.idx]);
        break;
      }
      default:
        return;
    }
    w.net.partition(links, dur);
    this.partitionUntil = w.q.now + dur;
  }

  /**
   * Cuts a node off from the other nodes but not from the clients: a leader on the minority
   * side keeps accepting appends it cannot replicate until check-quorum deposes it.
   */
  isolateFromPeers(node: SimNode, dur: number): void {
    const w = this.w;
    w.countFault('isolatePeers');
    w.trace.mix(91, w.q.now, node.idx);
    if (w.trace.on) w.trace.line(w.q.now, 'NEM', `cut ${node.id} off from the other nodes (clients still reach it) for ${dur.toFixed(0)} ms`);
    const links: [number, number][] = [];
    for (const m of w.nodes) if (m !== node) links.push([node.idx, m.idx], [m.idx, node.idx]);
    w.net.partition(links, dur);
  }

  /** Ends every fault: partitions, clogs, pauses, full disks, armed fsync errors; restarts nodes. */
  healAll(): void {
    const w = this.w;
    w.healed = true;
    w.net.heal();
    w.net.unclog();
    w.net.cfg = { ...w.net.cfg, drop: 0, duplicate: 0, tailP: 0 };
    for (const n of w.nodes) {
      n.disk.spaceLimit = Infinity;
      n.disk.failSyncs = 0;
      if (n.paused) n.resume();
      if (!n.up) n.start();
    }
    w.trace.mix(99, w.q.now);
    if (w.trace.on) w.trace.line(w.q.now, 'NEM', 'heal everything: partitions, clogs, pauses, disks; restart stopped nodes');
  }
}
