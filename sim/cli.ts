/**
 * `loglog sim`: the deterministic simulator from the command line.
 *
 *   loglog sim --seed N [--trace | --json] [--nodes 3] [--bug NAME] [--history FILE]        replay one seed
 *   loglog sim --seeds 1000 [--from S] [--nodes 3] [--bug NAME] [--json]                   sweep seeds
 *   loglog sim --scenario FILE [--seed N] [--trace | --json] [--bug NAME] [--history FILE]  scripted faults
 *
 * Flags that do not fit the mode (--trace, --history or --scenario with --seeds, --from
 * without it, --trace with --json) are refused with exit 1 rather than ignored.
 *
 * A sweep prints seeds/s, simulated events/s, the faults injected and those that hit an operation, by kind, and every
 * violation with the seed that reproduces it; it exits 1 when any seed fails. Progress goes
 * to stderr when stderr is a terminal. --bug takes a planted bug (spec/bugs.ts), or several
 * separated by commas.
 */
import { writeFileSync } from 'node:fs';
import type { CAC } from 'cac';
import { BUG_NAMES, type BugName } from '../spec/bugs.ts';
import { formatHistory } from '../spec/history.ts';
import { run, type RunResult } from './runner.ts';
import { MAX_NODES, ScenarioError, loadScenario } from './scenario.ts';

/** The bits of the CLI context the command uses (client/cli/context.ts provides them). */
export interface SimCliContext {
  out: { write(s: string): Promise<void> | void; flush(): Promise<void> | void };
  io: { stderr: NodeJS.WritableStream & { isTTY?: boolean } };
  signal?: AbortSignal;
  exitCode: number;
}

export class SimUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

function processContext(): SimCliContext {
  return {
    out: { write: (s: string) => { process.stdout.write(s); }, flush: () => undefined },
    io: { stderr: process.stderr },
    get exitCode() { return Number(process.exitCode ?? 0); },
    set exitCode(v: number) { process.exitCode = v; },
  };
}

function integer(v: unknown, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const raw = String(v).trim();
  if (!/^[0-9]+$/.test(raw)) throw new SimUsageError(`--${name} must be a whole number, got "${raw}"`);
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new SimUsageError(`--${name} must be between ${min} and ${max}, got ${raw}`);
  return n;
}

function bugs(v: unknown): BugName[] {
  if (v === undefined || v === false) return [];
  const names = (Array.isArray(v) ? v : [v]).flatMap((x) => String(x).split(',')).map((x) => x.trim()).filter(Boolean);
  for (const n of names) {
    if (!BUG_NAMES.includes(n as BugName)) throw new SimUsageError(`--bug ${n}: unknown planted bug; choose from ${BUG_NAMES.join(', ')}`);
  }
  return names as BugName[];
}

const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

function reproduce(r: RunResult, scenarioFile?: string): string {
  const parts = ['loglog sim', scenarioFile ? `--scenario ${scenarioFile}` : '', `--seed ${r.seed}`, `--nodes ${r.nodes}`];
  if (r.bugs.length) parts.push(`--bug ${r.bugs.join(',')}`);
  parts.push('--trace');
  return parts.filter(Boolean).join(' ');
}

/**
 * The counters (sim/node.ts) of an injected fault taking effect on an operation, with what
 * they count. They are not injections: an armed fsyncError fails the node's next fdatasync
 * unless the heal disarms it first (arming it twice before that sync still fails one); a
 * diskFull refuses a write only if one comes while it lasts, and may refuse one per restart.
 * So neither count follows from its injection count.
 */
const HIT_COUNTERS: Record<string, string> = {
  'fsync-error': 'an fdatasync failed, armed by fsyncError',
  'enospc-hit': 'a write refused, disk full by diskFull',
};

/** The fault counters split into injections and hits (see HIT_COUNTERS). */
function splitFaults(faults: Record<string, number>): { faultsInjected: Record<string, number>; faultsHit: Record<string, number> } {
  const faultsInjected: Record<string, number> = {}, faultsHit: Record<string, number> = {};
  for (const [k, n] of Object.entries(faults)) (k in HIT_COUNTERS ? faultsHit : faultsInjected)[k] = n;
  return { faultsInjected, faultsHit };
}

