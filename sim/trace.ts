/**
 * The run's trace: a running SHA-256 digest over every step of the simulation (for the
 * determinism check: same seed, same digest) and, when asked for, a readable timeline.
 *
 * The digest is fed numbers (event codes, node indexes, offsets, terms, times) through a
 * small buffer, so a run without a timeline pays almost nothing for it.
 */
import { createHash, type Hash } from 'node:crypto';

const CHUNK = 1024;

export class Trace {
  readonly lines: string[] = [];
  private hash: Hash = createHash('sha256');
  private buf = new Float64Array(CHUNK);
  private n = 0;
  events = 0;
  private final: string | null = null;

  /** @param on record a readable timeline; @param limit most lines kept (the rest are counted). */
  constructor(readonly on: boolean, private readonly limit = Infinity) {}

  /** Feeds numbers to the digest. */
  mix(a: number, b = 0, c = 0, d = 0): void {
    if (this.n + 4 > CHUNK) this.flush();
    const buf = this.buf;
    buf[this.n++] = a; buf[this.n++] = b; buf[this.n++] = c; buf[this.n++] = d;
    this.events++;
  }

  /** Feeds a string to the digest. */
  mixText(s: string): void {
    this.flush();
    this.hash.update(s);
  }

  /** Appends a timeline line (only when the timeline is on; callers check `on` first). */
  line(now: number, who: string, text: string): void {
    if (this.lines.length < this.limit) this.lines.push(`${now.toFixed(3).padStart(10)} ${who.padEnd(4)} ${text}`);
  }

  private flush(): void {
    if (this.n === 0) return;
    this.hash.update(new Uint8Array(this.buf.buffer, 0, this.n * 8));
    this.n = 0;
  }

  /** The digest of everything fed so far (ends feeding). */
  digest(): string {
    if (this.final === null) {
      this.flush();
      this.final = this.hash.digest('hex');
    }
    return this.final;
  }
}
