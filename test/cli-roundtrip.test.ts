/** The CLI against a real loglogd: 100,000 records in, the same records out, in order. */
import test from 'ava';
import { spawn } from 'node:child_process';
import { LOGLOG, startNode } from './helpers/node-process.ts';

function run(args: string[], stdin?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [LOGLOG, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr }));
    p.stdin.end(stdin ?? '');
  });
}

test('loglog append then read: 100,000 records round trip identical and in order', async (t) => {
  const n = await startNode(t);
  const records = Array.from({ length: 100_000 }, (_, i) => `record ${i} ${'#'.repeat(i % 37)}`);
  const appended = await run(['append', '--server', n.url], records.join('\n') + '\n');
  t.is(appended.code, 0, appended.stderr);
  const summary = JSON.parse(appended.stdout.trim());
  t.is(summary.records, 100_000);
  t.true(summary.entries >= 1);
  t.true(summary.first <= summary.last);

  const read = await run(['read', '--server', n.url, '--from', '0']);
  t.is(read.code, 0, read.stderr);
  const lines = read.stdout.split('\n');
  t.is(lines.pop(), '');
  t.is(lines.length, records.length);
  t.deepEqual(lines, records);

  const end = await run(['end', '--server', n.url]);
  t.is(end.code, 0);
  t.regex(end.stdout, /^\d+\n$/);
});

test('CLI errors are one line on stderr with a non-zero exit', async (t) => {
  const n = await startNode(t);
  const bad = await run(['read', '--server', n.url, '--from', 'abc']);
  t.not(bad.code, 0);
  t.is(bad.stderr.trim().split('\n').length, 1, bad.stderr);
  const beyond = await run(['read', '--server', n.url, '--from', '999999999']);
  t.not(beyond.code, 0);
  t.is(beyond.stderr.trim().split('\n').length, 1, beyond.stderr);
  t.regex(beyond.stderr, /out_of_range|beyond/);
  const down = await run(['end', '--server', 'http://127.0.0.1:1']);
  t.not(down.code, 0);
  t.is(down.stderr.trim().split('\n').length, 1, down.stderr);
});