function faultsLine(faults: Record<string, number>, explain = false): string {
  const kinds = Object.keys(faults).sort();
  return kinds.length ? kinds.map((k) => `${k}×${faults[k]}${explain ? ` (${HIT_COUNTERS[k]})` : ''}`).join(' ') : 'none';
}

/** "faults injected: ...", and "hit an operation: ..." after `between`. */
function faultsText(faults: Record<string, number>, between: string): string {
  const { faultsInjected, faultsHit } = splitFaults(faults);
  return `faults injected: ${faultsLine(faultsInjected)}${between}faults that hit an operation: ${faultsLine(faultsHit, true)}`;
}

/** The report of one run (single seed or scenario). */
export function describeRun(r: RunResult, wallMs: number, scenarioFile?: string): string {
  const s = r.stats;
  const lines = [
    `${r.scenario ? `scenario ${r.scenario}, ` : ''}seed ${r.seed}${r.bugs.length ? ` with planted ${r.bugs.join(', ')}` : ''}: ${r.verdict === 'pass' ? 'PASS' : 'FAIL'}`,
    `  ${fmt(r.events)} events, ${fmt(r.simMs / 1000, 1)} s simulated, ${fmt(wallMs / 1000, 2)} s wall (${fmt(r.events / Math.max(wallMs, 1) * 1000)} events/s), digest ${r.digest}`,
    ...r.mix.split('\n').map((l) => `  ${l}`),
    `  appends ok ${s.appends.ok}, failed ${s.appends.fail}, unknown ${s.appends.unknown}; reads ${s.reads} (${s.readEntries} entries); trims ${s.trims}, resets ${s.resets}, ${fmt(s.trimmedBytes)} bytes deleted; committed ${fmt(s.committedEnd)} bytes`,
    `  elections ${s.elections}, highest term ${s.maxTerm}, fetches ${s.fetches}, catch-up copies ${s.copies}; network sent ${s.net.sent}, dropped ${s.net.dropped}, partitioned ${s.net.partitioned}, duplicated ${s.net.duplicated}`,
    `  ${faultsText(s.faults, '; ')}; uploads lost ${s.uploadsLost}, corrupted ${s.uploadsCorrupted}; sectors on power loss kept/lost/partial/garbage ${s.mangling.sectorsKept}/${s.mangling.sectorsLost}/${s.mangling.sectorsPartial}/${s.mangling.sectorsGarbage}`,
  ];
  for (const v of r.violations) lines.push(`  VIOLATION ${v.check} at ${fmt(v.time, 3)} ms: ${v.message}`);
  if (r.verdict === 'fail') lines.push(`  reproduce: ${reproduce(r, scenarioFile)}`);
  return `${lines.join('\n')}\n`;
}

export interface SweepOptions {
  from: number;
  seeds: number;
  nodes: number;
  bugs: BugName[];
  /** Called after each seed (progress). */
  onSeed?: (done: number, r: RunResult, wallMs: number) => void;
  /** Checked between seeds; a sweep stops early when it returns true. */
  stop?: () => boolean;
}

export interface SweepResult {
  from: number;
  seeds: number;
  nodes: number;
  bugs: BugName[];
  passed: number;
  failed: number;
  wallMs: number;
  events: number;
  simMs: number;
  seedsPerSecond: number;
  eventsPerSecond: number;
  /** Every fault counter: `faultsInjected` and `faultsHit` together (kept for older readers). */
  faults: Record<string, number>;
  faultsInjected: Record<string, number>;
  /** Faults that took effect on an operation (see HIT_COUNTERS). */
  faultsHit: Record<string, number>;
  /** Trims acknowledged, `reset`s run and bytes the nodes deleted, over all seeds, and the seeds with any. */
  trims: number;
  seedsWithTrims: number;
  resets: number;
  seedsWithResets: number;
  trimmedBytes: number;
  /** Failing seeds by the first check that failed. */
  byCheck: Record<string, number[]>;
  /** Stopped early (Ctrl-C) after `seeds` of the `requested` seeds. */
  interrupted: boolean;
  requested: number;
  violations: { seed: number; check: string; message: string; reproduce: string }[];
}

