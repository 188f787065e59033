import test from 'ava';
import { appendFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { FatesFile, decodeFates, encodeFate } from '../server/storage/fates-file.ts';
import { Kind } from '../spec/frame.ts';
import { startNode, tempDir } from './helpers/node-process.ts';
import { LogClient } from '../client/log-client.ts';
import { LogError } from '../spec/errors.ts';

const meta = (id: string, offset: number, kind = Kind.Data) => ({ uploadId: id, offset, length: 10, term: 3, kind, crc: 0 });

test('fate records round trip and loading stops at a damaged record', async (t) => {
  const dir = await tempDir(t);
  const { file, fates } = FatesFile.open(dir);
  t.deepEqual(fates, []);
  file.add(meta('a', 33));
  file.add(meta('b', 2 ** 40, Kind.Aborted));
  await file.close();
  const again = FatesFile.open(dir);
  t.deepEqual(again.fates.map((f) => [f.uploadId, f.offset, f.kind, f.term]), [['a', 33, Kind.Data, 3], ['b', 2 ** 40, Kind.Aborted, 3]]);
  await again.file.close();
  // A torn last record (power loss mid-append) is dropped, and the file is cut back to the valid part.
  appendFileSync(join(dir, 'fates'), encodeFate(meta('c', 99)).subarray(0, 7));
  const torn = FatesFile.open(dir);
  t.is(torn.fates.length, 2);
  t.is(readFileSync(join(dir, 'fates')).length, encodeFate(meta('a', 33)).length + encodeFate(meta('b', 2 ** 40)).length);
  await torn.file.close();
  const bad = Buffer.concat([encodeFate(meta('x', 1)), encodeFate(meta('y', 2))]);
  bad[bad.length - 6] ^= 0xff;
  writeFileSync(join(dir, 'fates'), bad);
  t.deepEqual(decodeFates(bad).map((f) => f.uploadId), ['x']);
});

test('the fate of an acknowledged append survives kill -9 of the node', async (t) => {
  const n = await startNode(t);
  const body = Buffer.from('remember me');
  const r = await request(`${n.url}/v1/append`, { method: 'POST', body, headers: { 'content-length': String(body.length), 'x-loglog-upload-id': 'up-1' } });
  const { offset } = (await r.body.json()) as { offset: number };
  await n.kill();
  const again = await startNode(t, { dataDir: n.dataDir });
  const f = await request(`${again.url}/v1/fate/up-1`);
  t.like(await f.body.json(), { state: 'committed', offset, end: offset + 33 + body.length, term: 1 });
  const unknown = await request(`${again.url}/v1/fate/never-seen`);
  t.is(((await unknown.body.json()) as { state: string }).state, 'unknown');
});

test('an upload id used again for other data gets 409 conflict "reused", before and after a restart; the same data again gets the first answer', async (t) => {
  const n = await startNode(t);
  const client = new LogClient({ servers: [n.url] });
  const first = await client.append(Buffer.from('first payload'), { uploadId: 'dup-1' });
  const refused = async (c: LogClient, data: string) => {
    const e = await t.throwsAsync(c.append(Buffer.from(data), { uploadId: 'dup-1' }), { instanceOf: LogError });
    t.like(e, { code: 'conflict', retriable: false, status: 409, details: { state: 'reused', offset: first.offset } });
  };
  await refused(client, 'other payload');
  await refused(client, 'a longer other payload');
  t.deepEqual(await client.append(Buffer.from('first payload'), { uploadId: 'dup-1' }), first);
  await client.close();
  await n.kill();
  const again = await startNode(t, { dataDir: n.dataDir });
  const after = new LogClient({ servers: [again.url] });
  await refused(after, 'other payload');
  const entries = [];
  for await (const e of after.read('start')) entries.push(e.payload.toString());
  t.deepEqual(entries, ['first payload']);
  await after.close();
});

test('fates lost with the page cache (a power loss) make a restarted node answer "forgotten", not "unknown", and it stays so after the next restart', async (t) => {
  const n = await startNode(t);
  const append = async (url: string, id: string) => {
    const body = Buffer.from(`payload of ${id}`);
    const r = await request(`${url}/v1/append`, { method: 'POST', body, headers: { 'content-length': String(body.length), 'x-loglog-upload-id': id } });
    return (await r.body.json()) as { offset: number; end: number };
  };
  const fate = async (url: string, id: string, after?: number) => {
    const r = await request(`${url}/v1/fate/${id}${after === undefined ? '' : `?after=${after}`}`);
    return (await r.body.json()) as { state: string; since?: number };
  };
  const a = await append(n.url, 'up-a');
  await n.kill();
  // What a power loss does to records written since the last fdatasync of the file.
  writeFileSync(join(n.dataDir, 'fates'), '');
  const again = await startNode(t, { dataDir: n.dataDir });
  t.like(await fate(again.url, 'up-a'), { state: 'forgotten', since: a.end });
  t.like(await fate(again.url, 'never-seen', 0), { state: 'forgotten' });
  t.like(await fate(again.url, 'never-seen', a.end), { state: 'unknown' });
  const b = await append(again.url, 'up-b');
  t.like(await fate(again.url, 'up-b', a.end), { state: 'committed', offset: b.offset });
  // A clean restart: the checkpoint is now past the first entry, so recovery does not see it
  // again; the node still knows it forgot its id.
  await again.stop();
  const third = await startNode(t, { dataDir: n.dataDir });
  t.like(await fate(third.url, 'never-seen', 0), { state: 'forgotten', since: a.end });
  t.like(await fate(third.url, 'up-b', a.end), { state: 'committed', offset: b.offset });
  const bad = await request(`${third.url}/v1/fate/up-b?after=-1`);
  t.is(bad.statusCode, 400);
  await bad.body.dump();
});

test('a data directory from before the fates-from file existed counts every id in its log as forgotten; a new one, none', async (t) => {
  const n = await startNode(t);
  const body = Buffer.from('old format');
  const r = await request(`${n.url}/v1/append`, { method: 'POST', body, headers: { 'content-length': String(body.length), 'x-loglog-upload-id': 'up-old' } });
  const { end } = (await r.body.json()) as { end: number };
  const fresh = await request(`${n.url}/v1/fate/never-seen?after=0`);
  t.like(await fresh.body.json(), { state: 'unknown' }, 'a new directory starts knowing every id');
  t.is(await n.stop(), 0);
  // Its records may have been dropped unannounced by the compaction of older versions.
  rmSync(join(n.dataDir, 'fates-from'));
  const again = await startNode(t, { dataDir: n.dataDir });
  const f = await request(`${again.url}/v1/fate/never-seen?after=0`);
  t.like(await f.body.json(), { state: 'forgotten' });
  t.true(readFileSync(join(n.dataDir, 'fates-from')).length === 12, 'and it is written down');
  const after = await request(`${again.url}/v1/fate/never-seen?after=${end}`);
  t.like(await after.body.json(), { state: 'unknown' });
});

test('a data directory from before the fates-from file existed, whose fates file is over the record limit, still counts its whole log as forgotten', async (t) => {
  const n = await startNode(t);
  const append = async (id: string) => {
    const body = Buffer.from(`entry ${id}`);
    const r = await request(`${n.url}/v1/append`, { method: 'POST', body, headers: { 'content-length': String(body.length), 'x-loglog-upload-id': id } });
    return (await r.body.json()) as { offset: number; end: number };
  };
  const a = await append('up-a');
  const b = await append('up-b');
  t.is(await n.stop(), 0);
  const [recA, recB] = decodeFates(readFileSync(join(n.dataDir, 'fates'))).filter((f) => f.uploadId === 'up-a' || f.uploadId === 'up-b').map(encodeFate);
  // More records than loading keeps: the oldest, about the first entry, are dropped at open.
  // That must not leave fates-from at the first entry's end instead of the log's end.
  writeFileSync(join(n.dataDir, 'fates'), Buffer.concat([...Array.from({ length: 10 }, () => recA), ...Array.from({ length: 100_000 }, () => recB)]));
  rmSync(join(n.dataDir, 'fates-from'));
  const again = await startNode(t, { dataDir: n.dataDir });
  const f = await request(`${again.url}/v1/fate/never-seen?after=${a.end}`);
  t.like(await f.body.json(), { state: 'forgotten', since: b.end });
});
