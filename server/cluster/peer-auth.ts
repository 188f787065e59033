/**
 * Peer authentication: every peer request and channel carries an HMAC-SHA256 (from
 * @noble/hashes) over "node|to|cluster|timestamp|nonce|path" keyed with the shared cluster
 * secret. A peer with the wrong secret is refused, and both sides say so in their logs. So is
 * a peer of another cluster (by name), and a request meant for another node: a --peers list
 * that gives one member's address for another would otherwise have two nodes take each
 * other's messages.
 */
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

/** Signatures older or newer than this are refused (replay window). */
const MAX_SKEW_MS = 5 * 60_000;

export interface PeerCredentials {
  'x-loglog-node': string;
  'x-loglog-to': string;
  'x-loglog-cluster': string;
  'x-loglog-ts': string;
  'x-loglog-nonce': string;
  'x-loglog-auth': string;
}

/** Who signs and who is addressed: ids of the members of the cluster named `cluster`. */
export interface PeerRoute {
  node: string;
  to: string;
  cluster: string;
}

function mac(secret: string, r: PeerRoute, ts: string, nonce: string, path: string): string {
  const msg = new TextEncoder().encode(`${r.node}|${r.to}|${r.cluster}|${ts}|${nonce}|${path}`);
  return Buffer.from(hmac(sha256, new TextEncoder().encode(secret), msg)).toString('hex');
}

/** Headers proving `route.node` knows the secret, for a request to `path` of `route.to`. */
export function signPeer(secret: string, route: PeerRoute, path: string): PeerCredentials {
  const ts = String(Date.now());
  const nonce = randomBytes(8).toString('hex');
  return {
    'x-loglog-node': route.node, 'x-loglog-to': route.to, 'x-loglog-cluster': route.cluster,
    'x-loglog-ts': ts, 'x-loglog-nonce': nonce, 'x-loglog-auth': mac(secret, route, ts, nonce, path),
  };
}

/** What a node checks a peer's credentials against. */
export interface PeerCheck {
  /** This node's id. */
  self: string;
  cluster: string;
  members: readonly string[];
}

/** The authenticated peer id, or an explanation of why not. */
export function verifyPeer(secret: string, headers: IncomingHttpHeaders, path: string, want: PeerCheck): { ok: true; node: string } | { ok: false; why: string } {
  const h = (k: keyof PeerCredentials) => headers[k];
  const node = h('x-loglog-node'), to = h('x-loglog-to'), cluster = h('x-loglog-cluster'), ts = h('x-loglog-ts'), nonce = h('x-loglog-nonce'), auth = h('x-loglog-auth');
  if (typeof node !== 'string' || typeof to !== 'string' || typeof cluster !== 'string' || typeof ts !== 'string' || typeof nonce !== 'string' || typeof auth !== 'string') {
    return { ok: false, why: 'missing peer credentials' };
  }
  if (cluster !== want.cluster) return { ok: false, why: `${node} is a member of cluster "${cluster}", ${want.self} of "${want.cluster}" (see --cluster-name)` };
  if (to !== want.self) return { ok: false, why: `${node} sent what is meant for ${to} to the address of ${want.self}: check the --peers list of ${node}` };
  if (!want.members.includes(node)) return { ok: false, why: `"${node}" is not a member of this cluster` };
  if (Math.abs(Date.now() - Number(ts)) > MAX_SKEW_MS) return { ok: false, why: `clock skew or replay from ${node}` };
  const expected = Buffer.from(mac(secret, { node, to, cluster }, ts, nonce, path), 'hex');
  const got = Buffer.from(auth, 'hex');
  if (got.length !== expected.length || !timingSafeEqual(got, expected)) return { ok: false, why: `${node} does not know the cluster secret (wrong --cluster-secret?)` };
  return { ok: true, node };
}
