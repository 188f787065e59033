/**
 * Swarm testing: every seed draws its own simulation parameters and fault mix (which fault
 * kinds are on at all, and how often they strike), so a sweep explores many different
 * failure "weather" patterns rather than one average blend. The nemesis injects the faults
 * of the mix during the fault phase; `describeParams` prints the mix of a run.
 */
import type { NetConfig } from './network.ts';
import type { ReplicaConfig } from '../spec/replica.ts';
import type { SectorFate } from './disk.ts';
import { Prng } from './prng.ts';

export const FAULT_KINDS = [
  'kill', 'power', 'pause', 'isolate', 'isolatePeers', 'halves', 'oneway', 'clientFollower', 'clog', 'fsyncError', 'diskFull',
  // Not scheduled on a timer: strikes a node soon after it wins an election.
  'churn',
] as const;
export type FaultKind = typeof FAULT_KINDS[number];

export interface ClientParams {
  appenders: number;
  readers: number;
  /** Mean think time between a client's operations, ms. */
  thinkMs: number;
  maxPayload: number;
  acksAllP: number;
  declareCrcP: number;
  /** Per follower copy: never sent / sent with a flipped byte / sent late. */
  uploadLossP: number;
  uploadCorruptP: number;
  uploadLateP: number;
  /** Body to the leader: stalls past the deadline / client dies mid-body / a flipped byte. */
  bodyStallP: number;
  bodyDieP: number;
  bodyCorruptP: number;
  /** Mean time for the body to arrive after the head, ms. */
  bodyDelayMs: number;
  /** Per append: the client uploads no copies and says so (an SDK with offload off). */
  noCopiesP: number;
  /** After an unknown outcome, probability of asking the append's fate by upload id. */
  fateP: number;
  appendTimeoutMs: number;
  readTimeoutMs: number;
  /** Probability that a reader's operation is a linearizable `end` at the leader. */
  endP: number;
  /** Probability that a reader's operation is a trim at the leader, up to where it has read. */
  trimP: number;
}

export interface SimParams {
  nodes: number;
  tickMs: number;
  replica: Omit<ReplicaConfig, 'id' | 'members'>;
  net: NetConfig;
  disk: { writeMin: number; writeMean: number; syncMin: number; syncMean: number; slowP: number };
  sectorFate: SectorFate;
  fetchTimeoutMs: number;
  clients: ClientParams;
  /** Fault kinds the nemesis uses in this run, and the mean time between two faults. */
  faults: FaultKind[];
  faultMeanIntervalMs: number;
  /** Leader churn: probability that a new leader is struck soon after its election, and the mean delay of the strike, ms. */
  churnP: number;
  churnDelayMs: number;
  /** How long a fault lasts (partitions, clogs, pauses, full disks) / until a crashed node restarts, ms. */
  faultMeanDurationMs: number;
  faultPhaseMs: number;
  drainMs: number;
  /**
   * When one node's data directory is emptied (ms into the run; null: never): the node is
   * powered off, everything it stored is gone, and it restarts a fault duration later with
   * nothing, as a replaced disk would. At most one per run: with two, a committed entry
   * could be on two emptied disks and nowhere else, a loss no protocol can prevent.
   */
  wipeAtMs: number | null;
}

