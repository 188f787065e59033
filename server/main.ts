/** Starts one node: storage, replica, API server; prints how to use it; stops cleanly on signals. */
import { fstatSync } from 'node:fs';
import { LogError } from '../spec/errors.ts';
import { LogNode } from './log-node.ts';
import { createApiServer } from './http/server.ts';
import { DEFAULT_NODE_CONFIG, configWarnings, type NodeConfig } from './config.ts';
import { mountCluster } from './cluster/mount.ts';
import { hintCommands, probeListen, servingLine } from './daemon-argv.ts';

export interface RunningNode {
  node: LogNode;
  url: string;
  stop(): Promise<void>;
}

/**
 * Opens and starts a node. `onFatal` is attached before the node starts: a single node's
 * re-commit of its recovered log happens in here, and can already fail.
 */
export async function startNode(config: NodeConfig, log: (line: string) => void = () => {}, onFatal?: (reason: string) => void): Promise<RunningNode> {
  // A port in use is found before the log is opened (a single node would have re-committed
  // its log in a new term by the time listen failed).
  if (config.port !== 0) await portFree(config.host, config.port);
  const node = await LogNode.open(config);
  try {
    return await serve(node, config, log, onFatal);
  } catch (e) {
    await node.close().catch(() => {});
    throw e;
  }
}

/** Listens on `host:port` and lets go at once; rejects (EADDRINUSE, EACCES) if it cannot. */
async function portFree(host: string, port: number): Promise<void> {
  const e = await probeListen(host, port);
  if (e) throw new LogError('unavailable', `cannot listen on ${host}:${port} (${e.code ?? e.message})${listenAdvice(e.code, host)}`);
}

/** What to do about a fatal storage error, by the errno its reason names. */
export function fatalAdvice(reason: string): string {
  if (/\b(ENOSPC|EDQUOT)\b/.test(reason)) return ' (the disk is full: free space, or lower the retention, then start loglogd again; what it acknowledged is on disk)';
  if (/\bEFBIG\b/.test(reason)) return ' (a file-size limit stops the segment files growing: raise `ulimit -f`, or lower segmentBytes, then start loglogd again)';
  if (/\bEIO\b|fdatasync failed/.test(reason)) return ' (the disk reported an I/O error: check it, with dmesg say, before starting loglogd again)';
  return '';
}

/** What to do about a --listen address that cannot be listened on, by error code. */
function listenAdvice(code: string | undefined, host: string): string {
  switch (code) {
    case 'EADDRINUSE': return ': another process has it; pick another --listen port';
    case 'EACCES': return ': ports below 1024 need root (or CAP_NET_BIND_SERVICE); pick a --listen port above 1023';
    case 'EADDRNOTAVAIL': return `: ${host} is not an address of this machine; --listen takes one of its own, or 0.0.0.0 for every interface`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN': return `: the name ${host} does not resolve here; give --listen an IP address, or a name this machine resolves`;
    default: return '';
  }
}

async function serve(node: LogNode, config: NodeConfig, log: (line: string) => void, onFatal?: (reason: string) => void): Promise<RunningNode> {
  if (onFatal) node.on('fatal', onFatal);
  const api = createApiServer(node);
  node.on('warn', (m: string) => log(`warning: ${m}`));
  node.on('info', (m: string) => log(m));
  node.on('role', (r: { role: string; term: number; leader: string | null }) => log(`${config.id} is ${r.role} in term ${r.term}${r.leader && r.leader !== config.id ? ` (leader ${r.leader})` : ''}`));
  const single = config.peers.length === 0;
  if (single) {
    // A cluster of one re-commits its recovered log (new term, noop) before serving, so a
    // reader right after a restart never sees an empty log. A cluster member must listen
    // first: it learns its commit end from the leader.
    const recoveredEnd = node.log.end;
    node.start(null);
    if (!(await node.waitReadable(recoveredEnd - 1, 30_000))) throw new Error('the node did not commit its recovered log within 30 s');
  }
  await new Promise<void>((resolve, reject) => {
    api.server.once('error', reject);
    api.server.listen(config.port, config.host, () => resolve());
  });
  const addr = api.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : config.port;
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  if (!single) node.start(mountCluster(node, api, config, log));
  let stopping: Promise<void> | null = null;
  return {
    node, url,
    stop() {
      stopping ??= (async () => {
        await api.close();
        await node.close();
      })();
      return stopping;
    },
  };
}

