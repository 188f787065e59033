/**
 * Simulator benchmark: how fast the deterministic simulator runs the real replica code.
 * A warm-up, then a sweep of seeds (random fault mixes, as `loglog sim --seeds` runs them)
 * and a fault-free steady run; reports simulated events per second on one core and seeds
 * per minute. Prints a readable report on stderr and, last, one JSON line on stdout.
 *
 *   npm run bench -- sim [--seeds 200] [--from 1] [--nodes 3]
 *   node --import=tsx bench/sim.ts [--seeds 200]
 */
import { pathToFileURL } from 'node:url';
import { run } from '../sim/runner.ts';
import { sweep } from '../sim/cli.ts';
import { type BenchOption, checkArgs, flag, say } from './util.ts';

export const SIM_OPTIONS: readonly BenchOption[] = [
  { name: '--seeds', value: 'n', help: 'seeds in the measured sweep (default 200)' },
  { name: '--from', value: 'seed', help: 'first seed of the sweep (default 1)' },
  { name: '--nodes', value: 'n', help: 'cluster size (default 3)' },
];

export async function benchSim(argv: string[]): Promise<Record<string, unknown>> {
  checkArgs('sim', argv, SIM_OPTIONS);
  const seeds = Number(flag(argv, '--seeds', '200'));
  const from = Number(flag(argv, '--from', '1'));
  const nodes = Number(flag(argv, '--nodes', '3'));

  // Warm the JIT up on seeds outside the measured range.
  await sweep({ from: 1_000_000, seeds: 20, nodes, bugs: [] });

  // CPU time as well as wall time: on a shared machine the wall clock also counts the time
  // other processes held the core.
  const c0 = process.cpuUsage();
  const s = await sweep({ from, seeds, nodes, bugs: [] });
  const cpuS = cpuSeconds(c0);
  say(`sim sweep: ${s.seeds} seeds from ${from}, ${nodes} nodes: ${s.failed} failed`);
  say(`  ${(s.wallMs / 1000).toFixed(2)} s wall, ${cpuS.toFixed(2)} s CPU, ${Math.round(s.events / s.seeds)} events/seed on average`);
  say(`  wall: ${Math.round(s.eventsPerSecond).toLocaleString('en-US')} simulated events/s, ${Math.round(s.seedsPerSecond * 60).toLocaleString('en-US')} seeds/min`);
  say(`  CPU:  ${Math.round(s.events / cpuS).toLocaleString('en-US')} simulated events per CPU second, ${Math.round((s.seeds / cpuS) * 60).toLocaleString('en-US')} seeds per CPU minute`);

  // A long fault-free run: the steady-state cost of the protocol plus checkers.
  const calm = { faults: [], faultPhaseMs: 20_000, net: { drop: 0, duplicate: 0, tailP: 0 }, clients: { appenders: 4, readers: 2, uploadLossP: 0, uploadCorruptP: 0, uploadLateP: 0, bodyStallP: 0, bodyDieP: 0, bodyCorruptP: 0 } };
  const t0 = performance.now();
  const c1 = process.cpuUsage();
  const r = run(7, { nodes, params: calm });
  const calmMs = performance.now() - t0;
  const calmCpu = cpuSeconds(c1);
  const calmEps = r.events / (calmMs / 1000);
  say(`fault-free run: ${r.events.toLocaleString('en-US')} events, ${(r.simMs / 1000).toFixed(1)} s simulated in ${(calmMs / 1000).toFixed(2)} s wall (${calmCpu.toFixed(2)} s CPU): ${Math.round(calmEps).toLocaleString('en-US')} events/s wall, ${Math.round(r.events / calmCpu).toLocaleString('en-US')} per CPU second, ${r.stats.appends.ok} appends committed (${Math.round(r.stats.appends.ok / (r.simMs / 1000))} per simulated second), verdict ${r.verdict}`);

  return {
    bench: 'sim',
    nodes,
    seeds: s.seeds,
    failed: s.failed,
    eventsPerSecond: Math.round(s.eventsPerSecond),
    seedsPerMinute: Math.round(s.seedsPerSecond * 60),
    eventsPerCpuSecond: Math.round(s.events / cpuS),
    seedsPerCpuMinute: Math.round((s.seeds / cpuS) * 60),
    eventsPerSeed: Math.round(s.events / s.seeds),
    calmEventsPerSecond: Math.round(calmEps),
    calmEventsPerCpuSecond: Math.round(r.events / calmCpu),
    calmVerdict: r.verdict,
  };
}

function cpuSeconds(since: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / 1e6;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const result = await benchSim(process.argv.slice(2));
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
