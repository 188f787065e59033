/**
 * The `identity` file: which node of which cluster a data directory belongs to, stamped at
 * its first start (`{"cluster","node"}`), as Kafka's meta.properties and BookKeeper's cookie
 * do. A directory started as another node is refused: as that node it could vote a second
 * time in a term it voted in as the other, and hold entries that node never had. So is one
 * of another cluster: its log, of another history, could win an election here and have
 * the followers truncate entries this cluster committed.
 *
 * The stamp also holds the cluster's members (their ids). A directory started with other
 * members is refused too: loglog has no membership change, and a member started once
 * without `--peers` became a cluster of one, elected itself in a new term and took appends;
 * restarted with its peers, that higher term could win an election and overwrite entries
 * the real cluster had committed (found by an acceptance test).
 *
 * A directory from before the file existed is stamped with what it is started as, and one
 * stamped before members were kept gets them at its next start.
 */
import path from 'node:path';
import { LogError } from '../../spec/errors.ts';
import { readFileOrNullSync, writeFileAtomicSync } from './fs-util.ts';

export const IDENTITY_FILE = 'identity';

/** What a data directory belongs to. */
export interface Identity {
  /** The cluster's name (loglogd --cluster-name). */
  cluster: string;
  /** The node's id (loglogd --id). */
  node: string;
  /** The ids of every member, this node included, sorted (absent in stamps made before members were kept). */
  members?: string[];
}

/** The identity saved in `dir`, or null when none was ever saved. */
export function loadIdentity(dir: string): Identity | null {
  const buf = readFileOrNullSync(path.join(dir, IDENTITY_FILE));
  if (buf === null) return null;
  let v: unknown = null;
  try {
    v = JSON.parse(buf.toString('utf8'));
  } catch {
    // reported below
  }
  const s = v as Partial<Identity> | null;
  if (typeof s?.cluster !== 'string' || typeof s.node !== 'string') {
    throw new LogError('internal', `${IDENTITY_FILE} in ${dir} is damaged (it should hold {"cluster":"...","node":"..."}): write it back as the node this directory belongs to, or start with an empty --data directory`);
  }
  const members = Array.isArray(s.members) && s.members.every((m) => typeof m === 'string') ? s.members : undefined;
  return { cluster: s.cluster, node: s.node, ...(members ? { members } : {}) };
}

function stamp(dir: string, want: Required<Identity>): void {
  writeFileAtomicSync(path.join(dir, IDENTITY_FILE), `${JSON.stringify({ cluster: want.cluster, node: want.node, members: want.members })}\n`, true);
}

/**
 * Checks that `dir` belongs to `want`, stamping it (durably) when it has no identity yet.
 * Throws a `bad_request` that says how to start it otherwise.
 */
export function claimIdentitySync(dir: string, want: Required<Identity>): void {
  const have = loadIdentity(dir);
  const members = [...want.members].sort();
  if (have === null) return stamp(dir, { ...want, members });
  if (have.node === want.node && have.cluster === want.cluster) {
    if (have.members === undefined) return stamp(dir, { ...want, members });
    if (have.members.join() === members.join()) return;
    const list = (ids: string[]) => (ids.length === 1 ? `a cluster of one (${ids[0]})` : `a cluster of ${ids.join(', ')}`);
    const peers = have.members.length === 1 ? 'without --peers' : `with --peers naming ${have.members.join(', ')}`;
    throw new LogError('bad_request', `the data directory ${dir} belongs to node ${have.node} of ${list(have.members)}, but it was started as a member of ${list(members)}: loglog has no membership change, and a member with another idea of the cluster could overwrite committed entries; start it ${peers}, or give this node an empty --data directory`);
  }
  const what = have.cluster === want.cluster
    ? `node ${have.node}, not ${want.node}`
    : `node ${have.node} of cluster "${have.cluster}", not node ${want.node} of cluster "${want.cluster}"`;
  throw new LogError('bad_request', `the data directory ${dir} belongs to ${what}: start it with --id ${have.node} --cluster-name ${have.cluster}, or give this node an empty --data directory (it then copies the log from its peers)`);
}
