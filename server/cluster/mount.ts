/** Attaches a node to its cluster: the peer transport, its channel and its HTTP routes. */
import type { LogNode } from '../log-node.ts';
import type { ApiServer } from '../http/server.ts';
import type { NodeConfig } from '../config.ts';
import { LogError } from '../../spec/errors.ts';
import { WsPeerTransport } from './peer-transport.ts';
import { parseOffset } from '../http/params.ts';
import { sendBytes } from '../http/respond.ts';

/** `config` was checked by loadConfig (this node among the peers, a secret). */
export function mountCluster(node: LogNode, api: ApiServer, config: NodeConfig, log: (line: string) => void): WsPeerTransport {
  if (!config.clusterSecret) throw new LogError('internal', 'mountCluster: no cluster secret (loadConfig checks it)');
  const transport = new WsPeerTransport({
    self: config.id, cluster: config.clusterName, peers: config.peers, secret: config.clusterSecret, log,
    onMessage: (from, msg) => node.step({ type: 'message', from, msg }),
  });
  api.upgrades.set('/v1/peer', (req, socket, head) => transport.handleUpgrade(req, socket, head));
  api.routes.set('GET /v1/peer/payload', async (req, res, url) => {
    transport.authorize(req, '/v1/peer/payload');
    const q = url.searchParams;
    const payload = await node.readPayload(parseOffset('offset', q.get('offset')), parseOffset('length', q.get('length')), parseOffset('term', q.get('term')));
    sendBytes(res, 200, payload);
    node.peerPayloadBytes += payload.length;
    node.peerFetchRequests++;
  });
  // Catch-up: the leader's written frames (committed or not) up to `to`, only while this node
  // is still in the catch-up's term (the replica decides what a follower may copy; see
  // startCatchUp in spec/replica.ts).
  api.routes.set('GET /v1/peer/frames', async (req, res, url) => {
    transport.authorize(req, '/v1/peer/frames');
    const q = url.searchParams;
    const { data, next } = await node.readFramesForPeer(
      parseOffset('offset', q.get('offset')), parseOffset('limit', q.get('limit')), parseOffset('to', q.get('to')), parseOffset('term', q.get('term')),
    );
    sendBytes(res, 200, data, { 'x-loglog-next': next });
    // A run of fetches (`fetch=1`, see LogNode.fetchRun) counts as fetched payloads.
    if (q.get('fetch') === '1') {
      node.peerPayloadBytes += data.length;
      node.peerFetchRequests++;
    } else {
      node.peerCopyBytes += data.length;
    }
  });
  transport.start();
  return transport;
}
