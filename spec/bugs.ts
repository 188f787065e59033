/**
 * Planted bugs: deliberate protocol violations that prove the simulator's checkers can fail.
 * They are passed per replica (ReplicaOptions.bugs) or per recovery scan; only the simulator
 * and its tests ever set them. The server never does.
 */
export interface PlantedBugs {
  /** Acknowledge (leader durable end / follower ack) before fdatasync completed. */
  ackBeforeFsync: boolean;
  /** Leader commits its own end without waiting for a majority. */
  commitWithoutMajority: boolean;
  /** Count replicas for an entry of an older term (violates Raft §5.4.2). */
  commitOldTerm: boolean;
  /** Follower accepts entries without checking the previous entry's (offset, term). */
  skipPrevCheck: boolean;
  /** Grant a vote even if already voted for someone else this term. */
  voteTwice: boolean;
  /** Serve reads up to the written end instead of the commit end. */
  readPastCommit: boolean;
  /** Follower appends over a divergent suffix without truncating it first. */
  noSuffixTruncation: boolean;
  /** Recovery keeps a torn tail instead of truncating it. */
  noTornTailTruncation: boolean;
  /** A leader ignores that it may have forgotten upload ids (fatesFrom): it answers their fate `unknown` and places heads under them. */
  fateIgnoresForgotten: boolean;
  /** A leader places an append head whose upload id is already in its log (a stale duplicate). */
  placeDuplicateIds: boolean;
  /** A leader answers a fate `unknown` before it has committed in its term. */
  fateBeforeTermCommit: boolean;
  /** A leader answers a trim once it holds the point itself, without waiting for a majority. */
  trimAckAlone: boolean;
  /**
   * A follower starts its log over at the leader's start whenever a catch-up carries a start
   * above its *own* start (not above what it holds of the leader's log): it drops the leader's
   * frames it holds, acknowledged ones included.
   */
  resetHoldingLog: boolean;
  /**
   * A node whose hard state was lost (an emptied data directory) votes and stands at once,
   * instead of abstaining until it has heard every peer's term: it may vote a second time
   * in a term it voted in before the loss.
   */
  voteAfterWipe: boolean;
  /**
   * Such a node stops abstaining as soon as it knows every peer's term, without first
   * catching up to its leader's commit end: it votes with a log that lacks committed entries.
   */
  voteBeforeCatchUp: boolean;
}

export type BugName = keyof PlantedBugs;

export const BUG_NAMES: readonly BugName[] = [
  'ackBeforeFsync', 'commitWithoutMajority', 'commitOldTerm', 'skipPrevCheck',
  'voteTwice', 'readPastCommit', 'noSuffixTruncation', 'noTornTailTruncation', 'fateIgnoresForgotten',
  'placeDuplicateIds', 'fateBeforeTermCommit', 'trimAckAlone', 'resetHoldingLog', 'voteAfterWipe',
  'voteBeforeCatchUp',
];

export const NO_BUGS: Readonly<PlantedBugs> = Object.freeze({
  ackBeforeFsync: false, commitWithoutMajority: false, commitOldTerm: false, skipPrevCheck: false,
  voteTwice: false, readPastCommit: false, noSuffixTruncation: false, noTornTailTruncation: false,
  fateIgnoresForgotten: false, placeDuplicateIds: false, fateBeforeTermCommit: false,
  trimAckAlone: false, resetHoldingLog: false, voteAfterWipe: false, voteBeforeCatchUp: false,
});
