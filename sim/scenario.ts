/**
 * Scripted fault schedules (sim/scenarios/*.json) for `loglog sim --scenario FILE`:
 *
 * ```json
 * { "name": "...", "description": "...", "seed": 1, "nodes": 3,
 *   "params": { "clients": { "bodyDelayMs": 150 } },          // overrides of the quiet baseline
 *   "steps": [ { "at": 2000, "do": "crash", "node": "leader", "kind": "power", "as": "old" },
 *              { "at": 2600, "do": "restart", "node": "old" } ] }
 * ```
 *
 * Node selectors: a node id ("n2"), "leader" (the current leader, or nothing if there is
 * none), "follower" (some node that is not the leader), "all", or a label saved by an earlier
 * step's "as"; crash, wipe, restart, pause and isolate also take "except" (a selector whose nodes
 * "node" must not pick: "follower" except "starved"). Actions: crash (kind kill|power), wipe
 * (power off and empty the data directory: the node restarts with nothing, abstaining), restart, pause (ms), isolate (ms),
 * halves (groups: [["n1"],["n2","n3"]] or [["leader"],["rest"]], ms; clients reach every node), oneway (node → to, ms), clientFollower
 * (clients cannot reach `node`, ms), clog (node ↔ to, factor, ms), fsyncError, diskFull
 * (slack bytes, ms), heal (partitions and clogs), cutNextLeader (the next node elected is cut
 * off from its peers, clients still reaching it, before its first append leaves; "as" labels
 * it). The random nemesis is off; the run's seed
 * still drives delays, clients and the disk's fate on power loss.
 *
 * `loadScenario` checks the whole file before anything runs (keys, actions, the keys each
 * action uses, kinds, node names for the cluster size, label order, JSON types, params against
 * the baseline) and throws a ScenarioError with one line per problem.
 */
import { readFileSync } from 'node:fs';
import { closest, isObject } from '../spec/input-checks.ts';
import type { World } from './world.ts';
import type { Nemesis } from './nemesis.ts';
import { currentLeader } from './nemesis.ts';
import type { SimNode } from './node.ts';
import { baseParams } from './faults.ts';

/** The keys each action reads besides "at" and "do"; any other key would be ignored by the run. */
const ACTIONS = {
  crash: ['node', 'except', 'kind', 'as'],
  restart: ['node', 'except', 'as'],
  pause: ['node', 'except', 'ms', 'as'],
  isolate: ['node', 'except', 'ms', 'as'],
  halves: ['groups', 'ms', 'as'],
  oneway: ['node', 'to', 'ms', 'as'],
  clientFollower: ['node', 'ms', 'as'],
  clog: ['node', 'to', 'factor', 'ms', 'as'],
  fsyncError: ['node', 'as'],
  diskFull: ['node', 'slack', 'ms', 'as'],
  heal: [],
  cutNextLeader: ['ms', 'as'],
  wipe: ['node', 'except', 'as'],
} as const satisfies Record<string, readonly string[]>;

type Action = keyof typeof ACTIONS;

export interface ScenarioStep {
  at: number;
  do: Action;
  node?: string;
  /** Nodes `node` must not pick (a selector or label): "follower" except "starved". */
  except?: string;
  to?: string;
  kind?: 'kill' | 'power';
  ms?: number;
  groups?: string[][];
  factor?: number;
  slack?: number;
  as?: string;
}

export interface Scenario {
  name: string;
  description?: string;
  seed?: number;
  nodes?: number;
  params?: unknown;
  steps: ScenarioStep[];
}

/** A scenario file that cannot be played as written: one line per problem, each naming the file. */
export class ScenarioError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
    this.name = 'ScenarioError';
  }
}

