/**
 * The simulated network between nodes and clients. Every message gets a delay with a
 * minimum and an exponential body plus a rare long tail (so messages reorder), and may be
 * dropped or (between nodes) duplicated. Partitions block directed links; clogging
 * multiplies a link's delay for a while (FoundationDB's "clogging").
 */
import type { EventQueue, Action } from './queue.ts';
import type { Prng } from './prng.ts';

export interface NetConfig {
  /** Smallest one-way delay, ms. */
  minDelay: number;
  /** Mean of the exponential part of the delay, ms. */
  meanDelay: number;
  /** Probability of a tail delay, and its size as a multiple of the mean. */
  tailP: number;
  tailFactor: number;
  /** Per-message drop probability (both directions, nodes and clients). */
  drop: number;
  /** Per-message duplication probability (node-to-node only). */
  duplicate: number;
}

export const CALM_NET: NetConfig = { minDelay: 0.1, meanDelay: 0.3, tailP: 0, tailFactor: 1, drop: 0, duplicate: 0 };

export interface NetStats {
  sent: number;
  delivered: number;
  dropped: number;
  partitioned: number;
  duplicated: number;
}

export class Network {
  readonly size: number;
  private blocked: Uint16Array;
  private clogUntil: Float64Array;
  private clogFactor: Float64Array;
  cfg: NetConfig;
  /** Bumped by `heal`: lifts scheduled before it no longer apply. */
  private generation = 0;
  readonly stats: NetStats = { sent: 0, delivered: 0, dropped: 0, partitioned: 0, duplicated: 0 };

  /** @param names every endpoint (nodes first, then clients); links are addressed by index. */
  constructor(private readonly queue: EventQueue, private readonly rng: Prng, readonly names: readonly string[], cfg: NetConfig) {
    this.size = names.length;
    this.blocked = new Uint16Array(this.size * this.size);
    this.clogUntil = new Float64Array(this.size * this.size);
    this.clogFactor = new Float64Array(this.size * this.size).fill(1);
    this.cfg = cfg;
  }

  isBlocked(from: number, to: number): boolean {
    return this.blocked[from * this.size + to] > 0;
  }

  /** Blocks from→to. Blocks nest: each `block` is undone by one `unblock`. */
  block(from: number, to: number): void {
    if (from !== to) this.blocked[from * this.size + to]++;
  }

  unblock(from: number, to: number): void {
    const i = from * this.size + to;
    if (from !== to && this.blocked[i] > 0) this.blocked[i]--;
  }

  /**
   * Applies a partition (a set of blocked directed links) for `ms`, then lifts exactly those
   * blocks, so partitions may overlap.
   */
  partition(links: [number, number][], ms: number): void {
    for (const [a, b] of links) this.block(a, b);
    const gen = this.generation;
    this.queue.after(ms, () => { if (gen === this.generation) for (const [a, b] of links) this.unblock(a, b); });
  }

  /** Removes every partition. */
  heal(): void {
    this.blocked.fill(0);
    this.generation++;
  }

  unclog(): void {
    this.clogUntil.fill(0);
    this.clogFactor.fill(1);
  }

  /** Multiplies the delay of from→to by `factor` until `until`. */
  clog(from: number, to: number, factor: number, until: number): void {
    const i = from * this.size + to;
    this.clogUntil[i] = until;
    this.clogFactor[i] = factor;
  }

  /** A one-way delay for from→to drawn now. */
  delay(from: number, to: number): number {
    const c = this.cfg;
    let d = c.minDelay + this.rng.exp(c.meanDelay);
    if (c.tailP > 0 && this.rng.chance(c.tailP)) d += this.rng.exp(c.meanDelay * c.tailFactor);
    const i = from * this.size + to;
    if (this.clogUntil[i] > this.queue.now) d *= this.clogFactor[i];
    return d;
  }

  /**
   * Sends one message: `deliver` runs at the receiver after the delay, unless the link is
   * partitioned or the message is dropped. Returns false when the message was lost.
   */
  send(from: number, to: number, deliver: Action, allowDuplicate: boolean): boolean {
    this.stats.sent++;
    if (this.isBlocked(from, to)) { this.stats.partitioned++; return false; }
    if (this.cfg.drop > 0 && this.rng.chance(this.cfg.drop)) { this.stats.dropped++; return false; }
    this.queue.after(this.delay(from, to), () => { this.stats.delivered++; deliver(); });
    if (allowDuplicate && this.cfg.duplicate > 0 && this.rng.chance(this.cfg.duplicate)) {
      this.stats.duplicated++;
      this.queue.after(this.delay(from, to), () => { this.stats.delivered++; deliver(); });
    }
    return true;
  }
}
