import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { LogError } from '../spec/errors.ts';
import { frameSize } from '../spec/frame.ts';
import { decodeBatch, batchSize } from '../client/envelope.ts';
import { crc32c } from '../spec/frame.ts';
import { Producer } from '../client/producer.ts';
import type { AppendOptions, AppendResult } from '../client/types.ts';

/** A LogClient stand-in: records appends; each resolves when the test says so (or at once). */
class FakeClient {
  end = 0;
  calls: { payload: Buffer; opts?: AppendOptions; resolve: () => void; reject: (e: unknown) => void }[] = [];
  inFlight = 0;
  maxInFlight = 0;
  constructor(private readonly auto = true) {}
  append(data: Uint8Array, opts?: AppendOptions): Promise<AppendResult> {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    return new Promise<AppendResult>((resolve, reject) => {
      const payload = Buffer.from(data);
      const call = {
        payload,
        opts,
        resolve: () => {
          this.inFlight--;
          const offset = this.end;
          this.end += frameSize(payload.length);
          resolve({ offset, end: this.end, term: 1 });
        },
        reject: (e: unknown) => {
          this.inFlight--;
          reject(e);
        },
      };
      this.calls.push(call);
      if (this.auto) setImmediate(call.resolve);
    });
  }
  records(i: number): string[] {
    return decodeBatch(this.calls[i].payload).map((b) => b.toString());
  }
}

const rec = (s: string) => Buffer.from(s);

test('records sent together share an entry; positions are offset + index', async (t) => {
  const client = new FakeClient();
  const p = new Producer({ client, lingerMs: 20 });
  const positions = await Promise.all(['a', 'b', 'c'].map((s) => p.send(rec(s))));
  t.is(client.calls.length, 1);
  t.deepEqual(client.records(0), ['a', 'b', 'c']);
  t.deepEqual(positions, [{ offset: 0, index: 0 }, { offset: 0, index: 1 }, { offset: 0, index: 2 }]);
  const next = await p.send(rec('d'));
  t.deepEqual(next, { offset: frameSize(client.calls[0].payload.length), index: 0 });
  await p.close();
});

test('linger: a lone record waits lingerMs before it is sent', async (t) => {
  const client = new FakeClient();
  const p = new Producer({ client, lingerMs: 60 });
  const started = Date.now();
  const sent = p.send(rec('x'));
  await sleep(20);
  t.is(client.calls.length, 0);
  await sent;
  t.true(Date.now() - started >= 55);
  t.is(client.calls.length, 1);
});

test('flush seals at once instead of lingering', async (t) => {
  const client = new FakeClient();
  const p = new Producer({ client, lingerMs: 10_000 });
  const sent = p.send(rec('x'));
  const started = Date.now();
  await p.flush();
  t.true(Date.now() - started < 1000);
  t.deepEqual(await sent, { offset: 0, index: 0 });
});

test('batches are sealed at maxBatchBytes', async (t) => {
  const client = new FakeClient();
  const maxBatchBytes = batchSize(300, 3); // room for exactly three 100-byte records
  const p = new Producer({ client, lingerMs: 1000, maxBatchBytes });
  const sends = Array.from({ length: 7 }, (_, i) => p.send(Buffer.alloc(100, i)));
  // Two full batches go out without waiting for linger; the seventh record lingers.
  await Promise.all(sends.slice(0, 6));
  t.is(client.calls.length, 2);
  for (const c of client.calls) t.true(c.payload.length <= maxBatchBytes);
  await p.flush();
  t.is(client.calls.length, 3);
  t.deepEqual(client.calls.map((c) => decodeBatch(c.payload).length), [3, 3, 1]);
  // A record larger than a batch travels alone.
  await p.send(Buffer.alloc(maxBatchBytes * 2));
  t.is(client.records(3).length, 1);
});

test('at most maxInFlight appends outstanding', async (t) => {
  const client = new FakeClient(false);
  const p = new Producer({ client, lingerMs: 0, maxBatchBytes: 64, maxInFlight: 2 });
  const sends = Array.from({ length: 6 }, (_, i) => p.send(Buffer.alloc(40, i)));
  await sleep(10);
  t.is(client.calls.length, 2, 'only two batches dispatched');
  t.is(p.stats().inFlight, 2);
  client.calls[0].resolve();
  await sleep(5);
  t.is(client.calls.length, 3, 'a slot freed, the next batch went out');
  for (let done = 1; done < 6; done++) {
    t.true(client.inFlight <= 2);
    client.calls[done].resolve();
    await sleep(5);
  }
  await Promise.all(sends);
  t.true(client.maxInFlight <= 2);
});

