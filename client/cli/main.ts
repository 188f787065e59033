/**
 * Entry point of the `loglog` CLI process (loaded by `loglog.js` through tsx).
 * Ctrl-C aborts the running command (sockets close cleanly, exit code 130); a second Ctrl-C,
 * or a command that does not stop within 2 s, exits at once.
 */
import { run, processIO } from './run.ts';

// A closed stdout pipe (`loglog read | head`) ends the program quietly.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
});

const interrupt = new AbortController();
process.on('SIGINT', () => {
  if (interrupt.signal.aborted) process.exit(130);
  interrupt.abort();
  setTimeout(() => process.exit(130), 2000).unref();
});

process.exitCode = await run(process.argv, processIO(), { signal: interrupt.signal });
