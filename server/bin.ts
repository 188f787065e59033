/**
 * loglogd: one node of a loglog cluster (or a cluster of one).
 *   loglogd --data DIR --listen HOST:PORT [--config FILE] [--id n1 --peers n1=URL,n2=URL,...]
 */
import { cac } from 'cac';
import { DEFAULT_NODE_CONFIG, applyConfigFile, applyOptions, type ConfigFile, type NodeConfig } from './config.ts';
import { runNode } from './main.ts';

const cli = cac('loglogd');
cli
  .usage('--data DIR --listen HOST:PORT [options]\n\n  Runs one loglog node. With no flags: a single node, data under ./data, on 127.0.0.1:7400.')
  .option('--data <dir>', 'Data directory (segment files, hard state)', { default: DEFAULT_NODE_CONFIG.dataDir })
  .option('--listen <host:port>', 'Address to serve the HTTP/WebSocket API on', { default: `${DEFAULT_NODE_CONFIG.host}:${DEFAULT_NODE_CONFIG.port}` })
  .option('--config <file>', 'JSON config file (flags override it)')
  .option('--id <id>', 'This node\'s id in the cluster', { type: [String] })
  .option('--peers <list>', 'Every member as ID=URL, comma separated, this node included', { type: [String] })
  .option('--cluster-secret <secret>', 'Shared secret peers authenticate each other with (or LOGLOG_CLUSTER_SECRET)', { type: [String] })
  .option('--segment-bytes <size>', 'Segment file size, e.g. 64MiB', { type: [String] })
  .option('--max-entry-bytes <size>', 'Largest entry accepted, e.g. 16MiB', { type: [String] })
  .option('--body-deadline <duration>', 'Abort an append whose body is not complete after this, e.g. 10s', { type: [String] })
  .option('--retention-max-age <duration>', 'Delete whole segments older than this, e.g. 7d', { type: [String] })
  .option('--retention-max-bytes <size>', 'Delete oldest segments beyond this total size, e.g. 10GiB', { type: [String] })
  .option('--stop-on-stdin-close', 'Stop cleanly when stdin closes. For a supervisor that starts loglogd with a pipe on its stdin: the node never outlives it. Refused when stdin is not a pipe')
  .example('loglogd --data ./data --listen 127.0.0.1:7400')
  .example('loglogd --id n1 --data ./data/n1 --listen 127.0.0.1:7401 --peers n1=http://127.0.0.1:7401,n2=http://127.0.0.1:7402,n3=http://127.0.0.1:7403')
  .help()
  .version('0.1.0');

function first(v: unknown): string | undefined {
  return Array.isArray(v) ? (v.length ? String(v[v.length - 1]) : undefined) : v === undefined ? undefined : String(v);
}

try {
  const { options } = cli.parse();
  if (options.help || options.version) process.exit(0);
  let config: NodeConfig = DEFAULT_NODE_CONFIG;
  if (options.config) config = applyConfigFile(config, String(options.config));
  const flags: ConfigFile = {
    data: first(options.data), listen: first(options.listen), id: first(options.id), peers: first(options.peers),
    clusterSecret: first(options.clusterSecret) ?? process.env.LOGLOG_CLUSTER_SECRET,
    segmentBytes: first(options.segmentBytes), maxEntryBytes: first(options.maxEntryBytes), bodyDeadline: first(options.bodyDeadline),
    retention: { maxAge: first(options.retentionMaxAge), maxBytes: first(options.retentionMaxBytes) },
  };
  for (const k of Object.keys(flags) as (keyof ConfigFile)[]) if (flags[k] === undefined) delete flags[k];
  if (flags.retention?.maxAge === undefined && flags.retention?.maxBytes === undefined) delete flags.retention;
  config = applyOptions(config, flags);
  await runNode(config, { stopOnStdinClose: options.stopOnStdinClose === true });
} catch (e) {
  process.stderr.write(`loglogd: ${(e as Error).message}\n`);
  process.exit(1);
}
