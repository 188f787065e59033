/**
 * The `loglog` CLI: builds the cac program from command modules and runs one invocation.
 * `run` never calls process.exit; it resolves to the exit code (see `errors.ts`).
 */
import { readFileSync } from 'node:fs';
import { type CAC, cac } from 'cac';
import { CliContext } from './context.ts';
import type { CliIO, CommandModule } from './context.ts';
import { BrokenPipe } from './output.ts';
import { EXIT_OK, EXIT_USAGE, describeError } from './errors.ts';
import { UsageError, joinNegativeValues } from './args.ts';
import * as append from './commands/append.ts';
import * as read from './commands/read.ts';
import * as admin from './commands/admin.ts';
import * as dev from './commands/dev.ts';
import * as sim from '../../sim/cli.ts';

/**
 * Every command module, in help order. Each exports `register(cli, ctx)`.
 */
export const COMMANDS: CommandModule[] = [
  append,
  read,
  admin,
  sim,
  dev,
];

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

/** Every flag of `cli` that takes a value (`--from <offset>`), by its long name as typed. */
function valueFlags(cli: CAC): Set<string> {
  const names = new Set<string>();
  for (const c of [cli.globalCommand, ...cli.commands]) {
    for (const o of c.options) if (!o.isBoolean) names.add(o.rawName.replace(/^--([\w-]+).*$/, '$1'));
  }
  return names;
}

/** The default process streams. */
export function processIO(): CliIO {
  return { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: process.env };
}

/** Options of {@link run}. */
export interface RunOptions {
  /** Command modules to register (default {@link COMMANDS}). */
  commands?: CommandModule[];
  /** Interrupts the running command (the process wires Ctrl-C to it). */
  signal?: AbortSignal;
  /** Called with the invocation's context before the command runs (the process reads its shutdownGraceMs). */
  onContext?: (ctx: CliContext) => void;
}

/**
 * Runs one CLI invocation. `argv` is a full process argv (`[node, script, ...args]`).
 * Resolves to the exit code.
 */
export async function run(argv: string[] = process.argv, io: CliIO = processIO(), opts: RunOptions = {}): Promise<number> {
  const ctx = new CliContext(argv.slice(2), io);
  opts.onContext?.(ctx);
  const commands = opts.commands ?? COMMANDS;
  if (opts.signal) {
    if (opts.signal.aborted) ctx.interrupt();
    else opts.signal.addEventListener('abort', () => ctx.interrupt(), { once: true });
  }
  const cli = cac('loglog');
  for (const m of commands) m.register(cli, ctx);
  // What `loglog --help` shows first-time users: one line per common task.
  for (const [example, what] of [
    ['loglog append --file events.log', 'one record per line, batched into entries'],
    ['loglog read --from 0 --follow', 'every record, then new ones as they commit'],
    ['loglog tail --format json', 'only new records, live, as JSON lines'],
    ['loglog status --server 10.0.0.1:7400,10.0.0.2:7400', 'every member of that cluster: role, term, ends'],
    ['loglog sim --seeds 1000', 'the protocol under 1000 seeds of simulated failures'],
    ['loglog dev --nodes 3', 'a local cluster to try it all on'],
  ]) cli.example(`${example.padEnd(52)}# ${what}`);
  cli.help();
  cli.version(version());
  let servers: string[] = [];
  try {
    servers = ctx.servers();
  } catch {
    // reported when a command needs them
  }
  try {
    cli.parse(joinNegativeValues(argv, valueFlags(cli)), { run: false });
    if (cli.options.help || cli.options.version) return EXIT_OK;
    if (!cli.matchedCommand) {
      if (cli.args.length > 0) throw new UsageError(`unknown command "${cli.args[0]}"`);
      cli.outputHelp();
      return EXIT_USAGE;
    }
    await cli.runMatchedCommand();
    return ctx.exitCode;
  } catch (e) {
    if (e instanceof BrokenPipe) return EXIT_OK;
    const { line, exitCode } = describeError(e, servers, ctx.signal.aborted);
    if (line) io.stderr.write(`${line}\n`);
    if (io.env.LOGLOG_DEBUG && e instanceof Error && e.stack) io.stderr.write(`${e.stack}\n`);
    return exitCode;
  } finally {
    await ctx.close().catch(() => undefined);
  }
}
