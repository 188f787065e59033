/**
 * Helpers for the simulator's ava tests (test/sim-*.test.ts).
 */
import { run, type RunOptions, type RunResult } from './runner.ts';

export interface SeedFailure {
  seed: number;
  check: string;
  message: string;
}

/** Runs seeds [from, from+count) and returns the failing ones, with the first violation each. */
export function failingSeeds(from: number, count: number, opts: RunOptions = {}): { failures: SeedFailure[]; events: number; wallMs: number; results: RunResult[] } {
  const failures: SeedFailure[] = [];
  const results: RunResult[] = [];
  let events = 0;
  const t0 = performance.now();
  for (let seed = from; seed < from + count; seed++) {
    const r = run(seed, opts);
    events += r.events;
    results.push(r);
    if (r.verdict === 'fail') failures.push({ seed, check: r.violations[0].check, message: r.violations[0].message });
  }
  return { failures, events, wallMs: performance.now() - t0, results };
}
