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
