/**
 * loglogd configuration: defaults, an optional JSON config file, then command-line flags.
 */
import { readFileSync } from 'node:fs';
import { LogError } from '../spec/errors.ts';
import { FRAME_OVERHEAD } from '../spec/frame.ts';
import { DEFAULT_CONFIG } from '../spec/replica.ts';
import { DEFAULT_SEGMENT_BYTES } from './storage/segment-log.ts';
import { closest, isObject } from '../spec/input-checks.ts';

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
  /**
   * The cluster's name (default `loglog`): stamped in the data directory at its first
   * start, and checked on every peer connection. Give each cluster its own, so that a data
   * directory or a peer of another one is refused.
   */
  clusterName: string;
  segmentBytes: number;
  maxEntryBytes: number;
  bodyDeadlineMs: number;
  electionMs: number;
  heartbeatMs: number;
  uploadDeadlineMs: number;
  /** An `acks: 'all'` append committed this long but not durable on every replica is answered `unconfirmed`. */
  allAckTimeoutMs: number;
  /** Retention: delete whole segments older than this (ms) or beyond this total size (bytes). */
  retention: { maxAgeMs: number | null; maxBytes: number | null };
  /** How often retention runs. */
  retentionCheckMs: number;
  /** Uploaded copies a follower holds waiting for their metadata (bytes). */
  uploadBufferBytes: number;
  /** Time between the end of one scrub pass and the start of the next; 0: no scrubbing. */
  scrubIntervalMs: number;
  /** Bytes a scrub pass reads per second at most. */
  scrubBytesPerSec: number;
  /**
   * The operator says this is a new cluster's first start: a node without a saved vote
   * votes once a majority (not every member) answered term 0 (spec ReplicaInit.newCluster).
   */
  newCluster: boolean;
}

export const DEFAULT_NODE_CONFIG: NodeConfig = {
  id: 'n1',
  dataDir: './data',
  host: '127.0.0.1',
  port: 7400,
  peers: [],
  clusterSecret: null,
  clusterName: 'loglog',
  segmentBytes: DEFAULT_SEGMENT_BYTES,
  maxEntryBytes: DEFAULT_CONFIG.maxEntryBytes,
  bodyDeadlineMs: DEFAULT_CONFIG.bodyDeadlineMs,
  electionMs: DEFAULT_CONFIG.electionMs,
  heartbeatMs: DEFAULT_CONFIG.heartbeatMs,
  uploadDeadlineMs: DEFAULT_CONFIG.uploadDeadlineMs,
  allAckTimeoutMs: DEFAULT_CONFIG.allAckTimeoutMs,
  retention: { maxAgeMs: null, maxBytes: null },
  retentionCheckMs: 60_000,
  uploadBufferBytes: 256 * 1024 * 1024,
  // As Ceph's deep scrub: weekly, throttled so that serving barely notices.
  scrubIntervalMs: 7 * 86_400_000,
  scrubBytesPerSec: 32 * 1024 * 1024,
  newCluster: false,
};

/** `host:port` → parts. `name` is what set it (--listen, or a config file key), for the message. */
export function parseListen(s: string, name = '--listen'): { host: string; port: number } {
  const usage = (why = '') => new LogError('bad_request', `${name} takes HOST:PORT, e.g. 127.0.0.1:7400${why}; got "${s}"`);
  // A URL would get as far as a DNS lookup of "http://host" (ENOTFOUND), which hides the mistake.
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(s)) throw usage(', not a URL');
  const m = /^([^/\s]*):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw usage();
  const host = m[1].replace(/^\[(.*)\]$/, '$1');
  // `:7400` is every interface to Go's and NATS's users, and was this machine only here. The
  // client API has no authentication (anyone who reaches it can append and trim), so the
  // choice is the user's to write out, not a guess either way.
  if (host === '') {
    throw new LogError('bad_request', `${name} "${s}" names no host: write 127.0.0.1:${m[2]} for this machine only, or 0.0.0.0:${m[2]} for every interface (anyone who reaches the API can append and trim: it has no authentication)`);
  }
  return { host, port };
}

/** `n1=http://127.0.0.1:7401,n2=...` → peer list. */
export function parsePeers(s: string, name = '--peers'): PeerAddress[] {
  return s.split(',').map((part) => part.trim()).filter(Boolean).map((part) => {
    const i = part.indexOf('=');
    if (i <= 0) throw new LogError('bad_request', `${name} expects ID=URL pairs separated by commas, got "${part}"`);
    const id = identifier(part.slice(0, i), `the id of ${part} in ${name}`);
    return { id, url: peerUrl(part.slice(i + 1), `${name} ${id}`) };
  });
}

