import test from 'ava';
import { cac } from 'cac';
import {
  UsageError, joinNegativeValues, offsetOption, parseChoice, parseInteger, parseOffset, parseServerList, parseSize, rawOption,
} from '../client/cli/args.ts';
import { AfterProgress, describeError, EXIT_INTERRUPTED, EXIT_SERVER, EXIT_USAGE } from '../client/cli/errors.ts';
import { recordFailure } from '../client/cli/commands/append.ts';
import { LogError } from '../spec/errors.ts';
import { formatRecord } from '../client/cli/output.ts';
import { splitLines } from '../client/cli/commands/append.ts';
import { runCliInProcess } from './helpers/cli.ts';

test('cac really does mangle numeric option values (why we parse raw argv)', (t) => {
  const cli = cac('x');
  cli.command('read').option('--from <offset>', '', { type: [String] });
  const { options } = cli.parse(['node', 'x', 'read', '--from', '0012'], { run: false });
  t.notDeepEqual(options.from, ['0012']);
  t.is(offsetOption(['read', '--from', '0012'], 'from'), 12);
});

test('parseOffset accepts decimal digits up to MAX_SAFE_INTEGER', (t) => {
  t.is(parseOffset('0'), 0);
  t.is(parseOffset('0012'), 12);
  t.is(parseOffset('9007199254740991'), Number.MAX_SAFE_INTEGER);
  t.is(parseOffset('000000000000000000000000042'), 42);
});

test('parseOffset rejects everything else with a clear message', (t) => {
  for (const bad of ['', '-1', '+1', '1.5', '1e3', '0x10', ' 1', '1 ', 'abc', '１２']) {
    const e = t.throws(() => parseOffset(bad, 'from'), { instanceOf: UsageError }, JSON.stringify(bad));
    t.regex(e!.message, /--from/);
  }
  t.regex(t.throws(() => parseOffset('9007199254740992', 'to'), { instanceOf: UsageError })!.message, /too large/);
  t.throws(() => parseOffset('12345678901234567890'), { instanceOf: UsageError });
});

test('rawOption reads --name value and --name=value like cac does', (t) => {
  t.is(rawOption(['read', '--from', '0012'], 'from'), '0012');
  t.is(rawOption(['read', '--from=12345678901234567890'], 'from'), '12345678901234567890');
  t.is(rawOption(['read', '--follow'], 'from'), undefined);
  t.is(rawOption(['append', '--file', '-'], 'file'), '-', '`-` alone is a value (stdin), not a flag');
  t.is(rawOption(['read', '--', '--from', '5'], 'from'), undefined, 'after -- nothing is an option');
  t.is(rawOption(['read', '--fromage', '5'], 'from'), undefined);
  t.throws(() => rawOption(['read', '--from'], 'from'), { instanceOf: UsageError, message: /needs a value/ });
  t.throws(() => rawOption(['read', '--from', '--follow'], 'from'), { instanceOf: UsageError, message: /needs a value/ });
  t.throws(() => rawOption(['read', '--from='], 'from'), { instanceOf: UsageError });
  t.throws(() => rawOption(['read', '--from', '1', '--from=2'], 'from'), { instanceOf: UsageError, message: /2 times/ });
  t.is(offsetOption(['trim', '--before', '9007199254740991'], 'before'), Number.MAX_SAFE_INTEGER);
  t.throws(() => offsetOption(['trim', '--before', '-5'], 'before'), { instanceOf: UsageError });
});

test('sizes, integers, choices, server lists', (t) => {
  t.is(parseSize('65536', 'limit'), 65536);
  t.is(parseSize('64k', 'limit'), 65536);
  t.is(parseSize('64KiB', 'limit'), 65536);
  t.is(parseSize('1MiB', 'limit'), 1 << 20);
  t.is(parseSize('1MB', 'limit'), 1_000_000);
  t.throws(() => parseSize('1.5MiB', 'limit'), { instanceOf: UsageError });
  t.throws(() => parseSize('12parsecs', 'limit'), { instanceOf: UsageError });
  t.is(parseInteger('5', 'linger'), 5);
  t.throws(() => parseInteger('0', 'max-in-flight', 1), { instanceOf: UsageError });
  t.is(parseChoice('json', 'format', ['lines', 'json', 'raw']), 'json');
  t.throws(() => parseChoice('xml', 'format', ['lines', 'json', 'raw']), { instanceOf: UsageError, message: /lines, json, raw/ });
  t.deepEqual(parseServerList('http://a:1, b:2,,'), ['http://a:1', 'b:2']);
  t.throws(() => parseServerList(' , '), { instanceOf: UsageError });
});