/** A quiet baseline: no faults at all (scenarios and tests start from it). */
export function baseParams(nodes = 3): SimParams {
  return {
    nodes,
    tickMs: 5,
    replica: {
      electionMs: 150, heartbeatMs: 30, bodyDeadlineMs: 800, uploadDeadlineMs: 60, allAckTimeoutMs: 400,
      maxEntryBytes: 64 * 1024, maxBatchEntries: 64, windowEntries: 256,
    },
    net: { minDelay: 0.1, meanDelay: 0.4, tailP: 0, tailFactor: 1, drop: 0, duplicate: 0 },
    disk: { writeMin: 0.02, writeMean: 0.1, syncMin: 0.2, syncMean: 0.8, slowP: 0 },
    sectorFate: { keep: 5, lose: 3, partial: 1, garbage: 1 },
    fetchTimeoutMs: 200,
    clients: {
      appenders: 3, readers: 2, thinkMs: 20, maxPayload: 2048, acksAllP: 0.1, declareCrcP: 0.8,
      uploadLossP: 0, uploadCorruptP: 0, uploadLateP: 0, bodyStallP: 0, bodyDieP: 0, bodyCorruptP: 0,
      bodyDelayMs: 0.5, noCopiesP: 0, fateP: 0.8, appendTimeoutMs: 1500, readTimeoutMs: 500, endP: 0.1, trimP: 0,
    },
    faults: [],
    faultMeanIntervalMs: 1000,
    churnP: 0.5,
    churnDelayMs: 5,
    faultMeanDurationMs: 500,
    faultPhaseMs: 4000,
    drainMs: 15_000,
    wipeAtMs: null,
  };
}

/** Draws the parameters and fault mix of one seed. */
export function drawParams(seed: number, nodes = 3): SimParams {
  const r = new Prng(seed).fork('swarm');
  const p = baseParams(nodes);
  const on = (prob: number) => r.chance(prob);

  p.tickMs = r.pick([2, 5, 10]);
  const election = r.pick([100, 150, 300]);
  p.replica.electionMs = election;
  p.replica.heartbeatMs = Math.max(10, Math.floor(election / r.pick([3, 5, 8])));
  p.replica.bodyDeadlineMs = r.pick([300, 800, 1500]);
  p.replica.uploadDeadlineMs = r.pick([10, 60, 200]);
  p.replica.maxBatchEntries = r.pick([1, 4, 64, 1024]);
  p.replica.windowEntries = r.pick([8, 32, 256, 100_000]);

  p.net.minDelay = r.pick([0.05, 0.1, 0.5]);
  p.net.meanDelay = r.pick([0.1, 0.5, 2, 8]);
  if (on(0.5)) { p.net.tailP = r.pick([0.01, 0.05]); p.net.tailFactor = r.pick([10, 50]); }
  if (on(0.4)) p.net.drop = r.pick([0.001, 0.01, 0.05]);
  if (on(0.3)) p.net.duplicate = r.pick([0.005, 0.02]);

  p.disk.writeMean = r.pick([0.02, 0.1, 0.5]);
  p.disk.syncMean = r.pick([0.2, 1, 5]);
  if (on(0.3)) p.disk.slowP = r.pick([0.01, 0.05]);
  p.sectorFate = r.pick([
    { keep: 5, lose: 3, partial: 1, garbage: 1 },
    { keep: 1, lose: 5, partial: 2, garbage: 2 },
    { keep: 8, lose: 1, partial: 1, garbage: 0 },
    { keep: 2, lose: 2, partial: 0, garbage: 6 },
  ]);

  const c = p.clients;
  c.appenders = r.range(1, 5);
  c.readers = r.range(0, 3);
  c.thinkMs = r.pick([1, 10, 40]);
  c.maxPayload = r.pick([64, 700, 2048, 9000]);
  c.acksAllP = r.pick([0, 0.1, 0.5]);
  c.declareCrcP = r.pick([0, 0.8, 1]);
  if (on(0.5)) c.uploadLossP = r.pick([0.05, 0.3, 1]);
  if (on(0.4)) c.uploadCorruptP = r.pick([0.02, 0.2]);
  if (on(0.5)) c.uploadLateP = r.pick([0.1, 0.5]);
  if (on(0.3)) c.bodyStallP = r.pick([0.01, 0.05]);
  if (on(0.3)) c.bodyDieP = r.pick([0.01, 0.05]);
  if (on(0.3)) c.bodyCorruptP = r.pick([0.01, 0.05]);
  c.bodyDelayMs = r.pick([0.2, 2, 20]);
  c.fateP = r.pick([0, 0.8, 1]);
  c.appendTimeoutMs = r.pick([500, 1500, 3000]);
  c.endP = r.pick([0, 0.1, 0.3]);

  p.faults = FAULT_KINDS.filter(() => on(0.45));
  p.faultMeanIntervalMs = r.pick([150, 400, 1000]);
  p.churnP = r.pick([0.3, 0.7, 1]);
  p.churnDelayMs = r.pick([1, 5, 20]);
  p.faultMeanDurationMs = r.pick([100, 400, 1500]);
  p.faultPhaseMs = r.pick([2000, 4000, 6000]);
  p.drainMs = 20_000;
  // Drawn last so that adding it left every earlier draw, hence every recorded seed, as it was.
  if (on(0.3)) c.noCopiesP = r.pick([0.2, 1]);
  if (on(0.3)) c.trimP = r.pick([0.05, 0.2]);
  // Its own stream, so that every earlier draw, hence every recorded seed, stays as it was
  // unless the run has a wipe.
  const wr = new Prng(seed).fork('wipe');
  if (wr.chance(0.3)) p.wipeAtMs = Math.floor(wr.float() * p.faultPhaseMs);
  return p;
}

