/**
 * Raft's hard state: the current term and the vote cast in it. It must be durable before a
 * vote or a message of the new term leaves the node, or a restarted node could vote twice
 * in one term. Written rarely (on term changes and votes), so synchronously.
 *
 * A directory without the file may have lost votes (it is new, or was emptied: nobody can
 * tell), so its node starts abstaining (spec ReplicaInit.abstain), and stays so across
 * restarts (`"abstain": true` in the file) until it has caught up.
 */
import path from 'node:path';
import { LogError } from '../../spec/errors.ts';
import { readFileOrNullSync, writeFileAtomicSync } from './fs-util.ts';

export const HARD_STATE_FILE = 'hardstate';

export interface HardState {
  term: number;
  votedFor: string | null;
  /** The node may have forgotten votes and entries: it neither votes nor stands yet. */
  abstain: boolean;
}

/** The saved hard state; term 0, no vote, abstaining when none was ever saved. */
export function loadHardState(dir: string): HardState {
  const buf = readFileOrNullSync(path.join(dir, HARD_STATE_FILE));
  if (!buf) return { term: 0, votedFor: null, abstain: true };
  let v: unknown;
  try {
    v = JSON.parse(buf.toString('utf8'));
  } catch (e) {
    // Never guess: starting over at term 0 could grant a second vote in a past term.
    throw new LogError('internal', `${HARD_STATE_FILE} in ${dir} is not valid JSON`, {}, { cause: e });
  }
  const s = v as Partial<HardState> | null;
  if (!s || !Number.isSafeInteger(s.term) || (s.term as number) < 0 || !(s.votedFor === null || typeof s.votedFor === 'string') || !(s.abstain === undefined || typeof s.abstain === 'boolean')) {
    throw new LogError('internal', `${HARD_STATE_FILE} in ${dir} is malformed`);
  }
  return { term: s.term as number, votedFor: s.votedFor, abstain: s.abstain === true };
}

/** Saves durably: temp file, fsync, rename, fsync of the directory. */
export function saveHardStateSync(dir: string, s: HardState): void {
  const v = { term: s.term, votedFor: s.votedFor, ...(s.abstain ? { abstain: true } : {}) };
  writeFileAtomicSync(path.join(dir, HARD_STATE_FILE), `${JSON.stringify(v)}\n`, true);
}
