/** The Producer and the servers' entry limit, against a small fake server that reports one. */
import test from 'ava';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { LogClient } from '../client/log-client.ts';
import { Producer } from '../client/producer.ts';

/** A fake node whose status reports `limitOf(n)` as its limit, and which refuses appends above `refuseAbove` bytes (with `max: 100`). */
async function node(limitOf: (n: number) => number, refuseAbove = 100) {
  let statuses = 0;
  const bodies: number[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      const body = Buffer.concat(chunks);
      res.setHeader('content-type', 'application/json');
      if (path === '/v1/status') {
        const max = limitOf(statuses++);
        return res.end(JSON.stringify({ id: 'a', role: 'leader', term: 1, leader: 'a', start: 0, end: 0, commit: 0, durable: 0, segments: 1, bytes: 0, peers: [], maxEntryBytes: max }));
      }
      if (path === '/v1/append') {
        bodies.push(body.length);
        if (body.length > refuseAbove) { res.statusCode = 413; return res.end(JSON.stringify({ error: { code: 'too_large', message: 'too large', max: 100 } })); }
        return res.end(JSON.stringify({ offset: 0, end: body.length + 33, term: 1 }));
      }
      res.statusCode = 404; res.end(JSON.stringify({ error: { code: 'not_found', message: 'no' } }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, bodies };
}

test('a Producer made before its client discovered the cluster still keeps to the entry limit: the small record goes, the oversized one alone is refused', async (t) => {
  const n = await node(() => 100);
  const client = new LogClient({ servers: [n.url] });
  const p = new Producer({ client, lingerMs: 20 });
  const small = p.send(Buffer.alloc(10));
  const big = p.send(Buffer.alloc(200));
  const rs = await Promise.allSettled([small, big]);
  await p.close(); await client.close(); n.server.close();
  t.is(rs[0].status, 'fulfilled', 'the small record sent before the big one is appended');
  t.is(rs[1].status === 'rejected' && (rs[1].reason as { code?: string }).code, 'too_large');
  t.deepEqual(n.bodies, [16 + 4 + 10], 'one append, of the small record');
});

test('a record exactly at the limit in its envelope is accepted and appended', async (t) => {
  const n = await node(() => 100);
  const client = new LogClient({ servers: [n.url] });
  await client.discover();
  const p = new Producer({ client, lingerMs: 1 });
  const r = await p.send(Buffer.alloc(100 - 16 - 4));
  t.deepEqual(r, { offset: 0, index: 0 });
  await t.throwsAsync(p.send(Buffer.alloc(100 - 16 - 4 + 1)), { code: 'too_large' });
  await p.close(); await client.close(); n.server.close();
});

test('a batch built before the limit was known and refused as too large is cut to the limit the refusal taught, and its records appended', async (t) => {
  // The status names no limit (as when discovery failed): the 413 is how the client learns it.
  const n = await node(() => undefined as unknown as number);
  const client = new LogClient({ servers: [n.url] });
  const p = new Producer({ client, lingerMs: 20 });
  const rs = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => p.send(Buffer.alloc(10, i))));
  await p.close(); await client.close(); n.server.close();
  t.deepEqual(rs.map((r) => r.status), Array(20).fill('fulfilled'));
  t.is(n.bodies[0], 16 + 20 * (4 + 10), 'the first batch held every record and was refused');
  t.true(n.bodies.slice(1).every((b) => b <= 100), `then batches within the limit: ${n.bodies}`);
  t.is(n.bodies.slice(1).reduce((a, b) => a + b - 16, 0), 20 * (4 + 10), 'every record once');
  t.like(p.stats(), { acked: 20, failed: 0 });
});

test('a batch refused as too large although within the limit it was refused by fails its records (no endless refitting)', async (t) => {
  // Refuses every append, even those within the limit it states.
  const n = await node(() => 1000, 0);
  const client = new LogClient({ servers: [n.url] });
  await client.discover();
  const p = new Producer({ client, lingerMs: 20 });
  const rs = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => p.send(Buffer.alloc(10, i))));
  await p.close(); await client.close(); n.server.close();
  t.true(rs.every((r) => r.status === 'rejected' && (r.reason as { code?: string }).code === 'too_large'));
  t.is(n.bodies[0], 16 + 20 * (4 + 10), 'the first batch held every record');
  t.is(n.bodies.length, 1 + 4, `then the four batches cut to the limit it taught, once each: ${n.bodies}`);
});
