/**
 * One-at-a-time append latency of loglog beside the machine's limit (one write + fdatasync
 * of the same size) and the Redis peer, measured in alternating rounds. This shared
 * machine's speed drifts within minutes (a p50 of 1.5 ms one minute, 2.5 ms a few later):
 * alternating gives all three the same moods, so their ratios mean something even when the
 * absolute figures move.
 *
 * loglog is warmed up first with `warmup` timed appends, reported apart. V8 compiles the
 * single-append path (client, leader, followers) as it runs, and that takes a few thousand
 * appends: measured here, the p50 of 1,500 appends after a cold start was 1.76 ms and the
 * next 4,500 gave 1.03-1.09 ms. A node that has served a few seconds of appends is past it.
 */
import { LogClient } from '../client/index.ts';
import { baseline } from './baseline.ts';
import { type RedisPeer, startRedisPeer } from './redis-peer.ts';
import { percentile, say } from './util.ts';

export interface LatencyStats { p50: number; p99: number; mean: number }

export interface LatencyRounds {
  loglog: LatencyStats;
  /** One write + fdatasync of the same size, appended to a file (the machine's limit). */
  fsync: LatencyStats;
  redis: LatencyStats | null;
  /** p50 of each round, for the report. */
  rounds: Array<{ loglog: number; fsync: number; redis: number | null }>;
  /** loglog's warm-up appends (not in `loglog`). */
  warmup: LatencyStats & { n: number };
}

function latencyStats(xs: number[]): LatencyStats {
  const sorted = xs.slice().sort((a, b) => a - b);
  return { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), mean: sorted.reduce((a, b) => a + b, 0) / Math.max(1, sorted.length) };
}

/** Times `n` appends of `payload`, one at a time (ms each). */
async function timeAppends(client: LogClient, payload: Buffer, n: number): Promise<number[]> {
  const lat: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await client.append(payload);
    lat.push(performance.now() - t0);
  }
  return lat;
}

async function latencyRounds(o: { servers: string[]; offload?: boolean; work: string; size: number; n: number; rounds: number; warmup: number; redis: RedisPeer | null }): Promise<LatencyRounds> {
  const client = new LogClient({ servers: o.servers, acks: 'quorum', offload: o.offload === false ? false : undefined });
  const payload = Buffer.alloc(o.size, 0x61);
  try {
    let redis = o.redis;
    // Redis failing mid-run takes only its own column away.
    const redisSingles = async (n: number): Promise<number[]> => {
      if (!redis) return [];
      try {
        return await redis.singles(payload, n);
      } catch (e) {
        say(`  Redis failed: ${(e as Error).message}; going on without it`);
        redis = null;
        return [];
      }
    };
    // Warm up connections and the JIT on every side.
    const warmup = { ...latencyStats(await timeAppends(client, payload, o.warmup)), n: o.warmup };
    say(`  warm-up: ${o.warmup} appends, p50 ${warmup.p50.toFixed(2)} ms, p99 ${warmup.p99.toFixed(2)} ms (not counted below)`);
    await redisSingles(50);
    const all = { loglog: [] as number[], fsync: [] as number[], redis: [] as number[] };
    const rounds: LatencyRounds['rounds'] = [];
    const per = Math.ceil(o.n / o.rounds);
    for (let r = 0; r < o.rounds; r++) {
      const loglog = await timeAppends(client, payload, per);
      const fsync = (await baseline(o.work, o.size, per * o.size)).latencies;
      const peer = await redisSingles(per);
      const round = { loglog: latencyStats(loglog).p50, fsync: latencyStats(fsync).p50, redis: redis ? latencyStats(peer).p50 : null };
      rounds.push(round);
      say(`  round ${r + 1}: p50 loglog ${round.loglog.toFixed(2)} ms, write + fdatasync ${round.fsync.toFixed(2)} ms${round.redis === null ? '' : `, Redis ${round.redis.toFixed(2)} ms`}`);
      all.loglog.push(...loglog);
      all.fsync.push(...fsync);
      all.redis.push(...peer);
    }
    return { loglog: latencyStats(all.loglog), fsync: latencyStats(all.fsync), redis: redis ? latencyStats(all.redis) : null, rounds, warmup };
  } finally {
    await client.close();
  }
}