test('error lines and exit codes', (t) => {
  const usage = describeError(new UsageError('bad flag'), []);
  t.is(usage.exitCode, EXIT_USAGE);
  t.regex(usage.line!, /^loglog: bad flag/);
  const net = describeError(new LogError('network', 'http://127.0.0.1:7400: connect ECONNREFUSED'), ['http://127.0.0.1:7400']);
  t.is(net.exitCode, EXIT_SERVER);
  t.regex(net.line!, /^loglog: .*\(network\); is loglogd running.*npm start/);
  t.false(net.line!.includes('\n'));
  const trimmed = describeError(new LogError('trimmed', 'offset 0 was trimmed', { start: 4096 }), []);
  t.regex(trimmed.line!, /--from 4096/);
  const aborted = describeError(new LogError('aborted', 'x'), [], true);
  t.is(aborted.exitCode, EXIT_INTERRUPTED);
  t.is(aborted.line, null);
  // Ctrl-C part way through an append: how much got in is said.
  const partly = describeError(new AfterProgress(new LogError('aborted', 'interrupted'), '12 records were appended before it (1 entries, offsets 33..33)'), [], true);
  t.is(partly.exitCode, EXIT_INTERRUPTED);
  t.is(partly.line, 'loglog: interrupted; 12 records were appended before it (1 entries, offsets 33..33)');
});

test('a record failed because an earlier batch did (stopOnError) reports that batch\'s error, unless the user interrupted', (t) => {
  const full = new LogError('disk_full', 'no space left');
  const stopped = new LogError('aborted', 'not appended: an earlier batch failed (no space left)', {}, { cause: full });
  t.is(recordFailure(stopped, 7, false), full);
  t.is(recordFailure(stopped, 7, true), stopped);
  const big = recordFailure(new LogError('too_large', 'a record of 9 bytes cannot be appended', { recordBytes: 9 }), 7, false) as LogError;
  t.regex(big.message, /^line 7: /);
});

test('json output: utf8 as text, other bytes as base64', (t) => {
  t.is(formatRecord({ offset: 7, index: 1, value: Buffer.from('héllo') }, 'json'), '{"offset":7,"index":1,"value":"héllo"}\n');
  t.is(
    formatRecord({ offset: 7, index: 0, value: Buffer.from([0xff, 0xfe]) }, 'json'),
    '{"offset":7,"index":0,"value":"//4=","encoding":"base64"}\n',
  );
  t.deepEqual(formatRecord({ offset: 0, index: 0, value: Buffer.from('a') }, 'lines'), Buffer.from('a\n'));
});

test('splitLines splits on newlines across chunk boundaries', async (t) => {
  async function* chunks() {
    yield Buffer.from('one\ntw');
    yield Buffer.from('o\n\nthr');
    yield Buffer.from('ee');
  }
  const out: string[] = [];
  for await (const l of splitLines(chunks())) out.push(l.toString());
  t.deepEqual(out, ['one', 'two', '', 'three']);
});

test('a negative number after a value-taking flag is its value, refused by its own check', async (t) => {
  t.deepEqual(joinNegativeValues(['read', '--from', '-1', '--follow', '-2', '--', '--to', '-3'], new Set(['from', 'to'])), ['read', '--from=-1', '--follow', '-2', '--', '--to', '-3']);
  t.deepEqual(joinNegativeValues(['append', '--file', '-', '--raw'], new Set(['file'])), ['append', '--file=-', '--raw']);
  const r = await runCliInProcess(['read', '--from', '-1', '--server', 'http://127.0.0.1:1']);
  t.is(r.code, 1);
  t.regex(r.err, /^loglog: --from must be a byte offset .* got "-1"/);
  t.regex((await runCliInProcess(['append', '--linger', '-5'])).err, /^loglog: --linger must be .* got "-5"/);
});
