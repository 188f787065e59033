/**
 * `loglog end`, `loglog status`, `loglog trim`: the log's bounds and the cluster's state.
 */
import type { CAC } from 'cac';
import { LogError } from '../../../spec/errors.ts';
import type { LogClient } from '../../log-client.ts';
import type { ServerStatus } from '../../types.ts';
import { normalizeServer } from '../../http.ts';
import { UsageError, parseInteger } from '../args.ts';
import { type CliContext, SERVER_OPTION } from '../context.ts';
import { EXIT_SERVER } from '../errors.ts';
import { formatBytes } from '../output.ts';

async function runEnd(ctx: CliContext, o: Record<string, unknown>): Promise<void> {
  const end = await ctx.getClient().end({ linearizable: o.linearizable === true, signal: ctx.signal });
  await ctx.out.write(`${end}\n`);
  await ctx.out.flush();
}

type Answer = { server: string; status: ServerStatus } | { server: string; error: LogError };

/** How long `loglog status` waits for each server by default. */
const STATUS_TIMEOUT_MS = 5000;

/** What became of a server that gave no status. */
function failureLabel(e: LogError): string {
  if (e.code === 'bad_response') return 'not a loglogd';
  return e.code === 'network' || e.code === 'timeout' ? 'unreachable' : 'failed';
}

/** Pretty status of one server. */
export function formatStatus(a: Answer): string {
  if ('error' in a) return `${a.server}  ${failureLabel(a.error)}: ${a.error.message} (${a.error.code})\n`;
  const s = a.status;
  const lines = [
    `${a.server}  ${s.role ?? '?'}  id ${s.id ?? '?'}${typeof s.cluster === 'string' ? `  cluster ${s.cluster}` : ''}  term ${s.term ?? '?'}  leader ${s.leader ?? 'none'}`,
    `  log      start ${s.start}  end ${s.end}  commit ${s.commit}  durable ${s.durable}`,
    `  storage  ${s.segments} segment${s.segments === 1 ? '' : 's'}, ${typeof s.bytes === 'number' ? formatBytes(s.bytes) : '?'}`,
  ];
  if (s.abstaining) lines.push('  votes    not yet: a new or emptied data directory (waiting to hear every member\'s term and to catch up with the leader)');
  const tr = s.traffic;
  if (tr && (tr.appendedBytes > 0 || tr.peerSentBytes > 0)) {
    const ratio = tr.appendedBytes >= 1 << 20 ? ` (${(tr.peerSentBytes / tr.appendedBytes).toFixed(3)} per byte appended)` : '';
    lines.push(`  traffic  appended ${formatBytes(tr.appendedBytes)} as leader, sent ${formatBytes(tr.peerSentBytes)} to peers${ratio}`);
  }
  if (s.scrub) lines.push(`  scrub    ${formatScrub(s.scrub, Date.now())}`);
  return `${lines.join('\n')}\n`;
}

/** One line on a node's scrubber: its passes, where it stands, what it found since start. */
export function formatScrub(sc: NonNullable<ServerStatus['scrub']>, now: number): string {
  if (!sc.enabled) return 'off (loglogd --scrub-interval)';
  const parts = [`${sc.passes} pass${sc.passes === 1 ? '' : 'es'} done`];
  if (sc.lastPassEndedAt !== null) parts[0] += `, the last ${formatAgo(now - sc.lastPassEndedAt)} ago`;
  if (sc.running && sc.position !== null) parts.push(`checking at ${sc.position}`);
  let line = parts.join(', ');
  if (sc.damaged > 0) line += `; since start ${sc.damaged} damaged frame${sc.damaged === 1 ? '' : 's'} found, ${sc.repaired} rewritten from another replica (the node's log says which)`;
  return line;
}

