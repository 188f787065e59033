/**
 * Cluster benchmark: three real loglogd processes on loopback (temp dirs), acks at `quorum`
 * (committed: fdatasync'ed on a majority), appends offloaded by the client.
 *
 * 1. 1 KiB records through the Producer: records/s, MB/s, ack latency p50/p99, and the
 *    leader's egress ratio: bytes it sent to peers / payload bytes appended (from the
 *    leader's `/v1/status` `traffic`, before and after; target <= 0.02).
 * 2. Single 1 KiB appends, one at a time: latency p50/p99 (target p50 <= 1.5 ms).
 * 3. This machine's baseline, measured in the same run (bench/single.ts): sequential writes
 *    of the Producer's average entry size with fdatasync after each, and the latency of one
 *    1 KiB write + fdatasync.
 *
 *   npm run bench -- cluster [--records 200000] [--singles 2000] [--no-offload] [--profile DIR]
 *
 * `--profile DIR` runs the nodes with `--cpu-prof` and writes their profiles (and the
 * benchmark process's, if run with `node --cpu-prof`) to DIR.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { request } from 'undici';
import { freePortRange, startLocalCluster, type LocalNode } from '../client/cli/commands/dev.ts';
import { producerRun } from './single.ts';
import { baseline } from './baseline.ts';
import { type BenchOption, checkArgs, flag, say } from './util.ts';
import { singleAppendsReport } from './latency.ts';

interface Traffic { appendedBytes: number; peerSentBytes: number; peerMessageBytes: number; peerPayloadBytes: number; peerCopyBytes: number }

async function traffic(node: LocalNode): Promise<Traffic> {
  const r = await request(`${node.url}/v1/status`);
  const st = (await r.body.json()) as { traffic?: Traffic };
  if (!st.traffic) throw new Error(`${node.id}: /v1/status has no traffic counters`);
  return st.traffic;
}

function delta(a: Traffic, b: Traffic): Traffic {
  return {
    appendedBytes: b.appendedBytes - a.appendedBytes, peerSentBytes: b.peerSentBytes - a.peerSentBytes,
    peerMessageBytes: b.peerMessageBytes - a.peerMessageBytes, peerPayloadBytes: b.peerPayloadBytes - a.peerPayloadBytes,
    peerCopyBytes: b.peerCopyBytes - a.peerCopyBytes,
  };
}

export const CLUSTER_OPTIONS: readonly BenchOption[] = [
  { name: '--records', value: 'n', help: '1 KiB records through the Producer (default 200000)' },
  { name: '--singles', value: 'n', help: 'single appends timed after the warm-up (default 2000)' },
  { name: '--warmup', value: 'n', help: 'single appends before timing (default 2000)' },
  { name: '--no-offload', help: 'the client uploads no copies: followers fetch every payload from the leader' },
  { name: '--profile', value: 'dir', help: 'write CPU profiles of the three nodes to this directory' },
];

export async function benchCluster(argv: string[]): Promise<Record<string, unknown>> {
  checkArgs('cluster', argv, CLUSTER_OPTIONS);
  const records = Number(flag(argv, '--records', '200000'));
  const singles = Number(flag(argv, '--singles', '2000'));
  const offload = !argv.includes('--no-offload');
  const profileDir = argv.includes('--profile') ? resolve(flag(argv, '--profile', 'profiles')) : null;
  const recordSize = 1024;
  const work = await mkdtemp(join(tmpdir(), 'loglog-bench-cluster-'));
  const first = await freePortRange(3);
  const ports = [first, first + 1, first + 2];
  const cluster = await startLocalCluster({
    nodes: 3, dataDir: join(work, 'data'), ports,
    nodeArgs: profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [],
    onLine: (id, line) => { if (/warning|fatal|error/i.test(line)) say(`  [${id}] ${line}`); },
  });
  try {
    const leader = await cluster.waitForLeader();
    const servers = cluster.nodes.map((n) => n.url);
    say(`cluster: 3 loglogd processes on 127.0.0.1:${ports[0]}-${ports[2]}, leader ${leader.id}; acks quorum (fdatasync on a majority), offload ${offload ? 'on' : 'off'}`);

    say(`producer: ${records} records of ${recordSize} B (linger 2 ms, 1 MiB batches, 4 in flight)`);
    const t0 = await traffic(leader);
    const run = await producerRun(servers, records, recordSize, { acks: 'quorum', offload: offload ? undefined : false });
    const eg = delta(t0, await traffic(leader));
    const egress = eg.peerSentBytes / Math.max(1, eg.appendedBytes);
    say(`  loglog:   ${run.recordsPerSec.toFixed(0)} records/s, ${run.mbps.toFixed(1)} MB/s, ack p50 ${run.p50.toFixed(2)} ms, p99 ${run.p99.toFixed(2)} ms (${run.entries} entries of ~${(run.avgEntryBytes / 1024).toFixed(0)} KiB)`);
    say(`  leader egress: ${eg.peerSentBytes} B to peers (messages ${eg.peerMessageBytes}, payloads ${eg.peerPayloadBytes}, catch-up ${eg.peerCopyBytes}) for ${eg.appendedBytes} B appended: ratio ${egress.toFixed(4)} (target <= 0.02)`);

    const { latency, peers } = await singleAppendsReport({
      servers, offload, work, size: recordSize, n: singles, warmup: Number(flag(argv, '--warmup', '2000')), target: 1.5,
      throughput: { mbPerSec: run.mbps, what: 'loglog 3 nodes (quorum)' },
      stopLoglog: async () => {
        const codes = await cluster.stop();
        if (codes.some((c) => c !== 0)) say(`  note: node exit codes ${codes.join(', ')}`);
      },
    });

    const base = await baseline(work, Math.round(run.avgEntryBytes), Math.min(records * recordSize, 256 * 1024 * 1024));
    say(`baseline (this machine, same run): ${base.mbps.toFixed(1)} MB/s writing ${(run.avgEntryBytes / 1024).toFixed(0)} KiB blocks with fdatasync each`);
    const ratio = run.mbps / base.mbps;
    say(`  ratio loglog cluster/baseline: ${ratio.toFixed(2)} (MB/s over MB/s)`);
    if (profileDir) say(`CPU profiles in ${profileDir}`);
    return {
      bench: 'cluster', nodes: 3, acks: 'quorum', offload, records, recordBytes: recordSize,
      recordsPerSec: Math.round(run.recordsPerSec), mbPerSec: +run.mbps.toFixed(1),
      ackP50Ms: +run.p50.toFixed(2), ackP99Ms: +run.p99.toFixed(2),
      entries: run.entries, avgEntryBytes: Math.round(run.avgEntryBytes),
      leaderPeerBytes: eg.peerSentBytes, leaderPeerPayloadBytes: eg.peerPayloadBytes, leaderPeerMessageBytes: eg.peerMessageBytes,
      appendedBytes: eg.appendedBytes, egressRatio: +egress.toFixed(4), egressTarget: 0.02,
      ...latency, singleP50TargetMs: 1.5,
      baselineMbPerSec: +base.mbps.toFixed(1), ratioToBaseline: +ratio.toFixed(2),
      peers,
    };
  } finally {
    await cluster.stop();
    await rm(work, { recursive: true, force: true });
  }
}