/** Runs seeds [from, from+seeds) and aggregates. Wall time is measured outside the runs. */
export async function sweep(o: SweepOptions): Promise<SweepResult> {
  const res: SweepResult = {
    from: o.from, seeds: 0, nodes: o.nodes, bugs: o.bugs, passed: 0, failed: 0, wallMs: 0, events: 0, simMs: 0,
    seedsPerSecond: 0, eventsPerSecond: 0, faults: {}, faultsInjected: {}, faultsHit: {},
    trims: 0, seedsWithTrims: 0, resets: 0, seedsWithResets: 0, trimmedBytes: 0, byCheck: {}, violations: [],
    interrupted: false, requested: o.seeds,
  };
  const t0 = performance.now();
  let lastYield = t0;
  for (let seed = o.from; seed < o.from + o.seeds; seed++) {
    const s0 = performance.now();
    const r = run(seed, { nodes: o.nodes, bugs: o.bugs });
    const wall = performance.now() - s0;
    res.seeds++;
    res.events += r.events;
    res.simMs += r.simMs;
    for (const [k, n] of Object.entries(r.stats.faults)) res.faults[k] = (res.faults[k] ?? 0) + n;
    const net = r.stats.net;
    if (net.dropped) res.faults['net-drop'] = (res.faults['net-drop'] ?? 0) + net.dropped;
    if (net.duplicated) res.faults['net-duplicate'] = (res.faults['net-duplicate'] ?? 0) + net.duplicated;
    if (r.stats.uploadsLost) res.faults['upload-lost'] = (res.faults['upload-lost'] ?? 0) + r.stats.uploadsLost;
    if (r.stats.uploadsCorrupted) res.faults['upload-corrupt'] = (res.faults['upload-corrupt'] ?? 0) + r.stats.uploadsCorrupted;
    res.trims += r.stats.trims;
    if (r.stats.trims > 0) res.seedsWithTrims++;
    res.resets += r.stats.resets;
    if (r.stats.resets > 0) res.seedsWithResets++;
    res.trimmedBytes += r.stats.trimmedBytes;
    if (r.verdict === 'pass') res.passed++;
    else {
      res.failed++;
      const first = r.violations[0];
      (res.byCheck[first.check] ??= []).push(seed);
      for (const v of r.violations) res.violations.push({ seed, check: v.check, message: v.message, reproduce: reproduce(r) });
    }
    o.onSeed?.(res.seeds, r, wall);
    // Let Ctrl-C and stream writes through now and then (between runs, never inside one).
    if (performance.now() - lastYield > 250) {
      await new Promise((resolve) => setImmediate(resolve));
      lastYield = performance.now();
      if (o.stop?.() && seed < o.from + o.seeds - 1) {
        res.interrupted = true;
        break;
      }
    }
  }
  Object.assign(res, splitFaults(res.faults));
  res.wallMs = performance.now() - t0;
  res.seedsPerSecond = res.seeds / (res.wallMs / 1000);
  res.eventsPerSecond = res.events / (res.wallMs / 1000);
  return res;
}

/** Failing seeds a sweep's text summary details, with their reproduce commands. */
const SHOWN_FAILING_SEEDS = 10;

