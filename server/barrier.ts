/**
 * Orders file operations the replica emitted in sequence: ordinary operations (writes,
 * syncs) run concurrently with each other, an exclusive one (truncate) waits for all
 * earlier operations and holds back all later ones. Without it a write issued before a
 * truncation could land after it and leave stale bytes past the new end.
 */
export class SerialBarrier {
  private gate: Promise<void> = Promise.resolve();
  private gateOpen = true;
  private inflight = new Set<Promise<unknown>>();

  /** Runs `fn` once every earlier exclusive operation has finished. */
  after<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.gateOpen ? fn() : this.gate.then(fn);
    return this.track(p);
  }

  /** Runs `fn` after everything issued before it; later operations wait for it. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const before = Promise.allSettled([this.gate, ...this.inflight]);
    const p = before.then(fn);
    const gate = p.then(() => undefined, () => undefined);
    this.gate = gate;
    this.gateOpen = false;
    void gate.then(() => { if (this.gate === gate) this.gateOpen = true; });
    return this.track(p);
  }

  /** Resolves when everything issued so far has settled. */
  async idle(): Promise<void> {
    while (this.inflight.size > 0 || !this.gateOpen) await Promise.allSettled([this.gate, ...this.inflight]);
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.inflight.add(p);
    const drop = () => { this.inflight.delete(p); };
    p.then(drop, drop);
    return p;
  }
}
