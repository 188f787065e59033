/**
 * One simulation run: `run(seed, opts)` builds a cluster of real replicas over the simulated
 * network and disks, lets clients and the nemesis loose for the fault phase, heals
 * everything, drains (every appender must get one append acknowledged and every replica must
 * reach the leader's end), then checks the final state and the client history.
 *
 * Deterministic: the only inputs are the seed and the options; there is no wall clock,
 * Math.random or timer anywhere in a run. Same seed ⇒ same trace digest.
 */
import { Replica, type ReplicaConfig } from '../spec/replica.ts';
import { BUG_NAMES, type BugName, type PlantedBugs } from '../spec/bugs.ts';
import { checkHistory, type HistoryOp, type HistoryReport } from '../spec/history.ts';
import { Kind, checkFrame } from '../spec/frame.ts';
import { EventQueue } from './queue.ts';
import { Prng } from './prng.ts';
import { Network, type NetStats } from './network.ts';
import { Trace } from './trace.ts';
import { SimNode } from './node.ts';
import { Checker, type Violation } from './checker.ts';
import { Appender, Reader, type ClientWorld } from './client.ts';
import { baseParams, describeParams, drawParams, mergeParams, type SimParams } from './faults.ts';
import { Nemesis, currentLeader } from './nemesis.ts';
import { emptyManglingStats } from './disk.ts';
import type { RunStats } from './world.ts';
import { scheduleScenario, type Scenario } from './scenario.ts';

export interface RunOptions {
  nodes?: number;
  /** Planted bugs, enabled on every replica (and the recovery scan). */
  bugs?: BugName[];
  /** Record a readable timeline. */
  trace?: boolean;
  traceLimit?: number;
  /** A scripted fault schedule instead of the random nemesis. */
  scenario?: Scenario;
  /** Overrides of the drawn parameters. */
  params?: unknown;
  /** Keep going after the first violation (default: stop at once). */
  keepGoing?: boolean;
  /** Return the client history. */
  keepHistory?: boolean;
  /** Events after which a run is stopped as a runaway (default 4,000,000). */
  maxEvents?: number;
}

export interface RunResult {
  seed: number;
  nodes: number;
  bugs: BugName[];
  scenario: string | null;
  verdict: 'pass' | 'fail';
  violations: Violation[];
  digest: string;
  /** Events run by the event queue. */
  events: number;
  /** Virtual time at the end, ms. */
  simMs: number;
  stats: RunStats & { net: NetStats; history: HistoryReport['stats'] | null; committedEnd: number; dataFrames: number };
  params: SimParams;
  mix: string;
  trace: string[];
  history?: HistoryOp[];
}

