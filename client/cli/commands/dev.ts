/**
 * `loglog dev`: a local cluster for development. Starts N loglogd processes n1..nN on
 * 127.0.0.1:basePort.. with data under DIR/n1..nN and one cluster secret (generated once,
 * kept in DIR/cluster-secret, mode 0600), prints the leader and how to use the CLI, forwards
 * the nodes' logs prefixed with their ids, and stops every node cleanly on Ctrl-C.
 *
 * The nodes run in their own process groups: a terminal's Ctrl-C reaches only this command,
 * which then sends each node exactly one SIGINT (a second would make loglogd exit at once,
 * skipping its clean close) and waits for them all.
 *
 * {@link startLocalCluster} is also what `npm run bench -- cluster` and the tests use.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync, existsSync, statSync, chmodSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { createServer } from 'node:net';
import { hintCommands, probeListen, servingUrl, spawnLoglogdChild } from '../../../server/daemon-argv.ts';
import type { CAC } from 'cac';
import { request } from 'undici';
import { LogError } from '../../../spec/errors.ts';
import { DEFAULT_SERVERS } from '../../log-client.ts';
import { UsageError, parseInteger } from '../args.ts';
import type { CliContext } from '../context.ts';

/** One running node of a local cluster. */
export interface LocalNode {
  id: string;
  url: string;
  port: number;
  dataDir: string;
  proc: ChildProcess;
  /** Resolves with the exit code (null when killed by a signal) once the process is gone. */
  exited: Promise<number | null>;
  /** True while the process runs. */
  readonly alive: boolean;
  /** A shell command that starts this node again, as a member of the same cluster. */
  restart: string;
}

/** Options of {@link startLocalCluster}. */
export interface LocalClusterOptions {
  /** Number of nodes (1 runs a plain single node, without peers). */
  nodes: number;
  /** Data root: node data goes to DIR/n1.., the secret to DIR/cluster-secret. */
  dataDir: string;
  /** One port per node (n1 gets ports[0], ...). */
  ports: number[];
  /** Every line a node writes on stderr, without loglogd's own `loglogd: ` prefix. */
  onLine?: (id: string, line: string) => void;
  /** Extra loglogd flags for every node. */
  args?: string[];
  /** Extra Node flags for every node (e.g. `--cpu-prof`). */
  nodeArgs?: string[];
  /** Give up waiting for a node to serve after this long (default 30 s). */
  startTimeoutMs?: number;
}

/** A running local cluster. */
export interface LocalCluster {
  nodes: LocalNode[];
  secretFile: string;
  /** Polls `/v1/status` until a node says it leads and has committed in its term; that node. */
  waitForLeader(opts?: { signal?: AbortSignal; timeoutMs?: number }): Promise<LocalNode>;
  /** SIGINT to each live node (once), waits for all; SIGKILL after `graceMs` (default 15 s). Exit codes by node. */
  stop(graceMs?: number): Promise<(number | null)[]>;
}

