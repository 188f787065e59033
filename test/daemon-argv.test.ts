import test from 'ava';
import { readFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { LOGLOGD_NODE_FLAGS, LOGLOGD_SCRIPT, STOP_ON_STDIN_CLOSE, loglogdArgv, servingLine, servingUrl } from '../server/daemon-argv.ts';
import { spawnLoglogd, tempDir } from './helpers/node-process.ts';

test('the loglogd bin runs with the same Node flags as spawned daemons', (t) => {
  const [shebang, exec] = readFileSync(LOGLOGD_SCRIPT, 'utf8').split('\n');
  t.is(shebang, '#!/bin/sh');
  t.is(exec, `":" //; exec /usr/bin/env node ${LOGLOGD_NODE_FLAGS.join(' ')} "$0" "$@"`);
});

test('run as a program, the bin is node with those flags, under the same pid', async (t) => {
  const dir = await tempDir(t, 'loglog-bin-');
  const proc = spawn(LOGLOGD_SCRIPT, ['--data', dir, '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.teardown(() => { proc.kill('SIGKILL'); });
  let err = '';
  await new Promise<void>((res, rej) => {
    proc.stderr!.on('data', (d: Buffer) => { err += d; if (servingUrl(err)) res(); });
    proc.once('exit', (c) => rej(new Error(`exited ${c}: ${err}`)));
  });
  const argv = readFileSync(`/proc/${proc.pid}/cmdline`, 'utf8').split('\0');
  t.true(/(^|\/)node$/.test(argv[0]), argv.join(' '));
  for (const f of LOGLOGD_NODE_FLAGS) t.true(argv.includes(f), `${f} in ${argv.join(' ')}`);
  proc.kill('SIGINT');
  t.is(await new Promise((res) => proc.once('exit', res)), 0);
});

test('the readiness line loglogd prints is the one its supervisors parse', (t) => {
  const line = servingLine('n2', 'http://127.0.0.1:7401', '/var/lib/loglog, with a comma');
  t.is(servingUrl(line), 'http://127.0.0.1:7401');
  t.is(servingUrl(`loglogd: recovered log 0..0\nloglogd: ${line}\n`), 'http://127.0.0.1:7401');
  t.is(servingUrl('loglogd: recovered log 0..0 in 1.2 ms'), null);
  t.is(servingUrl(servingLine('my node', 'http://[::1]:7400', '/d')), 'http://[::1]:7400', 'an id is not validated; any id parses');
});

test('loglogdArgv puts extra Node flags first, then ours, the script and its arguments', (t) => {
  t.deepEqual(loglogdArgv(['--data', 'd'], ['--cpu-prof']), ['--cpu-prof', ...LOGLOGD_NODE_FLAGS, LOGLOGD_SCRIPT, '--data', 'd']);
});

test('a supervised loglogd stops cleanly when its supervisor is killed -9 (its stdin closes)', async (t) => {
  const dir = await tempDir(t, 'loglog-sup-');
  // The supervisor holds the daemon's stdin pipe, as spawnLoglogdChild does, and hands it
  // our stderr pipe, which therefore stays open exactly as long as either of them lives.
  const argv = JSON.stringify(loglogdArgv(['--data', dir, '--listen', '127.0.0.1:0', STOP_ON_STDIN_CLOSE]));
  const supervisor = spawn(process.execPath, ['-e', `require('node:child_process').spawn(process.execPath, ${argv}, { stdio: ['pipe', 'ignore', 'inherit'] }); setInterval(() => {}, 1000);`], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.teardown(() => { supervisor.kill('SIGKILL'); });
  let err = '';
  const closed = new Promise<void>((res) => supervisor.stderr!.on('end', res));
  await new Promise<void>((res, rej) => {
    supervisor.stderr!.on('data', (d: Buffer) => { err += d; if (servingUrl(err)) res(); });
    supervisor.once('exit', (c) => rej(new Error(`supervisor exited ${c}: ${err}`)));
  });
  supervisor.kill('SIGKILL');
  await closed;
  t.regex(err, /stdin closed: syncing and closing/);
  t.regex(err, /stopped cleanly/);
});

for (const order of ['SIGINT then stdin closes', 'stdin closes then SIGINT'] as const) {
  test(`a supervised loglogd stops cleanly (exit 0) when ${order}`, async (t) => {
    // spawnLoglogd starts it as the tests and loglog dev do: a stdin pipe and the flag.
    const d = spawnLoglogd(['--data', await tempDir(t, 'loglog-sup-'), '--listen', '127.0.0.1:0']);
    t.teardown(() => { d.proc.kill('SIGKILL'); });
    await d.serving;
    if (order === 'SIGINT then stdin closes') { d.proc.kill('SIGINT'); d.proc.stdin!.destroy(); } else { d.proc.stdin!.destroy(); d.proc.kill('SIGINT'); }
    t.is(await d.exited, 0, d.stderr());
    t.regex(d.stderr(), /stopped cleanly/);
  });
}

test('--stop-on-stdin-close is refused when stdin is not a pipe (a service manager\'s /dev/null would stop the node at once)', async (t) => {
  const dir = await tempDir(t, 'loglog-sup-');
  const proc = spawn(process.execPath, loglogdArgv(['--data', dir, '--listen', '127.0.0.1:0', STOP_ON_STDIN_CLOSE]), { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => { err += d; });
  const code = await new Promise<number | null>((res) => proc.once('exit', res));
  t.is(code, 1);
  t.regex(err, /^loglogd: --stop-on-stdin-close needs stdin to be a pipe/m);
});
