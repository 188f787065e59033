/**
 * Entry point of the `loglog` CLI process (loaded by `loglog.js` through tsx).
 * Ctrl-C (SIGINT) or SIGTERM aborts the running command (sockets close cleanly, exit code
 * 130); a second one, or a command that does not stop within its grace time (2 s unless the
 * command says otherwise), exits at once. A duplicate signal within 300 ms of the first is
 * ignored: `npm start` forwards the terminal's Ctrl-C, so the process gets it twice.
 */
import { run, processIO } from './run.ts';
import type { CliContext } from './context.ts';

// A closed stdout pipe (`loglog read | head`) ends the program quietly.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
});

const interrupt = new AbortController();
let context: CliContext | null = null;
let firstSignalAt = 0;
const onSignal = () => {
  if (interrupt.signal.aborted) {
    if (Date.now() - firstSignalAt > 300) process.exit(130);
    return;
  }
  firstSignalAt = Date.now();
  interrupt.abort();
  setTimeout(() => process.exit(130), context?.shutdownGraceMs ?? 2000).unref();
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

process.exitCode = await run(process.argv, processIO(), { signal: interrupt.signal, onContext: (ctx) => { context = ctx; } });