/** A peer's base URL, checked: `name` says where it was given. */
function peerUrl(raw: string, name: string): string {
  let u: URL | null = null;
  try { u = new URL(raw); } catch { /* reported below */ }
  if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:')) throw new LogError('bad_request', `${name}: "${raw}" is not a URL like http://host:7401`);
  return raw.replace(/\/$/, '');
}

/**
 * What a cluster member needs, checked before anything is created: itself among the peers,
 * each id once, and the shared secret.
 */
function checkCluster(c: NodeConfig): NodeConfig {
  // A follower must hear a couple of heartbeats within its election timeout, or it keeps
  // starting elections against a healthy leader (a 2 s heartbeat with a 300 ms timeout went
  // through 20 terms in 10 s).
  if (c.heartbeatMs * 2 > c.electionMs) {
    throw new LogError('bad_request', `heartbeat (${c.heartbeatMs}ms) must be at most half of electionTimeout (${c.electionMs}ms), or followers keep electing new leaders; the defaults are 50ms and 300ms`);
  }
  if (c.peers.length === 0) return c;
  const seen = new Set<string>();
  for (const p of c.peers) {
    if (seen.has(p.id)) throw new LogError('bad_request', `--peers names ${p.id} twice: each member once, this node included`);
    seen.add(p.id);
  }
  if (!seen.has(c.id)) throw new LogError('bad_request', `--peers must list this node (${c.id}) too, e.g. ${c.id}=http://${c.host}:${c.port}`);
  if (!c.clusterSecret) throw new LogError('bad_request', 'a cluster needs a shared secret: pass --cluster-secret or set LOGLOG_CLUSTER_SECRET on every node');
  return c;
}

/**
 * What is accepted but likely wrong, a line each, for loglogd to print at start: this node's
 * own URL in the peer list at another port than it listens on (peers dial that URL, and
 * clients are told it). Not refused: a proxy or NAT may forward that port here. Only a
 * fixed --listen port is compared (port 0 is picked at start).
 */
export function configWarnings(c: NodeConfig): string[] {
  const self = c.peers.find((p) => p.id === c.id);
  if (!self || c.port === 0) return [];
  const u = new URL(self.url);
  const port = u.port !== '' ? Number(u.port) : u.protocol === 'https:' ? 443 : 80;
  if (port === c.port) return [];
  return [`the peer list names this node (${c.id}) ${self.url}, port ${port}, but it listens on port ${c.port}: peers and clients will not reach it unless a proxy or NAT forwards port ${port} here; otherwise fix --peers or --listen`];
}

const KIB = 1024;
const MIB = 1024 ** 2;
const GIB = 1024 ** 3;
const SIZE_UNITS: Record<string, number> = { '': 1, k: KIB, kb: KIB, kib: KIB, m: MIB, mb: MIB, mib: MIB, g: GIB, gb: GIB, gib: GIB };
const MAX_ENTRY_BYTES = 0xffff_ffff - FRAME_OVERHEAD;
// No bare numbers in text: "--retention-max-age 7" read as 7 ms deleted nearly the whole log.
const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A whole amount with an optional unit (a JSON number is in the base unit); `what` shows the form. */
function parseAmount(v: unknown, name: string, units: Record<string, number>, what: string): number {
  const m = typeof v === 'string' ? /^(\d+)\s*([a-z]*)$/i.exec(v.trim()) : null;
  const unit = m ? units[m[2].toLowerCase()] : undefined;
  const n = typeof v === 'number' ? v : m && unit !== undefined ? Number(m[1]) * unit : NaN;
  if (!Number.isSafeInteger(n) || n < 0) throw new LogError('bad_request', `${name} takes ${what}, got ${JSON.stringify(v)}`);
  return n;
}

/** Byte sizes like 64MiB, 16mb, 4096 (k, m and g are all binary). */
export function parseBytes(v: unknown, name: string): number {
  return parseAmount(v, name, SIZE_UNITS, 'a size like 64MiB');
}

/** Durations like 500ms, 10s, 7d: text needs its unit; a JSON number is milliseconds. */
export function parseDuration(v: unknown, name: string): number {
  return parseAmount(v, name, DURATION_UNITS, 'a duration with its unit (ms, s, m, h or d), like 500ms, 10s or 7d (in a config file, also a whole number of milliseconds)');
}

