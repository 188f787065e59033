/**
 * `npm run bench [-- single|sim|cluster] [options]`: benchmarks, never tests. Each prints a
 * readable report on stderr and, as its last line on stdout, one JSON object of figures.
 */
import { benchSingle } from './single.ts';
import { benchCluster } from './cluster.ts';

const [which = 'single', ...rest] = process.argv.slice(2);
const benches: Record<string, (argv: string[]) => Promise<Record<string, unknown>>> = {
  single: benchSingle,
  cluster: benchCluster,
  sim: async (argv) => (await import('./sim.ts')).benchSim(argv),
};
const run = benches[which];
if (!run) {
  process.stderr.write(`bench: unknown benchmark "${which}"; choose one of ${Object.keys(benches).join(', ')}\n`);
  process.exit(1);
}
const result = await run(rest);
process.stdout.write(`${JSON.stringify(result)}\n`);
