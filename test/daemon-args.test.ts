import test from 'ava';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseDaemonArgv } from '../server/config.ts';
import { loglogdArgv } from '../server/daemon-argv.ts';
import { tempDir } from './helpers/node-process.ts';

/** Runs loglogd to its exit; a run that has not exited after 10 s is killed (and fails). */
function runLoglogd(args: readonly string[]): Promise<{ code: number | null; stderr: string }> {
  const proc = spawn(process.execPath, loglogdArgv(args), { stdio: ['ignore', 'ignore', 'pipe'] });
  const guard = setTimeout(() => proc.kill('SIGKILL'), 10_000);
  let stderr = '';
  proc.stderr!.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
  return new Promise((res) => proc.once('close', (code) => { clearTimeout(guard); res({ code, stderr }); }));
}

const usageError = (t: import('ava').ExecutionContext, argv: string[], message: RegExp) =>
  t.throws(() => parseDaemonArgv(argv), { message }, argv.join(' '));

test('parseDaemonArgv reads every flag form and keeps values exact', (t) => {
  const flags = parseDaemonArgv(['--data', 'd', '--listen=127.0.0.1:0', '--id', '007', '--stop-on-stdin-close', '--segment-bytes', '-5']);
  t.deepEqual([...flags], [['data', 'd'], ['listen', '127.0.0.1:0'], ['id', '007'], ['stop-on-stdin-close', true], ['segment-bytes', '-5']]);
  t.is(parseDaemonArgv(['--data=-odd']).get('data'), '-odd', 'a value that looks like a flag can be given with =');
  t.true(parseDaemonArgv(['-h']).has('help'));
  t.true(parseDaemonArgv(['--version']).has('version'));
});

test('parseDaemonArgv rejects unknown flags, suggesting the closest known one', (t) => {
  usageError(t, ['--bogus'], /^unknown flag --bogus \(loglogd --help lists them\)$/);
  usageError(t, ['--segment-byte', '4KiB'], /^unknown flag --segment-byte; did you mean --segment-bytes\?$/);
  usageError(t, ['--segmentBytes', '4KiB'], /did you mean --segment-bytes\?/);
  usageError(t, ['--data', 'd', 'stray'], /^unexpected argument "stray"/);
  usageError(t, ['-x'], /^unexpected argument "-x"/);
});

test('parseDaemonArgv rejects a value-taking flag without its value', (t) => {
  usageError(t, ['--listen', '127.0.0.1:0', '--data'], /^--data needs a value \(--data <dir>\)$/);
  usageError(t, ['--data', '--listen', '127.0.0.1:0'], /^--data needs a value/);
  usageError(t, ['--config', '-h'], /^--config needs a value/);
  usageError(t, ['--id='], /^--id needs a value/);
  usageError(t, ['--stop-on-stdin-close=yes'], /^--stop-on-stdin-close takes no value$/);
});

test('parseDaemonArgv rejects a repeated flag', (t) => {
  usageError(t, ['--data', 'a', '--data', 'b'], /^--data was given more than once/);
  usageError(t, ['--stop-on-stdin-close', '--stop-on-stdin-close'], /^--stop-on-stdin-close was given more than once/);
});

test('bad flags: loglogd exits 1 with one line naming the flag, and creates nothing', async (t) => {
  const dir = await tempDir(t, 'loglog-args-');
  const data = join(dir, 'data');
  for (const [args, message] of [
    [['--data', data, '--listen', '127.0.0.1:0', '--bogus'], 'unknown flag --bogus'],
    [['--data', data, '--listen', '127.0.0.1:0', '--segment-byte', '4KiB'], 'did you mean --segment-bytes?'],
    [['--listen', '127.0.0.1:0', '--data'], '--data needs a value'],
    [['--data', data, '--data', join(dir, 'other'), '--listen', '127.0.0.1:0'], '--data was given more than once'],
  ] as const) {
    const { code, stderr } = await runLoglogd(args);
    t.is(code, 1, stderr);
    t.is(stderr.split('\n').length, 2, stderr);
    t.true(stderr.startsWith('loglogd: ') && stderr.includes(message), stderr);
  }
  t.false(existsSync(data));
  t.false(existsSync('true'), 'a value-less --data once became a directory named "true"');
});
