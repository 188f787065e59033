/**
 * What the simulator's modules share in one run: the clock and event queue, the network,
 * the nodes, the checker, the trace, the run's parameters and its statistics.
 */
import type { EventQueue } from './queue.ts';
import type { Network } from './network.ts';
import type { Trace } from './trace.ts';
import type { Prng } from './prng.ts';
import type { SimNode } from './node.ts';
import type { Checker } from './checker.ts';
import type { SimParams } from './faults.ts';
import type { PlantedBugs } from '../spec/bugs.ts';
import type { ManglingStats } from './disk.ts';

export interface RunStats {
  /** Faults injected, by kind. */
  faults: Record<string, number>;
  appends: { ok: number; fail: number; unknown: number };
  reads: number;
  readEntries: number;
  /** Trims a leader acknowledged. */
  trims: number;
  /** `reset` effects run: a follower whose whole log lay below the leader's start started over there. */
  resets: number;
  /** Bytes the nodes deleted: below their trim points (deletion runs) and in resets. */
  trimmedBytes: number;
  elections: number;
  maxTerm: number;
  commits: number;
  mangling: ManglingStats;
  uploadsLost: number;
  uploadsCorrupted: number;
  fetches: number;
  copies: number;
}

export interface World {
  q: EventQueue;
  net: Network;
  trace: Trace;
  nodes: SimNode[];
  checker: Checker;
  params: SimParams;
  stats: RunStats;
  bugs: Partial<PlantedBugs>;
  /** Random streams, one per concern. */
  rng: { disk: Prng; clients: Prng; faults: Prng; net: Prng; wipe: Prng };
  /** Index of a node by id (for the network). */
  nodeIndex: Map<string, number>;
  /** True once the fault phase is over (no new faults; clients stop misbehaving). */
  healed: boolean;
  countFault(kind: string): void;
  /** Called when a node becomes leader (the nemesis' leader churn listens). */
  onLeader: ((node: SimNode) => void) | null;
}