test('a lingered batch keeps taking records while every append slot is busy', async (t) => {
  const client = new FakeClient(false);
  const p = new Producer({ client, lingerMs: 5, maxInFlight: 1 });
  const a = p.send(rec('a'));
  while (client.calls.length === 0) await sleep(1);
  const b = p.send(rec('b'));
  await sleep(30); // well past b's linger, but the only slot is taken
  t.is(client.calls.length, 1);
  const c = p.send(rec('c'));
  client.calls[0].resolve();
  await a;
  // The slot freed: the lingered batch goes out at once, with what joined it meanwhile.
  while (client.calls.length === 1) await sleep(1);
  t.deepEqual(client.records(1), ['b', 'c']);
  client.calls[1].resolve();
  t.deepEqual(await Promise.all([b, c]), [{ offset: frameSize(client.calls[0].payload.length), index: 0 }, { offset: frameSize(client.calls[0].payload.length), index: 1 }]);
});

test('send waits while maxBufferedBytes are unacknowledged (backpressure)', async (t) => {
  const client = new FakeClient(false);
  const p = new Producer({ client, lingerMs: 0, maxBatchBytes: 1 << 20, maxBufferedBytes: 250, maxInFlight: 8 });
  let acked = 0;
  const sends = Array.from({ length: 5 }, () => p.send(Buffer.alloc(100)).then((pos) => { acked++; return pos; }));
  await sleep(10);
  // Two records (200 bytes) fit; the third would exceed 250 and waits.
  t.is(p.stats().bufferedBytes, 200);
  t.false(p.writable);
  t.is(client.calls.length, 1);
  t.is(decodeBatch(client.calls[0].payload).length, 2);
  let writable = false;
  void p.whenWritable().then(() => { writable = true; });
  client.calls[0].resolve();
  await sleep(10);
  t.is(acked, 2);
  t.is(p.stats().bufferedBytes, 200, 'the next two waiting records were admitted');
  t.is(client.calls.length, 2);
  client.calls[1].resolve();
  await sleep(10);
  t.true(writable);
  client.calls[2].resolve();
  const positions = await Promise.all(sends);
  t.deepEqual(positions.map((x) => x.index), [0, 1, 0, 1, 0]);
  // A record larger than the whole buffer is accepted once nothing else is buffered.
  const big = p.send(Buffer.alloc(1000));
  await sleep(10);
  client.calls[3].resolve();
  t.is((await big).index, 0);
});

test('an entry failure rejects exactly its records; others succeed', async (t) => {
  const client = new FakeClient(false);
  const p = new Producer({ client, lingerMs: 0, maxBatchBytes: 64 });
  const a = p.send(Buffer.alloc(40, 1));
  const b = p.send(Buffer.alloc(40, 2));
  await sleep(5);
  t.is(client.calls.length, 2);
  client.calls[0].reject(new LogError('too_large', 'nope'));
  client.calls[1].resolve();
  const e = await t.throwsAsync(a, { instanceOf: LogError });
  t.is(e?.code, 'too_large');
  t.deepEqual(await b, { offset: 0, index: 0 });
  t.is(p.stats().failed, 1);
  t.is(p.stats().acked, 1);
  t.is(p.stats().entries, 1);
  t.is(p.stats().bytes, client.calls[1].payload.length);
  await p.flush();
});

test('stopOnError: after a failed batch nothing later is appended, and later sends fail', async (t) => {
  const client = new FakeClient(false);
  const p = new Producer({ client, lingerMs: 0, maxBatchBytes: 64, maxInFlight: 1, stopOnError: true });
  const first = p.send(Buffer.alloc(40, 1));
  // Each is a batch of its own (two would not fit 64 bytes), waiting for the one slot.
  const waiting = [p.send(Buffer.alloc(40, 2)), p.send(Buffer.alloc(40, 3))];
  await new Promise(setImmediate);
  t.is(client.calls.length, 1);
  client.calls[0].reject(new LogError('too_large', 'entry too large'));
  t.is((await t.throwsAsync(first, { instanceOf: LogError }))?.code, 'too_large');
  for (const w of waiting) {
    const e = await t.throwsAsync(w, { instanceOf: LogError });
    t.is(e?.code, 'aborted');
    t.regex(e!.message, /an earlier batch failed \(entry too large\)/);
  }
  t.is((await t.throwsAsync(p.send(Buffer.alloc(1)), { instanceOf: LogError }))?.code, 'aborted');
  await p.flush();
  t.is(client.calls.length, 1, 'nothing was appended after the failed batch');
  t.is(p.stats().failed, 3);
  t.is(p.stats().bufferedBytes, 0);
});

