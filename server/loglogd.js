#!/bin/sh
":" //; exec /usr/bin/env node --max-semi-space-size=1 --initial-old-space-size=64 "$0" "$@"
// Runs the TypeScript daemon from any working directory. The first two lines are for the
// shell, which replaces itself with node and the flag explained in daemon-argv.ts (a
// shebang cannot carry a flag portably: `env -S` is missing from BusyBox); for node the
// second line is a string and a comment.
import { register } from 'tsx/esm/api';
register();
await import('./bin.ts');
