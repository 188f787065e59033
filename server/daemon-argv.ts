/**
 * How to start a loglogd process: the Node flags it is meant to run with, its script, then
 * its own arguments (and whether its address can be listened on, `probeListen`). `loglog dev`, the benchmarks and the tests all start it this way; the
 * `loglogd` bin gets the same flags from the first two lines of `loglogd.js`.
 *
 * `--max-semi-space-size=1` (MiB) keeps V8's young generation small. Node's HTTP parser
 * copies every body chunk of an append into a fresh off-heap buffer, and V8 counts those as
 * external memory until a garbage collection frees them. With the default 16 MiB young
 * generation, scavenges come only every few tens of MiB appended. The dead chunks pile up,
 * and V8 answers that external memory pressure with full-heap marking cycles. Measured
 * (`--trace-gc`, 1 GiB of 1 MiB appends): 60 full collections became 1, and the server's user
 * CPU fell from about 3.2 to 2.1 s per GiB. The flag has to be on the command line: V8 sizes
 * the young generation when the process starts, and setting it at run time is too late.
 * Clients do not get it. A producer's records outlive a small young generation, and the
 * same setting made the producer's process slower.
 *
 * `--initial-old-space-size=64` (MiB) lets the old generation reach 64 MiB before a full
 * collection. When V8 checks the old generation against its limit, it adds the off-heap
 * memory that grew since the last full collection, and a node that idled has a small limit
 * (about 20 MiB with an 11 MiB heap). Under load the body chunks in flight then keep that count
 * over the limit, and V8 marked the whole heap every 25-50 ms. Measured with `--trace-gc`
 * on a node started 2 s before 512 MiB of 1 MiB appends (4 in flight): 28-44 full
 * collections and 3.1-4.0 ms of server CPU per MiB without the flag; none, and 1.9-2.3 ms,
 * with it. V8 keeps an embedder's initial old-generation size as the floor of that limit,
 * so it holds after full collections too.
 */
import { type ChildProcess, type StdioNull, type StdioPipe, spawn } from 'node:child_process';
import { createServer as createNetServer } from 'node:net';
import { fileURLToPath } from 'node:url';

/** The daemon's entry script. */
export const LOGLOGD_SCRIPT = fileURLToPath(new URL('./loglogd.js', import.meta.url));

/** Node flags loglogd runs with (keep in sync with the exec line of `loglogd.js`). */
export const LOGLOGD_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1', '--initial-old-space-size=64'];

/** Arguments for `spawn(process.execPath, ...)`: `nodeFlags` first (profiling, say), then ours. */
export function loglogdArgv(args: readonly string[], nodeFlags: readonly string[] = []): string[] {
  return [...nodeFlags, ...LOGLOGD_NODE_FLAGS, LOGLOGD_SCRIPT, ...args];
}

/** loglogd's readiness line (on stderr): from then on it serves its API at `url`. */
export function servingLine(id: string, url: string, dataDir: string): string {
  return `node ${id} serving ${url}, data in ${dataDir}`;
}

/** The URL of the first readiness line in `text` (a line, or a stream's output so far), or null. */
export function servingUrl(text: string): string | null {
  return / serving (http:\/\/\S+), data in /.exec(text)?.[1] ?? null;
}

/**
 * Watches a loglogd child's stderr for its readiness line: `serving` resolves with the URL,
 * or rejects with everything it wrote if it exits first. `onStderr` sees every chunk.
 */
export function whenServing(proc: ChildProcess, opts: { name?: string; onStderr?: (chunk: string) => void } = {}): { serving: Promise<string>; stderr: () => string } {
  let err = '';
  const serving = new Promise<string>((res, rej) => {
    let served = false;
    proc.stderr!.setEncoding('utf8').on('data', (s: string) => {
      err += s;
      opts.onStderr?.(s);
      const url = served ? null : servingUrl(err);
      if (url) { served = true; res(url); }
    });
    proc.once('exit', (code, signal) => rej(new Error(`${opts.name ?? 'loglogd'} exited (${code ?? signal}) before serving:\n${err}`)));
  });
  return { serving, stderr: () => err };
}

/**
 * The CLI commands start-up hints suggest (loglogd's, `loglog dev`'s), with `server` (` --server
 * URL[,URL...]`, or '' for the CLI's default servers) appended. The read starts at the log's
 * start, not at 0: after a trim, offset 0 is gone and `--from 0` fails with `trimmed`.
 */
export function hintCommands(server: string): { append: string; read: string } {
  return { append: `npx loglog append${server}`, read: `npx loglog read --from start${server}` };
}

/** The loglogd flag that makes it stop cleanly when its stdin closes. */
export const STOP_ON_STDIN_CLOSE = '--stop-on-stdin-close';

/**
 * Spawns loglogd as a supervised child: its stdin is a pipe this process holds, and it runs
 * with --stop-on-stdin-close. However this process ends (a crash, a test runner's timeout,
 * SIGKILL), the kernel closes the pipe and the node stops cleanly, instead of living on as
 * an orphan that holds its port and eats CPU. stderr is always a pipe (readiness is its
 * "serving" line); stdout is ignored unless asked for.
 */
export function spawnLoglogdChild(args: readonly string[], opts: { nodeFlags?: readonly string[]; stdout?: StdioPipe | StdioNull; env?: NodeJS.ProcessEnv; detached?: boolean } = {}): ChildProcess {
  return spawn(process.execPath, loglogdArgv([...args, STOP_ON_STDIN_CLOSE], opts.nodeFlags), {
    stdio: ['pipe', opts.stdout ?? 'ignore', 'pipe'],
    env: opts.env,
    detached: opts.detached,
  });
}

/** Listens on `host:port` and lets go at once: null if that worked, else why not (EADDRINUSE, EACCES). */
export function probeListen(host: string, port: number): Promise<NodeJS.ErrnoException | null> {
  return new Promise((resolve) => {
    const probe = createNetServer();
    probe.once('error', (e: NodeJS.ErrnoException) => resolve(e));
    probe.listen(port, host, () => probe.close(() => resolve(null)));
  });
}