/** `n` (parsed from `raw`) when within [min, max]; `range` says so in the units people write. */
function within(n: number, name: string, raw: unknown, min: number, max: number, range: string): number {
  if (n < min || n > max) throw new LogError('bad_request', `${name} must be ${range}, got ${JSON.stringify(raw)}`);
  return n;
}

/** A duration of at least 1 ms: a deadline or a period of 0 would fire on every tick. */
function positiveDuration(v: unknown, name: string): number {
  return within(parseDuration(v, name), name, v, 1, Number.MAX_SAFE_INTEGER, 'at least 1ms');
}

function text(v: unknown, name: string): string {
  if (typeof v !== 'string' || v === '') throw new LogError('bad_request', `${name} must be a non-empty string, got ${JSON.stringify(v)}`);
  return v;
}

/**
 * A node id or cluster name: 1-64 characters that need no quoting anywhere they go (HTTP
 * headers, URLs, log lines, the identity file). An id with a space or a slash used to be
 * taken, and broke the peer requests that carry it.
 */
function identifier(v: unknown, name: string): string {
  const s = text(v, name);
  if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(s)) throw new LogError('bad_request', `${name} takes 1-64 characters of A-Z a-z 0-9 _ . : -, got ${JSON.stringify(s)}`);
  return s;
}

function peerObject(v: unknown, name: string): PeerAddress[] {
  if (!isObject(v)) throw new LogError('bad_request', `${name} must be "ID=URL,..." or an object of ID: URL, got ${JSON.stringify(v)}`);
  return Object.entries(v).map(([id, url]) => ({ id: identifier(id, `the peer id ${JSON.stringify(id)} in ${name}`), url: peerUrl(text(url, `the URL of peer ${id} in ${name}`), `${name} ${id}`) }));
}

/** Fields a config file may set (JSON), with sizes and durations as strings or numbers. */
export interface ConfigFile {
  id?: string;
  data?: string;
  listen?: string;
  peers?: string | Record<string, string>;
  clusterSecret?: string;
  clusterName?: string;
  segmentBytes?: string | number;
  maxEntryBytes?: string | number;
  bodyDeadline?: string | number;
  electionTimeout?: string | number;
  heartbeat?: string | number;
  uploadDeadline?: string | number;
  allAckTimeout?: string | number;
  retention?: { maxAge?: string | number; maxBytes?: string | number };
  scrubInterval?: string | number;
  scrubRate?: string | number;
  newCluster?: boolean;
}

/**
 * How each setting (a config file key; nested ones as `retention.maxAge`) lands in a
 * NodeConfig. `name` is what gave it (a flag, or the key and its file), for messages.
 */
type SettingKey = Exclude<keyof ConfigFile, 'retention'> | `retention.${keyof NonNullable<ConfigFile['retention']>}`;
const SETTINGS: Record<SettingKey, (c: NodeConfig, v: unknown, name: string) => void> = {
  id: (c, v, name) => { c.id = identifier(v, name); },
  data: (c, v, name) => { c.dataDir = text(v, name); },
  listen: (c, v, name) => { Object.assign(c, parseListen(text(v, name), name)); },
  peers: (c, v, name) => { c.peers = typeof v === 'string' ? parsePeers(v, name) : peerObject(v, name); },
  clusterSecret: (c, v, name) => { c.clusterSecret = text(v, name); },
  clusterName: (c, v, name) => { c.clusterName = identifier(v, name); },
  // The storage cannot go past a u32 of frame starts within a segment.
  segmentBytes: (c, v, name) => { c.segmentBytes = within(parseBytes(v, name), name, v, 4 * KIB, 0xffff_ffff, 'from 4KiB to 4294967295 bytes (4GiB - 1)'); },
  // A frame stores its payload length as a u32, and recovery reads a segment (one such frame
  // at most, when it is larger than segmentBytes) into one Buffer: the whole frame must fit
  // in a u32. A frame never straddles segments, so segmentBytes sets no limit here.
  maxEntryBytes: (c, v, name) => { c.maxEntryBytes = within(parseBytes(v, name), name, v, 1, MAX_ENTRY_BYTES, `from 1 to ${MAX_ENTRY_BYTES} bytes (a frame, ${FRAME_OVERHEAD} bytes more, must fit in 4GiB - 1)`); },
  bodyDeadline: (c, v, name) => { c.bodyDeadlineMs = positiveDuration(v, name); },
  electionTimeout: (c, v, name) => { c.electionMs = positiveDuration(v, name); },
  heartbeat: (c, v, name) => { c.heartbeatMs = positiveDuration(v, name); },
  uploadDeadline: (c, v, name) => { c.uploadDeadlineMs = parseDuration(v, name); },
  allAckTimeout: (c, v, name) => { c.allAckTimeoutMs = positiveDuration(v, name); },
  // 0 would delete every sealed segment at once: surely not what was meant.
  'retention.maxAge': (c, v, name) => { c.retention.maxAgeMs = positiveDuration(v, name); },
  'retention.maxBytes': (c, v, name) => { c.retention.maxBytes = within(parseBytes(v, name), name, v, 1, Number.MAX_SAFE_INTEGER, 'at least 1 byte'); },
  // "0" carries no unit, but means the same in every one: off.
  scrubInterval: (c, v, name) => { c.scrubIntervalMs = v === '0' || v === 'off' ? 0 : parseDuration(v, name); },
  scrubRate: (c, v, name) => { c.scrubBytesPerSec = within(parseBytes(v, name), name, v, 1, Number.MAX_SAFE_INTEGER, 'at least 1 byte (per second), like 32MiB'); },
  newCluster: (c, v, name) => {
    if (typeof v !== 'boolean') throw new LogError('bad_request', `${name} must be true or false, got ${JSON.stringify(v)}`);
    c.newCluster = v;
  },
};

