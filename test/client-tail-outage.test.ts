import test from 'ava';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { LogClient } from '../client/log-client.ts';

async function up(port = 0): Promise<{ server: Server; port: number; conns: number[]; wss: WebSocketServer }> {
  const conns = [0];
  const server = createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ id: 'a', role: 'leader', term: 1, leader: 'a', start: 0, end: 0, commit: 0, durable: 0, segments: 1, bytes: 0, peers: [] }));
  });
  const wss = new WebSocketServer({ server, path: '/v1/tail' });
  wss.on('connection', () => { conns[0]++; }); // an idle log: nothing to send
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
  return { server, port: (server.address() as AddressInfo).port, conns, wss };
}
const down = (x: { server: Server; wss: WebSocketServer }) => { for (const c of x.wss.clients) c.terminate(); x.wss.close(); x.server.closeAllConnections(); return new Promise((r) => x.server.close(r)); };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('a tail that reconnected to an idle log announces its next outage too', async (t) => {
  let s = await up();
  const port = s.port;
  const client = new LogClient({ servers: [`http://127.0.0.1:${port}`], retry: { retries: 2, minDelayMs: 5, maxDelayMs: 20 } });
  const outages: string[] = [];
  const ac = new AbortController();
  const it = client.tail(0, { signal: ac.signal, onOutage: (e) => outages.push(e.message) });
  const done = (async () => { try { for await (const _ of it) { /* idle */ } } catch { /* aborted */ } })();
  await sleep(200);
  await down(s);
  await sleep(500);
  t.is(outages.length, 1, 'first outage announced');
  s = await up(port);
  await sleep(500);
  t.true(s.conns[0] >= 1, 'reconnected');
  await down(s);
  await sleep(500);
  t.log(outages);
  ac.abort(); await done; await client.close();
  t.is(outages.length, 2, 'second outage announced');
});

