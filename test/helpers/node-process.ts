/**
 * Real loglogd processes for integration tests: each gets a free port (it listens on
 * port 0 and reports the address), its own temporary data directory, and is killed and
 * cleaned up in teardown. Readiness is the "serving" line on stderr, never a sleep.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { spawnLoglogdChild, whenServing } from '../../server/daemon-argv.ts';

/** A spawned loglogd, from the moment it is spawned (see `spawnLoglogd`). */
export interface LoglogdProcess {
  proc: ChildProcess;
  /** Resolves when the process exits, with its exit code (null after a signal). */
  exited: Promise<number | null>;
  /** Everything it has written to stderr so far. */
  stderr: () => string;
  /** Resolves with the URL of its "serving http://..., data in ..." line; rejects if it exits first. */
  serving: Promise<string>;
}

/**
 * Spawns loglogd with `args`, with the Node flags it runs with (server/daemon-argv.ts), and
 * collects its stderr (each chunk also goes to `onStderr`). Every test that starts a daemon
 * starts it here: `startNode` for a single node, `ClusterNode.start` for cluster members.
 */
export function spawnLoglogd(args: readonly string[], opts: { name?: string; env?: NodeJS.ProcessEnv; onStderr?: (chunk: string) => void } = {}): LoglogdProcess {
  const proc = spawnLoglogdChild(args, { env: opts.env });
  // 'close', not 'exit': by then stderr is read to its end (a test that stops a node then
  // checks its last line raced the pipe).
  const exited = new Promise<number | null>((res) => proc.once('close', (code) => res(code)));
  const { serving, stderr } = whenServing(proc, opts);
  return { proc, exited, serving, stderr };
}

export interface NodeProcess {
  url: string;
  dataDir: string;
  proc: ChildProcess;
  stderr: () => string;
  /** SIGKILL and wait for exit. */
  kill(): Promise<void>;
  /** SIGINT (clean shutdown) and wait for exit; resolves with the exit code. */
  stop(): Promise<number | null>;
}

export async function tempDir(t: ExecutionContext, prefix = 'loglog-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

export async function startNode(t: ExecutionContext, opts: { dataDir?: string; args?: string[]; port?: number } = {}): Promise<NodeProcess> {
  const dataDir = opts.dataDir ?? (await tempDir(t));
  const daemon = spawnLoglogd(['--data', dataDir, '--listen', `127.0.0.1:${opts.port ?? 0}`, ...(opts.args ?? [])]);
  const url = await daemon.serving;
  const { proc, exited } = daemon;
  const node: NodeProcess = {
    url, dataDir, proc,
    stderr: daemon.stderr,
    async kill() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGINT');
      return exited;
    },
  };
  t.teardown(() => node.kill());
  return node;
}
