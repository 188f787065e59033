/**
 * Faults against a real loglogd process: kill -9 under a write load, clients that vanish
 * mid-body, bodies that stall past the deadline.
 */
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { LogClient } from '../client/log-client.ts';
import { connect } from 'node:net';
import { spawn } from 'node:child_process';
import { loglogdArgv } from '../server/daemon-argv.ts';
import { request } from 'undici';
import { startNode } from './helpers/node-process.ts';
import { until } from './helpers/cluster.ts';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** Bytes in the segment files of a data directory (what has reached the files). */
function segmentBytes(dataDir: string): number {
  let n = 0;
  for (const f of readdirSync(dataDir)) if (/^[0-9a-f]{16}\.seg$/.test(f)) n += statSync(join(dataDir, f)).size;
  return n;
}

async function status(url: string): Promise<{ end: number; commit: number }> {
  const r = await request(`${url}/v1/status`);
  return (await r.body.json()) as { end: number; commit: number };
}

async function commitEnd(url: string): Promise<number> {
  return (await status(url)).commit;
}
import { crc32c, parseFrames, Kind } from '../spec/frame.ts';

async function readAll(url: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let offset = 0;
  for (;;) {
    const r = await request(`${url}/v1/read?offset=${offset}&limit=4194304`);
    const buf = Buffer.from(await r.body.arrayBuffer());
    if (r.statusCode !== 200) throw new Error(`read ${r.statusCode}: ${buf}`);
    if (buf.length === 0) return Buffer.concat(parts);
    parts.push(buf);
    offset = Number(r.headers['x-loglog-next']);
  }
}

/** Raw HTTP: send the head and part of the body; resolves with the socket, still open. */
function partialAppend(url: string, length: number, sent: number): Promise<import('node:net').Socket> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = connect(Number(u.port), u.hostname, () => {
      s.write(`POST /v1/append HTTP/1.1\r\nHost: x\r\nContent-Length: ${length}\r\n\r\n`);
      s.write(Buffer.alloc(sent, 0x61), () => resolve(s));
    });
    s.on('error', reject);
  });
}

test('kill -9 under load: every acknowledged append is read back intact at its offset', async (t) => {
  const first = await startNode(t);
  const acked = new Map<number, Buffer>();
  let stop = false;
  let seq = 0;
  const writer = async () => {
    while (!stop) {
      const body = Buffer.from(`record-${seq++}-${'x'.repeat(seq % 200)}`);
      try {
        const r = await request(`${first.url}/v1/append`, { method: 'POST', body, headers: { 'content-length': String(body.length), 'x-loglog-crc32c': String(crc32c(body)) } });
        const j = (await r.body.json()) as { offset: number };
        if (r.statusCode === 200) acked.set(j.offset, body);
      } catch {
        return; // the server died under us: this append's fate is unknown, which is allowed
      }
    }
  };
  const writers = Array.from({ length: 8 }, writer);
  // Kill once a good number of appends were acknowledged, while writers are mid-flight.
  await until('400 appends acknowledged', 60_000, () => (acked.size >= 400 ? true : undefined));
  await first.kill();
  stop = true;
  await Promise.all(writers);

  const second = await startNode(t, { dataDir: first.dataDir });
  const frames = new Map<number, Buffer>();
  for (const f of parseFrames(await readAll(second.url), 0)) if (f.kind === Kind.Data) frames.set(f.offset, Buffer.from(f.payload));
  let intact = 0;
  for (const [offset, body] of acked) {
    if (frames.get(offset)?.equals(body)) intact++;
  }
  t.is(intact, acked.size, 'every acknowledged append survives at its acknowledged offset');
  // and the restarted node keeps appending after the recovered end
  const after = await request(`${second.url}/v1/append`, { method: 'POST', body: 'after', headers: { 'content-length': '5' } });
  t.is(after.statusCode, 200);
  await after.body.dump();
});

