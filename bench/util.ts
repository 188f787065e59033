/** Small helpers shared by the benchmarks. */

/** Progress and report lines go to stderr; stdout carries only the final JSON line. */
export function say(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** A benchmark's flag: `value` names what it takes (absent for a switch). */
export interface BenchOption {
  name: string;
  value?: string;
  help: string;
}

/** Usage lines of one benchmark's options. */
export function usage(options: readonly BenchOption[]): string {
  return options.map((o) => `    ${`${o.name}${o.value ? ` <${o.value}>` : ''}`.padEnd(24)} ${o.help}`).join('\n');
}

/** Refuses an argument that is not one of `options`, or one of them without its value. */
export function checkArgs(bench: string, argv: readonly string[], options: readonly BenchOption[]): void {
  for (let i = 0; i < argv.length; i++) {
    const o = options.find((x) => x.name === argv[i]);
    const fail = (why: string) => {
      process.stderr.write(`bench ${bench}: ${why}; see \`npm run bench -- --help\`\n`);
      process.exit(1);
    };
    if (!o) fail(`unknown argument "${argv[i]}"`);
    if (o?.value) {
      const v = argv[i + 1];
      if (v === undefined || v.startsWith('--')) fail(`${o.name} needs a value (<${o.value}>)`);
      if (o.value !== 'dir' && !/^\d+$/.test(v)) fail(`${o.name} takes a whole number, got "${v}"`);
      i++;
    }
  }
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