const TOP_KEYS = ['name', 'description', 'seed', 'nodes', 'params', 'steps'];
const KINDS = ['kill', 'power'];
/** Selectors the run resolves itself; a label with one of these names could never be used. */
const FIXED_SELECTORS = ['leader', 'follower', 'all'];
/** A run's scenario clears the random fault mix and sets the cluster size from "nodes". */
const PARAMS_SET_BY_RUN = ['nodes', 'faults'];
/** The largest cluster `loglog sim` runs (--nodes or a scenario's "nodes"). */
export const MAX_NODES = 9;

const show = (v: unknown) => JSON.stringify(v);

/** "did you mean" for a word that is close to one of `allowed`, else nothing. */
function guess(given: unknown, allowed: readonly string[]): string {
  // Every word of one or two letters is "close" to n1, n2, ...
  const g = typeof given === 'string' && given.length > 2 ? closest(given, allowed) : undefined;
  return g === undefined ? '' : `did you mean "${g}"? `;
}

/**
 * Reads and checks a scenario file, all of it, before anything runs: a misspelt action, key
 * or node would otherwise be ignored (a false PASS) or fail mid-run as if the protocol had.
 * `nodes` is the cluster size the run will use when the caller overrides the file's.
 */
export function loadScenario(file: string, opts: { nodes?: number } = {}): Scenario {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ScenarioError([`${file}: cannot read the scenario: ${(e as Error).message}`]);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ScenarioError([`${file}${jsonPosition(text, (e as Error).message)}: not valid JSON: ${(e as Error).message.replace(/ in JSON at position \d+.*$/s, '')}`]);
  }
  const problems = checkScenario(raw, opts.nodes).map((p) => `${file}: ${p}`);
  if (problems.length) throw new ScenarioError(problems);
  return raw as Scenario;
}

/** ":line:column" of the position a JSON.parse message names, if it names one. */
function jsonPosition(text: string, message: string): string {
  const m = / at position (\d+)/.exec(message);
  if (!m) return '';
  const before = text.slice(0, Number(m[1])).split('\n');
  return `:${before.length}:${before[before.length - 1].length + 1}`;
}

/** The problems of a parsed scenario, one line each (without the file name). */
function checkScenario(raw: unknown, nodesOverride?: number): string[] {
  if (!isObject(raw)) return [`a scenario is a JSON object with ${TOP_KEYS.map((k) => `"${k}"`).join(', ')}; got ${show(raw)}`];
  const problems: string[] = [];
  const say: Say = (head, given, why, allowed, words = []) => problems.push(`${head} ${why}; ${guess(given, words)}${allowed}`);

  for (const k of Object.keys(raw)) if (!TOP_KEYS.includes(k)) say(key('', k), k, 'not a scenario key', `keys: ${TOP_KEYS.join(', ')}`, TOP_KEYS);
  if (typeof raw.name !== 'string' || raw.name === '') say(value('', 'name', raw.name), raw.name, 'missing or not a string', 'a scenario needs a name');
  if (raw.description !== undefined && typeof raw.description !== 'string') say(value('', 'description', raw.description), raw.description, 'not a string', 'a description is text');
  if (raw.seed !== undefined && !(Number.isSafeInteger(raw.seed) && (raw.seed as number) >= 0)) say(value('', 'seed', raw.seed), raw.seed, 'not a seed', 'a seed is a whole number >= 0');
  const nodesOk = raw.nodes === undefined || (Number.isInteger(raw.nodes) && (raw.nodes as number) >= 1 && (raw.nodes as number) <= MAX_NODES);
  if (!nodesOk) say(value('', 'nodes', raw.nodes), raw.nodes, 'not a cluster size', `a whole number from 1 to ${MAX_NODES}`);
  if (raw.params !== undefined) checkParams(raw.params, baseParams(), 'params', say);
  if (!Array.isArray(raw.steps)) {
    say(value('', 'steps', raw.steps), raw.steps, 'missing or not a list', 'steps is a list of {"at": ms, "do": action, ...}');
    return problems;
  }
  const nodes = nodesOverride ?? (nodesOk ? (raw.nodes as number | undefined) : undefined) ?? 3;
  checkSteps(raw.steps, nodes, say);
  return problems;
}

