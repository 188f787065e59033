/**
 * Single-node benchmark: 1 KiB records through the Producer into a real loglogd process,
 * acknowledged after fdatasync, against this machine's baseline (the same write sizes
 * with fdatasync straight through fs) in the same run; then recovery time for a small
 * and a large log. Prints a readable report and, last, one JSON line.
 *
 *   npm run bench                       (defaults)
 *   npm run bench -- single --records 300000 --recovery-gib 10
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, open as openFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { LogClient, Producer } from '../client/index.ts';
import type { LogClientOptions } from '../client/index.ts';
import { SegmentLog } from '../server/storage/segment-log.ts';
import { Kind, crc32c, encodeFrame, frameSize } from '../spec/frame.ts';
import { percentile, say, flag } from './util.ts';

const ROOT = resolve(import.meta.dirname, '..');

export async function startDaemon(dataDir: string, args: string[] = []): Promise<{ url: string; stop: () => Promise<void> }> {
  const proc = spawn(process.execPath, [join(ROOT, 'server', 'loglogd.js'), '--data', dataDir, '--listen', '127.0.0.1:0', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  const url = await new Promise<string>((res, rej) => {
    proc.stderr!.on('data', (d: Buffer) => { err += d; const m = /serving (http:\/\/\S+),/.exec(err); if (m) res(m[1]); });
    proc.once('exit', (c) => rej(new Error(`loglogd exited ${c}: ${err}`)));
  });
  return { url, stop: async () => { proc.kill('SIGINT'); await new Promise((r) => proc.once('exit', r)); } };
}

/**
 * Baseline: write `size`-byte blocks sequentially, fdatasync after each, until `totalBytes`.
 * Also the latency of each write + fdatasync (p50/p99, ms).
 */
export async function baseline(dir: string, size: number, totalBytes: number): Promise<{ mbps: number; syncsPerSec: number; p50: number; p99: number }> {
  const fh = await openFile(join(dir, 'baseline.bin'), 'w+');
  const block = Buffer.alloc(size, 0x5a);
  const lat: number[] = [];
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
  await fh.close();
  lat.sort((a, b) => a - b);
  return { mbps: pos / s / 1e6, syncsPerSec: n / s, p50: percentile(lat, 0.5), p99: percentile(lat, 0.99) };
}

/** `records` records of `recordSize` bytes through a Producer (linger 2 ms, 1 MiB batches, 4 in flight). */
export async function producerRun(servers: string | string[], records: number, recordSize: number, clientOpts: Omit<LogClientOptions, 'servers'> = {}): Promise<{ recordsPerSec: number; mbps: number; p50: number; p99: number; entries: number; avgEntryBytes: number }> {
  const client = new LogClient({ ...clientOpts, servers: Array.isArray(servers) ? servers : [servers] });
  const producer = new Producer({ client, lingerMs: 2, maxBatchBytes: 1024 * 1024, maxInFlight: 4 });
  const record = Buffer.alloc(recordSize, 0x42);
  const latencies = new Float64Array(records);
  let done = 0;
  const t0 = performance.now();
  const all: Promise<void>[] = [];
  for (let i = 0; i < records; i++) {
    const start = performance.now();
    all.push(producer.send(record).then(() => { latencies[done++] = performance.now() - start; }));
    if (i % 1024 === 0) await producer.whenWritable();
  }
  await Promise.all(all);
  await producer.flush();
  const s = (performance.now() - t0) / 1000;
  const stats = producer.stats();
  await producer.close();
  await client.close();
  const sorted = Array.from(latencies).sort((a, b) => a - b);
  return {
    recordsPerSec: records / s, mbps: (records * recordSize) / s / 1e6,
    p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99),
    entries: stats.entries, avgEntryBytes: stats.bytes / Math.max(1, stats.entries),
  };
}