/**
 * The single-append part of the single and cluster benchmarks: starts the Redis peer (if
 * installed), runs the alternating rounds against `servers`, reports them, then stops loglog
 * (`stopLoglog`) before timing Redis's pipelined rate, so the two do not share the machine.
 * Returns the JSON fields and the `peers` fragment.
 */
export async function singleAppendsReport(o: {
  servers: string[]; offload?: boolean; work: string; size: number; n: number; warmup: number; target?: number;
  throughput: { mbPerSec: number; what: string }; stopLoglog: () => Promise<void>;
}): Promise<{ latency: Record<string, unknown>; peers: Record<string, unknown> }> {
  const redis = await startRedisPeer(o.work);
  try {
    say(`single appends: ${o.n} of ${o.size} B, one at a time, in 4 rounds alternating with the machine's write + fdatasync${redis ? ' and Redis' : ''}`);
    const lat = await latencyRounds({ ...o, rounds: 4, redis });
    const latency = reportLatency(lat, o.n, o.size, o.target);
    await o.stopLoglog();
    return { latency, peers: await reportRedis(redis, lat, o.throughput) };
  } finally {
    await redis?.stop();
  }
}

/** Report lines and JSON fields of the rounds. */
function reportLatency(lat: LatencyRounds, n: number, size: number, target?: number): Record<string, unknown> {
  const { loglog, fsync, redis } = lat;
  say(`  loglog:  p50 ${loglog.p50.toFixed(2)} ms, p99 ${loglog.p99.toFixed(2)} ms, mean ${loglog.mean.toFixed(2)} ms over ${n} appends${target === undefined ? '' : ` (target p50 <= ${target} ms)`}`);
  say(`  machine: one ${size} B write + fdatasync p50 ${fsync.p50.toFixed(2)} ms, p99 ${fsync.p99.toFixed(2)} ms; loglog p50 = ${(loglog.p50 / fsync.p50).toFixed(1)} x that`);
  if (redis) say(`  Redis:   XADD p50 ${redis.p50.toFixed(2)} ms, p99 ${redis.p99.toFixed(2)} ms; loglog p50 = ${(loglog.p50 / redis.p50).toFixed(1)} x that`);
  return {
    singles: n, singleP50Ms: +loglog.p50.toFixed(3), singleP99Ms: +loglog.p99.toFixed(3),
    singleRoundsP50Ms: lat.rounds.map((r) => +r.loglog.toFixed(3)),
    singleWarmup: lat.warmup.n, singleWarmupP50Ms: +lat.warmup.p50.toFixed(3),
    baselineSyncP50Ms: +fsync.p50.toFixed(3), baselineSyncP99Ms: +fsync.p99.toFixed(3),
    singleP50ToSyncRatio: +(loglog.p50 / fsync.p50).toFixed(2),
  };
}

/** Redis's pipelined rate beside loglog's, and the `peers` JSON fragment. */
async function reportRedis(redis: RedisPeer | null, lat: LatencyRounds, loglog: { mbPerSec: number; what: string }): Promise<Record<string, unknown>> {
  if (!redis || !lat.redis) return { redis: null };
  const records = 100_000, size = 1024, inFlight = 256;
  try {
    const r = await redis.pipelined(Buffer.alloc(size, 0x61), records, inFlight);
    say(`  Redis ${redis.version}, ${inFlight} XADDs of ${size} B in flight: ${r.msgPerSec.toFixed(0)} msg/s, ${r.mbPerSec.toFixed(1)} MB/s; ${loglog.what} MB/s = ${(loglog.mbPerSec / r.mbPerSec).toFixed(1)} x that`);
    return {
      redis: {
        version: redis.version, singleP50Ms: +lat.redis.p50.toFixed(3), singleP99Ms: +lat.redis.p99.toFixed(3),
        inFlight, msgPerSec: Math.round(r.msgPerSec), mbPerSec: +r.mbPerSec.toFixed(1),
        loglogSingleP50Ratio: +(lat.loglog.p50 / lat.redis.p50).toFixed(2), loglogMbPerSecRatio: +(loglog.mbPerSec / r.mbPerSec).toFixed(2),
      },
    };
  } catch (e) {
    say(`  Redis failed: ${(e as Error).message}`);
    return { redis: { error: (e as Error).message } };
  }
}
