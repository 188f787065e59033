/**
 * Raft's hard state: the current term and the vote cast in it. It must be durable before a
 * vote or a message of the new term leaves the node, or a restarted node could vote twice
 * in one term. Written rarely (on term changes and votes), so synchronously.
 */
import path from 'node:path';
import { LogError } from '../../spec/errors.ts';
import { readFileOrNullSync, writeFileAtomicSync } from './fs-util.ts';

export const HARD_STATE_FILE = 'hardstate';

export interface HardState {
  term: number;
  votedFor: string | null;
}

/** The saved hard state; term 0 and no vote when none was ever saved. */
export function loadHardState(dir: string): HardState {
  const buf = readFileOrNullSync(path.join(dir, HARD_STATE_FILE));
  if (!buf) return { term: 0, votedFor: null };
  let v: unknown;
  try {
    v = JSON.parse(buf.toString('utf8'));
  } catch (e) {
    // Never guess: starting over at term 0 could grant a second vote in a past term.
    throw new LogError('internal', `${HARD_STATE_FILE} in ${dir} is not valid JSON`, {}, { cause: e });
  }
  const s = v as Partial<HardState> | null;
  if (!s || !Number.isSafeInteger(s.term) || (s.term as number) < 0 || !(s.votedFor === null || typeof s.votedFor === 'string')) {
    throw new LogError('internal', `${HARD_STATE_FILE} in ${dir} is malformed`);
  }
  return { term: s.term as number, votedFor: s.votedFor };
}

/** Saves durably: temp file, fsync, rename, fsync of the directory. */
export function saveHardStateSync(dir: string, s: HardState): void {
  writeFileAtomicSync(path.join(dir, HARD_STATE_FILE), `${JSON.stringify({ term: s.term, votedFor: s.votedFor })}\n`, true);
}