const disconnectMidBody = test.macro({
  async exec(t, length: number, sent: number) {
    const n = await startNode(t);
    const endBefore = await commitEnd(n.url);
    const s = await partialAppend(n.url, length, sent);
    // The range is allocated once the node has read the head: only then can the next append
    // be sure to land after it. A large body is also written as it arrives (256 KiB at a
    // time): wait until some of it is in the segment file, so the abort has bytes to zero.
    await until('the partial append is allocated', 10_000, async () => ((await status(n.url)).end > endBefore ? true : undefined));
    if (sent >= 512 * 1024) {
      await until('part of the body is written', 10_000, async () => (segmentBytes(n.dataDir) >= endBefore + 256 * 1024 ? true : undefined));
    }
    // The node learns of the disconnect from the socket close and seals the range as aborted.
    s.destroy();
    const body = Buffer.from('after the abort');
    const r = await request(`${n.url}/v1/append`, { method: 'POST', body, headers: { 'content-length': String(body.length) } });
    t.is(r.statusCode, 200);
    const { offset } = (await r.body.json()) as { offset: number };
    const frames = [...parseFrames(await readAll(n.url), 0)];
    const aborted = frames.find((f) => f.kind === Kind.Aborted);
    t.truthy(aborted, 'the abandoned range is an aborted frame');
    t.is(aborted!.length, length);
    t.true(aborted!.payload.every((b) => b === 0), 'aborted payloads are zeroed on disk');
    t.true(aborted!.offset < offset);
    t.deepEqual(frames.filter((f) => f.kind === Kind.Data).map((f) => f.payload.toString()), ['after the abort']);
  },
  title: (_, length: number, sent: number) => `a client that disconnects mid-body (${sent} of ${length} bytes) leaves an aborted frame and appends continue`,
});

test(disconnectMidBody, 1000, 400);
test(disconnectMidBody, 1 << 20, 600 * 1024);

test('a body that stalls past the deadline gets 408 and becomes an aborted frame', async (t) => {
  const n = await startNode(t, { args: ['--body-deadline', '300ms'] });
  const s = await partialAppend(n.url, 100, 10);
  const response = await new Promise<string>((resolve) => {
    let got = '';
    s.on('data', (d) => { got += d; });
    s.on('close', () => resolve(got));
  });
  t.regex(response, /^HTTP\/1\.1 408/);
  t.regex(response, /"code":"body_timeout"/);
  const r = await request(`${n.url}/v1/append`, { method: 'POST', body: 'ok', headers: { 'content-length': '2' } });
  t.is(r.statusCode, 200);
  await r.body.dump();
  const kinds = [...parseFrames(await readAll(n.url), 0)].map((f) => f.kind);
  t.deepEqual(kinds, [Kind.Noop, Kind.Aborted, Kind.Data]);
});

