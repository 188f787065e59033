#!/usr/bin/env node
// The `loglog` bin: loads the TypeScript CLI through tsx, so it runs from any directory.
import { register } from 'tsx/esm/api';

register();
await import('./main.ts');
