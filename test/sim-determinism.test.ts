import test from 'ava';
import { run, type RunOptions } from '../sim/runner.ts';
import { loadScenario } from '../sim/scenario.ts';

/**
 * Runs `fn` with every ambient source of nondeterminism booby-trapped: a simulation run must
 * never read the wall clock, Math.random or schedule a real timer.
 */
function sealed<T>(fn: () => T): T {
  const g = globalThis as unknown as Record<string, unknown>;
  const saved = {
    random: Math.random, now: Date.now, perf: performance.now,
    setTimeout: g.setTimeout, setInterval: g.setInterval, setImmediate: g.setImmediate, queueMicrotask: g.queueMicrotask,
  };
  const trap = (name: string) => () => { throw new Error(`a simulation run used ${name}`); };
  Math.random = trap('Math.random');
  Date.now = trap('Date.now');
  performance.now = trap('performance.now');
  g.setTimeout = trap('setTimeout');
  g.setInterval = trap('setInterval');
  g.setImmediate = trap('setImmediate');
  g.queueMicrotask = trap('queueMicrotask');
  try {
    return fn();
  } finally {
    Math.random = saved.random;
    Date.now = saved.now;
    performance.now = saved.perf;
    g.setTimeout = saved.setTimeout;
    g.setInterval = saved.setInterval;
    g.setImmediate = saved.setImmediate;
    g.queueMicrotask = saved.queueMicrotask;
  }
}

function twice(t: import('ava').ExecutionContext, seed: number, opts: RunOptions = {}): void {
  const a = sealed(() => run(seed, opts));
  const b = sealed(() => run(seed, opts));
  t.is(a.digest, b.digest, `seed ${seed}: same trace digest`);
  t.is(a.events, b.events);
  t.is(a.simMs, b.simMs);
  t.deepEqual(a.violations, b.violations);
  t.deepEqual(a.stats, b.stats);
}

test('the same seed gives the same trace digest, without clocks, Math.random or timers', (t) => {
  for (const seed of [1, 2, 3, 17, 42, 99]) twice(t, seed);
});

test('the timeline does not change the run', (t) => {
  for (const seed of [5, 6]) {
    const quiet = run(seed);
    const traced = run(seed, { trace: true });
    t.is(traced.digest, quiet.digest);
    t.true(traced.trace.length > 10);
    t.true(traced.trace[traced.trace.length - 1].startsWith('verdict:') || traced.trace.some((l) => l.startsWith('verdict:')));
  }
});

test('different seeds give different runs', (t) => {
  const digests = new Set([1, 2, 3, 4, 5, 6, 7, 8].map((s) => run(s).digest));
  t.is(digests.size, 8);
});

test('scenarios and planted-bug runs are deterministic too', (t) => {
  const sc = loadScenario(new URL('../sim/scenarios/torn-write-then-restart.json', import.meta.url).pathname);
  twice(t, 3, { scenario: sc });
  twice(t, 2, { bugs: ['readPastCommit'] });
});
