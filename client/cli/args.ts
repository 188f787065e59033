/**
 * Strict parsing of CLI option values.
 *
 * cac (through mri) converts numeric-looking values with `Number` before we see them:
 * `0012` becomes 12, a 20-digit offset loses digits, `1e3` becomes 1000. Offsets must be
 * exact, so the CLI reads their raw text from argv ({@link rawOption}) and parses it here.
 */
import { splitServers } from '../log-client.ts';

/** A mistake in how the CLI was invoked (exit code 1). */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/**
 * Parses a byte offset: decimal digits only (leading zeros allowed), at most
 * `Number.MAX_SAFE_INTEGER`. `name` is the option name for the error message.
 */
export function parseOffset(raw: string, name = 'offset'): number {
  if (!/^[0-9]+$/.test(raw)) {
    throw new UsageError(`--${name} must be a byte offset written in decimal digits (e.g. --${name} 0), got "${raw}"`);
  }
  const n = Number(raw);
  if (!Number.isSafeInteger(n)) {
    throw new UsageError(`--${name} ${raw} is too large: offsets go up to ${Number.MAX_SAFE_INTEGER}`);
  }
  return n;
}

const SIZE_UNITS: Record<string, number> = {
  '': 1, b: 1,
  k: 1024, kb: 1000, kib: 1024,
  m: 1024 ** 2, mb: 1000 ** 2, mib: 1024 ** 2,
  g: 1024 ** 3, gb: 1000 ** 3, gib: 1024 ** 3,
};

/** Parses a byte size: `65536`, `64k`, `64KiB`, `1MiB`, `1MB` (k/m/g alone are binary). */
export function parseSize(raw: string, name: string): number {
  const m = /^([0-9]+)\s*([a-z]*)$/i.exec(raw.trim());
  const unit = m ? SIZE_UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new UsageError(`--${name} must be a size in bytes such as 65536, 64KiB or 1MiB, got "${raw}"`);
  const n = Number(m[1]) * unit;
  if (!Number.isSafeInteger(n)) throw new UsageError(`--${name} ${raw} is too large`);
  return n;
}

/** Parses a whole number in [min, max]. */
export function parseInteger(raw: string, name: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (!/^[0-9]+$/.test(raw)) throw new UsageError(`--${name} must be a whole number, got "${raw}"`);
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`--${name} must be between ${min} and ${max}, got ${raw}`);
  }
  return n;
}

/** Checks that `raw` is one of `choices`. */
export function parseChoice<T extends string>(raw: string, name: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(raw)) throw new UsageError(`--${name} must be one of ${choices.join(', ')}, got "${raw}"`);
  return raw as T;
}

/** A negative number: the value of the flag before it (to be refused by its check), not a flag. */
const NEGATIVE = /^-\.?\d/;

/**
 * An argument that starts with `-` but is the value of the flag before it, not a flag: a
 * negative number (refused by that flag's check), or `-` alone (stdin, as in `--file -`).
 */
function dashValue(arg: string): boolean {
  return arg === '-' || NEGATIVE.test(arg);
}

/**
 * `--flag -5` as `--flag=-5` for every flag in `valueFlags`: cac (mri) would take `-5` for
 * a flag of its own and report "Unknown option `-5`" instead of what is wrong with the value
 * (and `--file -` for a flag without its value).
 */
export function joinNegativeValues(argv: readonly string[], valueFlags: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') return [...out, ...argv.slice(i)];
    const next = argv[i + 1];
    if (a.startsWith('--') && valueFlags.has(a.slice(2)) && next !== undefined && dashValue(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else {
      out.push(a);
    }
  }
  return out;
}

/**
 * The raw text of option `--name` in `argv` (the arguments after the program name, or the
 * whole process argv: anything before the first option is skipped), read the way cac's parser
 * reads it after {@link joinNegativeValues}: `--name=value`, or `--name value` when the next
 * argument is not a flag (a negative number, or `-` alone, is a value). Arguments after `--` are not
 * options. Returns undefined when the option is absent.
 *
 * @throws UsageError if the option has no value or is given more than once.
 */
export function rawOption(argv: readonly string[], name: string): string | undefined {
  let found: string | undefined;
  let count = 0;
  const flag = `--${name}`;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') break;
    let value: string | undefined;
    if (a === flag) {
      const next = argv[i + 1];
      if (next === undefined || (next.startsWith('-') && !dashValue(next))) throw new UsageError(`${flag} needs a value`);
      value = next;
      i++;
    } else if (a.startsWith(`${flag}=`)) {
      value = a.slice(flag.length + 1);
      if (value === '') throw new UsageError(`${flag} needs a value`);
    } else {
      continue;
    }
    count++;
    found = value;
  }
  if (count > 1) throw new UsageError(`${flag} was given ${count} times; give it once`);
  return found;
}

/** {@link rawOption} parsed as an offset; undefined when absent. */
export function offsetOption(argv: readonly string[], name: string): number | undefined {
  const raw = rawOption(argv, name);
  return raw === undefined ? undefined : parseOffset(raw, name);
}

/** Splits `--server a,b` / LOGLOG_SERVERS into a list. */
export function parseServerList(raw: string): string[] {
  const list = splitServers(raw);
  if (list.length === 0) throw new UsageError('--server needs at least one URL, e.g. --server http://127.0.0.1:7400');
  return list;
}
