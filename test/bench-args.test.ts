/** `npm run bench` reads its arguments strictly: a benchmark is minutes of work to waste on a typo. */
import test from 'ava';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const RUN = fileURLToPath(new URL('../bench/run.ts', import.meta.url));
const bench = (args: string[]) => new Promise<{ code: number; out: string; err: string }>((res) => {
  execFile(process.execPath, ['--import=tsx', RUN, ...args], (e, out, err) => res({ code: e ? (e.code as number) : 0, out, err }));
});

test('bench --help lists every benchmark with its options', async (t) => {
  const r = await bench(['--help']);
  t.is(r.code, 0);
  for (const s of ['single:', 'cluster:', 'sim:', '--recovery-gib <GiB>', '--no-offload']) t.true(r.out.includes(s), s);
});

test('bench refuses an unknown argument and a flag without its value, before any work', async (t) => {
  const unknown = await bench(['single', '--record', '10']);
  t.is(unknown.code, 1);
  t.is(unknown.err, 'bench single: unknown argument "--record"; see `npm run bench -- --help`\n');
  const bare = await bench(['sim', '--seeds']);
  t.is(bare.code, 1);
  t.regex(bare.err, /--seeds needs a value/);
});

test('bench: options alone run the default benchmark, --help after a name is help, and values are checked', async (t) => {
  t.regex((await bench(['--rounds'])).err, /^bench single: --rounds needs a value/);
  t.is((await bench(['single', '--help'])).code, 0);
  const bad = await bench(['sim', '--seeds', 'abc']);
  t.is(bad.code, 1);
  t.regex(bad.err, /--seeds takes a whole number, got "abc"/);
});
