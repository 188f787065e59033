import test from 'ava';
import { UploadBuffer } from '../server/upload-buffer.ts';

test('uploads are bounded in bytes (oldest dropped first) and in age', (t) => {
  let now = 0;
  const b = new UploadBuffer(10, 1000, () => now);
  b.put('a', Buffer.alloc(4));
  b.put('b', Buffer.alloc(4));
  b.put('c', Buffer.alloc(4));
  t.is(b.take('a'), undefined, 'over the byte budget the oldest goes');
  t.is(b.bufferedBytes, 8);
  now = 2000;
  b.put('d', Buffer.alloc(1));
  t.is(b.size, 1, 'uploads older than the age limit are dropped on the next put');
  t.is(b.take('d')?.length, 1);
  t.is(b.take('d'), undefined, 'take removes');
});
