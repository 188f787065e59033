/**
 * `npm run bench [-- single|sim|cluster] [options]`: benchmarks, never tests. Each prints a
 * readable report on stderr and, as its last line on stdout, one JSON object of figures.
 */
import { CLUSTER_OPTIONS, benchCluster } from './cluster.ts';
import { SINGLE_OPTIONS, benchSingle } from './single.ts';
import { SIM_OPTIONS, benchSim } from './sim.ts';
import { type BenchOption, usage } from './util.ts';

const benches: Record<string, { about: string; options: readonly BenchOption[]; run: (argv: string[]) => Promise<Record<string, unknown>> }> = {
  single: {
    about: 'one node: Producer throughput against the machine\'s write + fdatasync, single-append latency, recovery time',
    options: SINGLE_OPTIONS,
    run: benchSingle,
  },
  cluster: { about: 'three nodes, acks quorum: Producer throughput, the leader\'s egress, single-append latency', options: CLUSTER_OPTIONS, run: benchCluster },
  sim: { about: 'the simulator\'s speed: events per second, seeds per minute', options: SIM_OPTIONS, run: benchSim },
};

const args = process.argv.slice(2);
// Options alone run the default benchmark.
const [which, ...rest] = args.length === 0 || (args[0].startsWith('-') && !isHelp(args[0])) ? ['single', ...args] : args;
if (isHelp(which) || rest.some(isHelp)) {
  process.stdout.write([
    'npm run bench [-- <benchmark> [options]]   (default: single)',
    '',
    ...Object.entries(benches).flatMap(([name, b]) => [`  ${name}: ${b.about}`, usage(b.options), '']),
    'Each prints a report on stderr and, last, one JSON line of figures on stdout. See README "Benchmarks".',
    '',
  ].join('\n'));
  process.exit(0);
}
function isHelp(a: string): boolean {
  return a === '--help' || a === '-h' || a === 'help';
}

const bench = benches[which];
if (!bench) {
  process.stderr.write(`bench: unknown benchmark "${which}"; choose one of ${Object.keys(benches).join(', ')} (npm run bench -- --help)\n`);
  process.exit(1);
}
const result = await bench.run(rest);
process.stdout.write(`${JSON.stringify(result)}\n`);
