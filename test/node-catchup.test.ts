/**
 * The executor's side of catch-up (server/log-node.ts): frames are appended chunk by chunk as
 * they arrive, so a copy that fails part way must report how far it got.
 */
import test, { type ExecutionContext } from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LogNode, type PeerTransport } from '../server/log-node.ts';
import { DEFAULT_NODE_CONFIG } from '../server/config.ts';
import { saveHardStateSync } from '../server/storage/hard-state.ts';
import { Kind, crc32c, encodeFrame } from '../spec/frame.ts';
import type { Message } from '../spec/messages.ts';
import { until } from './helpers/cluster.ts';

const payload = Buffer.alloc(100, 7);
const frames = Array.from({ length: 4 }, () => encodeFrame({ kind: Kind.Data, length: payload.length, crc: crc32c(payload), term: 1 }, payload));
const all = Buffer.concat(frames);
const half = frames[0].length * 2;
const catchUp = (seq: number, prevEnd = 0): Message => ({ type: 'append', term: 1, prevEnd, prevTerm: prevEnd > 0 ? 1 : 0, entries: [], commit: all.length, seq, catchUp: { to: all.length, epochs: [{ term: 1, offset: 0 }], start: 0 } });

/** A follower node over a temporary directory, started with `transport`. */
async function follower(t: ExecutionContext, transport: PeerTransport): Promise<LogNode> {
  const dir = await mkdtemp(join(tmpdir(), 'loglog-catchup-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const peers = ['f', 'l', 'm'].map((id, i) => ({ id, url: `http://127.0.0.1:${9 + i}` }));
  // A node of a running cluster (it has saved a vote), not a new one: that would abstain,
  // ignoring appends until its peers, absent here, told it their terms.
  saveHardStateSync(dir, { term: 1, votedFor: null, abstain: false });
  const node = await LogNode.open({ ...DEFAULT_NODE_CONFIG, id: 'f', dataDir: dir, peers });
  t.teardown(() => node.close().catch(() => {}));
  node.on('warn', () => {});
  node.start(transport);
  return node;
}

test('a catch-up that fails after its first chunk keeps that chunk, and the next copy goes on from it', async (t) => {
  const copies: { start: number; to: number }[] = [];
  const transport: PeerTransport = {
    send() {},
    async fetchPayload() { throw new Error('not in this test'); },
    async copyFrames(_peer, start, to, _term, onChunk) {
      copies.push({ start, to });
      if (copies.length === 1) {
        await onChunk(start, all.subarray(start, half));
        throw new Error('peer answered 503 reading at ' + half); // e.g. its term changed
      }
      await onChunk(start, all.subarray(start, to));
      return to;
    },
    async fetchFrames() { throw new Error('not in this test'); },
    async close() {},
  };
  const node = await follower(t, transport);
  node.step({ type: 'message', from: 'l', msg: catchUp(1) });
  await until('the first copy has failed', 5000, async () => (copies.length === 1 && node.log.end === half && node.status().end === half ? true : undefined));
  node.step({ type: 'message', from: 'l', msg: catchUp(2, half) });
  await until('the second copy is done', 5000, async () => (node.status().end === all.length ? true : undefined));
  t.deepEqual(copies, [{ start: 0, to: all.length }, { start: half, to: all.length }], 'the second copy starts where the first stopped');
  t.is(node.log.end, all.length);
});

test('a catch-up chunk whose write fails stops the node instead of counting the hole', async (t) => {
  const transport: PeerTransport = {
    send() {},
    async fetchPayload() { throw new Error('not in this test'); },
    async copyFrames(_peer, start, to, _term, onChunk) {
      await onChunk(start, all.subarray(start, to));
      return to;
    },
    async fetchFrames() { throw new Error('not in this test'); },
    async close() {},
  };
  const node = await follower(t, transport);
  const fatal = new Promise<string>((res) => node.on('fatal', res));
  // The disk fills up under the copy: its frames are placed, their bytes never written.
  node.log.writeAt = async () => { throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' }); };
  node.step({ type: 'message', from: 'l', msg: catchUp(1) });
  t.regex(await fatal, /catch-up write failed: ENOSPC/);
  t.is(node.status().end, 0, 'the replica never counted the copied frames');
  t.is(node.status().durable, 0);
});

test('a fetched payload whose write fails stops the node instead of being fetched again', async (t) => {
  let fetches = 0;
  let again!: (v: string) => void;
  const fetchedAgain = new Promise<string>((res) => { again = res; });
  const transport: PeerTransport = {
    send() {},
    async fetchPayload() {
      if (++fetches === 2) again('fetched again');
      return payload;
    },
    async copyFrames() { throw new Error('not in this test'); },
    async fetchFrames() { throw new Error('not in this test'); },
    async close() {},
  };
  const node = await follower(t, transport);
  const fatal = new Promise<string>((res) => node.on('fatal', res));
  node.log.writeAt = async () => { throw Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' }); };
  // No upload id: no client copy can come, so the follower fetches the payload at once.
  const entry = { offset: 0, length: payload.length, term: 1, kind: Kind.Data, crc: crc32c(payload), uploadId: null };
  node.step({ type: 'message', from: 'l', msg: { type: 'append', term: 1, prevEnd: 0, prevTerm: 0, entries: [entry], commit: 0, seq: 1 } });
  t.regex(await Promise.race([fatal, fetchedAgain]), /write at 0 failed: EIO/);
  t.is(fetches, 1);
});
