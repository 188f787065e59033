/**
 * The machine's own limit, which every loglog figure is set against: blocks written
 * sequentially with fdatasync after each, straight through fs. Also CPU time per process.
 */
import { readFileSync } from 'node:fs';
import { open as openFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { percentile } from './util.ts';

/** CPU seconds (user + system, all threads) a process has used so far; Linux only. */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

export interface BaselineResult {
  mbps: number; bytes: number; seconds: number; cpuSeconds: number; syncsPerSec: number; p50: number; p99: number;
  /** Each write + fdatasync, ms, ascending. */
  latencies: number[];
}

/**
 * Baseline: write `size`-byte blocks sequentially to a new file, fdatasync after each, until
 * `totalBytes`. Also the latency of each write + fdatasync (p50/p99, ms) and the CPU used.
 */
export async function baseline(dir: string, size: number, totalBytes: number): Promise<BaselineResult> {
  const file = join(dir, 'baseline.bin');
  const fh = await openFile(file, 'w+');
  const block = Buffer.alloc(size, 0x5a);
  const lat: number[] = [];
  const cpu0 = cpuSeconds(process.pid);
  const t0 = performance.now();
  let pos = 0, n = 0;
  while (pos < totalBytes) {
    const t1 = performance.now();
    await fh.write(block, 0, block.length, pos);
    await fh.datasync();
    lat.push(performance.now() - t1);
    pos += block.length;
    n++;
  }
  const s = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds(process.pid) - cpu0;
  await fh.close();
  await rm(file, { force: true });
  lat.sort((a, b) => a - b);
  return { mbps: pos / s / 1e6, bytes: pos, seconds: s, cpuSeconds: cpu, syncsPerSec: n / s, p50: percentile(lat, 0.5), p99: percentile(lat, 0.99), latencies: lat };
}