export function run(seed: number, opts: RunOptions = {}): RunResult {
  const nodes = opts.nodes ?? opts.scenario?.nodes ?? 3;
  const bugs: BugName[] = opts.bugs ?? [];
  for (const b of bugs) if (!BUG_NAMES.includes(b)) throw new Error(`unknown planted bug ${b} (known: ${BUG_NAMES.join(', ')})`);
  const bugFlags: Partial<PlantedBugs> = {};
  for (const b of bugs) bugFlags[b] = true;

  let params = opts.scenario ? mergeParams(baseParams(nodes), opts.scenario.params ?? {}) : drawParams(seed, nodes);
  params = mergeParams(params, opts.params ?? {});
  params.nodes = nodes;
  if (opts.scenario) params.faults = [];

  const root = new Prng(seed);
  const q = new EventQueue();
  const trace = new Trace(opts.trace === true, opts.traceLimit ?? Infinity);
  const names: string[] = [];
  for (let i = 1; i <= nodes; i++) names.push(`n${i}`);
  const appenders = params.clients.appenders, readers = params.clients.readers;
  for (let i = 1; i <= appenders; i++) names.push(`a${i}`);
  for (let i = 1; i <= readers; i++) names.push(`r${i}`);
  const stats: RunStats = {
    faults: {}, appends: { ok: 0, fail: 0, unknown: 0 }, reads: 0, readEntries: 0, trims: 0, resets: 0, trimmedBytes: 0, elections: 0, maxTerm: 0, commits: 0,
    mangling: emptyManglingStats(), uploadsLost: 0, uploadsCorrupted: 0, fetches: 0, copies: 0,
  };
  const w = {
    q, trace, params, stats, bugs: bugFlags,
    net: null as unknown as Network,
    nodes: [] as SimNode[],
    checker: null as unknown as Checker,
    rng: { disk: root.fork('disk'), clients: root.fork('clients'), faults: root.fork('faults'), net: root.fork('net'), wipe: root.fork('wipe-target') },
    nodeIndex: new Map<string, number>(),
    healed: false,
    history: [] as HistoryOp[],
    countFault(kind: string) { stats.faults[kind] = (stats.faults[kind] ?? 0) + 1; },
    onLeader: null as ((n: SimNode) => void) | null,
  } satisfies ClientWorld;
  w.net = new Network(q, w.rng.net, names, params.net);
  w.checker = new Checker(w);
  w.checker.attach(nodes);
  const members = names.slice(0, nodes);
  for (let i = 0; i < nodes; i++) {
    const config: ReplicaConfig = { id: members[i], members, ...params.replica };
    w.nodeIndex.set(members[i], i);
    w.nodes.push(new SimNode(w, members[i], i, config, root.fork(`replica-${members[i]}`)));
  }
  trace.mix(seed, nodes, bugs.length);
  trace.mixText(JSON.stringify(params));
  if (trace.on) {
    trace.lines.push(`seed ${seed}${bugs.length ? `, planted bugs: ${bugs.join(', ')}` : ''}${opts.scenario ? `, scenario ${opts.scenario.name}` : ''}`);
    for (const l of describeParams(params).split('\n')) trace.lines.push(`  ${l}`);
  }

  for (const n of w.nodes) q.at(w.rng.faults.float() * 5, () => n.start());
  const apps: Appender[] = [];
  const reads: Reader[] = [];
  for (let i = 0; i < appenders; i++) { const a = new Appender(w, `a${i + 1}`, nodes + i); apps.push(a); a.start(20 + w.rng.clients.float() * 50); }
  for (let i = 0; i < readers; i++) { const r = new Reader(w, `r${i + 1}`, nodes + appenders + i); reads.push(r); r.start(20 + w.rng.clients.float() * 50); }

  const nemesis = new Nemesis(w);
  if (opts.scenario) scheduleScenario(w, nemesis, opts.scenario);
  else nemesis.start(params.faultPhaseMs);

  // A message storm (a replica answering every reply with another message) grows without
  // bound; stop such a run rather than exhausting memory.
  const maxEvents = opts.maxEvents ?? 4_000_000;
  let runaway = false;
  const failed = () => {
    if (!runaway && q.processed > maxEvents) {
      runaway = true;
      w.checker.violation('runaway', `more than ${maxEvents} events by ${q.now.toFixed(0)} ms of simulated time: a message storm (${q.size} events queued)`);
    }
    return runaway || (!opts.keepGoing && w.checker.violations.length > 0);
  };

  // ---- fault phase
  q.runUntil(params.faultPhaseMs, failed);

  // ---- heal and drain
  if (!failed()) {
    nemesis.healAll();
    for (const a of apps) { a.stopped = true; a.probe = true; a.start(0); }
    for (const r of reads) r.stopped = true;
    const deadline = q.now + params.drainMs;
    let drained = false;
    const poll = () => {
      if (apps.every((a) => a.probeOk && !a.busy) && reads.every((r) => !r.busy) && converged(w.nodes)) { drained = true; return; }
      if (q.now < deadline) q.after(10, poll);
    };
    q.after(10, poll);
    q.runUntil(deadline, () => drained || failed());
    if (!drained && !failed()) {
      const l = currentLeader(w);
      const state = w.nodes.map((n) => n.replica ? `${n.id} ${n.replica.role} t${n.replica.term}${n.trimPoint > 0 ? ` start ${n.disk.start} trim point ${n.trimPoint}` : ''} end ${n.replica.end} written ${n.replica.writtenEnd} durable ${n.replica.durableEnd} commit ${n.replica.commitEnd}` : `${n.id} down (${n.downReason})`).join('; ');
      const waiting = apps.filter((a) => !a.probeOk).map((a) => a.name);
      w.checker.violation('liveness', `${params.drainMs} ms after healing the cluster has not converged: leader ${l ? l.id : 'none'}; ${state}${waiting.length ? `; appenders without an acknowledged append: ${waiting.join(', ')}` : ''}`);
    }
  }

  // ---- final state and history
  let hist: HistoryReport | null = null;
  if (!failed()) {
    finalRead(w);
    w.checker.finalCheck();
    if (!failed()) {
      hist = checkHistory(w.history, w.checker.finalLog(), { checkUnseen: true });
      for (const v of hist.violations) w.checker.violation(v.check, v.message);
    }
  }

  const violations = w.checker.violations;
  const digest = trace.digest();
  if (trace.on) trace.lines.push(`verdict: ${violations.length === 0 ? 'PASS' : 'FAIL'} (${q.processed} events, ${q.now.toFixed(0)} ms simulated, digest ${digest.slice(0, 16)})`);
  for (const v of violations) if (trace.on) trace.lines.push(`  ${v.check} at ${v.time.toFixed(3)} ms: ${v.message}`);
  return {
    seed, nodes, bugs, scenario: opts.scenario?.name ?? null,
    verdict: violations.length === 0 ? 'pass' : 'fail',
    violations,
    digest,
    events: q.processed,
    simMs: q.now,
    stats: { ...stats, net: { ...w.net.stats }, history: hist?.stats ?? null, committedEnd: w.checker.canonEnd, dataFrames: hist?.stats.dataFrames ?? 0 },
    params,
    mix: describeParams(params),
    trace: trace.lines,
    history: opts.keepHistory ? w.history : undefined,
  };
}

