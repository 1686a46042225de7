// How much of the storefront mix any response cache behind nginx could answer (issue 29):
// requests drawn from the traffic model (loadtest/lib/traffic.js: the generator's
// distribution, mix and seed, but not its exact sequence, which also draws POST bodies and
// sends a meta before a product's first POST) replayed through a model of the two cache
// tiers, without a server. nginx keeps each read key for its TTL (stored from its second read on); a read it does not hold
// reaches the hosts strictly in turn (nginx's round robin is per worker); a host holds every
// key it rendered (no memory bound, no TTL) until a write to the drawn product drops it
// (every host hears every write; a vote's review may belong to a neighbouring product). Three answers for the reads that reach the hosts: the hit ratio
// of two such caches (as deployed), of one cache both hosts shared, and of a cache that
// nothing ever drops (the key was read before in the window at all): the ceiling of any
// response cache for that window. The knee rows' measured host hit ratio stands beside it.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const traffic = require('../loadtest/lib/traffic.js') as typeof import('../loadtest/lib/traffic.js');

export interface Cacheability {
  reads: number;
  /** Share of the reads nginx answers from its own cache. */
  nginxHitRatio: number;
  /** Reads that reach a host. */
  reachedHosts: number;
  /** Of those: answered from the memory of the host they reached (two caches, round-robin). */
  hostHitRatio: number;
  /** Of those: answered if both hosts shared one cache. */
  sharedHitRatio: number;
  /** Of those: the key was read before in the window (the ceiling of any cache behind nginx). */
  seenBeforeRatio: number;
}

/**
 * `minUses`: nginx stores a key's answer from its minUses-th read on (proxy_cache_min_uses,
 * 2 as deployed). nginx remembers a key's reads for 10 minutes unless its 32 MB keys zone
 * (~250,000 keys) forgets it first; the model remembers every key of the window, which holds
 * for a knee step (30 s, fewer keys than the zone) and overstates longer windows.
 */
export function cacheability(o: { rate: number; seconds: number; products: number; seed: number; ttlSeconds?: number; minUses?: number; hosts?: number; mix?: { op: string; weight: number }[] }): Cacheability {
  const ttl = o.ttlSeconds ?? 5;
  const minUses = o.minUses ?? 2;
  const uses = new Map<string, number>();
  const rand = traffic.createRandom(o.seed);
  const model = { pickProduct: traffic.productPicker('zipf', o.products), mix: o.mix };
  const nginx = new Map<string, number>(); // key -> expiry (s)
  const hosts = Array.from({ length: o.hosts ?? 2 }, () => new Map<string, number>()); // key -> time stored
  const shared = new Map<string, number>();
  const seen = new Set<string>();
  const wroteAt = new Map<number, number>();
  let rr = 0;
  let reads = 0;
  let nginxHits = 0;
  let reached = 0;
  let hostHits = 0;
  let sharedHits = 0;
  let seenBefore = 0;
  const total = Math.round(o.rate * o.seconds);
  for (let i = 0; i < total; i++) {
    const t = i / o.rate;
    const r = traffic.nextRequest(model, rand);
    if (r.method !== 'GET') {
      wroteAt.set(r.productId, t);
      continue;
    }
    reads++;
    const key = r.path;
    const used = (uses.get(key) ?? 0) + 1;
    uses.set(key, used);
    if ((nginx.get(key) ?? -1) > t) {
      nginxHits++;
      continue;
    }
    reached++;
    const wrote = wroteAt.get(r.productId) ?? -1;
    const holds = (cache: Map<string, number>) => {
      const stored = cache.get(key);
      return stored !== undefined && stored > wrote;
    };
    const host = hosts[rr++ % hosts.length];
    if (holds(host)) hostHits++;
    if (holds(shared)) sharedHits++;
    if (seen.has(key)) seenBefore++;
    seen.add(key);
    host.set(key, t);
    shared.set(key, t);
    if (used >= minUses) nginx.set(key, t + ttl);
  }
  const of = (n: number, d: number) => n / Math.max(1, d);
  return {
    reads, nginxHitRatio: of(nginxHits, reads), reachedHosts: reached,
    hostHitRatio: of(hostHits, reached), sharedHitRatio: of(sharedHits, reached), seenBeforeRatio: of(seenBefore, reached),
  };
}
