import test from 'ava';
import { readU64LE, writeU64LE } from '../spec/u64.ts';

test('a u64 round-trips little-endian, low u32 first, up to 2^53 - 1', (t) => {
  for (const v of [0, 1, 0xffff_ffff, 0x1_0000_0000, 0x1_2345_6789, 2 ** 53 - 1]) {
    const b = Buffer.alloc(12, 0xaa);
    writeU64LE(b, v, 2);
    t.is(readU64LE(b, 2), v);
    t.is(b.readBigUInt64LE(2), BigInt(v));
    t.is(b[0], 0xaa); t.is(b[1], 0xaa); t.is(b[10], 0xaa); t.is(b[11], 0xaa);
  }
});

test('a negative u64 or one of 2^64 and above throws', (t) => {
  t.throws(() => writeU64LE(Buffer.alloc(8), -1, 0), { instanceOf: RangeError });
  t.throws(() => writeU64LE(Buffer.alloc(8), 2 ** 64, 0), { instanceOf: RangeError });
});