/** One setting to apply: its key in SETTINGS, its value and what gave it. */
interface Setting { key: SettingKey; value: unknown; name: string }

function applySettings(base: NodeConfig, settings: readonly Setting[]): NodeConfig {
  const c: NodeConfig = { ...base, retention: { ...base.retention } };
  for (const s of settings) SETTINGS[s.key](c, s.value, s.name);
  return c;
}

function isSettingKey(key: string): key is SettingKey {
  return Object.hasOwn(SETTINGS, key);
}

/** The settings in a JSON config file; any key loglogd does not know is an error. */
function configFileSettings(path: string): Setting[] {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new LogError('bad_request', `cannot read config file ${path}: ${(e as Error).message}`);
  }
  if (!isObject(raw)) throw new LogError('bad_request', `config file ${path} must hold a JSON object, like {"segmentBytes": "64MiB"}`);
  const entries = Object.entries(raw).flatMap(([k, v]) => {
    if (k !== 'retention') return [[k, v] as const];
    if (!isObject(v)) throw new LogError('bad_request', `retention in config file ${path} must be an object like {"maxAge": "7d"}, got ${JSON.stringify(v)}`);
    return Object.entries(v).map(([inner, iv]) => [`${k}.${inner}`, iv] as const);
  });
  return entries.map(([key, value]) => {
    if (!isSettingKey(key)) {
      const guess = closest(key, Object.keys(SETTINGS));
      throw new LogError('bad_request', `config file ${path}: unknown key "${key}"; ${guess ? `did you mean "${guess}"?` : `the keys are ${Object.keys(SETTINGS).join(', ')}`}`);
    }
    return { key, value, name: `${key} in config file ${path}` };
  });
}

/** A loglogd flag: the config file key it sets (none for --config and switches) and its help. */
export interface DaemonFlag {
  name: string;
  /** Placeholder of the value it takes; absent for a switch. */
  value?: string;
  /** Path of the config file setting it overrides (`retention.maxAge`). */
  key?: SettingKey;
  help: string;
}

