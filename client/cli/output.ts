/**
 * CLI output: a buffered stdout writer that honours backpressure and turns a closed pipe
 * (EPIPE, e.g. `loglog read | head`) into a quiet stop, record formatting, and a progress line
 * on stderr (only when stderr is a terminal).
 */
import { isUtf8 } from 'node:buffer';
import type { RecordEntry } from '../types.ts';

/** Thrown by {@link Output} once the reader of stdout went away; the CLI exits quietly. */
export class BrokenPipe extends Error {
  constructor() {
    super('stdout closed');
    this.name = 'BrokenPipe';
  }
}

const FLUSH_AT = 64 * 1024;

/** A writable with the bits of `process.stdout` we use. */
export type OutStream = NodeJS.WritableStream & { isTTY?: boolean; columns?: number };

/** Buffered, backpressure-aware writer over stdout. */
export class Output {
  private parts: (Buffer | string)[] = [];
  private size = 0;
  private broken = false;
  private drainWaiter: (() => void) | null = null;

  constructor(private readonly stream: OutStream) {
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE' || e.code === 'ERR_STREAM_DESTROYED') {
        this.broken = true;
        this.drainWaiter?.();
      } else {
        throw e;
      }
    });
  }

  /** Queues `chunk`; writes out once 64 KiB are queued. */
  async write(chunk: Buffer | string): Promise<void> {
    if (this.broken) throw new BrokenPipe();
    this.parts.push(chunk);
    this.size += chunk.length;
    if (this.size >= FLUSH_AT) await this.flush();
  }

  /** Writes out everything queued, waiting for `drain` if the stream is full. */
  async flush(): Promise<void> {
    if (this.broken) throw new BrokenPipe();
    if (this.parts.length === 0) return;
    const parts = this.parts;
    this.parts = [];
    this.size = 0;
    const data = parts.length === 1 ? parts[0] : Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : p)));
    const ok = this.stream.write(data);
    if (!ok && !this.broken) {
      await new Promise<void>((resolve) => {
        this.drainWaiter = resolve;
        this.stream.once('drain', resolve);
      });
      this.drainWaiter = null;
    }
    if (this.broken) throw new BrokenPipe();
  }
}

/** Output formats of `read` and `tail`. */
export type Format = 'lines' | 'json' | 'raw';
export const FORMATS: readonly Format[] = ['lines', 'json', 'raw'];

const NL = Buffer.from('\n');

/** One record as a line (`lines`) or a JSON object line (`json`). */
export function formatRecord(r: RecordEntry, format: 'lines' | 'json'): Buffer | string {
  if (format === 'lines') return Buffer.concat([r.value, NL]);
  const o: Record<string, unknown> = { offset: r.offset, index: r.index };
  if (isUtf8(r.value)) o.value = r.value.toString('utf8');
  else {
    o.value = r.value.toString('base64');
    o.encoding = 'base64';
  }
  return `${JSON.stringify(o)}\n`;
}

function mib(n: number): string {
  return n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${Math.round(n)} B`;
}

/** Human-readable byte count. */
export const formatBytes = mib;

/** A self-updating progress line on stderr; does nothing unless stderr is a terminal. */
export class Progress {
  private records = 0;
  private bytes = 0;
  private readonly started = Date.now();
  private readonly timer: NodeJS.Timeout | null;

  /** Shown while `show` (by default, when `stream` is a terminal). */
  constructor(private readonly stream: OutStream, private readonly verb: string, show = stream.isTTY === true) {
    this.timer = show ? setInterval(() => this.render(), 250) : null;
    this.timer?.unref();
  }

  add(records: number, bytes: number): void {
    this.records += records;
    this.bytes += bytes;
  }

  private render(): void {
    const s = Math.max((Date.now() - this.started) / 1000, 0.001);
    this.stream.write(
      `\r\x1b[K${this.verb} ${this.records} record${this.records === 1 ? '' : 's'}, ${mib(this.bytes)} ` +
        `(${Math.round(this.records / s)} records/s, ${mib(this.bytes / s)}/s)`,
    );
  }

  /** Clears the progress line. */
  done(): void {
    if (!this.timer) return;
    clearInterval(this.timer);
    this.stream.write('\r\x1b[K');
  }
}
