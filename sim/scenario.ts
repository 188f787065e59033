/**
 * Scripted fault schedules (sim/scenarios/*.json) for `loglog sim --scenario FILE`:
 *
 * ```json
 * { "name": "...", "description": "...", "seed": 1, "nodes": 3,
 *   "params": { "clients": { "bodyDelayMs": 150 } },          // overrides of the quiet baseline
 *   "steps": [ { "at": 2000, "do": "crash", "node": "leader", "kind": "power", "as": "old" },
 *              { "at": 2600, "do": "restart", "node": "old" } ] }
 * ```
 *
 * Node selectors: a node id ("n2"), "leader" (the current leader, or nothing if there is
 * none), "follower" (some node that is not the leader), "all", or a label saved by an earlier
 * step's "as". Actions: crash (kind kill|power), restart, pause (ms), isolate (ms),
 * halves (groups: [["n1"],["n2","n3"]] or [["leader"],["rest"]], ms; clients reach every node), oneway (node → to, ms), clientFollower
 * (clients cannot reach `node`, ms), clog (node ↔ to, factor, ms), fsyncError, diskFull
 * (slack bytes, ms), heal (partitions and clogs), cutNextLeader (the next node elected is cut
 * off from its peers, clients still reaching it, before its first append leaves; "as" labels
 * it). The random nemesis is off; the run's seed
 * still drives delays, clients and the disk's fate on power loss.
 */
import { readFileSync } from 'node:fs';
import type { World } from './world.ts';
import type { Nemesis } from './nemesis.ts';
import { currentLeader } from './nemesis.ts';
import type { SimNode } from './node.ts';

export interface ScenarioStep {
  at: number;
  do: 'crash' | 'restart' | 'pause' | 'isolate' | 'halves' | 'oneway' | 'clientFollower' | 'clog' | 'fsyncError' | 'diskFull' | 'heal' | 'cutNextLeader';
  node?: string;
  to?: string;
  kind?: 'kill' | 'power';
  ms?: number;
  groups?: string[][];
  factor?: number;
  slack?: number;
  as?: string;
}

export interface Scenario {
  name: string;
  description?: string;
  seed?: number;
  nodes?: number;
  params?: unknown;
  steps: ScenarioStep[];
}

export function loadScenario(file: string): Scenario {
  const s = JSON.parse(readFileSync(file, 'utf8')) as Scenario;
  if (typeof s.name !== 'string' || !Array.isArray(s.steps)) throw new Error(`${file}: a scenario needs "name" and "steps"`);
  return s;
}

export function scheduleScenario(w: World, nemesis: Nemesis, s: Scenario): void {
  const labels = new Map<string, SimNode[]>();
  const select = (sel: string | undefined): SimNode[] => {
    if (sel === undefined || sel === 'all') return w.nodes;
    if (sel === 'leader') { const l = currentLeader(w); return l ? [l] : []; }
    if (sel === 'follower') { const l = currentLeader(w); const f = w.nodes.filter((n) => n !== l); return f.length ? [f[0]] : []; }
    const lab = labels.get(sel);
    if (lab) return lab;
    const i = w.nodeIndex.get(sel);
    if (i === undefined) throw new Error(`scenario ${s.name}: unknown node selector "${sel}"`);
    return [w.nodes[i]];
  };
  for (const step of s.steps) {
    w.q.at(step.at, () => {
      const targets = step.do === 'cutNextLeader' ? [] : select(step.node);
      if (step.as) labels.set(step.as, targets);
      if (w.trace.on) w.trace.line(w.q.now, 'SCN', `${step.do} ${targets.map((n) => n.id).join(',') || '(nobody)'}${step.ms ? ` for ${step.ms} ms` : ''}`);
      const ms = step.ms ?? 1000;
      switch (step.do) {
        case 'crash': for (const n of targets) nemesis.inject(step.kind ?? 'kill', n, 1e12); break;
        case 'restart': for (const n of targets) if (!n.up) n.start(); break;
        case 'pause': for (const n of targets) nemesis.inject('pause', n, ms); break;
        case 'isolate': for (const n of targets) nemesis.inject('isolate', n, ms); break;
        case 'fsyncError': for (const n of targets) nemesis.inject('fsyncError', n); break;
        case 'diskFull':
          for (const n of targets) {
            w.countFault('diskFull');
            n.disk.spaceLimit = n.disk.liveLen + (step.slack ?? 0);
            w.q.after(ms, () => { n.disk.spaceLimit = Infinity; });
          }
          break;
        case 'clientFollower': {
          w.countFault('clientFollower');
          const links: [number, number][] = [];
          for (const n of targets) for (let c = w.nodes.length; c < w.net.size; c++) links.push([c, n.idx]);
          w.net.partition(links, ms);
          break;
        }
        case 'halves': {
          w.countFault('halves');
          // A group ["rest"] holds every node not named in another group.
          const named = (step.groups ?? []).map((g) => (g.length === 1 && g[0] === 'rest' ? null : g.flatMap((x) => select(x))));
          const taken = new Set(named.flat().filter((x) => x !== null));
          const groups = named.map((g) => g ?? w.nodes.filter((n) => !taken.has(n)));
          if (step.as) labels.set(step.as, groups[0] ?? []);
          const links: [number, number][] = [];
          for (const a of groups) for (const b of groups) if (a !== b) for (const x of a) for (const y of b) links.push([x.idx, y.idx]);
          w.net.partition(links, ms);
          break;
        }
        case 'oneway': {
          w.countFault('oneway');
          const to = select(step.to);
          const links: [number, number][] = [];
          for (const x of targets) for (const y of to) links.push([x.idx, y.idx]);
          w.net.partition(links, ms);
          break;
        }
        case 'clog': {
          w.countFault('clog');
          const to = select(step.to);
          for (const x of targets) for (const y of to) { w.net.clog(x.idx, y.idx, step.factor ?? 100, w.q.now + ms); w.net.clog(y.idx, x.idx, step.factor ?? 100, w.q.now + ms); }
          break;
        }
        case 'heal': w.net.heal(); w.net.unclog(); break;
        case 'cutNextLeader':
          w.onLeader = (node) => {
            w.onLeader = null;
            if (step.as) labels.set(step.as, [node]);
            if (w.trace.on) w.trace.line(w.q.now, 'SCN', `${node.id} elected: cut off from its peers`);
            nemesis.isolateFromPeers(node, ms);
          };
          break;
      }
    });
  }
}
