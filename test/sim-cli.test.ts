/**
 * `loglog sim` as users run it (in-process through client/cli/run.ts): bad input is refused
 * up front with exit 1 and one `loglog sim:` line per problem, before anything is simulated.
 */
import test from 'ava';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCliInProcess } from './helpers/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'loglog-sim-cli-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;

/** Writes a scenario file (an object is written as JSON, a string as is) and returns its path. */
function scenarioFile(content: unknown): string {
  const file = join(dir, `s${++files}.json`);
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
}

/** A well-formed scenario whose steps are `steps`. */
const withSteps = (...steps: unknown[]) => ({ name: 't', steps });

/** Runs `loglog sim --scenario` on `content`; it must be refused without running, one line per problem. */
async function refused(t: import('ava').ExecutionContext, content: unknown, extra: string[] = []): Promise<string[]> {
  const file = scenarioFile(content);
  const r = await runCliInProcess(['sim', '--scenario', file, ...extra]);
  t.is(r.code, 1, r.err);
  t.is(r.out, '', 'nothing ran');
  const lines = r.err.trimEnd().split('\n');
  for (const l of lines) t.true(l.startsWith(`loglog sim: ${file}`), l);
  return lines;
}

test('a misspelt action is refused, naming the step, its time and the closest action', async (t) => {
  const [line] = await refused(t, withSteps({ at: 1600, do: 'crahs', node: 'n1' }));
  t.regex(line, /steps\[0\] \(at 1600\): "do": "crahs" is not an action; did you mean "crash"\? actions: crash, restart/);
});

test('a misspelt crash kind and an unknown top-level key are both reported', async (t) => {
  const lines = await refused(t, { name: 't', parmas: {}, steps: [{ at: 10, do: 'crash', node: 'n1', kind: 'kil' }] });
  t.is(lines.length, 2);
  t.regex(lines[0], /key "parmas" is not a scenario key; did you mean "params"\?/);
  t.regex(lines[1], /steps\[0\] \(at 10\): "kind": "kil" is not a crash kind; did you mean "kill"\? kinds: kill, power/);
});

test('a non-numeric time and an unknown action are refused rather than run as a liveness failure', async (t) => {
  const lines = await refused(t, withSteps({ at: 'soon', do: 'explode' }));
  t.is(lines.length, 2);
  t.regex(lines[0], /steps\[0\] \(at "soon"\): "at": "soon" is not a time/);
  t.regex(lines[1], /"do": "explode" is not an action; actions:/);
  t.regex((await refused(t, withSteps({ at: -5, do: 'heal' })))[0], /"at": -5 is not a time/);
  t.regex((await refused(t, withSteps({ do: 'heal' })))[0], /steps\[0\]: "at" is missing/);
});

test('node names are checked against the cluster size before the run, not when the step fires', async (t) => {
  const [typo] = await refused(t, withSteps({ at: 100, do: 'crash', node: 'leadr' }));
  t.regex(typo, /"node": "leadr" is not a node of a 3-node cluster; did you mean "leader"\? nodes: n1, n2, n3, leader, follower, all/);
  const [big] = await refused(t, withSteps({ at: 100, do: 'restart', node: 'n3' }), ['--nodes', '2']);
  t.regex(big, /"node": "n3" is not a node of a 2-node cluster/);
  // A label exists once the step that sets it has run: steps run in time order, not file order.
  const [early] = await refused(t, withSteps({ at: 200, do: 'crash', node: 'leader', as: 'old' }, { at: 100, do: 'restart', node: 'old' }));
  t.regex(early, /steps\[1\] \(at 100\): "node": "old" is a label set only by steps\[0\] \(at 200\), which runs after this step/);
  t.notRegex(early, /did you mean/);
  const [shadowed] = await refused(t, withSteps({ at: 200, do: 'crash', node: 'n1', as: 'leader' }));
  t.regex(shadowed, /"as": "leader" is not usable as a label/);
});

test('keys an action does not use, wrong JSON types and unknown parameters are refused', async (t) => {
  const lines = await refused(t, {
    name: 't',
    params: { clients: { bodyDelayMS: 3, thinkMs: '5' } },
    steps: [{ at: 1, do: 'restart', node: 'n1', ms: 5 }, { at: 2, do: 'halves', groups: [['n1', 'rest'], ['n2']] }, 7],
  });
  t.is(lines.length, 5, lines.join('\n'));
  t.regex(lines[0], /params\.clients: key "bodyDelayMS" is not a parameter; did you mean "bodyDelayMs"\?/);
  t.regex(lines[1], /"params\.clients\.thinkMs": "5" is not a number >= 0/);
  t.regex(lines[2], /steps\[0\] \(at 1\): key "ms" is not used by "restart"; "restart" takes: at, do, node, except, as/);
  t.regex(lines[3], /"groups": "rest" is allowed only alone/);
  t.regex(lines[4], /steps\[2\]: 7 is not an object/);
  t.regex((await refused(t, { steps: 'none' })).join('\n'), /"name" is missing[^\n]*\n[^\n]*"steps": "none" is missing or not a list/);
});

test('"except" keeps a selector off the nodes of a label, and is checked like "node"', async (t) => {
  const [bad] = await refused(t, withSteps({ at: 10, do: 'crash', node: 'follower', except: 'starvd' }));
  t.regex(bad, /"except": "starvd" is not a node of a 3-node cluster/);
  const ok = await runCliInProcess(['sim', '--scenario', 'sim/scenarios/follower-never-gets-upload.json', '--trace']);
  t.is(ok.code, 0, ok.err);
  const crashed = /2000\.000 SCN\s+crash (n\d)/.exec(ok.out)?.[1];
  const starved = /300\.000 SCN\s+clientFollower (n\d)/.exec(ok.out)?.[1];
  t.truthy(crashed);
  t.not(crashed, starved, 'the other follower is crashed, not the starved one');
});

