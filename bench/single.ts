/**
 * Single-node benchmark: 1 KiB records through the Producer into a real loglogd process,
 * acknowledged after fdatasync, against this machine's baseline (the same write sizes
 * with fdatasync straight through fs); then recovery time for a small and a large log.
 * Prints a readable report and, last, one JSON line.
 *
 * The disk under this VM has moods: the same 1 MiB write + fdatasync loop runs at
 * 200-330 MB/s or at 700-1,100 MB/s from one minute to the next (the host's cache and
 * block allocation; see DESIGN.md, "Benchmarks"). A baseline taken a minute away from the
 * loglog run compares two different disks, so the two alternate in rounds of equal volume
 * and each total is compared with the other: both see the same moods.
 *
 *   npm run bench                       (defaults)
 *   npm run bench -- single --records 1000000 --rounds 4 --singles 2000 --recovery-gib 10
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LogClient, Producer } from '../client/index.ts';
import type { LogClientOptions } from '../client/index.ts';
import { SegmentLog } from '../server/storage/segment-log.ts';
import { spawnLoglogdChild, whenServing } from '../server/daemon-argv.ts';
import { Kind, crc32c, encodeFrame, frameSize } from '../spec/frame.ts';
import { type BenchOption, checkArgs, percentile, say, flag } from './util.ts';
import { type BaselineResult, baseline, cpuSeconds } from './baseline.ts';
import { singleAppendsReport } from './latency.ts';

export interface Daemon { url: string; pid: number; stop: () => Promise<void> }

export async function startDaemon(dataDir: string, args: string[] = []): Promise<Daemon> {
  const proc = spawnLoglogdChild(['--data', dataDir, '--listen', '127.0.0.1:0', ...args]);
  const url = await whenServing(proc).serving;
  return { url, pid: proc.pid!, stop: async () => { proc.kill('SIGINT'); await new Promise((r) => proc.once('exit', r)); } };
}

export interface ProducerRunResult {
  recordsPerSec: number; mbps: number; seconds: number; p50: number; p99: number;
  entries: number; avgEntryBytes: number; clientCpuSeconds: number;
}

/**
 * `records` records of `recordSize` bytes through a Producer (linger 2 ms, otherwise the
 * Producer's defaults: 1 MiB batches, 4 in flight). The harness itself stays light, since it
 * shares the machine with what it measures: it keeps no promise per record and times the
 * acknowledgement of every 16th record (tens of thousands of samples).
 */
