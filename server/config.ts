/**
 * loglogd configuration: defaults, an optional JSON config file, then command-line flags.
 */
import { readFileSync } from 'node:fs';
import { LogError } from '../spec/errors.ts';
import { DEFAULT_CONFIG } from '../spec/replica.ts';
import { DEFAULT_SEGMENT_BYTES } from './storage/segment-log.ts';

export interface PeerAddress { id: string; url: string }

export interface NodeConfig {
  /** This node's id (default n1). */
  id: string;
  dataDir: string;
  host: string;
  port: number;
  /** Every cluster member with its base URL, this node included. Empty: a cluster of one. */
  peers: PeerAddress[];
  /** Shared secret peers authenticate each other with (HMAC-SHA256). */
  clusterSecret: string | null;
  segmentBytes: number;
  maxEntryBytes: number;
  bodyDeadlineMs: number;
  electionMs: number;
  heartbeatMs: number;
  uploadDeadlineMs: number;
  /** Retention: delete whole segments older than this (ms) or beyond this total size (bytes). */
  retention: { maxAgeMs: number | null; maxBytes: number | null };
  /** How often retention runs. */
  retentionCheckMs: number;
  /** Uploaded copies a follower holds waiting for their metadata (bytes). */
  uploadBufferBytes: number;
}

export const DEFAULT_NODE_CONFIG: NodeConfig = {
  id: 'n1',
  dataDir: './data',
  host: '127.0.0.1',
  port: 7400,
  peers: [],
  clusterSecret: null,
  segmentBytes: DEFAULT_SEGMENT_BYTES,
  maxEntryBytes: DEFAULT_CONFIG.maxEntryBytes,
  bodyDeadlineMs: DEFAULT_CONFIG.bodyDeadlineMs,
  electionMs: DEFAULT_CONFIG.electionMs,
  heartbeatMs: DEFAULT_CONFIG.heartbeatMs,
  uploadDeadlineMs: DEFAULT_CONFIG.uploadDeadlineMs,
  retention: { maxAgeMs: null, maxBytes: null },
  retentionCheckMs: 60_000,
  uploadBufferBytes: 256 * 1024 * 1024,
};

/** `host:port` → parts; throws a usage error that says what is expected. */
export function parseListen(s: string): { host: string; port: number } {
  const m = /^(.*):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new LogError('bad_request', `--listen expects HOST:PORT (e.g. 127.0.0.1:7400), got "${s}"`);
  return { host: m[1].replace(/^\[(.*)\]$/, '$1') || '127.0.0.1', port };
}

/** `n1=http://127.0.0.1:7401,n2=...` → peer list. */
export function parsePeers(s: string): PeerAddress[] {
  return s.split(',').filter(Boolean).map((part) => {
    const i = part.indexOf('=');
    if (i <= 0) throw new LogError('bad_request', `--peers expects ID=URL pairs separated by commas, got "${part}"`);
    return { id: part.slice(0, i), url: part.slice(i + 1).replace(/\/$/, '') };
  });
}

/** Byte sizes like 64MiB, 16mb, 4096. */
export function parseBytes(v: string | number): number {
  if (typeof v === 'number') return v;
  const m = /^(\d+)\s*(k|kb|kib|m|mb|mib|g|gb|gib)?$/i.exec(v.trim());
  if (!m) throw new LogError('bad_request', `expected a size like 64MiB, got "${v}"`);
  const unit = (m[2] ?? '').toLowerCase()[0];
  const mult = unit === 'k' ? 1024 : unit === 'm' ? 1024 ** 2 : unit === 'g' ? 1024 ** 3 : 1;
  return Number(m[1]) * mult;
}

/** Durations like 500ms, 10s, 7d. */
export function parseDuration(v: string | number): number {
  if (typeof v === 'number') return v;
  const m = /^(\d+)\s*(ms|s|m|h|d)?$/.exec(v.trim());
  if (!m) throw new LogError('bad_request', `expected a duration like 10s or 7d, got "${v}"`);
  const mult = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] ?? 'ms']!;
  return Number(m[1]) * mult;
}

