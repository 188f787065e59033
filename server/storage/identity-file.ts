/**
 * The `identity` file: which node of which cluster a data directory belongs to, stamped at
 * its first start (`{"cluster","node"}`), as Kafka's meta.properties and BookKeeper's cookie
 * do. A directory started as another node is refused: as that node it could vote a second
 * time in a term it voted in as the other, and hold entries that node never had. So is one
 * of another cluster: its log, of another history, could win an election here and have
 * the followers truncate entries this cluster committed.
 *
 * A directory from before the file existed is stamped with what it is started as.
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
  return { cluster: s.cluster, node: s.node };
}

/**
 * Checks that `dir` belongs to `want`, stamping it (durably) when it has no identity yet.
 * Throws a `bad_request` that says how to start it otherwise.
 */
export function claimIdentitySync(dir: string, want: Identity): void {
  const have = loadIdentity(dir);
  if (have === null) {
    writeFileAtomicSync(path.join(dir, IDENTITY_FILE), `${JSON.stringify({ cluster: want.cluster, node: want.node })}\n`, true);
    return;
  }
  if (have.node === want.node && have.cluster === want.cluster) return;
  const what = have.cluster === want.cluster
    ? `node ${have.node}, not ${want.node}`
    : `node ${have.node} of cluster "${have.cluster}", not node ${want.node} of cluster "${want.cluster}"`;
  throw new LogError('bad_request', `the data directory ${dir} belongs to ${what}: start it with --id ${have.node} --cluster-name ${have.cluster}, or give this node an empty --data directory (it then copies the log from its peers)`);
}
