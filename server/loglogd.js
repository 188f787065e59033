#!/usr/bin/env -S node --max-semi-space-size=1
// Runs the TypeScript daemon from any working directory. The Node flag: see daemon-argv.ts.
import { register } from 'tsx/esm/api';
register();
await import('./bin.ts');
