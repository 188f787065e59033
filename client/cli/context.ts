/**
 * What every CLI command gets: the raw argv (for exact offsets), stdio, an AbortSignal that
 * fires on Ctrl-C, and a lazily created {@link LogClient} for the `--server` list.
 */
import type { CAC } from 'cac';
import { LogError } from '../../spec/errors.ts';
import { LogClient, serversFromEnv } from '../log-client.ts';
import type { LogClientOptions } from '../log-client.ts';
import { UsageError, offsetOption, parseServerList, rawOption } from './args.ts';
import { Output } from './output.ts';
import type { OutStream } from './output.ts';

/** `--server`, an option of every command that talks to a cluster (not of `dev` or `sim`). */
export const SERVER_OPTION = [
  '--server <urls>',
  'Server URL(s), comma-separated; the rest of the cluster is discovered (default: env LOGLOG_SERVERS, else http://127.0.0.1:7400,http://127.0.0.1:7401,http://127.0.0.1:7402)',
] as const;

/** The process streams a command uses (replaceable in tests). */
export interface CliIO {
  stdin: NodeJS.ReadableStream;
  stdout: OutStream;
  stderr: OutStream;
  env: NodeJS.ProcessEnv;
}

/** A command module: registers one or more cac commands. */
export interface CommandModule {
  register(cli: CAC, ctx: CliContext): void;
}

export class CliContext {
  /** Buffered stdout. */
  readonly out: Output;
  private readonly abort = new AbortController();
  private client: LogClient | null = null;
  /** Set by a command that wants a non-zero exit without an error message. */
  exitCode = 0;
  /**
   * How long the process lets the command wind down after the first Ctrl-C before it exits
   * anyway (a second Ctrl-C exits at once). Commands that stop child processes raise it.
   */
  shutdownGraceMs = 2000;

  /** @param args the arguments after the program name (process.argv.slice(2)). */
  constructor(readonly args: readonly string[], readonly io: CliIO) {
    this.out = new Output(io.stdout);
  }

  /** Aborted on Ctrl-C (see `interrupt`). */
  get signal(): AbortSignal {
    return this.abort.signal;
  }

  interrupt(): void {
    this.abort.abort();
  }

  /** The servers to talk to: `--server`, else LOGLOG_SERVERS, else the default. */
  servers(): string[] {
    const raw = rawOption(this.args, 'server');
    return raw !== undefined ? parseServerList(raw) : serversFromEnv(this.io.env);
  }

  /** Whether the user named the servers (`--server`, LOGLOG_SERVERS) rather than leaving the default. */
  get serversNamed(): boolean {
    return rawOption(this.args, 'server') !== undefined || this.io.env.LOGLOG_SERVERS !== undefined;
  }

  /** The exact value of an offset option (cac would have rounded it); undefined when absent. */
  offset(name: string): number | undefined {
    return offsetOption(this.args, name);
  }

  /** The raw text of an option (undefined when absent). */
  raw(name: string): string | undefined {
    return rawOption(this.args, name);
  }

  /** The shared client (created on first use). */
  getClient(opts: Omit<LogClientOptions, 'servers'> = {}): LogClient {
    if (!this.client) {
      try {
        this.client = new LogClient({ ...opts, servers: this.servers() });
      } catch (e) {
        if (e instanceof LogError && e.code === 'bad_request') throw new UsageError(e.message);
        throw e;
      }
    }
    return this.client;
  }

  /** Progress lines are only for people watching a terminal. */
  get interactive(): boolean {
    return this.io.stderr.isTTY === true;
  }

  /** Writes one line to stderr. */
  note(line: string): void {
    this.io.stderr.write(`${line}\n`);
  }

  async close(): Promise<void> {
    const c = this.client;
    this.client = null;
    await c?.close();
  }
}