/** Reports one problem: `head` names what was given (see `value`, `key`), `allowed` says what would do. */
type Say = (head: string, given: unknown, why: string, allowed: string, words?: readonly string[]) => void;
const value = (where: string, field: string, v: unknown) => `${where ? `${where}: ` : ''}"${field}"${v === undefined ? '' : `: ${show(v)}`} is`;
const key = (where: string, k: string) => `${where ? `${where}: ` : ''}key "${k}" is`;

/** Keys and JSON types against the baseline the overrides are merged into (faults.ts mergeParams ignores nothing, so a typo would add a key no one reads). */
function checkParams(given: unknown, base: unknown, path: string, say: Say): void {
  if (isObject(base)) {
    if (!isObject(given)) { say(value('', path, given), given, 'not an object', `an object with keys ${Object.keys(base).join(', ')}`); return; }
    const keys = Object.keys(base).filter((k) => path !== 'params' || !PARAMS_SET_BY_RUN.includes(k));
    for (const [k, v] of Object.entries(given)) {
      if (!keys.includes(k)) {
        const why = PARAMS_SET_BY_RUN.includes(k) && path === 'params' ? 'set by the run, not by params (use the top-level "nodes"; faults come from "steps")' : 'not a parameter';
        say(key(path, k), k, why, `keys: ${keys.join(', ')}`, keys);
      } else {
        checkParams(v, base[k], `${path}.${k}`, say);
      }
    }
  } else if (typeof base === 'number' && !(typeof given === 'number' && Number.isFinite(given) && given >= 0)) {
    say(value('', path, given), given, 'not a number >= 0', `the baseline is ${base}`);
  }
}

