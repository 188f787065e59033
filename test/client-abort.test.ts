import test from 'ava';
import { getEventListeners } from 'node:events';
import { childSignal, onAbort } from '../client/abort.ts';

test('onAbort: one listener on the signal however many watch it; each watcher called once, unless it stopped watching', (t) => {
  const ctl = new AbortController();
  const calls: number[] = [];
  const stops = Array.from({ length: 50 }, (_, i) => onAbort(ctl.signal, () => calls.push(i)));
  t.is(getEventListeners(ctl.signal, 'abort').length, 1);
  stops[3]();
  ctl.abort();
  ctl.abort();
  t.is(calls.length, 49);
  t.false(calls.includes(3));
  t.is(getEventListeners(ctl.signal, 'abort').length, 0);
});

test('childSignal: aborts with its parent, with the same reason; released, it no longer does; none without a parent', (t) => {
  const ctl = new AbortController();
  const a = childSignal(ctl.signal);
  const b = childSignal(ctl.signal);
  b.release();
  ctl.abort(new Error('stop'));
  t.true(a.signal!.aborted);
  t.is((a.signal!.reason as Error).message, 'stop');
  t.false(b.signal!.aborted);
  const late = childSignal(ctl.signal);
  t.true(late.signal!.aborted, 'a child of an aborted parent starts aborted');
  t.is(childSignal(undefined).signal, undefined);
});
