// A per-client budget for the reads that cost the database: bytes rendered on cache misses.
// nginx's read limit counts requests, not work: a page of count=1000 renders ~290 KB where a
// storefront page renders ~2 KB, and varying count and sort makes every request a new key,
// so one client inside the request limit could take most of PostgreSQL. Each client owes
// the bytes its misses rendered; the debt drains at `bytesPerSecond`; past `burstBytes` its
// misses get a JSON 429 (with Retry-After) until the debt is paid, while its cache hits,
// which cost nothing, are still served (a list page assembled from the review memory, and a
// meta answer read back into the meta memory, are charged as renders: read-path.ts).
// Clients are told apart by address: the peer, or the last X-Forwarded-For entry when the
// peer is a trusted proxy (nginx), taken before the read waits.
import type { IncomingMessage } from 'node:http';
import { LRUCache } from 'lru-cache';
import { clientAddress, type ProxyTrust } from '../lib/client-address';

export interface ReadBudgetOptions {
  bytesPerSecond: number;
  burstBytes: number;
  /** Addresses of proxies whose X-Forwarded-For is believed (nginx's). */
  trustedProxies: ProxyTrust;
  /** Clients remembered at most (the least recent are forgotten, debt and all). */
  maxClients?: number;
}

interface Debt {
  bytes: number;
  at: number;
}

export class ReadBudget {
  private readonly debts: LRUCache<string, Debt>;
  /** Until when some client may still be over budget: before then, reads look their client up. */
  private overUntil = 0;

  constructor(private readonly o: ReadBudgetOptions) {
    this.debts = new LRUCache({ max: o.maxClients ?? 10_000 });
  }

  /** The client's address (src/lib/client-address.ts). */
  clientOf(req: IncomingMessage): string {
    return clientAddress(req, this.o.trustedProxies);
  }

  /** Whether any client may be over budget now (a cheap check before looking one up). */
  anyOver(now = performance.now()): boolean {
    return now < this.overUntil;
  }

  /** Seconds until `client` may render again; 0 when it may now. */
  retryAfter(client: string, now = performance.now()): number {
    const d = this.debts.get(client);
    if (!d) return 0;
    const owed = this.owed(d, now);
    return owed > this.o.burstBytes ? (owed - this.o.burstBytes) / this.o.bytesPerSecond : 0;
  }

  /** `client`'s miss rendered `bytes`. */
  charge(client: string, bytes: number, now = performance.now()): void {
    const d = this.debts.get(client);
    const owed = (d ? this.owed(d, now) : 0) + bytes;
    this.debts.set(client, { bytes: owed, at: now });
    if (owed > this.o.burstBytes) {
      this.overUntil = Math.max(this.overUntil, now + ((owed - this.o.burstBytes) / this.o.bytesPerSecond) * 1000);
    }
  }

  private owed(d: Debt, now: number): number {
    return Math.max(0, d.bytes - ((now - d.at) / 1000) * this.o.bytesPerSecond);
  }
}