export function describeSweep(s: SweepResult): string {
  const lines = [
    `sim sweep: seeds ${s.from}..${s.from + s.seeds - 1}, ${s.nodes} nodes${s.bugs.length ? `, planted ${s.bugs.join(', ')}` : ''}: ${s.failed === 0 ? 'all passed' : `${s.failed} of ${s.seeds} FAILED`}` +
      (s.interrupted ? ` (INTERRUPTED after ${s.seeds} of ${s.requested} seeds)` : ''),
    `  ${fmt(s.wallMs / 1000, 1)} s wall, ${fmt(s.seedsPerSecond, 1)} seeds/s (${fmt(s.seedsPerSecond * 60)} seeds/min), ${fmt(s.eventsPerSecond)} simulated events/s, ${fmt(s.events)} events, ${fmt(s.simMs / 1000)} s simulated`,
    `  ${faultsText(s.faults, '\n  ')}`,
    `  trims acknowledged ${fmt(s.trims)} (in ${fmt(s.seedsWithTrims)} seeds), resets ${fmt(s.resets)} (in ${fmt(s.seedsWithResets)} seeds), ${fmt(s.trimmedBytes)} bytes deleted`,
  ];
  for (const [check, seeds] of Object.entries(s.byCheck)) lines.push(`  ${check}: seeds ${seeds.slice(0, 20).join(', ')}${seeds.length > 20 ? `, ... (${seeds.length})` : ''}`);
  // The first violation of the first few failing seeds is enough to start from; the
  // per-check lines above already list more seeds, and --json keeps every violation.
  const shown = new Set<number>();
  for (const v of s.violations) {
    if (shown.has(v.seed) || shown.size >= SHOWN_FAILING_SEEDS) continue;
    shown.add(v.seed);
    lines.push(`  seed ${v.seed}: ${v.check}: ${v.message}`);
    lines.push(`    reproduce: ${v.reproduce}`);
  }
  if (s.failed > shown.size) lines.push(`  ... and ${s.failed - shown.size} more failing seeds (see --json)`);
  return `${lines.join('\n')}\n`;
}

/**
 * Refuses flags that mean nothing in the mode the others select: each of these used to be
 * ignored in silence (a sweep without its trace, a history file never written, --from
 * replaying seed 1, a sweep count taken as a scenario's seed).
 */
function checkFlags(o: Record<string, unknown>): void {
  const given = (flag: string) => o[flag] !== undefined && o[flag] !== false;
  if (given('seeds')) {
    if (given('scenario')) throw new SimUsageError('--scenario plays one scripted run and --seeds sweeps random seeds, not both; choose the scenario\'s seed with --seed N');
    if (given('seed')) throw new SimUsageError('use either --seed (replay one) or --seeds (sweep), not both');
    for (const flag of ['trace', 'history']) {
      if (given(flag)) throw new SimUsageError(`--${flag} records one run: use it with --seed or --scenario, not --seeds (a sweep prints the --seed command that replays each failing seed)`);
    }
  } else if (given('from')) {
    throw new SimUsageError('--from is the first seed of a sweep: use it with --seeds (to replay one seed, use --seed)');
  }
  if (given('json') && given('trace')) throw new SimUsageError('--trace prints a text timeline and --json one JSON object: use one or the other');
}

