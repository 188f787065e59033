/**
 * Peer authentication: every peer request and channel carries an HMAC-SHA256 (from
 * @noble/hashes) over "node|timestamp|nonce|path" keyed with the shared cluster secret.
 * A peer with the wrong secret is refused, and both sides say so in their logs.
 */
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

/** Signatures older or newer than this are refused (replay window). */
const MAX_SKEW_MS = 5 * 60_000;

export interface PeerCredentials {
  'x-loglog-node': string;
  'x-loglog-ts': string;
  'x-loglog-nonce': string;
  'x-loglog-auth': string;
}

function mac(secret: string, node: string, ts: string, nonce: string, path: string): string {
  const msg = new TextEncoder().encode(`${node}|${ts}|${nonce}|${path}`);
  return Buffer.from(hmac(sha256, new TextEncoder().encode(secret), msg)).toString('hex');
}

/** Headers proving `node` knows the secret, for a request to `path`. */
export function signPeer(secret: string, node: string, path: string): PeerCredentials {
  const ts = String(Date.now());
  const nonce = randomBytes(8).toString('hex');
  return { 'x-loglog-node': node, 'x-loglog-ts': ts, 'x-loglog-nonce': nonce, 'x-loglog-auth': mac(secret, node, ts, nonce, path) };
}

/** The authenticated peer id, or an explanation of why not. */
export function verifyPeer(secret: string, headers: IncomingHttpHeaders, path: string, members: readonly string[]): { ok: true; node: string } | { ok: false; why: string } {
  const node = headers['x-loglog-node'], ts = headers['x-loglog-ts'], nonce = headers['x-loglog-nonce'], auth = headers['x-loglog-auth'];
  if (typeof node !== 'string' || typeof ts !== 'string' || typeof nonce !== 'string' || typeof auth !== 'string') return { ok: false, why: 'missing peer credentials' };
  if (!members.includes(node)) return { ok: false, why: `"${node}" is not a member of this cluster` };
  if (Math.abs(Date.now() - Number(ts)) > MAX_SKEW_MS) return { ok: false, why: `clock skew or replay from ${node}` };
  const want = Buffer.from(mac(secret, node, ts, nonce, path), 'hex');
  const got = Buffer.from(auth, 'hex');
  if (got.length !== want.length || !timingSafeEqual(got, want)) return { ok: false, why: `${node} does not know the cluster secret (wrong --cluster-secret?)` };
  return { ok: true, node };
}