/** The cluster secret under `dataDir`, created (32 random bytes, hex, mode 0600) if absent. */
export function clusterSecret(dataDir: string): { secret: string; file: string; created: boolean } {
  const file = join(dataDir, 'cluster-secret');
  mkdirSync(dataDir, { recursive: true });
  if (!existsSync(file)) {
    const secret = randomBytes(32).toString('hex');
    try {
      writeFileSync(file, `${secret}\n`, { mode: 0o600, flag: 'wx' });
      return { secret, file, created: true };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
  if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
  const secret = readFileSync(file, 'utf8').trim();
  if (secret === '') throw new LogError('bad_request', `${file} is empty: delete it to have a new secret generated`);
  return { secret, file, created: false };
}

/**
 * Refuses to start a data directory with a different number of nodes than it was created
 * with: shrinking a cluster by restarting it with fewer members could lose committed entries.
 */
function checkLayout(dataDir: string, nodes: number): void {
  const file = join(dataDir, 'cluster.json');
  if (existsSync(file)) {
    let was: number | undefined;
    try {
      was = (JSON.parse(readFileSync(file, 'utf8')) as { nodes?: number }).nodes;
    } catch {
      was = undefined;
    }
    if (typeof was === 'number' && was !== nodes) {
      throw new UsageError(`${dataDir} holds a ${was}-node cluster; start it with --nodes ${was}, or use another --data directory for ${nodes} nodes`);
    }
  }
  writeFileSync(file, `${JSON.stringify({ nodes })}\n`);
}

function nodeUrl(port: number): string {
  return `http://127.0.0.1:${port}`;
}

/** Starts the nodes and resolves once every one of them serves its API. */
export async function startLocalCluster(opts: LocalClusterOptions): Promise<LocalCluster> {
  const { nodes: n, ports } = opts;
  if (ports.length !== n) throw new Error(`need ${n} ports, got ${ports.length}`);
  const dataDir = resolve(opts.dataDir);
  const { secret, file: secretFile } = clusterSecret(dataDir);
  checkLayout(dataDir, n);
  const ids = Array.from({ length: n }, (_, i) => `n${i + 1}`);
  const peers = ids.map((id, i) => `${id}=${nodeUrl(ports[i])}`).join(',');
  const nodes: LocalNode[] = [];
  const ready: Promise<void>[] = [];
  for (const [i, id] of ids.entries()) {
    const port = ports[i];
    const dir = join(dataDir, id);
    const args = ['--data', dir, '--listen', `127.0.0.1:${port}`];
    if (n > 1) args.push('--id', id, '--peers', peers);
    args.push(...(opts.args ?? []));
    const proc = spawnLoglogdChild(args, { nodeFlags: opts.nodeArgs, stdout: 'pipe', env: { ...process.env, LOGLOG_CLUSTER_SECRET: secret }, detached: true });
    let running = true;
    const exited = new Promise<number | null>((res) => proc.once('exit', (code) => { running = false; res(code); }));
    const restart = `LOGLOG_CLUSTER_SECRET=$(cat ${shellQuote(secretFile)}) npx loglogd ${args.map(shellQuote).join(' ')}`;
    const node: LocalNode = { id, url: nodeUrl(port), port, dataDir: dir, proc, exited, get alive() { return running; }, restart };
    nodes.push(node);
    const tail: string[] = [];
    ready.push(new Promise<void>((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`${id} did not start serving within ${(opts.startTimeoutMs ?? 30_000) / 1000} s`)), opts.startTimeoutMs ?? 30_000);
      timer.unref();
      for (const stream of [proc.stderr!, proc.stdout!]) {
        createInterface({ input: stream, crlfDelay: Infinity }).on('line', (raw) => {
          const line = raw.replace(/^loglogd: /, '');
          if (tail.length >= 20) tail.shift();
          tail.push(line);
          if (servingUrl(line)) { clearTimeout(timer); res(); }
          opts.onLine?.(id, line);
        });
      }
      void exited.then((code) => {
        clearTimeout(timer);
        // Its last line says why (the daemon's one-line error); the rest is in its log above.
        rej(new Error(`${id} exited (code ${code}) before serving${tail.length ? `: ${tail[tail.length - 1]}` : ''}`));
      });
    }));
  }
  // The nodes run detached (see above): if this process dies without stopping them (a crash,
  // process.exit), take them along rather than leave orphans holding the ports.
  const onExit = () => { for (const node of nodes) if (node.alive) node.proc.kill('SIGKILL'); };
  process.once('exit', onExit);
  let stopping: Promise<(number | null)[]> | null = null;
  const cluster: LocalCluster = {
    nodes,
    secretFile,
    async waitForLeader(w = {}) {
      const deadline = Date.now() + (w.timeoutMs ?? 30_000);
      for (;;) {
        for (const node of nodes) {
          if (!node.alive) continue;
          try {
            const r = await request(`${node.url}/v1/status`, { signal: w.signal, headersTimeout: 2000, bodyTimeout: 2000 });
            const st = (await r.body.json()) as { role?: string; commit?: number; end?: number };
            if (r.statusCode === 200 && st.role === 'leader' && st.commit === st.end) return node;
          } catch (e) {
            if (w.signal?.aborted) throw new LogError('aborted', 'interrupted');
            void e; // not up yet, or restarting
          }
        }
        if (nodes.every((x) => !x.alive)) throw new LogError('unavailable', 'every node has exited');
        if (Date.now() > deadline) throw new LogError('timeout', `no leader after ${(w.timeoutMs ?? 30_000) / 1000} s`);
        await new Promise((r) => setTimeout(r, 100));
        if (w.signal?.aborted) throw new LogError('aborted', 'interrupted');
      }
    },
    stop(graceMs = 15_000) {
      stopping ??= Promise.all(nodes.map(async (node) => {
        if (node.alive) node.proc.kill('SIGINT');
        const killer = setTimeout(() => { if (node.alive) node.proc.kill('SIGKILL'); }, graceMs);
        try {
          return await node.exited;
        } finally {
          clearTimeout(killer);
        }
      })).finally(() => process.removeListener('exit', onExit));
      return stopping;
    },
  };
  try {
    await Promise.all(ready);
  } catch (e) {
    await cluster.stop(5000);
    throw e;
  }
  return cluster;
}

/** `s` as one shell word. */
function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Whether `port` can be bound on 127.0.0.1 right now. */
export async function portFree(port: number): Promise<boolean> {
  return (await probeListen('127.0.0.1', port)) === null;
}

/** A port P such that P..P+count-1 are free on 127.0.0.1 (for tests and benchmarks). */
export async function freePortRange(count: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = await new Promise<number>((res, rej) => {
      const s = createServer();
      s.once('error', rej);
      s.listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => res(p));
      });
    });
    if (base + count > 65535) continue;
    let ok = true;
    for (let i = 1; i < count && ok; i++) ok = await portFree(base + i);
    if (ok) return base;
  }
  throw new Error(`no ${count} consecutive free ports found`);
}

/** Lines shown without --verbose: warnings, failures and role changes. */
const INTERESTING = /warning|fatal|error|refused|failed| is (leader|follower|candidate)\b|accepted this node/i;

