/** Small helpers shared by the benchmarks. */

/** Progress and report lines go to stderr; stdout carries only the final JSON line. */
export function say(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** Value of `--name V` in argv, or the fallback. */
export function flag(argv: string[], name: string, fallback: string): string {
  const i = argv.indexOf(name);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : fallback;
}

/** Percentile of an ascending array (nearest rank). */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}