/** Every loglogd flag, in help order (`--help` and `--version` come from cac). */
export const DAEMON_FLAGS: readonly DaemonFlag[] = [
  { name: 'data', value: 'dir', key: 'data', help: `Data directory (segment files, hard state) (default: ${DEFAULT_NODE_CONFIG.dataDir})` },
  { name: 'listen', value: 'host:port', key: 'listen', help: `Address to serve the HTTP/WebSocket API on (default: ${DEFAULT_NODE_CONFIG.host}:${DEFAULT_NODE_CONFIG.port})` },
  { name: 'config', value: 'file', help: 'JSON config file (flags override it)' },
  { name: 'id', value: 'id', key: 'id', help: 'This node\'s id in the cluster: 1-64 characters of A-Z a-z 0-9 _ . : -' },
  { name: 'peers', value: 'list', key: 'peers', help: 'Every member as ID=URL, comma separated, this node included' },
  { name: 'cluster-secret', value: 'secret', key: 'clusterSecret', help: 'Shared secret peers authenticate each other with (or LOGLOG_CLUSTER_SECRET)' },
  { name: 'cluster-name', value: 'name', key: 'clusterName', help: `The cluster's name, stamped in the data directory at its first start and checked by peers: a directory or peer of another cluster is refused (default: ${DEFAULT_NODE_CONFIG.clusterName})` },
  { name: 'segment-bytes', value: 'size', key: 'segmentBytes', help: 'Segment file size, e.g. 64MiB' },
  { name: 'max-entry-bytes', value: 'size', key: 'maxEntryBytes', help: 'Largest entry accepted, e.g. 16MiB' },
  { name: 'body-deadline', value: 'duration', key: 'bodyDeadline', help: 'Abort an append whose body is not complete after this, e.g. 10s' },
  { name: 'all-ack-timeout', value: 'duration', key: 'allAckTimeout', help: 'Answer an acks=all append "unconfirmed" (it is in the log) when it stays committed this long without every replica confirming it, e.g. 5s (default 5s)' },
  { name: 'retention-max-age', value: 'duration', key: 'retention.maxAge', help: 'Delete whole segments older than this, e.g. 7d' },
  { name: 'retention-max-bytes', value: 'size', key: 'retention.maxBytes', help: 'Delete oldest segments beyond this total size, e.g. 10GiB' },
  { name: 'scrub-interval', value: 'duration', key: 'scrubInterval', help: 'Check every committed frame on disk this often, rewriting a rotten one from another replica, e.g. 1d; 0 or off turns it off (default 7d)' },
  { name: 'scrub-rate', value: 'size', key: 'scrubRate', help: 'Bytes per second a scrub reads at most (default 32MiB)' },
  { name: 'new-cluster', key: 'newCluster', help: 'This is the first start of a new cluster: vote once a majority of members answer, rather than waiting to hear from every member (a node without a saved vote may have voted and forgotten; see DESIGN.md). Ignored once the data directory has a saved vote, and void if any member answers a term above 0. Never give it to restart a node whose data directory was emptied' },
  { name: 'stop-on-stdin-close', help: 'Stop cleanly when stdin closes. For a supervisor that starts loglogd with a pipe on its stdin: the node never outlives it. Refused when stdin is not a pipe' },
];

/** The examples `loglogd --help` ends with; each must pass the checks above as written. */
export const DAEMON_EXAMPLES: readonly string[] = [
  'loglogd --data ./data --listen 127.0.0.1:7400',
  // A member needs the shared secret: without it this example was refused at once.
  'LOGLOG_CLUSTER_SECRET=s loglogd --id n1 --data ./data/n1 --listen 127.0.0.1:7401 --peers n1=http://127.0.0.1:7401,n2=http://127.0.0.1:7402,n3=http://127.0.0.1:7403',
];

const SWITCH_ALIASES: Record<string, string> = { '-h': 'help', '-v': 'version' };
const KNOWN_FLAGS = new Map<string, DaemonFlag>([
  ...DAEMON_FLAGS.map((f) => [f.name, f] as const),
  ...Object.values(SWITCH_ALIASES).map((name) => [name, { name, help: '' }] as const),
]);


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

/**
 * The settings `flags` (from parseDaemonArgv) give; LOGLOG_CLUSTER_SECRET in `env` stands
 * for --cluster-secret when that is not given. An empty one counts as none, not as an error:
 * a cluster of one needs no secret, and a cluster says it needs one (cluster/mount.ts).
 */
function flagSettings(flags: ReadonlyMap<string, string | true>, env: NodeJS.ProcessEnv): Setting[] {
  const settings: Setting[] = [];
  for (const f of DAEMON_FLAGS) {
    const value = flags.get(f.name);
    if (f.key !== undefined && value !== undefined) settings.push({ key: f.key, value: f.value ? value : true, name: `--${f.name}` });
  }
  const secret = env.LOGLOG_CLUSTER_SECRET;
  if (!flags.has('cluster-secret') && secret) settings.push({ key: 'clusterSecret', value: secret, name: 'LOGLOG_CLUSTER_SECRET' });
  return settings;
}

/** A node's configuration: the defaults, then the --config file, then the flags and `env`. */
export function loadConfig(flags: ReadonlyMap<string, string | true>, env: NodeJS.ProcessEnv = {}): NodeConfig {
  const file = flags.get('config');
  const fromFile = typeof file === 'string' ? configFileSettings(file) : [];
  return checkCluster(applySettings(DEFAULT_NODE_CONFIG, [...fromFile, ...flagSettings(flags, env)]));
}