export async function producerRun(servers: string | string[], records: number, recordSize: number, clientOpts: Omit<LogClientOptions, 'servers'> = {}): Promise<ProducerRunResult> {
  const client = new LogClient({ ...clientOpts, servers: Array.isArray(servers) ? servers : [servers] });
  const producer = new Producer({ client, lingerMs: 2 });
  const record = Buffer.alloc(recordSize, 0x42);
  const latencies = new Float64Array(Math.ceil(records / 16));
  let sampled = 0;
  let failure: unknown = null;
  const onError = (e: unknown) => { failure ??= e; };
  const cpu0 = cpuSeconds(process.pid);
  const t0 = performance.now();
  for (let i = 0; i < records; i++) {
    const sent = producer.send(record);
    if (i % 16 === 0) {
      const start = performance.now();
      sent.then(() => { latencies[sampled++] = performance.now() - start; }, onError);
    } else {
      sent.catch(onError);
    }
    if (i % 1024 === 0) await producer.whenWritable();
  }
  await producer.flush();
  const s = (performance.now() - t0) / 1000;
  const clientCpuSeconds = cpuSeconds(process.pid) - cpu0;
  const stats = producer.stats();
  await producer.close();
  await client.close();
  if (failure) throw failure;
  const sorted = Array.from(latencies.subarray(0, sampled)).sort((a, b) => a - b);
  return {
    recordsPerSec: records / s, mbps: (records * recordSize) / s / 1e6, seconds: s,
    p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99),
    entries: stats.entries, avgEntryBytes: stats.bytes / Math.max(1, stats.entries), clientCpuSeconds,
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

export const SINGLE_OPTIONS: readonly BenchOption[] = [
  { name: '--records', value: 'n', help: '1 KiB records through the Producer, over all rounds (default 1000000)' },
  { name: '--rounds', value: 'n', help: 'rounds of loglog alternating with the fdatasync baseline (default 4)' },
  { name: '--singles', value: 'n', help: 'single appends timed after the warm-up (default 2000)' },
  { name: '--warmup', value: 'n', help: 'single appends before timing (default 2000)' },
  { name: '--recovery-gib', value: 'GiB', help: 'size of the large log whose reopening is timed; it is written to the temporary directory and needs that much free space (default 10)' },
];

export async function benchSingle(argv: string[]): Promise<Record<string, unknown>> {
  checkArgs('single', argv, SINGLE_OPTIONS);
  const records = Number(flag(argv, '--records', '1000000'));
  const rounds = Number(flag(argv, '--rounds', '4'));
  const recordSize = 1024;
  const recoveryGiB = Number(flag(argv, '--recovery-gib', '10'));
  const perRound = Math.ceil(records / rounds);
  const work = await mkdtemp(join(tmpdir(), 'loglog-bench-'));
  try {
    say(`single node: ${records} records of ${recordSize} B through the Producer, acks after fdatasync, in ${rounds} rounds alternating with the baseline`);
    const daemon = await startDaemon(join(work, 'node'));
    // Unmeasured: V8 compiles the append path on both sides as it runs (see bench/latency.ts).
    const warm = await producerRun(daemon.url, 65_536, recordSize);
    say(`  warm-up: 64 MiB at ${warm.mbps.toFixed(1)} MB/s (not counted)`);
    const runs: ProducerRunResult[] = [];
    const bases: BaselineResult[] = [];
    let serverCpu = 0;
    for (let r = 0; r < rounds; r++) {
      const cpu0 = cpuSeconds(daemon.pid);
      const run = await producerRun(daemon.url, perRound, recordSize);
      serverCpu += cpuSeconds(daemon.pid) - cpu0;
      // The same volume in blocks of the entry size loglog just wrote.
      const base = await baseline(work, Math.round(run.avgEntryBytes), perRound * recordSize);
      say(`  round ${r + 1}: loglog ${run.mbps.toFixed(1)} MB/s, baseline ${base.mbps.toFixed(1)} MB/s (${(run.avgEntryBytes / 1024).toFixed(0)} KiB blocks)`);
      runs.push(run);
      bases.push(base);
    }
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    const seconds = sum(runs.map((x) => x.seconds));
    const bytes = rounds * perRound * recordSize;
    const mbps = bytes / seconds / 1e6;
    const baseMbps = sum(bases.map((b) => b.bytes)) / sum(bases.map((b) => b.seconds)) / 1e6;
    const ratio = mbps / baseMbps;
    const mib = bytes / (1 << 20);
    const cpu = { client: sum(runs.map((x) => x.clientCpuSeconds)) * 1000 / mib, server: serverCpu * 1000 / mib, baseline: sum(bases.map((b) => b.cpuSeconds)) * 1000 / (sum(bases.map((b) => b.bytes)) / (1 << 20)) };
    const p50 = percentile(runs.map((x) => x.p50).sort((a, b) => a - b), 0.5);
    const p99 = Math.max(...runs.map((x) => x.p99));
    say(`  loglog:   ${(rounds * perRound / seconds).toFixed(0)} records/s, ${mbps.toFixed(1)} MB/s, ack p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms (p50: median of the rounds, p99: worst round)`);
    say(`  baseline: ${baseMbps.toFixed(1)} MB/s, the same volume with fdatasync after each block`);
    say(`  ratio loglog/baseline: ${ratio.toFixed(2)} (target >= 0.6)`);
    say(`  CPU per MiB: client ${cpu.client.toFixed(2)} ms + server ${cpu.server.toFixed(2)} ms; the baseline ${cpu.baseline.toFixed(2)} ms (2 cores: the sum bounds the rate)`);

    const singles = Number(flag(argv, '--singles', '2000'));
    const { latency, peers } = await singleAppendsReport({
      servers: [daemon.url], work, size: recordSize, n: singles, warmup: Number(flag(argv, '--warmup', '2000')),
      throughput: { mbPerSec: mbps, what: 'loglog single node' }, stopLoglog: () => daemon.stop(),
    });

    say(`recovery: reopen time of a 10 MiB log vs a ${recoveryGiB} GiB log (real bytes, 1 MiB frames, 64 MiB segments)`);
    const small = await recoveryTime(join(work, 'small'), 10 * 1024 * 1024);
    await rm(join(work, 'small'), { recursive: true, force: true });
    const big = await recoveryTime(join(work, 'big'), recoveryGiB * 1024 * 1024 * 1024);
    say(`  10 MiB: ${small.ms.toFixed(1)} ms (${small.segments} segments, scanned ${small.bytesScanned} B)`);
    say(`  ${recoveryGiB} GiB: ${big.ms.toFixed(1)} ms (${big.segments} segments, scanned ${big.bytesScanned} B)`);
    return {
      bench: 'single', records: rounds * perRound, rounds, recordBytes: recordSize,
      recordsPerSec: Math.round(rounds * perRound / seconds), mbPerSec: +mbps.toFixed(1),
      ackP50Ms: +p50.toFixed(2), ackP99Ms: +p99.toFixed(2),
      baselineMbPerSec: +baseMbps.toFixed(1), ratioToBaseline: +ratio.toFixed(2),
      roundsMbPerSec: runs.map((x) => +x.mbps.toFixed(1)), roundsBaselineMbPerSec: bases.map((b) => +b.mbps.toFixed(1)),
      ...latency,
      cpuMsPerMiB: { client: +cpu.client.toFixed(2), server: +cpu.server.toFixed(2), baseline: +cpu.baseline.toFixed(2) },
      recoveryMsSmall: +small.ms.toFixed(1), recoveryMsBig: +big.ms.toFixed(1), recoveryBigGiB: recoveryGiB,
      peers,
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