test('a tail from an offset a lagging replica calls "beyond the commit end" goes on from the leader instead of failing', async (t) => {
  const { encodeFrame, crc32c, Kind } = await import('../spec/frame.ts');
  const payload = Buffer.from('committed on the leader');
  const from = 100;
  const urls: Record<string, string> = {};
  const tails: string[] = [];
  const node = async (id: 'a' | 'b') => {
    const server = createServer((req, res) => {
      res.setHeader('content-type', 'application/json');
      const path = new URL(req.url!, 'http://x').pathname;
      if (path === '/v1/end') return res.end(JSON.stringify({ start: 0, end: id === 'a' ? 200 : 50 }));
      res.end(JSON.stringify({ id, role: id === 'a' ? 'leader' : 'follower', term: 1, leader: 'a', leaderUrl: urls.a, start: 0, end: 200, commit: id === 'a' ? 200 : 50, durable: 200, segments: 1, bytes: 200,
        peers: [{ id: 'b', url: urls.b }, { id: 'a', url: urls.a }] }));
    });
    const wss = new WebSocketServer({ server, path: '/v1/tail' });
    wss.on('connection', (ws) => {
      tails.push(id);
      // Whichever the tail tries first lags: the follower always, the leader once.
      if (id === 'b' || tails.length === 1) {
        ws.send(JSON.stringify({ error: { code: 'out_of_range', message: `offset ${from} is beyond the commit end 50`, start: 0, end: 50 } }));
        ws.close(4416, 'out_of_range');
      } else {
        ws.send(encodeFrame({ kind: Kind.Data, term: 1, length: payload.length, crc: crc32c(payload) }, payload), { binary: true });
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    urls[id] = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return { server, wss };
  };
  const b = await node('b');
  const a = await node('a');
  const client = new LogClient({ servers: [urls.b], retry: { retries: 2, minDelayMs: 5, maxDelayMs: 20 } });
  const ac = new AbortController();
  let got: Buffer | null = null;
  try {
    for await (const e of client.tail(from, { signal: ac.signal })) { got = Buffer.from(e.payload); t.is(e.offset, from); break; }
  } finally {
    await client.close();
    for (const x of [a, b]) await down(x);
  }
  t.true(tails.length >= 2 && tails.at(-1) === 'a', tails.join());
  t.deepEqual(got, payload);
});

test('a tail notices a server that stays silent: to the opening handshake, and to pings once open (a frozen process keeps its sockets)', async (t) => {
  const { createServer: tcp } = await import('node:net');
  // Accepts connections and never says a word.
  const silent = tcp(() => {});
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
  const silentUrl = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
  const c1 = new LogClient({ servers: [silentUrl], requestTimeoutMs: 300, retry: { retries: 1, minDelayMs: 5, maxDelayMs: 10 } });
  const e1 = await t.throwsAsync((async () => { for await (const _ of c1.tail(0, { server: silentUrl, signal: AbortSignal.timeout(5000) })) { /* none */ } })());
  t.is((e1 as { code?: string }).code, 'network', e1?.message);
  await c1.close();
  silent.close();

  // Open, then never answers a ping: an outage, announced, not a silent stall.
  const s = await up();
  s.wss.options.autoPong = false;
  const c2 = new LogClient({ servers: [`http://127.0.0.1:${s.port}`], requestTimeoutMs: 300, retry: { retries: 1, minDelayMs: 5, maxDelayMs: 10 } });
  const ac = new AbortController();
  let outage: string | null = null;
  const done = (async () => { try { for await (const _ of c2.tail(0, { signal: ac.signal, onOutage: (e) => { outage = e.message; ac.abort(); } })) { /* idle */ } } catch { /* aborted */ } })();
  const timer = setTimeout(() => ac.abort(), 5000);
  await done;
  clearTimeout(timer);
  await c2.close();
  await down(s);
  t.regex(outage ?? 'none', /no answer in 300 ms/);
});

test('a follow rides out a restart: a replica that knows no commit end yet calls its offset "beyond the commit end", and the follow waits rather than failing', async (t) => {
  const { encodeFrame, crc32c, Kind } = await import('../spec/frame.ts');
  const frame = (s: string) => { const p = Buffer.from(s); return encodeFrame({ kind: Kind.Data, term: 1, length: p.length, crc: crc32c(p) }, p); };
  const log = [frame('before the restart')];
  // 'up', then 'restarted' (the commit end is volatile: 0 until a leader commits in its term), then 'up' with one more entry.
  let phase: 'up' | 'restarted' = 'up';
  let refused = 0;
  let onRefused: (() => void) | null = null;
  const server = createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    const commit = log.reduce((n, f) => n + f.length, 0);
    const json = (status: number, body: unknown) => { res.writeHead(status, { 'content-type': 'application/json' }); res.end(JSON.stringify(body)); };
    if (url.pathname === '/v1/status') return json(200, { id: 'a', role: 'leader', term: 1, leader: 'a', start: 0, end: commit, commit, durable: commit, segments: 1, bytes: commit, peers: [] });
    if (phase === 'restarted') {
      if (url.pathname === '/v1/end') return json(503, { error: { code: 'unavailable', message: 'no leader yet' } });
      refused++;
      onRefused?.();
      return json(416, { error: { code: 'out_of_range', message: `offset ${url.searchParams.get('offset')} is beyond the commit end 0`, start: 0, end: 0 } });
    }
    if (url.pathname === '/v1/end') return json(200, { start: 0, end: commit });
    const offset = Number(url.searchParams.get('offset'));
    let at = 0;
    const body = Buffer.concat(log.filter((f) => { const keep = at >= offset; at += f.length; return keep; }));
    res.writeHead(200, { 'x-loglog-start': '0', 'x-loglog-commit': String(commit), 'x-loglog-next': String(offset + body.length) });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const client = new LogClient({ servers: [url], retry: { retries: 1, minDelayMs: 5, maxDelayMs: 10 } });
  const ac = new AbortController();
  const got: string[] = [];
  let first: () => void = () => {};
  const firstSeen = new Promise<void>((r) => { first = r; });
  const done = (async () => {
    for await (const e of client.read(0, { follow: true, waitMs: 5, signal: ac.signal })) {
      got.push(e.payload.toString());
      if (got.length === 1) first();
      if (got.length === 2) return;
    }
  })();
  const failed = done.then(() => null, (e: unknown) => e);
  try {
    await firstSeen;
    phase = 'restarted';
    // Three refusals, or the follow's end, whichever comes first.
    await Promise.race([failed, new Promise<void>((r) => { onRefused = () => { if (refused >= 3) r(); }; })]);
    log.push(frame('after the restart'));
    phase = 'up';
    const err = await failed;
    t.is(err, null, String(err));
    t.deepEqual(got, ['before the restart', 'after the restart']);
  } finally {
    ac.abort();
    await failed;
    await client.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});
