/**
 * Real loglogd processes for integration tests: each gets a free port (it listens on
 * port 0 and reports the address), its own temporary data directory, and is killed and
 * cleaned up in teardown. Readiness is the "serving" line on stderr, never a sleep.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { ExecutionContext } from 'ava';
import { loglogdArgv } from '../../server/daemon-argv.ts';

export const ROOT = resolve(import.meta.dirname, '..', '..');
export const LOGLOG = join(ROOT, 'client', 'cli', 'loglog.js');

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
  const args = loglogdArgv(['--data', dataDir, '--listen', `127.0.0.1:${opts.port ?? 0}`, ...(opts.args ?? [])]);
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  const exited = new Promise<number | null>((res) => proc.once('exit', (code) => res(code)));
  const url = await new Promise<string>((res, rej) => {
    const onData = (d: Buffer) => {
      err += d.toString();
      const m = /serving (http:\/\/\S+),/.exec(err);
      if (m) res(m[1]);
    };
    proc.stderr!.on('data', onData);
    void exited.then((code) => rej(new Error(`loglogd exited with ${code} before serving:\n${err}`)));
  });
  const node: NodeProcess = {
    url, dataDir, proc,
    stderr: () => err,
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
