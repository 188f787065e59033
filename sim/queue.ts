/**
 * The virtual clock and the one event queue of a simulation run: a binary min-heap keyed by
 * (time, sequence number). The sequence number breaks ties in scheduling order, so two
 * events at the same virtual millisecond always run in the same order.
 */
export type Action = () => void;

interface Ev {
  t: number;
  s: number;
  fn: Action;
}

export class EventQueue {
  /** Virtual time in milliseconds: the time of the event being run. */
  now = 0;
  /** Events run so far. */
  processed = 0;
  private heap: Ev[] = [];
  private seq = 0;

  get size(): number {
    return this.heap.length;
  }

  /** Runs `fn` at virtual time `t` (never earlier than now). */
  at(t: number, fn: Action): void {
    const ev: Ev = { t: t < this.now ? this.now : t, s: this.seq++, fn };
    const h = this.heap;
    let i = h.length;
    h.push(ev);
    while (i > 0) {
      const p = (i - 1) >> 1;
      const hp = h[p];
      if (hp.t < ev.t || (hp.t === ev.t && hp.s < ev.s)) break;
      h[i] = hp;
      i = p;
    }
    h[i] = ev;
  }

  /** Runs `fn` `delay` milliseconds from now. */
  after(delay: number, fn: Action): void {
    this.at(this.now + delay, fn);
  }

  /** Time of the next event, or Infinity. */
  peekTime(): number {
    return this.heap.length > 0 ? this.heap[0].t : Infinity;
  }

  /** Runs the next event; false when the queue is empty. */
  step(): boolean {
    const h = this.heap;
    if (h.length === 0) return false;
    const top = h[0];
    const last = h.pop()!;
    if (h.length > 0) {
      let i = 0;
      const n = h.length;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        let c = l;
        if (r < n && (h[r].t < h[l].t || (h[r].t === h[l].t && h[r].s < h[l].s))) c = r;
        const hc = h[c];
        if (last.t < hc.t || (last.t === hc.t && last.s < hc.s)) break;
        h[i] = hc;
        i = c;
      }
      h[i] = last;
    }
    this.now = top.t;
    this.processed++;
    top.fn();
    return true;
  }

  /** Runs events until virtual time `t` (inclusive) or `stop()` returns true. */
  runUntil(t: number, stop?: () => boolean): void {
    while (this.heap.length > 0 && this.heap[0].t <= t) {
      this.step();
      if (stop && stop()) return;
    }
    if (this.now < t) this.now = t;
  }
}
