/**
 * How the CLI reports failures: one line on stderr, `loglog: <message> (<code>); <what to do>`,
 * and an exit code: 1 for usage mistakes, 2 for server and data errors, 130 when interrupted.
 */
import { LogError } from '../../spec/errors.ts';
import { UsageError } from './args.ts';

export const EXIT_OK = 0;
export const EXIT_USAGE = 1;
export const EXIT_SERVER = 2;
export const EXIT_INTERRUPTED = 130;

/** A failure after part of the work was done: reported as `cause`, then what was done. */
export class AfterProgress extends Error {
  constructor(readonly failure: unknown, readonly done: string) {
    super(done);
    this.name = 'AfterProgress';
  }
}

/** A suggestion for the user, by error code. */
function hint(e: LogError, servers: readonly string[]): string | null {
  const d = e.details;
  switch (e.code) {
    case 'network':
      if (d.timedOut === true) {
        return 'the server took the request but did not answer in time: a stuck node, or --acks all waiting for a replica that is down (see `loglog status`)';
      }
      return `is loglogd running at ${servers.join(', ')}? start it with \`npm start\`, or point --server / LOGLOG_SERVERS at it`;
    case 'unconfirmed':
      return 'see which replica is down with `loglog status`';
    case 'bad_response':
      return 'check --server (or LOGLOG_SERVERS): it should name loglogd nodes';
    case 'outcome_unknown':
      return 'look for it with `loglog read` near the commit end before appending it again';
    case 'trimmed':
      return typeof d.start === 'number' ? `read with --from ${d.start}` : 'that part of the log was trimmed';
    case 'out_of_range':
      return typeof d.end === 'number' ? `the commit end is ${d.end}` : 'that offset is past the commit end; see `loglog end`';
    case 'bad_offset':
      return 'offsets must be entry boundaries: the log start, or an offset or end printed by append or read' +
        (typeof d.start === 'number' && typeof d.end === 'number' ? ` (readable range ${d.start}..${d.end})` : '');
    case 'checksum_mismatch':
      return typeof d.replica === 'string'
        ? `replica ${d.replica} served corrupt bytes${typeof d.offset === 'number' ? ` at offset ${d.offset}` : ''}; check its disk, or read from another --server`
        : 'the data failed its checksum';
    case 'too_large':
      return `the server takes entries of at most ${typeof d.max === 'number' ? `${d.max} bytes` : 'its maxEntryBytes'}: ` +
        'split records (or --raw input) larger than that, and keep --batch-bytes below it';
    case 'not_leader':
    case 'unavailable':
      return 'the cluster has no usable leader right now (election in progress or no quorum); try again shortly';
    case 'timeout':
      return 'the server did not answer in time; the append may still commit';
    case 'body_timeout':
      return 'the input stalled longer than the server waits for an append body (loglogd --body-deadline); nothing of that entry was kept';
    case 'disk_full':
      return 'the server is out of disk space: free some with `loglog trim --before <offset>`';
    case 'internal':
      return 'the server failed; see its log';
    case 'aborted':
      // Not the user's Ctrl-C (that prints nothing): the server gave up on the entry.
      return 'the server dropped the append before storing it (a body cut short, or one it could not write); see its log';
    default:
      return null;
  }
}

/**
 * The one stderr line (null: say nothing) and the exit code for a failure. `interrupted`:
 * the user stopped the command (Ctrl-C). Only then is an `aborted` error silent and 130: a
 * server answers `aborted` too (an append body it could not store), and that was taken for
 * a Ctrl-C, with no line at all.
 */
export function describeError(e: unknown, servers: readonly string[], interrupted = false): { line: string | null; exitCode: number } {
  if (e instanceof AfterProgress) {
    const d = describeError(e.failure, servers, interrupted);
    // Interrupted (Ctrl-C) part way: what did get in is worth a line.
    return { line: `${d.line ?? 'loglog: interrupted'}; ${e.done}`, exitCode: d.exitCode };
  }
  if (e instanceof UsageError || (e instanceof Error && e.name === 'CACError')) {
    return { line: `loglog: ${e.message}; see \`loglog --help\` or \`loglog <command> --help\``, exitCode: EXIT_USAGE };
  }
  if (e instanceof LogError) {
    if (e.code === 'aborted' && interrupted) return { line: null, exitCode: EXIT_INTERRUPTED };
    const h = hint(e, servers);
    return { line: oneLine(`loglog: ${e.message} (${e.code})${h ? `; ${h}` : ''}`), exitCode: EXIT_SERVER };
  }
  const msg = e instanceof Error ? e.message : String(e);
  return { line: oneLine(`loglog: ${msg}`), exitCode: EXIT_SERVER };
}

/** Messages from below (OpenSSL's, say) may span lines; the CLI's error is one. */
function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ').trim();
}
