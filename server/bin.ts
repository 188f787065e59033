/**
 * loglogd: one node of a loglog cluster (or a cluster of one).
 *   loglogd --data DIR --listen HOST:PORT [--config FILE] [--id n1 --peers n1=URL,n2=URL,...]
 */
import { cac } from 'cac';
import { DAEMON_EXAMPLES, DAEMON_FLAGS, loadConfig, parseDaemonArgv } from './config.ts';
import { runNode } from './main.ts';

// cac only writes --help and --version; parseDaemonArgv reads the command line.
const cli = cac('loglogd');
cli.usage('--data DIR --listen HOST:PORT [options]\n\n  Runs one loglog node. With no flags: a single node, data under ./data, on 127.0.0.1:7400.');
for (const f of DAEMON_FLAGS) cli.option(`--${f.name}${f.value ? ` <${f.value}>` : ''}`, f.help);
for (const e of DAEMON_EXAMPLES) cli.example(e);
cli
  .help()
  .version('0.1.0');

try {
  const flags = parseDaemonArgv(process.argv.slice(2));
  if (flags.has('help')) cli.outputHelp();
  else if (flags.has('version')) cli.outputVersion();
  if (flags.has('help') || flags.has('version')) process.exit(0);
  const config = loadConfig(flags, process.env);
  await runNode(config, { stopOnStdinClose: flags.has('stop-on-stdin-close') });
} catch (e) {
  process.stderr.write(`loglogd: ${(e as Error).message}\n`);
  process.exit(1);
}
