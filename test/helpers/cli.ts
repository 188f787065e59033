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
  /** The same for stdout. */
  waitOut(re: RegExp): Promise<RegExpExecArray>;
}

export interface CliOptions {
  /** Written to stdin, which is then closed (closed at once without it). */
  stdin?: string | Buffer;
  /** Leave stdin open after `stdin` (a pipe that goes quiet); the process's end closes it. */
  holdStdin?: boolean;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Starts the CLI as a child process with `args`. */
export function spawnCli(args: readonly string[], opts: CliOptions = {}): CliProcess {
  const proc = spawn(process.execPath, [LOGLOG, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env, cwd: opts.cwd });
  const exited = new Promise<number | null>((res) => proc.once('exit', (code) => res(code)));
  const out = collect(proc.stdout!, exited);
  const err = collect(proc.stderr!, exited);
  const done = new Promise<CliResult>((res, rej) => {
    proc.once('error', rej);
    proc.once('close', (code) => res({ code, out: out.text(), err: err.text() }));
  });
  // A CLI that exits without reading its input closes the pipe: that is for the test's
  // checks of its exit code and output, not an uncaught EPIPE.
  proc.stdin!.on('error', () => {});
  if (!opts.holdStdin) proc.stdin!.end(opts.stdin ?? '');
  else if (opts.stdin !== undefined) proc.stdin!.write(opts.stdin);
  return {
    proc, exited, done,
    out: out.text,
    err: err.text,
    waitErr: err.wait,
    waitOut: out.wait,
  };
}

/** The text of `stream` so far, and waits for a match in it (rejected once the process exits). */
function collect(stream: NodeJS.ReadableStream, exited: Promise<number | null>): { text: () => string; wait: (re: RegExp) => Promise<RegExpExecArray> } {
  let text = '';
  const waiters: { re: RegExp; res: (m: RegExpExecArray) => void }[] = [];
  stream.setEncoding('utf8');
  stream.on('data', (d: string) => {
    text += d;
    for (const w of [...waiters]) {
      const m = w.re.exec(text);
      if (m) { waiters.splice(waiters.indexOf(w), 1); w.res(m); }
    }
  });
  return {
    text: () => text,
    wait(re) {
      const m = re.exec(text);
      if (m) return Promise.resolve(m);
      return new Promise((res, rej) => {
        waiters.push({ re, res });
        void exited.then((code) => rej(new Error(`exited (${code}) before printing ${re}:\n${text}`)));
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