/** Builds a log of `bytes` real bytes (1 MiB frames) with SegmentLog, then times a reopen. */
async function recoveryTime(dir: string, bytes: number): Promise<{ ms: number; bytesScanned: number; segments: number }> {
  const log = await SegmentLog.open(dir, {});
  const payload = Buffer.alloc(1024 * 1024, 0x33);
  const crc = crc32c(payload);
  let offset = log.end;
  const frames: Promise<void>[] = [];
  while (offset < bytes) {
    const meta = { kind: Kind.Data, term: 1, length: payload.length, crc };
    log.place(offset, payload.length, 1);
    frames.push(log.writeAt(offset, encodeFrame(meta, payload)));
    offset += frameSize(payload.length);
    if (frames.length >= 16) { await Promise.all(frames); frames.length = 0; }
  }
  await Promise.all(frames);
  await log.sync();
  await log.close();
  const t0 = performance.now();
  const reopened = await SegmentLog.open(dir, {});
  const ms = performance.now() - t0;
  const r = { ms, bytesScanned: reopened.recovery.bytesScanned, segments: reopened.segmentCount };
  await reopened.close();
  return r;
}

export async function benchSingle(argv: string[]): Promise<Record<string, unknown>> {
  const records = Number(flag(argv, '--records', '200000'));
  const recordSize = 1024;
  const recoveryGiB = Number(flag(argv, '--recovery-gib', '10'));
  const work = await mkdtemp(join(tmpdir(), 'loglog-bench-'));
  try {
    say(`single node: ${records} records of ${recordSize} B through the Producer, acks after fdatasync`);
    const daemon = await startDaemon(join(work, 'node'));
    const run = await producerRun(daemon.url, records, recordSize);
    await daemon.stop();
    say(`  loglog:   ${run.recordsPerSec.toFixed(0)} records/s, ${run.mbps.toFixed(1)} MB/s, ack p50 ${run.p50.toFixed(2)} ms, p99 ${run.p99.toFixed(2)} ms (${run.entries} entries of ~${(run.avgEntryBytes / 1024).toFixed(0)} KiB)`);
    const base = await baseline(work, Math.round(run.avgEntryBytes), Math.min(records * recordSize, 256 * 1024 * 1024));
    say(`  baseline: ${base.mbps.toFixed(1)} MB/s writing ${(run.avgEntryBytes / 1024).toFixed(0)} KiB blocks with fdatasync each (${base.syncsPerSec.toFixed(0)} syncs/s)`);
    const ratio = run.mbps / base.mbps;
    say(`  ratio loglog/baseline: ${ratio.toFixed(2)} (target >= 0.6)`);

    say(`recovery: reopen time of a 10 MiB log vs a ${recoveryGiB} GiB log (real bytes, 1 MiB frames, 64 MiB segments)`);
    const small = await recoveryTime(join(work, 'small'), 10 * 1024 * 1024);
    await rm(join(work, 'small'), { recursive: true, force: true });
    const big = await recoveryTime(join(work, 'big'), recoveryGiB * 1024 * 1024 * 1024);
    say(`  10 MiB: ${small.ms.toFixed(1)} ms (${small.segments} segments, scanned ${small.bytesScanned} B)`);
    say(`  ${recoveryGiB} GiB: ${big.ms.toFixed(1)} ms (${big.segments} segments, scanned ${big.bytesScanned} B)`);
    return {
      bench: 'single', records, recordBytes: recordSize,
      recordsPerSec: Math.round(run.recordsPerSec), mbPerSec: +run.mbps.toFixed(1),
      ackP50Ms: +run.p50.toFixed(2), ackP99Ms: +run.p99.toFixed(2),
      baselineMbPerSec: +base.mbps.toFixed(1), ratioToBaseline: +ratio.toFixed(2),
      recoveryMsSmall: +small.ms.toFixed(1), recoveryMsBig: +big.ms.toFixed(1), recoveryBigGiB: recoveryGiB,
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
