/**
 * Reads from followers in a real 3-node cluster: a follower may learn that an entry is
 * committed before it has the entry's bytes (the leader committed with the other follower;
 * this one still waits for the client's upload, or fetches the payload from a peer). Its
 * readers must be woken when the bytes land, not when their wait runs out.
 */
import test from 'ava';
import { request } from 'undici';
import WebSocket from 'ws';
import { Cluster } from './helpers/cluster.ts';
import { crc32c, parseFrames } from '../spec/frame.ts';

const WAIT_MS = 8000;

async function append(url: string, body: Buffer, uploadId: string): Promise<{ offset: number; end: number }> {
  const r = await request(`${url}/v1/append`, { method: 'POST', body, headers: { 'content-length': String(body.length), 'x-loglog-crc32c': String(crc32c(body)), 'x-loglog-upload-id': uploadId } });
  const j = (await r.body.json()) as { offset: number; end: number };
  if (r.statusCode !== 200) throw new Error(`append: ${r.statusCode} ${JSON.stringify(j)}`);
  return j;
}

async function upload(url: string, id: string, body: Buffer): Promise<void> {
  const r = await request(`${url}/v1/upload/${id}`, { method: 'PUT', body, headers: { 'content-length': String(body.length) } });
  await r.body.dump();
}

test.serial('a long-poll read and a tail on a follower wake when the bytes of a committed entry land there', async (t) => {
  // Default upload deadline (200 ms): the follower without a copy fetches the payload after it.
  const cluster = await Cluster.start(t);
  const leader = await cluster.waitLeader();
  const [withCopy, without] = cluster.nodes.filter((n) => n !== leader);
  const end = await cluster.waitConverged();

  // A long-poll read and a tail, both on the follower that will get no upload copy.
  const polled = (async () => {
    const t0 = Date.now();
    const r = await request(`${without.url}/v1/read?offset=${end}&wait=${WAIT_MS}`, { headersTimeout: WAIT_MS * 2 });
    const body = Buffer.from(await r.body.arrayBuffer());
    return { ms: Date.now() - t0, status: r.statusCode, frames: body.length > 0 ? [...parseFrames(body, end)].length : 0 };
  })();
  const ws = new WebSocket(`${without.url.replace('http', 'ws')}/v1/tail?offset=${end}`);
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  const tailed = new Promise<number>((resolve) => ws.once('message', () => resolve(Date.now())));

  const body = Buffer.from('committed before this follower has the bytes');
  await upload(withCopy.url, 'only-one-copy', body);
  const sentAt = Date.now();
  const r = await append(leader.url, body, 'only-one-copy');
  t.is(r.offset, end);

  const p = await polled;
  const tailMs = (await tailed) - sentAt;
  ws.close();
  t.log(`long-poll answered after ${p.ms} ms, tail pushed ${tailMs} ms after the append was sent`);
  t.is(p.status, 200);
  t.is(p.frames, 1);
  // The follower needs the upload deadline plus a fetch; far less than the reader's wait.
  t.true(p.ms < WAIT_MS / 2, `the long-poll read was answered when the bytes landed (${p.ms} ms), not at its ${WAIT_MS} ms timeout`);
  t.true(tailMs < WAIT_MS / 2, `the tail pushed the entry when the bytes landed (${tailMs} ms)`);
});