async function action(ctx: SimCliContext, o: Record<string, unknown>): Promise<void> {
  checkFlags(o);
  const nodes = o.nodes === undefined ? undefined : integer(o.nodes, 'nodes', 1, MAX_NODES);
  const planted = bugs(o.bug);
  const write = async (s: string) => { await ctx.out.write(s); await ctx.out.flush(); };

  if (o.scenario !== undefined) {
    const file = String(o.scenario);
    const sc = loadScenario(file, { nodes });
    const seed = o.seed === undefined ? sc.seed ?? 1 : integer(o.seed, 'seed', 0);
    const t0 = performance.now();
    const r = run(seed, { scenario: sc, nodes, bugs: planted, trace: o.trace === true, keepHistory: o.history !== undefined });
    const wall = performance.now() - t0;
    if (o.trace === true) await write(`${r.trace.join('\n')}\n`);
    if (o.history !== undefined) writeFileSync(String(o.history), formatHistory(r.history ?? []));
    await write(o.json === true ? `${JSON.stringify(summary(r, wall))}\n` : describeRun(r, wall, file));
    if (r.verdict === 'fail') ctx.exitCode = 1;
    return;
  }

  if (o.seeds !== undefined) {
    const count = integer(o.seeds, 'seeds', 1);
    // Past 2^53 a seed + 1 is the same number: the sweep would never end.
    const from = o.from === undefined ? 1 : integer(o.from, 'from', 0, Number.MAX_SAFE_INTEGER - count + 1);
    const tty = ctx.io.stderr.isTTY === true;
    let t0 = performance.now();
    let failing = 0;
    let events = 0;
    const res = await sweep({
      from, seeds: count, nodes: nodes ?? 3, bugs: planted,
      stop: () => ctx.signal?.aborted === true,
      onSeed: (done, r) => {
        events += r.events;
        if (r.verdict === 'fail') failing++;
        if (!tty) return;
        const el = (performance.now() - t0) / 1000;
        if (done === 1) t0 = performance.now() - 1;
        ctx.io.stderr.write(`\rsim: ${done}/${count} seeds, ${fmt(done / el * 60)} seeds/min, ${fmt(events / el)} events/s, ${failing} failing   `);
      },
    });
    if (tty) ctx.io.stderr.write('\n');
    await write(o.json === true ? `${JSON.stringify(res)}\n` : describeSweep(res));
    if (res.failed > 0) ctx.exitCode = 1;
    else if (res.interrupted) ctx.exitCode = 130;
    return;
  }

  const seed = o.seed === undefined ? 1 : integer(o.seed, 'seed', 0);
  const t0 = performance.now();
  const r = run(seed, { nodes, bugs: planted, trace: o.trace === true, keepHistory: o.history !== undefined });
  const wall = performance.now() - t0;
  if (o.trace === true) await write(`${r.trace.join('\n')}\n`);
  if (o.history !== undefined) writeFileSync(String(o.history), formatHistory(r.history ?? []));
  await write(o.json === true ? `${JSON.stringify(summary(r, wall))}\n` : describeRun(r, wall));
  if (r.verdict === 'fail') ctx.exitCode = 1;
}

function summary(r: RunResult, wallMs: number): Record<string, unknown> {
  return {
    seed: r.seed, nodes: r.nodes, bugs: r.bugs, scenario: r.scenario, verdict: r.verdict, violations: r.violations,
    digest: r.digest, events: r.events, simMs: r.simMs, wallMs, stats: r.stats, ...splitFaults(r.stats.faults), mix: r.mix,
  };
}

/** Registers `loglog sim` on a cac program. */
export function registerSimCommand(cli: CAC, ctx: SimCliContext = processContext()): void {
  cli
    .command('sim', 'Run the deterministic simulator: replay a seed, sweep seeds, or play a scenario')
    .option('--seed <n>', 'Replay one seed (default 1)')
    .option('--seeds <count>', 'Sweep this many seeds (not with --seed, --scenario, --trace or --history)')
    .option('--from <seed>', 'First seed of a sweep (with --seeds; default 1)')
    .option('--nodes <n>', 'Cluster size (default 3)')
    .option('--bug <name>', `Enable a planted bug (${BUG_NAMES.join(', ')}); comma-separate several`)
    .option('--scenario <file>', 'Play a scripted fault schedule (sim/scenarios/*.json)')
    .option('--trace', 'Print the timeline of one run, ending with the verdict (not with --seeds or --json)')
    .option('--history <file>', 'Write the client history of one run as JSON lines (not with --seeds)')
    .option('--json', 'Print the result as one JSON object')
    .example('loglog sim --seed 42 --trace')
    .example('loglog sim --seeds 1000 --from 1')
    .example('loglog sim --seeds 200 --bug ackBeforeFsync')
    .example('loglog sim --scenario sim/scenarios/leader-crash-mid-upload.json')
    .action(async (o: Record<string, unknown>) => {
      try {
        await action(ctx, o);
      } catch (e) {
        if (e instanceof SimUsageError || e instanceof ScenarioError) {
          for (const line of e.message.split('\n')) ctx.io.stderr.write(`loglog sim: ${line}\n`);
          ctx.exitCode = 1;
          return;
        }
        throw e;
      }
    });
}

/** The command-module shape client/cli/run.ts registers. */
export function register(cli: CAC, ctx: SimCliContext): void {
  registerSimCommand(cli, ctx);
}
