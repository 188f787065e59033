import test from 'ava';
import { readFileSync } from 'node:fs';
import { LOGLOGD_NODE_FLAGS, LOGLOGD_SCRIPT, loglogdArgv } from '../server/daemon-argv.ts';

test('the loglogd bin runs with the same Node flags as spawned daemons', (t) => {
  const shebang = readFileSync(LOGLOGD_SCRIPT, 'utf8').split('\n')[0];
  t.is(shebang, `#!/usr/bin/env -S node ${LOGLOGD_NODE_FLAGS.join(' ')}`);
});

test('loglogdArgv puts extra Node flags first, then ours, the script and its arguments', (t) => {
  t.deepEqual(loglogdArgv(['--data', 'd'], ['--cpu-prof']), ['--cpu-prof', ...LOGLOGD_NODE_FLAGS, LOGLOGD_SCRIPT, '--data', 'd']);
});