function formatAgo(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172_800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86_400)} d`;
}

/**
 * Status of every member of the cluster (discovered from the configured servers), plus the
 * configured servers outside it. A default address nobody listens on that is not a member
 * (7401/7402 next to a single node on 7400) is left out; one the user named is not.
 * Exit 2 when any server listed did not answer.
 */
async function runStatus(ctx: CliContext, o: Record<string, unknown>): Promise<void> {
  // A health check answers in seconds: one attempt per server, with a short timeout. With
  // the client's 30 s and a retry, a frozen member held it for a minute.
  const timeoutRaw = ctx.raw('timeout');
  const requestTimeoutMs = timeoutRaw === undefined ? STATUS_TIMEOUT_MS : parseInteger(timeoutRaw, 'timeout', 1, 600_000);
  const client = ctx.getClient({ retry: { retries: 0 }, requestTimeoutMs });
  const { members } = await client.discover({ signal: ctx.signal });
  const configured = ctx.servers().map(normalizeServer);
  const servers = [...members, ...configured.filter((s) => !members.includes(s))];
  const all: Answer[] = await Promise.all(
    servers.map(async (server): Promise<Answer> => {
      try {
        return { server, status: await client.status({ server, signal: ctx.signal }) };
      } catch (e) {
        if (e instanceof LogError) {
          if (e.code === 'aborted') throw e;
          return { server, error: e };
        }
        throw e;
      }
    }),
  );
  const named = ctx.serversNamed;
  const answers = all.filter((a) => named || members.includes(a.server) || !('error' in a));
  for (const a of answers) {
    if (o.json) {
      const line = 'error' in a ? { server: a.server, error: { code: a.error.code, message: a.error.message } } : { server: a.server, ...a.status };
      await ctx.out.write(`${JSON.stringify(line)}\n`);
    } else {
      await ctx.out.write(formatStatus(a));
    }
  }
  await ctx.out.flush();
  const failed = answers.filter((a): a is Extract<Answer, { error: LogError }> => 'error' in a);
  if (failed.length === answers.length) throw failed[0].error;
  if (failed.length > 0) {
    const which = failed.map((a) => (failureLabel(a.error) === 'unreachable' ? a.server : `${a.server} (${failureLabel(a.error)})`));
    ctx.note(`loglog: ${failed.length} of ${answers.length} servers did not answer: ${which.join(', ')}`);
    ctx.exitCode = EXIT_SERVER;
  }
}

async function runTrim(ctx: CliContext): Promise<void> {
  const before = ctx.offset('before');
  if (before === undefined) throw new UsageError('trim needs --before <offset>');
  const client = ctx.getClient();
  // The leader's start (the trim goes to the leader): whether the trim moved it.
  const was = (await client.bounds({ linearizable: true, signal: ctx.signal })).start;
  const start = await client.trim(before, { signal: ctx.signal });
  await ctx.out.write(`${start}\n`);
  await ctx.out.flush();
  // A start short of --before is no failure, but a bare number left the user guessing why.
  if (start < before) {
    const why = `only whole segments are deleted, and ${await keptSegment(ctx, client, start, before)} (segments are loglogd's --segment-bytes long, 64MiB by default)`;
    ctx.note(start > was
      ? `loglog: deleted the segments below ${start} (the log started at ${was}); ${why}`
      : `loglog: nothing was deleted: the log still starts at ${start}; ${why}`);
  }
}

/**
 * Why the segment from `start` outlived a trim below `before`: it holds `before` (sealed, it
 * reaches past it), or it is the segment being written, which a trim never deletes, even when
 * all of it lies below `before` (a trim up to the commit end). The leader's status tells which.
 */
async function keptSegment(ctx: CliContext, client: LogClient, start: number, before: number): Promise<string> {
  let active: boolean | null = null;
  try {
    const st = await client.status({ server: client.leader, signal: ctx.signal });
    active = st.start === start ? st.segments === 1 : null;
  } catch (e) {
    if (e instanceof LogError && e.code === 'aborted') throw e;
  }
  const sealed = `the segment from ${start} reaches past ${before}`;
  const writing = `the segment from ${start} is the one being written, which is kept until it is full`;
  return active === null ? `${sealed}, or is the one being written (kept until it is full)` : active ? writing : sealed;
}

export function register(cli: CAC, ctx: CliContext): void {
  cli
    .command('end', 'Print the commit end (the offset the next entry will get) as a bare number')
    .option(...SERVER_OPTION)
    .option('--linearizable', 'Ask the leader to confirm its leadership first (read index)')
    .example('loglog end')
    .example('loglog read --from "$(loglog end --linearizable)" --follow')
    .action((o: Record<string, unknown>) => runEnd(ctx, o));

  cli
    .command('status', 'Show the status of every cluster member and every server named (exit 2 if any does not answer)')
    .option(...SERVER_OPTION)
    .option('--json', 'One JSON object per server per line')
    .option('--timeout <ms>', `A server that has not answered after this many milliseconds is listed as unreachable (default ${STATUS_TIMEOUT_MS})`)
    .example('loglog status')
    .example('loglog status --json --server http://10.0.0.1:7400,http://10.0.0.2:7400')
    .action((o: Record<string, unknown>) => runStatus(ctx, o));

  cli
    .command('trim', 'Delete whole segments below an offset; prints the new log start (and on stderr why it is short of the offset)')
    .option(...SERVER_OPTION)
    .option('--before <offset>', 'Delete segments entirely below this offset, except the one being written (required)')
    .example('loglog trim --before 1073741824')
    .action(() => runTrim(ctx));
}
