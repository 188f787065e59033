import test from 'ava';
import { LogError } from '../spec/errors.ts';
import { crc32c } from '../spec/frame.ts';
import {
  BATCH_HEADER_SIZE, DIGEST_SIZE, batchSize, decodeBatch, encodeBatch, envelopeCrc, isBatch,
} from '../client/envelope.ts';
import { entryRecords } from '../client/consumer.ts';

const recs = ['alpha', '', 'γάμμα', 'x'.repeat(10_000)].map((s) => Buffer.from(s));

test('round trip without digest', (t) => {
  const b = encodeBatch(recs);
  t.is(b.length, batchSize(recs.reduce((n, r) => n + r.length, 0), recs.length));
  t.deepEqual(b.subarray(0, 4).toString('latin1'), 'LLB1');
  t.is(b[4], 1);
  t.is(b[5], 0);
  t.is(b.readUInt32LE(8), recs.length);
  t.is(b.readUInt32LE(12), crc32c(b.subarray(BATCH_HEADER_SIZE)));
  t.true(isBatch(b));
  t.deepEqual(decodeBatch(b).map((r) => r.toString()), recs.map((r) => r.toString()));
});

test('round trip with sha256 digest', (t) => {
  const b = encodeBatch(recs, { digest: 'sha256' });
  t.is(b[5], 1);
  t.is(b.length, encodeBatch(recs).length + DIGEST_SIZE);
  t.deepEqual(decodeBatch(b).map((r) => r.toString()), recs.map((r) => r.toString()));
});

test('into: encodes into the start of a buffer that fits, the same bytes as a fresh one; one too small is left alone', (t) => {
  const fresh = encodeBatch(recs, { digest: 'sha256' });
  const into = Buffer.alloc(fresh.length + 100, 0xee);
  const b = encodeBatch(recs, { digest: 'sha256', into });
  t.is(b.buffer, into.buffer);
  t.is(b.byteOffset, into.byteOffset);
  t.deepEqual(b, fresh);
  t.is(into[fresh.length], 0xee, 'nothing written past the envelope');
  const small = Buffer.alloc(fresh.length - 1, 0xee);
  const c = encodeBatch(recs, { digest: 'sha256', into: small });
  t.not(c.buffer, small.buffer);
  t.deepEqual(c, fresh);
  t.true(small.every((x) => x === 0xee));
});

test('empty batch and Uint8Array input', (t) => {
  t.deepEqual(decodeBatch(encodeBatch([])), []);
  const u = new Uint8Array(encodeBatch([new Uint8Array([1, 2, 3])]));
  t.deepEqual([...decodeBatch(u)[0]], [1, 2, 3]);
});

test('every flipped byte after the header is detected as checksum_mismatch', (t) => {
  const b = encodeBatch([Buffer.from('hello'), Buffer.from('world')]);
  for (let i = BATCH_HEADER_SIZE; i < b.length; i++) {
    const c = Buffer.from(b);
    c[i] ^= 0x40;
    const e = t.throws(() => decodeBatch(c), { instanceOf: LogError });
    t.is(e?.code, 'checksum_mismatch', `byte ${i}`);
  }
  // A corrupted stored CRC is a mismatch too.
  const c = Buffer.from(b);
  c[12] ^= 1;
  t.is(t.throws(() => decodeBatch(c), { instanceOf: LogError })?.code, 'checksum_mismatch');
});

test('digest catches a consistent forgery of the CRC', (t) => {
  const b = encodeBatch([Buffer.from('pay me 10')], { digest: 'sha256' });
  const i = b.indexOf('10');
  b[i] = '9'.charCodeAt(0);
  b[i + 1] = '9'.charCodeAt(0);
  // The forger recomputes the CRC, but cannot fix the digest without knowing to.
  b.writeUInt32LE(crc32c(b.subarray(BATCH_HEADER_SIZE)), 12);
  const e = t.throws(() => decodeBatch(b), { instanceOf: LogError });
  t.is(e?.code, 'checksum_mismatch');
  t.regex(e!.message, /SHA-256/);
});