test('with the servers\' entry limit known, batches stay within it and a record too large for it is refused alone', async (t) => {
  const client = Object.assign(new FakeClient(), { maxEntryBytes: 100 });
  const p = new Producer({ client, lingerMs: 0, maxBatchBytes: 1 << 20, stopOnError: true });
  const small = [p.send(Buffer.alloc(30, 1)), p.send(Buffer.alloc(30, 2)), p.send(Buffer.alloc(30, 3))];
  const big = p.send(Buffer.alloc(90, 4));
  const e = await t.throwsAsync(big, { instanceOf: LogError });
  t.is(e?.code, 'too_large');
  t.is(e?.details.recordBytes, 90);
  t.is((await t.throwsAsync(p.send(Buffer.alloc(1)), { instanceOf: LogError }))?.code, 'aborted', 'nothing after it under stopOnError');
  await Promise.all(small);
  await p.flush();
  t.true(client.calls.every((c) => c.payload.length <= 100), client.calls.map((c) => c.payload.length).join(','));
  t.is(client.calls.length, 2, 'two records per 100-byte entry');
});

test('acks and digest are passed through; send after close rejects', async (t) => {
  const client = new FakeClient();
  const p = new Producer({ client, acks: 'all', digest: 'sha256' });
  await p.send(rec('secure'));
  t.is(client.calls[0].opts?.acks, 'all');
  t.is(client.calls[0].payload[5], 1, 'digest flag set');
  t.is(client.calls[0].opts?.crc32c, crc32c(client.calls[0].payload), 'the entry CRC is derived from the envelope');
  t.deepEqual(client.records(0), ['secure']);
  await p.close();
  const e = await t.throwsAsync(p.send(rec('late')), { instanceOf: LogError });
  t.is(e?.code, 'aborted');
});

test('flush waits for everything sent so far, including records waiting for buffer space', async (t) => {
  const client = new FakeClient();
  const p = new Producer({ client, lingerMs: 1000, maxBufferedBytes: 100, maxInFlight: 1 });
  let settled = 0;
  for (let i = 0; i < 10; i++) void p.send(Buffer.alloc(60)).then(() => settled++);
  await p.flush();
  t.is(settled, 10);
  t.is(p.stats().bufferedBytes, 0);
});

test('the default buffer holds the batches in flight plus two', (t) => {
  const client = new FakeClient();
  t.is(new Producer({ client }).maxBufferedBytes, 6 << 20);
  t.is(new Producer({ client, maxInFlight: 1, maxBatchBytes: 1000 }).maxBufferedBytes, 3000);
  t.is(new Producer({ client, maxBufferedBytes: 123 }).maxBufferedBytes, 123);
});

test('invalid options are rejected', (t) => {
  const client = new FakeClient();
  t.throws(() => new Producer({ client, maxInFlight: 0 }), { instanceOf: LogError });
  t.throws(() => new Producer({ client, lingerMs: -1 }), { instanceOf: LogError });
  t.throws(() => new Producer({ client, maxInFlight: 1.5 }), { instanceOf: LogError, message: 'maxInFlight must be a whole number, 1 or more, got 1.5' });
  t.throws(() => new Producer({ client, maxBatchBytes: 1000.5 }), { instanceOf: LogError, message: /^maxBatchBytes must be a whole number/ });
  t.throws(() => new Producer({ client, maxBufferedBytes: NaN }), { instanceOf: LogError, message: /^maxBufferedBytes must be a whole number/ });
  // Refused up front: a batch that cannot be encoded would fail every record sent to it.
  t.throws(() => new Producer({ client, digest: 'md5' as never }), { instanceOf: LogError, message: /unsupported digest/ });
  t.throws(() => new Producer({} as never), { instanceOf: LogError });
  // Checked at once, as LogClient checks it: every send used to fail with the server's bad_request.
  t.throws(() => new Producer({ client, acks: 'bogus' as never }), { instanceOf: LogError, message: 'acks must be leader, quorum, all (or left out: quorum), got "bogus"' });
});

