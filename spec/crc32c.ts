/**
 * CRC32C (Castagnoli), the checksum of payloads, headers and record envelopes, and the
 * combination of two CRCs into the CRC of the concatenated bytes.
 *
 * The combination lets a producer checksum its records once: the envelope's CRC covers the
 * records region, and the entry's CRC (the whole payload) follows from it and the CRC of the
 * 16-byte envelope header, with no second pass over a megabyte of records.
 */
import { crc32c as nativeCrc32c } from '@node-rs/crc32';

/** CRC32C of `data`; `seed` continues a running CRC (the CRC of the bytes before `data`). */
export function crc32c(data: Uint8Array, seed = 0): number {
  return nativeCrc32c(Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength), seed) >>> 0;
}

// Polynomial arithmetic modulo the reflected Castagnoli polynomial, after zlib's
// crc32_combine (multmodp / x2nmodp): advancing a CRC over n zero bytes is a
// multiplication by x^(8n) mod P.
const POLY = 0x82f63b78;

/** a·b mod P, both reflected (bit 31 is x^0). */
function multModP(a: number, b: number): number {
  let m = 0x80000000;
  let p = 0;
  for (;;) {
    if (a & m) {
      p ^= b;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    b = b & 1 ? (b >>> 1) ^ POLY : b >>> 1;
  }
  return p >>> 0;
}

/**
 * X2N[k] = x^(2^k) mod P, for every k a length below 2^53 bytes (2^56 bits) needs. zlib
 * keeps 32 and wraps around (x^(2^32) = x for its polynomial); for Castagnoli's it does
 * not, so the table is not folded.
 */
const X2N: number[] = (() => {
  const t: number[] = [];
  let p = 0x40000000; // x^1
  t.push(p);
  for (let k = 1; k < 64; k++) t.push((p = multModP(p, p)));
  return t;
})();

/** x^(n·2^k) mod P. */
function x2nModP(n: number, k: number): number {
  let p = 0x80000000; // x^0
  while (n > 0) {
    if (n % 2 === 1) p = multModP(X2N[k], p);
    n = Math.floor(n / 2);
    k++;
  }
  return p;
}

/** CRC32C of A‖B from crc32c(A), crc32c(B) and B's length in bytes. */
export function crc32cCombine(crcA: number, crcB: number, lengthB: number): number {
  return (multModP(x2nModP(lengthB, 3), crcA) ^ crcB) >>> 0;
}