test('a write that fails while a single node re-commits its log at start-up stops it, exit 3, before it serves', async (t) => {
  const first = await startNode(t);
  for (let i = 0; i < 20; i++) {
    const body = Buffer.alloc(3000, i);
    const r = await request(`${first.url}/v1/append`, { method: 'POST', body, headers: { 'content-length': String(body.length) } });
    t.is(r.statusCode, 200);
    await r.body.dump();
  }
  t.is(await first.stop(), 0);
  const seg = readdirSync(first.dataDir).find((f) => f.endsWith('.seg'))!;
  const size = statSync(join(first.dataDir, seg)).size;
  // A file-size limit at the segment's end (bash counts 1 KiB blocks; Node ignores SIGXFSZ,
  // so the write fails with EFBIG): the noop of the new term cannot be written.
  const cmd = `ulimit -f ${Math.floor(size / 1024)}; exec "$0" "$@"`;
  const proc = spawn('bash', ['-c', cmd, process.execPath, ...loglogdArgv(['--data', first.dataDir, '--listen', '127.0.0.1:0'])], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.teardown(() => { proc.kill('SIGKILL'); });
  let err = '';
  proc.stderr.on('data', (d: Buffer) => { err += d; });
  const code = await new Promise<number | null>((res) => proc.once('exit', (c) => res(c)));
  t.is(code, 3, err);
  t.regex(err, /fatal: write at \d+ failed: EFBIG/);
  t.notRegex(err, / serving /);
});

test('a streamed body whose write fails (the disk refuses it mid-body) stops the node with exit 3 and one line, not a crash', async (t) => {
  const dir = await (await import('./helpers/node-process.ts')).tempDir(t);
  // A 1 MiB file-size limit: the segment cannot grow past it, so the 4 MiB body's writes fail (EFBIG).
  const cmd = 'ulimit -f 1024; exec "$0" "$@"';
  const proc = spawn('bash', ['-c', cmd, process.execPath, ...loglogdArgv(['--data', dir, '--listen', '127.0.0.1:0'])], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.teardown(() => { proc.kill('SIGKILL'); });
  let err = '';
  const url = await new Promise<string>((res) => proc.stderr.on('data', (d: Buffer) => {
    err += d;
    const m = /serving (http:\/\/\S+?),/.exec(err);
    if (m) res(m[1]);
  }));
  const exited = new Promise<number | null>((res) => proc.once('exit', (c) => res(c)));
  const body = Buffer.alloc(4 << 20, 7);
  const r = await request(`${url}/v1/append`, { method: 'POST', body, headers: { 'content-length': String(body.length) } });
  // Answered with what the disk said, not as a body that did not arrive.
  t.is(r.statusCode, 499);
  t.regex(((await r.body.json()) as { error: { message: string } }).error.message, /could not write the body \(EFBIG.*nothing was appended/);
  t.is(await exited, 3, err);
  // Every write in flight failed; one line says so, and what to do.
  t.is(err.match(/fatal: /g)?.length, 1, err);
  t.regex(err, /fatal: .*EFBIG.*raise `ulimit -f`, or lower segmentBytes/);
  t.notRegex(err, /Unhandled|triggerUncaughtException|Node\.js v/);
});

/** An SDK client of `url`, closed after the test. */
function clientOf(t: ExecutionContext, url: string): LogClient {
  const client = new LogClient({ servers: [url] });
  t.teardown(() => client.close());
  return client;
}

test('a node with a tail open stops cleanly on a signal', async (t) => {
  const node = await startNode(t);
  const client = clientOf(t, node.url);
  await client.append(Buffer.from('x'));
  const ac = new AbortController();
  const it = client.tail(0, { signal: ac.signal })[Symbol.asyncIterator]();
  t.is((await it.next()).value?.payload.toString(), 'x', 'the tail is open and waiting for more');
  // It used to spin at 100% CPU once the node closed under the waiting tail, deaf to signals.
  t.is(await node.stop(), 0);
  t.regex(node.stderr(), /stopped cleanly/);
  ac.abort();
  await it.next().catch(() => {});
});

test('a follow read at the end waits out its server being down, and goes on once it is back', async (t) => {
  const node = await startNode(t);
  const client = clientOf(t, node.url);
  await client.append(Buffer.from('before'));
  let sawOutage!: () => void;
  const outage = new Promise<void>((r) => { sawOutage = r; });
  const it = client.read(await client.end(), { follow: true, waitMs: 20_000, onOutage: () => sawOutage() })[Symbol.asyncIterator]();
  const next = it.next();
  t.is(await node.stop(), 0);
  // It used to give up here (its first long poll had never answered: "a wrong address").
  await Promise.race([outage, next.then(() => { throw new Error('the follow ended instead of waiting'); })]);
  const port = Number(new URL(node.url).port);
  const again = await startNode(t, { dataDir: node.dataDir, port });
  await clientOf(t, again.url).append(Buffer.from('later'));
  t.is((await next).value?.payload.toString(), 'later');
  await it.return?.(undefined);
});