/** Every node is up, one leader leads, and every replica has committed, written and synced its whole log. */
function converged(nodes: SimNode[]): boolean {
  let leader: Replica | null = null;
  for (const n of nodes) {
    if (!n.up || !n.replica || n.paused) return false;
    if (n.replica.role === 'leader') {
      if (leader) return false;
      leader = n.replica;
    }
  }
  if (!leader) return false;
  const end = leader.end;
  for (const n of nodes) {
    const r = n.replica!;
    if (r.term !== leader.term || r.end !== end || r.commitEnd !== end || r.writtenEnd !== end || r.durableEnd !== end) return false;
    // Every node has deleted what its trim point says (0 without trims: always true).
    if (n.disk.start < n.trimPoint) return false;
  }
  return true;
}

/**
 * A last reader reads the whole committed log from a random replica, from its start, so
 * every entry is seen (the ones below it were read by the reader that trimmed them).
 */
function finalRead(w: ClientWorld): void {
  const n = w.rng.clients.pick(w.nodes);
  let from = n.disk.start;
  for (;;) {
    const res = n.serveRead(from, 1 << 20, 'final');
    if ('error' in res || res.next === from) break;
    const entries: [number, number, number][] = [];
    let at = 0;
    while (at < res.bytes.length) {
      const f = checkFrame(res.bytes, at, from, true);
      if (!f.ok) { w.checker.violation('read-corrupt', `${n.id} served an invalid frame at ${from + at} (${f.reason}) to the final reader`, n.id); return; }
      if (f.frame.kind === Kind.Data) entries.push([f.frame.offset, f.frame.length, f.frame.crc]);
      at = f.next;
    }
    w.history.push({ client: 'final', op: 'read', from, entries, invoke_ms: w.q.now, complete_ms: w.q.now, node: n.id });
    from = res.next;
  }
}