test('a JSON syntax error or a missing file is one line with exit 1', async (t) => {
  const [syntax] = await refused(t, '{"name": "t",\n  "steps": [ {"at": 1 "do": "heal"} ]}');
  t.regex(syntax, /\.json:2:23: not valid JSON: Expected/);
  const missing = await runCliInProcess(['sim', '--scenario', join(dir, 'absent.json')]);
  t.is(missing.code, 1);
  t.regex(missing.err, /^loglog sim: \S+absent\.json: cannot read the scenario: ENOENT[^\n]*\n$/);
});

test('flags that do not fit together are refused in one line, before anything runs', async (t) => {
  const cases: [string[], RegExp][] = [
    [['--seeds', '2', '--trace'], /--trace records one run: use it with --seed or --scenario, not --seeds/],
    [['--seeds', '3', '--history', join(dir, 'h.jsonl')], /--history records one run/],
    [['--from', '5'], /--from is the first seed of a sweep: use it with --seeds/],
    [['--scenario', 'sim/scenarios/figure-8.json', '--seeds', '3'], /--scenario plays one scripted run and --seeds sweeps random seeds, not both/],
    [['--seed', '5', '--seeds', '2'], /use either --seed \(replay one\) or --seeds \(sweep\), not both/],
    [['--seed', '3', '--json', '--trace'], /--trace prints a text timeline and --json one JSON object/],
    // Past 2^53 a seed + 1 is the same seed: the sweep never ended.
    [['--seeds', '5', '--from', '9007199254740990'], /--from must be between 0 and 9007199254740987, got 9007199254740990/],
  ];
  for (const [args, message] of cases) {
    const r = await runCliInProcess(['sim', ...args]);
    t.is(r.code, 1, args.join(' '));
    t.is(r.out, '', args.join(' '));
    t.regex(r.err, new RegExp(`^loglog sim: ${message.source}[^\\n]*\\n$`), args.join(' '));
  }
  t.false(existsSync(join(dir, 'h.jsonl')));
});

test('the summary tells injected faults from faults that hit an operation; --json keeps the combined counters', async (t) => {
  // Seed 7 arms fsyncError twice and one fdatasync fails.
  const text = await runCliInProcess(['sim', '--seeds', '1', '--from', '7']);
  t.is(text.code, 0, text.err);
  const injected = /^ {2}faults injected: (.*)$/m.exec(text.out)?.[1] ?? '';
  t.regex(injected, /fsyncError×2/);
  t.notRegex(injected, /fsync-error|enospc-hit/);
  t.regex(text.out, /^ {2}faults that hit an operation: fsync-error×1 \(an fdatasync failed, armed by fsyncError\)$/m);
  const one = await runCliInProcess(['sim', '--seed', '7']);
  t.regex(one.out, /faults injected: [^;]*fsyncError×2[^;]*; faults that hit an operation: fsync-error×1 /);

  const json = JSON.parse((await runCliInProcess(['sim', '--seeds', '1', '--from', '7', '--json'])).out) as Record<string, Record<string, number>>;
  t.deepEqual(json.faultsHit, { 'fsync-error': 1 });
  t.is(json.faultsInjected.fsyncError, 2);
  t.deepEqual(json.faults, { ...json.faultsInjected, ...json.faultsHit });
  const single = JSON.parse((await runCliInProcess(['sim', '--seed', '7', '--json'])).out) as Record<string, Record<string, number>>;
  t.deepEqual(single.faultsHit, { 'fsync-error': 1 });
});

test('a sweep with many failing seeds details the first ten and counts the rest; --json keeps them all', async (t) => {
  // ackBeforeFsync fails every seed at once, so 14 seeds take well under a second.
  const args = ['sim', '--seeds', '14', '--bug', 'ackBeforeFsync'];
  const text = await runCliInProcess(args);
  t.is(text.code, 1);
  const detailed = [...text.out.matchAll(/^ {2}seed (\d+): /gm)].map((m) => Number(m[1]));
  t.deepEqual(detailed, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  t.is(text.out.match(/^ {4}reproduce: /gm)?.length, 10);
  t.regex(text.out, /^ {2}\.\.\. and 4 more failing seeds \(see --json\)\n$/m);
  const json = JSON.parse((await runCliInProcess([...args, '--json'])).out) as { failed: number; violations: { seed: number }[] };
  t.is(json.failed, 14);
  t.is(new Set(json.violations.map((v) => v.seed)).size, 14);
});

test('a sweep stopped early (Ctrl-C) says so, and how far it got, instead of "all passed"', async (t) => {
  const { sweep, describeSweep } = await import('../sim/cli.ts');
  const r = await sweep({ from: 1, seeds: 1_000_000, nodes: 3, bugs: [], stop: () => true });
  t.true(r.interrupted);
  t.is(r.requested, 1_000_000);
  t.true(r.seeds > 0 && r.seeds < r.requested);
  t.regex(describeSweep(r), new RegExp(`^sim sweep: seeds 1\\.\\.${r.seeds}, 3 nodes: all passed \\(INTERRUPTED after ${r.seeds} of 1000000 seeds\\)`));
  const whole = await sweep({ from: 1, seeds: 1, nodes: 3, bugs: [], stop: () => true });
  t.false(whole.interrupted, 'a sweep that ran every seed was not interrupted');
});
