// Which client sent a request: the peer's address, or the last X-Forwarded-For entry when
// the peer is a trusted proxy (nginx appends the address it saw). Bounded work: the header
// is cut at its last comma, and the address at 64 characters.
import type { IncomingMessage } from 'node:http';

export function clientAddress(req: IncomingMessage, trustedProxies: Set<string>): string {
  const peer = req.socket.remoteAddress ?? '';
  const xff = req.headers['x-forwarded-for'];
  if (typeof xff !== 'string' || !trustedProxies.has(peer)) return peer;
  return xff.slice(xff.lastIndexOf(',') + 1).trim().slice(0, 64) || peer;
}