/** One line per concern: the mix a run used. */
export function describeParams(p: SimParams): string {
  const c = p.clients;
  const parts = [
    `nodes ${p.nodes}, tick ${p.tickMs} ms, election ${p.replica.electionMs} ms, heartbeat ${p.replica.heartbeatMs} ms, body deadline ${p.replica.bodyDeadlineMs} ms, upload deadline ${p.replica.uploadDeadlineMs} ms, all-ack timeout ${p.replica.allAckTimeoutMs} ms, batch ${p.replica.maxBatchEntries}, window ${p.replica.windowEntries}`,
    `network: delay ${p.net.minDelay}+exp(${p.net.meanDelay}) ms${p.net.tailP ? `, tail ${p.net.tailP}×${p.net.tailFactor}` : ''}${p.net.drop ? `, drop ${p.net.drop}` : ''}${p.net.duplicate ? `, duplicate ${p.net.duplicate}` : ''}`,
    `disk: write ${p.disk.writeMin}+exp(${p.disk.writeMean}) ms, sync ${p.disk.syncMin}+exp(${p.disk.syncMean}) ms${p.disk.slowP ? `, slow ${p.disk.slowP}` : ''}, sector fate keep/lose/partial/garbage ${p.sectorFate.keep}/${p.sectorFate.lose}/${p.sectorFate.partial}/${p.sectorFate.garbage}`,
    `clients: ${c.appenders} appenders, ${c.readers} readers, think ${c.thinkMs} ms, payload ≤ ${c.maxPayload} B, acks=all ${c.acksAllP}, declared crc ${c.declareCrcP}, upload lost/corrupt/late ${c.uploadLossP}/${c.uploadCorruptP}/${c.uploadLateP}, body stall/die/corrupt ${c.bodyStallP}/${c.bodyDieP}/${c.bodyCorruptP}, body delay ${c.bodyDelayMs} ms${c.noCopiesP ? `, no copies ${c.noCopiesP}` : ''}, fate ${c.fateP}, timeout ${c.appendTimeoutMs} ms, end ${c.endP}${c.trimP ? `, trim ${c.trimP}` : ''}`,
    `faults: ${p.faults.length > 0 ? p.faults.join(' ') : 'none'} every ~${p.faultMeanIntervalMs} ms${p.faults.includes('churn') ? ` (churn ${p.churnP} after ~${p.churnDelayMs} ms)` : ''} lasting ~${p.faultMeanDurationMs} ms, fault phase ${p.faultPhaseMs} ms, drain ≤ ${p.drainMs} ms${p.wipeAtMs !== null ? `, one data directory emptied at ${p.wipeAtMs} ms` : ''}`,
  ];
  return parts.join('\n');
}

/** Deep-merges `over` into `base` (plain objects only; arrays and scalars replace). */
export function mergeParams<T>(base: T, over: unknown): T {
  if (over === undefined || over === null) return base;
  if (typeof base !== 'object' || base === null || Array.isArray(base) || typeof over !== 'object' || Array.isArray(over)) return over as T;
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [k, v] of Object.entries(over as Record<string, unknown>)) out[k] = mergeParams(out[k], v);
  return out as T;
}
