// Which client sent a request: the peer's address, or the last X-Forwarded-For entry when
// the peer is a trusted proxy (nginx appends the address it saw). Bounded work: the header
// is cut at its last comma, and the address at 64 characters.
//
// Trusted proxies are addresses or CIDR ranges (TRUSTED_PROXIES; node:net's BlockList
// matches ranges and IPv4-mapped IPv6). A request that carries X-Forwarded-For from a peer
// that is neither trusted nor loopback is charged to that peer, and the host says so once
// in its log: that is nginx on another machine missing from TRUSTED_PROXIES, which would
// make every shopper behind it share one read budget.
import type { IncomingMessage } from 'node:http';
import net from 'node:net';

/** TRUSTED_PROXIES when unset: nginx on the same machine. */
export const DEFAULT_TRUSTED_PROXIES = '127.0.0.1,::1';

/** Proxies whose X-Forwarded-For is believed. */
export interface ProxyTrust {
  has(address: string): boolean;
  /** Told of a forwarded request from a peer `has` refused (once is enough to log). */
  untrusted?(peer: string): void;
}

/** Whether `spec` is an address or a CIDR range TrustedProxies accepts. */
export function isAddressOrRange(spec: string): boolean {
  const [address, bits, extra] = spec.split('/');
  const family = net.isIP(address);
  if (!family || extra !== undefined) return false;
  if (bits === undefined) return true;
  if (!/^\d{1,3}$/.test(bits) || Number(bits) > (family === 4 ? 32 : 128)) return false;
  // An IPv4-mapped range shorter than /96 would cover every IPv4 peer (BlockList reads
  // ::ffff:10.0.0.0/8 as ::/8): refused, as a mistake that trusts every client.
  return !(mappedIPv4(address) && Number(bits) < 96);
}

/** The IPv4 address inside an IPv4-mapped IPv6 one (::ffff:a.b.c.d), else undefined. */
function mappedIPv4(a: string): string | undefined {
  return a.toLowerCase().startsWith('::ffff:') && net.isIPv4(a.slice(7)) ? a.slice(7) : undefined;
}

const unmapped = (a: string) => mappedIPv4(a) ?? a;
const familyOf = (a: string): 'ipv4' | 'ipv6' | undefined => (net.isIPv4(a) ? 'ipv4' : net.isIPv6(a) ? 'ipv6' : undefined);
const isLoopback = (a: string) => { const u = unmapped(a); return u === '::1' || u.startsWith('127.'); };

export class TrustedProxies implements ProxyTrust {
  private readonly list = new net.BlockList();
  private warned = false;

  /** `specs`: addresses or CIDR ranges (checked by isAddressOrRange). */
  constructor(readonly specs: string[], private readonly log?: (line: string) => void) {
    for (const spec of specs) {
      const [address, bits] = spec.split('/');
      // Mapped addresses and ranges are matched as the IPv4 ones they stand for.
      const v4 = mappedIPv4(address);
      const a = v4 ?? address;
      if (bits === undefined) this.list.addAddress(a, familyOf(a));
      else this.list.addSubnet(a, Number(bits) - (v4 ? 96 : 0), familyOf(a));
    }
  }

  has(address: string): boolean {
    const a = unmapped(address);
    const family = familyOf(a);
    return family !== undefined && this.list.check(a, family);
  }

  untrusted(peer: string): void {
    // No peer: the connection closed before anything asked for it, not a missing proxy.
    if (this.warned || !peer || isLoopback(peer)) return;
    this.warned = true;
    this.log?.(`X-Forwarded-For from ${peer}, which is not in TRUSTED_PROXIES (${this.specs.join(',') || 'none'}): its requests are charged to ${peer}, so every client behind it shares one read budget. If ${peer} is your nginx, add it to TRUSTED_PROXIES (docs/configuration.md). Said once.`);
  }
}

export function clientAddress(req: IncomingMessage, trust: ProxyTrust): string {
  const peer = req.socket.remoteAddress ?? '';
  const xff = req.headers['x-forwarded-for'];
  if (typeof xff !== 'string') return peer;
  if (!trust.has(peer)) {
    trust.untrusted?.(peer);
    return peer;
  }
  return xff.slice(xff.lastIndexOf(',') + 1).trim().slice(0, 64) || peer;
}