export async function runNode(config: NodeConfig, opts: { stopOnStdinClose?: boolean } = {}): Promise<void> {
  const say = (line: string) => process.stderr.write(`loglogd: ${line}\n`);
  // Output nobody reads any more (the terminal closed, the log collector died) must not end
  // the node: a failed write to stderr threw on the next tick, before a SIGHUP's clean stop.
  process.stderr.on('error', () => {});
  if (opts.stopOnStdinClose && !stdinIsPipe()) {
    // Under a service manager stdin is /dev/null: the node would stop as soon as it started.
    throw new Error('--stop-on-stdin-close needs stdin to be a pipe held by the supervisor; leave the flag out otherwise');
  }
  for (const w of configWarnings(config)) say(`warning: ${w}`);
  let running: RunningNode | null = null;
  let stopping: Promise<void> | null = null;
  let fatal = false;
  // Every way out goes through here once; a fatal error, even one during a stop already
  // under way, makes the exit code 3.
  const stop = (why: string) => {
    stopping ??= (async () => {
      say(`${why}: syncing and closing...`);
      try {
        await running?.stop();
        if (!fatal) say('stopped cleanly');
        process.exit(fatal ? 3 : 0);
      } catch (e) {
        // A log that failed (an fdatasync, say) may not hold what it wrote: as fatal as any.
        say(`error while stopping: ${(e as Error).message}`);
        process.exit(3);
      }
    })();
  };
  running = await startNode(config, say, (reason) => {
    // The writes in flight fail alike (a full disk fails every one): the first one tells.
    if (fatal) return;
    say(`fatal: ${reason}; stopping so no unsynced write is acknowledged${fatalAdvice(reason)}`);
    fatal = true;
    // Before serving nothing was acknowledged: there is nothing to stop cleanly.
    if (!running) process.exit(3);
    stop('stopping');
  });
  // Handlers before the 'serving' line: whoever reads it may signal at once. A second
  // signal means "now"; a closing stdin only asks for the stop (a supervisor that signals
  // and then exits closes it too, in either order).
  let signals = 0;
  const onSignal = (sig: string) => (++signals > 1 ? process.exit(fatal ? 3 : 130) : stop(sig));
  // SIGHUP too: a terminal that closes sends it, and its default action ends the process
  // without a sync or a clean close.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => onSignal(sig));
  if (opts.stopOnStdinClose) {
    process.stdin.on('end', () => stop('stdin closed'));
    process.stdin.on('error', () => stop('stdin closed'));
    process.stdin.resume();
  }
  const r = running.node.log.recovery;
  say(servingLine(config.id, running.url, config.dataDir));
  say(`recovered log ${running.node.log.start}..${running.node.log.end} in ${r.ms.toFixed(1)} ms (scanned ${r.bytesScanned} bytes${r.torn ? `, cut a torn tail of ${r.truncatedBytes} bytes` : ''})`);
  say(tryLine(running.url));
}

/**
 * The start-up hint: CLI commands that reach this node. The CLI tries the default address
 * first (DEFAULT_SERVERS in client/log-client.ts), where another server may answer: a node
 * anywhere else is named with --server.
 */
export function tryLine(url: string): string {
  const { append, read } = hintCommands(url === `http://${DEFAULT_NODE_CONFIG.host}:${DEFAULT_NODE_CONFIG.port}` ? '' : ` --server ${url}`);
  return `try:  echo hello | ${append}   then   ${read}   (Ctrl-C stops)`;
}

/** Whether fd 0 is a pipe or a socket (what a supervisor holds the other end of). */
function stdinIsPipe(): boolean {
  try {
    const st = fstatSync(0);
    return st.isFIFO() || st.isSocket();
  } catch {
    return false;
  }
}