/** Fields a config file may set (JSON), with sizes and durations as strings or numbers. */
export interface ConfigFile {
  id?: string;
  data?: string;
  listen?: string;
  peers?: string | Record<string, string>;
  clusterSecret?: string;
  segmentBytes?: string | number;
  maxEntryBytes?: string | number;
  bodyDeadline?: string | number;
  electionTimeout?: string | number;
  heartbeat?: string | number;
  uploadDeadline?: string | number;
  retention?: { maxAge?: string | number; maxBytes?: string | number };
}

/** A loglogd flag: the config file key it sets (none for --config and switches) and its help. */
export interface DaemonFlag {
  name: string;
  /** Placeholder of the value it takes; absent for a switch. */
  value?: string;
  /** Path of the config file setting it overrides (`retention.maxAge`). */
  key?: string;
  help: string;
}

/** Every loglogd flag, in help order (`--help` and `--version` come from cac). */
export const DAEMON_FLAGS: readonly DaemonFlag[] = [
  { name: 'data', value: 'dir', key: 'data', help: `Data directory (segment files, hard state) (default: ${DEFAULT_NODE_CONFIG.dataDir})` },
  { name: 'listen', value: 'host:port', key: 'listen', help: `Address to serve the HTTP/WebSocket API on (default: ${DEFAULT_NODE_CONFIG.host}:${DEFAULT_NODE_CONFIG.port})` },
  { name: 'config', value: 'file', help: 'JSON config file (flags override it)' },
  { name: 'id', value: 'id', key: 'id', help: 'This node\'s id in the cluster' },
  { name: 'peers', value: 'list', key: 'peers', help: 'Every member as ID=URL, comma separated, this node included' },
  { name: 'cluster-secret', value: 'secret', key: 'clusterSecret', help: 'Shared secret peers authenticate each other with (or LOGLOG_CLUSTER_SECRET)' },
  { name: 'segment-bytes', value: 'size', key: 'segmentBytes', help: 'Segment file size, e.g. 64MiB' },
  { name: 'max-entry-bytes', value: 'size', key: 'maxEntryBytes', help: 'Largest entry accepted, e.g. 16MiB' },
  { name: 'body-deadline', value: 'duration', key: 'bodyDeadline', help: 'Abort an append whose body is not complete after this, e.g. 10s' },
  { name: 'retention-max-age', value: 'duration', key: 'retention.maxAge', help: 'Delete whole segments older than this, e.g. 7d' },
  { name: 'retention-max-bytes', value: 'size', key: 'retention.maxBytes', help: 'Delete oldest segments beyond this total size, e.g. 10GiB' },
  { name: 'stop-on-stdin-close', help: 'Stop cleanly when stdin closes. For a supervisor that starts loglogd with a pipe on its stdin: the node never outlives it. Refused when stdin is not a pipe' },
];

const SWITCH_ALIASES: Record<string, string> = { '-h': 'help', '-v': 'version' };
const KNOWN_FLAGS = new Map<string, DaemonFlag>([
  ...DAEMON_FLAGS.map((f) => [f.name, f] as const),
  ...Object.values(SWITCH_ALIASES).map((name) => [name, { name, help: '' }] as const),
]);

/** Edit distance, for "did you mean". */
function distance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    row = next;
  }
  return row[b.length];
}

/** The candidate a typo most likely meant, if any is close enough to be worth suggesting. */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const c of candidates) {
    const d = distance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) { best = c; bestDistance = d; }
  }
  return best;
}

/**
 * loglogd's command line, read strictly: every flag known, given once, and a value-taking
 * flag always followed by its value. Returns each flag given (without its dashes) with its
 * value, or `true` for a switch. Our own pass rather than cac's (mri's): mri ignores unknown
 * flags, keeps the last of repeated ones, turns a missing value into `true` (which became a
 * data directory named "true"), and reads `-5` as a flag, so a negative size never reached
 * its validator. Here a value is the next argument unless that is a flag (`--x`, `-h`); a
 * value that starts like one can be given as `--data=-dir`.
 */
