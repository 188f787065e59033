import test from 'ava';
import { crc32cCombine } from '../spec/crc32c.ts';
import {
  FRAME_OVERHEAD, HEADER_SIZE, Kind, TRAILER_ABORTED, TRAILER_OK, checkFrame, crc32c, decodeHeader,
  encodeFrame, encodeHeader, frameSize, parseFrames,
} from '../spec/frame.ts';

const body = Buffer.from('the quick brown fox');
const header = { kind: Kind.Data, term: 7, length: body.length, crc: crc32c(body) };

test('frameSize is header + payload + trailer', (t) => {
  t.is(frameSize(0), FRAME_OVERHEAD);
  t.is(frameSize(100), HEADER_SIZE + 100 + 1);
});

test('a header round-trips, including terms above 2^32', (t) => {
  for (const term of [0, 1, 0xffff_ffff, 0x1_0000_0000, 2 ** 53 - 1]) {
    const h = { ...header, term };
    const d = decodeHeader(encodeHeader(h));
    t.deepEqual(d, { ok: true, header: h });
  }
});

test('a frame round-trips through checkFrame and parseFrames', (t) => {
  const f = encodeFrame(header, body);
  t.is(f.length, frameSize(body.length));
  t.is(f[f.length - 1], TRAILER_OK);
  const r = checkFrame(f, 0, 1000);
  t.true(r.ok);
  if (!r.ok) return;
  t.is(r.next, f.length);
  t.is(r.frame.offset, 1000);
  t.deepEqual(r.frame.payload, body);
  const two = Buffer.concat([f, encodeFrame({ kind: Kind.Noop, term: 8, length: 0, crc: 0 })]);
  const frames = [...parseFrames(two, 50)];
  t.deepEqual(frames.map((x) => [x.offset, x.kind, x.term]), [[50, Kind.Data, 7], [50 + f.length, Kind.Noop, 8]]);
});

test('an aborted frame has a zero payload and the aborted trailer', (t) => {
  const f = encodeFrame({ kind: Kind.Aborted, term: 3, length: 10, crc: 0 }, Buffer.alloc(10, 0xaa));
  t.is(f[f.length - 1], TRAILER_ABORTED);
  t.true(f.subarray(HEADER_SIZE, HEADER_SIZE + 10).equals(Buffer.alloc(10)));
  t.true(checkFrame(f, 0, 0).ok);
});

test('every single-bit corruption of a header byte is rejected', (t) => {
  const f = encodeFrame(header, body);
  for (let i = 0; i < HEADER_SIZE; i++) {
    for (let bit = 0; bit < 8; bit++) {
      const bad = Buffer.from(f);
      bad[i] ^= 1 << bit;
      const h = decodeHeader(bad);
      t.false(h.ok, `byte ${i} bit ${bit}`);
      t.false(checkFrame(bad, 0, 0).ok);
    }
  }
});

test('a corrupted payload byte fails the checksum, a bad trailer the trailer check', (t) => {
  const f = encodeFrame(header, body);
  for (let i = HEADER_SIZE; i < HEADER_SIZE + body.length; i++) {
    const bad = Buffer.from(f);
    bad[i] ^= 0x10;
    t.deepEqual(checkFrame(bad, 0, 0), { ok: false, reason: 'checksum' });
    t.true(checkFrame(bad, 0, 0, false).ok, 'payload not verified on request');
  }
  for (const trailer of [0x00, TRAILER_ABORTED, 0xfe]) {
    const bad = Buffer.from(f);
    bad[bad.length - 1] = trailer;
    t.deepEqual(checkFrame(bad, 0, 0), { ok: false, reason: 'trailer' });
  }
});

test('short, zero and foreign headers are told apart', (t) => {
  t.deepEqual(decodeHeader(Buffer.alloc(HEADER_SIZE - 1)), { ok: false, reason: 'short' });
  t.deepEqual(decodeHeader(Buffer.alloc(HEADER_SIZE)), { ok: false, reason: 'zero' });
  t.deepEqual(decodeHeader(Buffer.alloc(HEADER_SIZE, 1)), { ok: false, reason: 'magic' });
  const f = encodeFrame(header, body);
  t.deepEqual(checkFrame(f.subarray(0, f.length - 1), 0, 0), { ok: false, reason: 'short' });
  t.throws(() => [...parseFrames(f.subarray(0, 40), 0)], { message: /invalid frame at offset 0: short/ });
});

test('crc32cCombine gives the CRC of the concatenation for any split', (t) => {
  const data = Buffer.alloc(70_000);
  for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
  for (const cut of [0, 1, 15, 16, 17, 4096, 65_537, data.length - 1, data.length]) {
    const a = data.subarray(0, cut), b = data.subarray(cut);
    t.is(crc32cCombine(crc32c(a), crc32c(b), b.length), crc32c(data), `cut at ${cut}`);
  }
  t.is(crc32cCombine(0x12345678, 0, 0), 0x12345678, 'combining with an empty B is a no-op');
});

test('crc32cCombine stays right for long second parts (up to 2^53 bytes)', (t) => {
  // crc(A‖B‖C) computed both ways must agree, which tests shifts across the full range of
  // lengths without allocating them: combine(combine(a, b, |B|), c, |C|) equals
  // combine(a, combine(b, c, |C|), |B| + |C|).
  const a = 0x1b2c3d4e, b = 0x9a8b7c6d, c = 0x01f2e3d4;
  for (const [lb, lc] of [[1, 2 ** 29 - 1], [2 ** 28, 2 ** 28], [2 ** 31, 2 ** 31 + 7], [2 ** 40, 3], [2 ** 52, 2 ** 52 - 1]]) {
    t.is(crc32cCombine(crc32cCombine(a, b, lb), c, lc), crc32cCombine(a, crc32cCombine(b, c, lc), lb + lc), `|B| ${lb}, |C| ${lc}`);
  }
});
