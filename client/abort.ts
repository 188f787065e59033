/**
 * Listening to a caller's AbortSignal without a listener per call.
 *
 * One signal often stops many calls at once (a shutdown signal shared by every append and
 * read in flight). Node warns (MaxListenersExceededWarning) once an AbortSignal has more
 * than 10 'abort' listeners, and every request, retry sleep and wait used to add its own
 * to the caller's signal. Here each signal gets one listener, which tells every call
 * watching it; a request gets a child signal of its own to hand to undici.
 */

const watchers = new WeakMap<AbortSignal, Set<() => void>>();

/**
 * Calls `fn` once when `signal` aborts (never, if it already has: check `aborted` first).
 * Returns what stops watching; call it when the call is over.
 */
export function onAbort(signal: AbortSignal, fn: () => void): () => void {
  let set = watchers.get(signal);
  if (!set) {
    const all = new Set<() => void>();
    watchers.set(signal, all);
    signal.addEventListener('abort', () => {
      watchers.delete(signal);
      for (const f of all) f();
    }, { once: true });
    set = all;
  }
  const once = () => {
    set.delete(once);
    fn();
  };
  set.add(once);
  return () => {
    set.delete(once);
  };
}

/**
 * A signal that aborts (with the same reason) when `parent` does, for one request: what
 * listens to it (undici, a timer) listens to it alone. `release` when the request is over.
 */
export function childSignal(parent: AbortSignal | undefined): { signal: AbortSignal | undefined; release: () => void } {
  if (!parent) return { signal: undefined, release: () => {} };
  const ctl = new AbortController();
  if (parent.aborted) {
    ctl.abort(parent.reason);
    return { signal: ctl.signal, release: () => {} };
  }
  return { signal: ctl.signal, release: onAbort(parent, () => ctl.abort(parent.reason)) };
}