async function runDev(ctx: CliContext, o: Record<string, unknown>): Promise<void> {
  const nRaw = ctx.raw('nodes');
  const n = nRaw === undefined ? 3 : parseInteger(nRaw, 'nodes', 1, 9);
  const baseRaw = ctx.raw('base-port');
  const base = baseRaw === undefined ? 7400 : parseInteger(baseRaw, 'base-port', 1, 65535 - n + 1);
  const dataDir = ctx.raw('data') ?? './data';
  const verbose = o.verbose === true;
  const ports = Array.from({ length: n }, (_, i) => base + i);
  const say = (line: string) => ctx.note(`loglog dev: ${line}`);
  const width = Math.max(...Array.from({ length: n }, (_, i) => `n${i + 1}`.length));

  // Shutdown may take longer than the CLI's usual 2 s after Ctrl-C: every node syncs and closes.
  ctx.shutdownGraceMs = 30_000;
  for (const p of ports) {
    if (!(await portFree(p))) throw new UsageError(`port ${p} on 127.0.0.1 is taken (another loglogd?): stop what uses it, or pick other ports with --base-port`);
  }
  let cluster: LocalCluster;
  try {
    cluster = await startLocalCluster({
      nodes: n, dataDir, ports,
      onLine: (id, line) => {
        if (verbose || INTERESTING.test(line)) ctx.note(`[${id.padEnd(width)}] ${line}`);
      },
    });
  } catch (e) {
    if (e instanceof UsageError || e instanceof LogError) throw e;
    // Not a LogError: its hints are about a running cluster, and there is none.
    throw new Error(`a node failed to start: ${(e as Error).message}`);
  }

  const stop = async (why: string): Promise<(number | null)[]> => {
    say(`${why}: stopping ${n} node${n === 1 ? '' : 's'}...`);
    const codes = await cluster.stop();
    say(`stopped (${cluster.nodes.map((x, i) => `${x.id} exit ${codes[i] ?? 'killed'}`).join(', ')})`);
    return codes;
  };

  const interrupted = new Promise<void>((res) => {
    if (ctx.signal.aborted) res();
    else ctx.signal.addEventListener('abort', () => res(), { once: true });
  });
  // Tell the user about nodes that stop on their own; all gone ends the command.
  const allExited = Promise.all(cluster.nodes.map((x) => x.exited.then((code) => {
    const how = code === null ? `killed by ${x.proc.signalCode}` : `exit code ${code}`;
    if (!ctx.signal.aborted) say(`${x.id} exited unexpectedly (${how}); see its log above (--verbose shows everything). To start it again, in another terminal:\n  ${x.restart}`);
  })));

  let leader: LocalNode;
  try {
    leader = await cluster.waitForLeader({ signal: ctx.signal });
  } catch (e) {
    await stop(ctx.signal.aborted ? 'interrupted' : (e as Error).message);
    if (ctx.signal.aborted) return;
    throw e;
  }

  const urls = cluster.nodes.map((x) => x.url);
  const isDefault = urls.length === DEFAULT_SERVERS.length && urls.every((u, i) => u === DEFAULT_SERVERS[i]);
  const server = isDefault ? '' : ` --server ${urls.join(',')}`;
  const hint = hintCommands(server);
  const lines = [
    `${n} node${n === 1 ? '' : 's'} up; leader ${leader.id} at ${leader.url}`,
    ...cluster.nodes.map((x) => `  ${x.id.padEnd(width)}  ${x.url}  ${(x === leader ? 'leader' : 'follower').padEnd(8)}  pid ${x.proc.pid}  data ${x.dataDir}`),
    `  cluster secret in ${cluster.secretFile}`,
    'try, in another terminal:',
    `  seq 1 5 | ${hint.append}`,
    `  ${hint.read}`,
    `  npx loglog status${server}`,
    ...(isDefault ? [] : [`  (or export LOGLOG_SERVERS=${urls.join(',')})`]),
    `node logs below show ${verbose ? 'everything' : 'warnings and role changes (--verbose: everything)'}; Ctrl-C stops every node`,
  ];
  ctx.note(`loglog dev: ${lines.join('\n')}`);

  await Promise.race([interrupted, allExited]);
  if (!ctx.signal.aborted) {
    await stop('every node exited');
    ctx.exitCode = 2;
    return;
  }
  const codes = await stop('interrupted');
  if (codes.some((c) => c !== 0)) ctx.exitCode = 2;
}

export function register(cli: CAC, ctx: CliContext): void {
  cli
    .command('dev', 'Run a local cluster (n1..nN on 127.0.0.1) for development; Ctrl-C stops it')
    .option('--nodes <n>', 'Number of nodes, 1 to 9 (default 3)')
    .option('--data <dir>', 'Data root: DIR/n1.. per node, DIR/cluster-secret (default ./data)')
    .option('--base-port <port>', 'n1 listens here, n2 on the next port, ... (default 7400)')
    .option('--verbose', 'Forward every line the nodes log (default: warnings and role changes)')
    .example('loglog dev')
    .example('loglog dev --nodes 5 --data /tmp/loglog --base-port 9000')
    .action((o: Record<string, unknown>) => runDev(ctx, o));
}
