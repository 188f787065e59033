/**
 * The `loglog` CLI in tests, either as users run it (a child process running
 * client/cli/loglog.js, through tsx) or in-process through `run` (client/cli/run.ts) with
 * in-memory stdio. Both collect stdout, stderr and the exit code.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { run } from '../../client/cli/run.ts';

/** The CLI's executable script. */
export const LOGLOG = fileURLToPath(new URL('../../client/cli/loglog.js', import.meta.url));

/** What one run of the CLI printed, and its exit code (null for a child process ended by a signal). */
export interface CliResult<Code = number | null> {
  code: Code;
  out: string;
  err: string;
}

/** A running CLI child process (see `spawnCli`). */
export interface CliProcess {
  proc: ChildProcess;
  /** stdout so far. */
  out(): string;
  /** stderr so far. */
  err(): string;
  /** Resolves when the process exits, with its exit code (its output may still be arriving: `done` waits for it). */
  exited: Promise<number | null>;
  /** Resolves once the process has exited and its stdout and stderr are closed. */
  done: Promise<CliResult>;
  /** Resolves with the first match of `re` in stderr (rejects if the process exits first). */
  waitErr(re: RegExp): Promise<RegExpExecArray>;
}

export interface CliOptions {
  /** Written to stdin, which is then closed (closed at once without it). */
  stdin?: string | Buffer;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Starts the CLI as a child process with `args`. */
export function spawnCli(args: readonly string[], opts: CliOptions = {}): CliProcess {
  const proc = spawn(process.execPath, [LOGLOG, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env, cwd: opts.cwd });
  let out = '';
  let err = '';
  const waiters: { re: RegExp; res: (m: RegExpExecArray) => void }[] = [];
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
    err += d;
    for (const w of [...waiters]) {
      const m = w.re.exec(err);
      if (m) { waiters.splice(waiters.indexOf(w), 1); w.res(m); }
    }
  });
  const exited = new Promise<number | null>((res) => proc.once('exit', (code) => res(code)));
  const done = new Promise<CliResult>((res, rej) => {
    proc.once('error', rej);
    proc.once('close', (code) => res({ code, out, err }));
  });
  // A CLI that exits without reading its input closes the pipe: that is for the test's
  // checks of its exit code and output, not an uncaught EPIPE.
  proc.stdin!.on('error', () => {});
  proc.stdin!.end(opts.stdin ?? '');
  return {
    proc, exited, done,
    out: () => out,
    err: () => err,
    waitErr(re) {
      const m = re.exec(err);
      if (m) return Promise.resolve(m);
      return new Promise((res, rej) => {
        waiters.push({ re, res });
        void exited.then((code) => rej(new Error(`exited (${code}) before printing ${re}:\n${err}`)));
      });
    },
  };
}

/** Runs the CLI as a child process with `args` until it exits and its output is closed. */
export function runCli(args: readonly string[], opts: CliOptions = {}): Promise<CliResult> {
  return spawnCli(args, opts).done;
}

/** Runs the CLI in-process (`run` with in-memory stdio and an empty environment); `terminal`: stdin and stderr say they are one. */
export async function runCliInProcess(args: readonly string[], stdin = '', opts: { terminal?: boolean } = {}): Promise<CliResult<number>> {
  const input = Object.assign(new PassThrough(), opts.terminal ? { isTTY: true } : {});
  input.end(stdin);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const sink = (into: Buffer[]) => {
    const s = new PassThrough();
    s.on('data', (d: Buffer) => into.push(d));
    return s;
  };
  const stderr = Object.assign(sink(err), opts.terminal ? { isTTY: true } : {});
  const code = await run(['node', 'loglog', ...args], { stdin: input, stdout: sink(out), stderr, env: {} });
  return { code, out: Buffer.concat(out).toString(), err: Buffer.concat(err).toString() };
}
