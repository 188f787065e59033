/**
 * The executor's side of a peer's payload fetch (server/log-node.ts `readPayload`): a leader
 * sends an entry's metadata before its own write of the body lands, and a follower that
 * expects no client copy fetches at once, so the fetch may come first and must wait.
 */
import test, { type ExecutionContext } from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LogNode } from '../server/log-node.ts';
import { DEFAULT_NODE_CONFIG } from '../server/config.ts';
import { crc32c } from '../spec/frame.ts';
import type { EntryMeta } from '../spec/entry.ts';
import { LogError } from '../spec/errors.ts';
import fs from 'node:fs';
import { loadTrimPoint } from '../server/storage/trim-point.ts';

/** A cluster of one, leading and past its first noop, in a temporary directory. */
async function openLeader(t: ExecutionContext): Promise<LogNode> {
  const dir = await mkdtemp(join(tmpdir(), 'loglog-payload-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const node = await LogNode.open({ ...DEFAULT_NODE_CONFIG, dataDir: dir });
  t.teardown(() => node.close());
  node.start(null);
  await node.waitReadable(0, 5000); // the cluster of one has committed its first noop
  return node;
}

test('a fetch of a frame placed but not written yet waits for the write; one of a frame never placed is refused', async (t) => {
  const node = await openLeader(t);

  const body = Buffer.alloc(100_000, 9);
  let meta: EntryMeta | null = null;
  const { reqId, result } = node.beginAppend({ length: body.length, crc: crc32c(body), uploadId: 'u1', acks: 'leader', sink: { start: (m) => { meta = m; }, cancel() {} } });
  if (!meta) throw new Error('not allocated');
  const m: EntryMeta = meta;
  // The body has not arrived: the frame is placed, not written.
  const fetched = node.readPayload(m.offset, m.length, m.term);
  const wrong = node.readPayload(m.offset, m.length + 1, m.term).then(() => 'served', (e: unknown) => (e instanceof LogError ? e.code : String(e)));
  node.bodyDone(reqId, true, crc32c(body), { offset: m.offset, chunks: [body] });
  t.true((await fetched).equals(body), 'served once written');
  t.is(await wrong, 'not_found', 'a frame that is not there is refused');
  t.is((await result).type, 'appended');
});

test('a frame written before an earlier one is served at once, not after the earlier write', async (t) => {
  const node = await openLeader(t);

  const begin = (body: Buffer, uploadId: string) => {
    let meta: EntryMeta | null = null;
    const started = node.beginAppend({ length: body.length, crc: crc32c(body), uploadId, acks: 'leader', sink: { start: (m) => { meta = m; }, cancel() {} } });
    if (!meta) throw new Error('not allocated');
    return { ...started, meta: meta as EntryMeta, body };
  };
  const first = begin(Buffer.alloc(50_000, 1), 'first');
  const second = begin(Buffer.alloc(60_000, 2), 'second');
  t.true(second.meta.offset > first.meta.offset);
  node.bodyDone(second.reqId, true, crc32c(second.body), { offset: second.meta.offset, chunks: [second.body] });
  // The first body is still missing, so the written prefix ends before the second frame.
  // The fetch must not wait for it: before, it waited out FETCH_WAIT_MS and got not_found.
  const fetched = await node.readPayload(second.meta.offset, second.meta.length, second.meta.term);
  t.true(fetched.equals(second.body));
  node.bodyDone(first.reqId, true, crc32c(first.body), { offset: first.meta.offset, chunks: [first.body] });
  t.is((await first.result).type, 'appended');
  t.is((await second.result).type, 'appended');
});

test('a trim point survives a restart: the node saves it before deleting, and a damaged trim-point file is a warning, not a refusal to start', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'loglog-trimpoint-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const config = { ...DEFAULT_NODE_CONFIG, dataDir: dir, segmentBytes: 4096 };
  let node = await LogNode.open(config);
  node.start(null);
  await node.waitReadable(0, 5000);
  for (let i = 0; i < 10; i++) {
    const body = Buffer.alloc(1000, i);
    let offset = -1;
    const { reqId, result } = node.beginAppend({ length: body.length, crc: crc32c(body), uploadId: `p${i}`, acks: 'leader', sink: { start: (m) => { offset = m.offset; }, cancel() {} } });
    node.bodyDone(reqId, true, crc32c(body), { offset, chunks: [body] });
    t.like(await result, { type: 'appended', offset });
  }
  const end = node.readableEnd();
  const start = await node.trim(end);
  t.true(start > 0, String(start));
  t.is(loadTrimPoint(dir).point, end);
  await node.close();
  node = await LogNode.open(config);
  t.is(node.status().trimPoint, end, 'restored');
  await node.close();
  fs.writeFileSync(join(dir, 'trim-point'), 'junk');
  node = await LogNode.open(config);
  t.teardown(() => node.close());
  const warnings: string[] = [];
  node.on('warn', (m: string) => warnings.push(m));
  node.start(null);
  t.is(warnings.length, 1);
  t.regex(warnings[0], /trim-point file is damaged/);
  t.is(node.status().start, start, 'what was deleted stays deleted');
  t.is(node.status().trimPoint, start, 'the point is the start until the leader passes it on again');
});
