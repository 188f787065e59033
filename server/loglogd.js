#!/usr/bin/env node
// Runs the TypeScript daemon from any working directory.
import { register } from 'tsx/esm/api';
register();
await import('./bin.ts');
