/**
 * In-memory state of one segment file. Plain data: SegmentLog owns the rules for opening,
 * closing and indexing, this only names the pieces.
 */
import type { FrameIndex } from './frame-index.ts';

export class Segment {
  /** Open file descriptor ('r+'), or null while closed (sealed segments are opened on demand). */
  fd: number | null = null;
  opening: Promise<number> | null = null;
  /** Operations using `fd` right now; it is only closed at zero. */
  refs = 0;
  /** Written since the last sync: the next sync must fdatasync it. */
  dirty = false;
  /** Trimmed or truncated away (its files are unlinked; pending operations drain). */
  deleted = false;
  /** Frame starts relative to `base`; null when not loaded (a sealed segment, loaded lazily). */
  index: FrameIndex | null = null;
  indexLoading: Promise<FrameIndex> | null = null;
  /** How many leading index entries the `.idx` file holds (and checkpoints may vouch for). */
  persisted = 0;
  /** Open `.idx` descriptor (only touched under SegmentLog's metadata lock). */
  idxFd: number | null = null;
  /** Set when a rebuild found invalid frames in this sealed segment from this offset on. */
  damagedAt: number | null = null;

  constructor(readonly base: number) {}
}