test('malformed envelopes are bad_request', (t) => {
  t.is(t.throws(() => decodeBatch(Buffer.from('not an envelope at all')), { instanceOf: LogError })?.code, 'bad_request');
  const b = encodeBatch([Buffer.from('abc')]);
  const v = Buffer.from(b);
  v[4] = 9;
  t.is(t.throws(() => decodeBatch(v), { instanceOf: LogError })?.code, 'bad_request');
  const f = Buffer.from(b);
  f[5] = 0x80;
  t.is(t.throws(() => decodeBatch(f), { instanceOf: LogError })?.code, 'bad_request');
  // Lengths that do not add up, with a valid CRC: malformed, not corrupt.
  const l = Buffer.from(b);
  l.writeUInt32LE(4, BATCH_HEADER_SIZE);
  l.writeUInt32LE(crc32c(l.subarray(BATCH_HEADER_SIZE)), 12);
  t.is(t.throws(() => decodeBatch(l), { instanceOf: LogError })?.code, 'bad_request');
  // A count too large for the buffer.
  const n = Buffer.from(b);
  n.writeUInt32LE(1_000_000, 8);
  t.is(t.throws(() => decodeBatch(n), { instanceOf: LogError })?.code, 'bad_request');
  t.false(isBatch(Buffer.from('LLB1')));
});

test('raw bytes that start with the magic but are not laid out as an envelope are one record in auto mode', (t) => {
  const entry = { offset: 7, end: 60, term: 1, kind: 'data' as const, payload: Buffer.from('LLB1 is my favourite string') };
  t.deepEqual(entryRecords(entry), [{ offset: 7, index: 0, value: entry.payload }]);
  t.is(t.throws(() => entryRecords(entry, 'require'), { instanceOf: LogError })?.code, 'bad_request');
  // An envelope of a later version is not mistaken for raw bytes.
  const later = encodeBatch([Buffer.from('a'), Buffer.from('b')]);
  later[4] = 2;
  t.regex(t.throws(() => entryRecords({ ...entry, payload: later }), { instanceOf: LogError })!.message, /unsupported envelope version 2/);
});

test('non-envelope entries are single opaque records', (t) => {
  const entry = { offset: 100, end: 140, term: 1, kind: 'data' as const, payload: Buffer.from('plain bytes') };
  t.deepEqual(entryRecords(entry), [{ offset: 100, index: 0, value: entry.payload }]);
  const env = { ...entry, payload: encodeBatch([Buffer.from('a'), Buffer.from('b')]) };
  t.deepEqual(entryRecords(env).map((r) => [r.offset, r.index, r.value.toString()]), [[100, 0, 'a'], [100, 1, 'b']]);
  t.is(entryRecords(env, 'none').length, 1);
  t.is(t.throws(() => entryRecords(entry, 'require'), { instanceOf: LogError })?.code, 'bad_request');
  const bad = Buffer.from(env.payload);
  bad[bad.length - 1] ^= 1;
  const e = t.throws(() => entryRecords({ ...entry, payload: bad }), { instanceOf: LogError });
  t.is(e?.code, 'checksum_mismatch');
  t.is(e?.details.offset, 100);
});

test('auto mode decodes envelopes with a digest and checks it', (t) => {
  const payload = encodeBatch([Buffer.from('x'), Buffer.from('yz')], { digest: 'sha256' });
  const entry = { offset: 3, end: 90, term: 1, kind: 'data' as const, payload };
  t.deepEqual(entryRecords(entry).map((r) => r.value.toString()), ['x', 'yz']);
  // A record byte changed and the CRC recomputed: only the digest notices.
  const forged = Buffer.from(payload);
  forged[BATCH_HEADER_SIZE + 8] ^= 1;
  forged.writeUInt32LE(crc32c(forged.subarray(BATCH_HEADER_SIZE)), 12);
  t.is(t.throws(() => entryRecords({ ...entry, payload: forged }), { instanceOf: LogError })?.code, 'checksum_mismatch');
});

test('envelopeCrc is the CRC32C of the whole envelope', (t) => {
  for (const rs of [[], recs, [Buffer.alloc(1 << 20, 7)]]) {
    for (const digest of [undefined, 'sha256'] as const) {
      const b = encodeBatch(rs, { digest });
      t.is(envelopeCrc(b), crc32c(b));
    }
  }
});
