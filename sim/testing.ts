/**
 * Helpers for the simulator's ava tests (test/sim-*.test.ts).
 */
import { run, type RunOptions, type RunResult } from './runner.ts';

/**
 * Seeds of the fixed sweep that fail because of a known bug outside sim/ and spec/replica.ts,
 * tracked by a `test.failing` until it is fixed (then ava reports it and the seed rejoins
 * the sweep).
 *
 * spec/frame.ts checkFrame does not check that an aborted frame's payload is zero, so a
 * power loss that tears the zeroing write of an aborted body (header and trailer survive,
 * the payload keeps the client's partial bytes or garbage) passes recovery, and that
 * replica's committed bytes differ from the others'.
 */
export const KNOWN_BUG_SEEDS: ReadonlyMap<number, string> = new Map([
  [150, 'spec/frame.ts: a torn aborted frame keeps a non-zero payload through recovery'],
]);

export interface SeedFailure {
  seed: number;
  check: string;
  message: string;
}

/** Runs seeds [from, from+count) and returns the failing ones, with the first violation each. */
export function failingSeeds(from: number, count: number, opts: RunOptions = {}, skip: ReadonlyMap<number, string> = new Map()): { failures: SeedFailure[]; events: number; wallMs: number; results: RunResult[] } {
  const failures: SeedFailure[] = [];
  const results: RunResult[] = [];
  let events = 0;
  const t0 = performance.now();
  for (let seed = from; seed < from + count; seed++) {
    if (skip.has(seed)) continue;
    const r = run(seed, opts);
    events += r.events;
    results.push(r);
    if (r.verdict === 'fail') failures.push({ seed, check: r.violations[0].check, message: r.violations[0].message });
  }
  return { failures, events, wallMs: performance.now() - t0, results };
}
