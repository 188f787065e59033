import test from 'ava';
import { failingSeeds } from '../sim/testing.ts';

// Part 3 of the fixed sweep (seeds 1..200, 3 nodes, every fault mix the swarm draws),
// sharded so ava runs the parts in parallel processes.
test('seeds 101..150 pass every check', (t) => {
  const { failures, events, wallMs } = failingSeeds(101, 50, { nodes: 3 });
  t.log(`${events} events in ${Math.round(wallMs)} ms (${Math.round(events / wallMs * 1000)} events/s)`);
  t.deepEqual(failures, [], failures.map((f) => `seed ${f.seed}: ${f.check}: ${f.message}\n  reproduce: loglog sim --seed ${f.seed} --trace`).join('\n'));
});