export function parseDaemonArgv(argv: readonly string[]): Map<string, string | true> {
  const given = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const m = /^--([^=]+)(=.*)?$/s.exec(arg);
    const name = SWITCH_ALIASES[arg] ?? m?.[1];
    if (name === undefined) throw new LogError('bad_request', `unexpected argument "${arg}": loglogd takes only flags (loglogd --help lists them)`);
    const flag = KNOWN_FLAGS.get(name);
    if (!flag) {
      const guess = closest(name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`), KNOWN_FLAGS.keys());
      throw new LogError('bad_request', `unknown flag --${name}${guess ? `; did you mean --${guess}?` : ' (loglogd --help lists them)'}`);
    }
    let value: string | true = true;
    const inline = m?.[2]?.slice(1);
    if (flag.value) {
      const next = argv[i + 1];
      value = inline ?? (next === undefined || /^-[-a-zA-Z]/.test(next) ? '' : argv[++i]);
      if (value === '') throw new LogError('bad_request', `--${name} needs a value (--${name} <${flag.value}>)`);
    } else if (inline !== undefined) {
      throw new LogError('bad_request', `--${name} takes no value`);
    }
    if (given.has(name)) throw new LogError('bad_request', `--${name} was given more than once; give it once`);
    given.set(name, value);
  }
  return given;
}

/** The settings `flags` (from parseDaemonArgv) give, as a config file would hold them. */
export function flagOptions(flags: ReadonlyMap<string, string | true>): ConfigFile {
  const o: Record<string, unknown> = {};
  for (const f of DAEMON_FLAGS) {
    const v = flags.get(f.name);
    if (f.key === undefined || typeof v !== 'string') continue;
    const [outer, inner] = f.key.split('.');
    if (inner === undefined) o[outer] = v;
    else o[outer] = { ...(o[outer] as object | undefined), [inner]: v };
  }
  return o as ConfigFile;
}

export function applyConfigFile(base: NodeConfig, path: string): NodeConfig {
  let raw: ConfigFile;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8')) as ConfigFile;
  } catch (e) {
    throw new LogError('bad_request', `cannot read config file ${path}: ${(e as Error).message}`);
  }
  return applyOptions(base, raw);
}

export function applyOptions(base: NodeConfig, o: ConfigFile): NodeConfig {
  const c: NodeConfig = { ...base, retention: { ...base.retention } };
  if (o.id !== undefined) c.id = o.id;
  if (o.data !== undefined) c.dataDir = o.data;
  if (o.listen !== undefined) Object.assign(c, parseListen(o.listen));
  if (o.peers !== undefined) {
    c.peers = typeof o.peers === 'string' ? parsePeers(o.peers) : Object.entries(o.peers).map(([id, url]) => ({ id, url }));
  }
  if (o.clusterSecret !== undefined) c.clusterSecret = o.clusterSecret;
  if (o.segmentBytes !== undefined) c.segmentBytes = parseBytes(o.segmentBytes);
  if (o.maxEntryBytes !== undefined) c.maxEntryBytes = parseBytes(o.maxEntryBytes);
  if (o.bodyDeadline !== undefined) c.bodyDeadlineMs = parseDuration(o.bodyDeadline);
  if (o.electionTimeout !== undefined) c.electionMs = parseDuration(o.electionTimeout);
  if (o.heartbeat !== undefined) c.heartbeatMs = parseDuration(o.heartbeat);
  if (o.uploadDeadline !== undefined) c.uploadDeadlineMs = parseDuration(o.uploadDeadline);
  if (o.retention?.maxAge !== undefined) c.retention.maxAgeMs = parseDuration(o.retention.maxAge);
  if (o.retention?.maxBytes !== undefined) c.retention.maxBytes = parseBytes(o.retention.maxBytes);
  if (c.segmentBytes < 4096) throw new LogError('bad_request', 'segmentBytes must be at least 4KiB');
  return c;
}