test('records of an entry committed but unconfirmed (acks=all) are rejected with their whole position: offset and index', async (t) => {
  const client = new FakeClient(false);
  const p = new Producer({ client, lingerMs: 0, acks: 'all' });
  const sent = [p.send(rec('a')), p.send(rec('b'))];
  await sleep(5);
  client.calls[0].reject(new LogError('unconfirmed', 'not every replica confirmed it', { offset: 66, end: 99, term: 2, missing: ['n3'] }));
  const errors = await Promise.all(sent.map((s) => t.throwsAsync(s, { instanceOf: LogError })));
  t.deepEqual(errors.map((e) => [e?.code, e?.details.offset, e?.details.index, e?.details.missing]), [['unconfirmed', 66, 0, ['n3']], ['unconfirmed', 66, 1, ['n3']]]);
  await p.flush();
});

test('a signal stops a send waiting for buffer space (the record is not sent), and the waits of whenWritable, flush and close; an accepted record still goes', async (t) => {
  const client = new FakeClient(false);
  const p = new Producer({ client, lingerMs: 0, maxBatchBytes: 1 << 20, maxBufferedBytes: 150, maxInFlight: 8 });
  const first = p.send(Buffer.alloc(100, 1));
  await sleep(5);
  const ac = new AbortController();
  const waiting = p.send(Buffer.alloc(100, 2), { signal: ac.signal });
  const after = p.send(Buffer.alloc(100, 3)); // queued behind the aborted one
  const writable = p.whenWritable({ signal: ac.signal });
  const flushed = p.flush({ signal: ac.signal });
  ac.abort();
  for (const w of [waiting, writable, flushed]) t.is((await t.throwsAsync(w, { instanceOf: LogError }))?.code, 'aborted');
  await t.throwsAsync(p.send(Buffer.alloc(1), { signal: ac.signal }), { instanceOf: LogError });
  client.calls[0].resolve();
  t.is((await first).index, 0, 'the accepted record went');
  await sleep(5);
  client.calls[1].resolve();
  t.is((await after).index, 0);
  t.deepEqual(client.calls.map((c) => decodeBatch(c.payload).map((r) => r[0])), [[1], [3]], 'the aborted record was never sent');
  // close() waits for what is in flight; its signal stops that wait.
  const last = p.send(Buffer.alloc(10, 4));
  const closing = new AbortController();
  const closed = p.close({ signal: closing.signal });
  closing.abort();
  t.is((await t.throwsAsync(closed, { instanceOf: LogError }))?.code, 'aborted');
  await sleep(5);
  client.calls[2].resolve();
  t.is((await last).index, 0);
});

test('a batch buffer is reused only once the client has released it (onReleased), never while an append or its copies may read it', async (t) => {
  // Keeps the payloads it was given (no copy), to see the producer's buffers themselves.
  const calls: { data: Uint8Array; opts?: AppendOptions }[] = [];
  const client = {
    append(data: Uint8Array, opts?: AppendOptions): Promise<AppendResult> {
      calls.push({ data, opts });
      return Promise.resolve({ offset: 0, end: 0, term: 1 });
    },
  };
  const p = new Producer({ client, lingerMs: 0, maxInFlight: 1 });
  const texts = (i: number) => decodeBatch(calls[i].data).map((b) => b.toString());
  await p.send(rec('first'));
  await p.send(rec('second'));
  t.is(calls.length, 2);
  t.not(calls[1].data.buffer, calls[0].data.buffer, 'the first batch was not released: its buffer is not reused');
  t.deepEqual(texts(0), ['first']);
  calls[0].opts!.onReleased!();
  await p.send(rec('third'));
  t.is(calls[2].data.buffer, calls[0].data.buffer, 'the released buffer carries the next batch');
  t.deepEqual(texts(2), ['third']);
  t.deepEqual(texts(1), ['second']);
  // A spare too small for the next batch is dropped, not written past.
  calls[1].opts!.onReleased!();
  const big = 'x'.repeat(100);
  await p.send(rec(big));
  t.not(calls[3].data.buffer, calls[1].data.buffer);
  t.deepEqual(texts(3), [big]);
  t.deepEqual(texts(1), ['second']);
  await p.close();
});