function checkSteps(steps: unknown[], nodes: number, report: Say): void {
  // Checked in run order (labels) but reported in file order.
  const found: [number, Parameters<Say>][] = [];
  let current = 0;
  const say: Say = (...problem) => { found.push([current, problem]); };
  const actions = Object.keys(ACTIONS) as Action[];
  const ids = Array.from({ length: nodes }, (_, i) => `n${i + 1}`);
  // Steps run in time order (ties in file order), so a label exists only for later steps.
  const order = steps.map((s, i) => ({ s, i, at: isObject(s) ? s.at : undefined }))
    .sort((a, b) => (typeof a.at === 'number' && typeof b.at === 'number' ? a.at - b.at : 0) || a.i - b.i);
  const labels = new Set<string>();
  // Every label any step sets, for the message when one is used before its step runs.
  const setBy = new Map<string, string>();
  for (const { s, i, at } of order) if (isObject(s) && typeof s.as === 'string' && !setBy.has(s.as)) setBy.set(s.as, `steps[${i}]${at === undefined ? '' : ` (at ${show(at)})`}`);
  for (const { s, i, at } of order) {
    current = i;
    const where = `steps[${i}]${at === undefined ? '' : ` (at ${show(at)})`}`;
    if (!isObject(s)) { say(`${where}: ${show(s)} is`, s, 'not an object', 'a step is {"at": ms, "do": action, ...}'); continue; }
    if (typeof at !== 'number' || !Number.isFinite(at) || at < 0) say(value(where, 'at', at), at, at === undefined ? 'missing' : 'not a time', 'at is a number of ms >= 0 from the start of the run');
    const act = s.do as Action;
    if (!actions.includes(act)) {
      say(value(where, 'do', s.do), s.do, s.do === undefined ? 'missing' : 'not an action', `actions: ${actions.join(', ')}`, actions);
      continue;
    }
    const takes: readonly string[] = ACTIONS[act];
    for (const k of Object.keys(s)) {
      if (k === 'at' || k === 'do' || takes.includes(k)) continue;
      const known = Object.values(ACTIONS).some((keys: readonly string[]) => keys.includes(k));
      say(key(where, k), k, known ? `not used by "${act}"` : 'not a step key', `"${act}" takes: at, do${takes.map((t) => `, ${t}`).join('')}`, known ? [] : takes);
    }
    const selectorWords = [...ids, ...FIXED_SELECTORS, ...labels];
    const selector = (field: string, v: unknown, extra: string[] = []) => {
      if (typeof v === 'string' && (selectorWords.includes(v) || extra.includes(v))) return;
      const later = typeof v === 'string' ? setBy.get(v) : undefined;
      if (later !== undefined) {
        say(value(where, field, v), v, `a label set only by ${later}, which runs after this step`, 'steps run in time order (ties in file order): set a label before the steps that use it', []);
        return;
      }
      const why = typeof v !== 'string' ? 'not a node name' : v === 'rest' ? 'allowed only alone, as a whole group: ["rest"]' : `not a node of a ${nodes}-node cluster`;
      const labelled = labels.size ? `a label set earlier (${[...labels].join(', ')})` : 'a label set by an earlier step\'s "as"';
      say(value(where, field, v), v, why, `nodes: ${[...ids, ...FIXED_SELECTORS, ...extra].join(', ')}, or ${labelled}`, [...selectorWords, ...extra]);
    };
    if (s.node !== undefined && takes.includes('node')) selector('node', s.node);
    if (s.except !== undefined && takes.includes('except')) selector('except', s.except);
    if (s.to !== undefined && takes.includes('to')) selector('to', s.to);
    if (s.kind !== undefined && takes.includes('kind') && !KINDS.includes(s.kind as string)) say(value(where, 'kind', s.kind), s.kind, 'not a crash kind', `kinds: ${KINDS.join(', ')}`, KINDS);
    for (const [field, min] of [['ms', 0], ['factor', 1], ['slack', 0]] as const) {
      const v = s[field];
      if (v === undefined || !takes.includes(field)) continue;
      const whole = field === 'slack';
      if (typeof v !== 'number' || !Number.isFinite(v) || v < min || (field === 'ms' && v === 0) || (whole && !Number.isInteger(v))) {
        say(value(where, field, v), v, 'out of range', `${field} is a ${whole ? 'whole number' : 'number'} ${field === 'ms' ? '> 0' : `>= ${min}`}`);
      }
    }
    if (act === 'halves') {
      const g = s.groups;
      if (!Array.isArray(g) || g.length < 2 || !g.every((x) => Array.isArray(x) && x.length > 0)) {
        say(value(where, 'groups', g), g, 'not two or more groups of nodes', 'e.g. [["n1"], ["n2", "n3"]] or [["leader"], ["rest"]]');
      } else {
        for (const grp of g as unknown[][]) {
          // "rest" stands for a whole group, so it only works alone in one.
          for (const x of grp) selector('groups', x, grp.length === 1 ? ['rest'] : []);
        }
      }
    }
    if (s.as !== undefined) {
      if (typeof s.as !== 'string' || s.as === '' || FIXED_SELECTORS.includes(s.as) || s.as === 'rest' || /^n\d+$/.test(s.as)) {
        say(value(where, 'as', s.as), s.as, 'not usable as a label', `a label is a new name (not ${[...FIXED_SELECTORS, 'rest'].join(', ')} or a node id), since those names mean something already`);
      } else {
        labels.add(s.as);
      }
    }
  }
  for (const [, problem] of found.sort((a, b) => a[0] - b[0])) report(...problem);
}

export function scheduleScenario(w: World, nemesis: Nemesis, s: Scenario): void {
  const labels = new Map<string, SimNode[]>();
  const select = (sel: string | undefined, except: readonly SimNode[] = []): SimNode[] => {
    if (sel === undefined || sel === 'all') return w.nodes.filter((n) => !except.includes(n));
    if (sel === 'leader') { const l = currentLeader(w); return l && !except.includes(l) ? [l] : []; }
    if (sel === 'follower') { const l = currentLeader(w); const f = w.nodes.filter((n) => n !== l && !except.includes(n)); return f.length ? [f[0]] : []; }
    const lab = labels.get(sel);
    if (lab) return lab.filter((n) => !except.includes(n));
    const i = w.nodeIndex.get(sel);
    if (i === undefined) throw new Error(`scenario ${s.name}: unknown node selector "${sel}"`);
    return except.includes(w.nodes[i]) ? [] : [w.nodes[i]];
  };
  for (const step of s.steps) {
    w.q.at(step.at, () => {
      const targets = step.do === 'cutNextLeader' ? [] : select(step.node, step.except === undefined ? [] : select(step.except));
      if (step.as) labels.set(step.as, targets);
      if (w.trace.on) w.trace.line(w.q.now, 'SCN', `${step.do} ${targets.map((n) => n.id).join(',') || '(nobody)'}${step.ms ? ` for ${step.ms} ms` : ''}`);
      const ms = step.ms ?? 1000;
      switch (step.do) {
        case 'crash': for (const n of targets) nemesis.inject(step.kind ?? 'kill', n, 1e12); break;
        case 'restart': for (const n of targets) if (!n.up) n.start(); break;
        case 'wipe': for (const n of targets) nemesis.wipe(n, 1e12); break;
        case 'pause': for (const n of targets) nemesis.inject('pause', n, ms); break;
        case 'isolate': for (const n of targets) nemesis.inject('isolate', n, ms); break;
        case 'fsyncError': for (const n of targets) nemesis.inject('fsyncError', n); break;
        case 'diskFull':
          for (const n of targets) {
            w.countFault('diskFull');
            n.disk.spaceLimit = n.disk.liveLen + (step.slack ?? 0);
            w.q.after(ms, () => { n.disk.spaceLimit = Infinity; });
          }
          break;
        case 'clientFollower': {
          w.countFault('clientFollower');
          const links: [number, number][] = [];
          for (const n of targets) for (let c = w.nodes.length; c < w.net.size; c++) links.push([c, n.idx]);
          w.net.partition(links, ms);
          break;
        }
        case 'halves': {
          w.countFault('halves');
          // A group ["rest"] holds every node not named in another group.
          const named = (step.groups ?? []).map((g) => (g.length === 1 && g[0] === 'rest' ? null : g.flatMap((x) => select(x))));
          const taken = new Set(named.flat().filter((x) => x !== null));
          const groups = named.map((g) => g ?? w.nodes.filter((n) => !taken.has(n)));
          if (step.as) labels.set(step.as, groups[0] ?? []);
          const links: [number, number][] = [];
          for (const a of groups) for (const b of groups) if (a !== b) for (const x of a) for (const y of b) links.push([x.idx, y.idx]);
          w.net.partition(links, ms);
          break;
        }
        case 'oneway': {
          w.countFault('oneway');
          const to = select(step.to);
          const links: [number, number][] = [];
          for (const x of targets) for (const y of to) links.push([x.idx, y.idx]);
          w.net.partition(links, ms);
          break;
        }
        case 'clog': {
          w.countFault('clog');
          const to = select(step.to);
          for (const x of targets) for (const y of to) { w.net.clog(x.idx, y.idx, step.factor ?? 100, w.q.now + ms); w.net.clog(y.idx, x.idx, step.factor ?? 100, w.q.now + ms); }
          break;
        }
        case 'heal': w.net.heal(); w.net.unclog(); break;
        case 'cutNextLeader':
          w.onLeader = (node) => {
            w.onLeader = null;
            if (step.as) labels.set(step.as, [node]);
            if (w.trace.on) w.trace.line(w.q.now, 'SCN', `${node.id} elected: cut off from its peers`);
            nemesis.isolateFromPeers(node, ms);
          };
          break;
      }
    });
  }
}
