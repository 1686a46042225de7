// Prometheus metrics for ops (GET /metrics, prom-client): request durations by route
// template and status, requests in flight, requests refused for overload, the database
// pool and its admission queue, the response cache, and Node's own (event-loop lag, heap,
// GC, CPU). Labels are route templates and status codes only, never URLs or ids.
import type { IncomingMessage, ServerResponse } from 'node:http';
import client from 'prom-client';
import type { Db } from '../db';
import type { ReplicaSet } from '../db/replicas';
import type { ResponseCache } from '../response-cache/response-cache';
import type { MetaMemory } from '../reviews/meta-memory';
import type { MemoryTableStats } from '../reviews/memory-table';
import type { ReviewMemory } from '../reviews/review-memory';
import { DurationHistogram } from './duration-histogram';

export interface Metrics {
  registry: client.Registry;
  /** Wraps a request: in-flight gauge, and the duration histogram when it ends. */
  track(req: IncomingMessage, res: ServerResponse): void;
  /**
   * The same without an event listener, for the read path, which calls end() itself when it
   * has sent the answer (a listener per request cost ~15 % of a cache hit).
   */
  begin(): number;
  end(started: number, route: string, method: string, status: number | string): void;
}

/** The route template Express matched (the read path names its own). */
function routeOf(req: IncomingMessage): string {
  return (req as IncomingMessage & { route?: { path?: string } }).route?.path ?? 'unmatched';
}

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'OPTIONS']);

/**
 * How often the event loop's delay is sampled (ms). prom-client's nodejs_eventloop_lag_*
 * values include this interval: an idle host reads about this much.
 */
export const EVENT_LOOP_SAMPLE_MS = 20;

export function createMetrics(o: { db: Db; cache?: ResponseCache; replicas?: ReplicaSet; metaMemory?: MetaMemory; reviewMemory?: ReviewMemory }): Metrics {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  const duration = new DurationHistogram('http_request_duration_seconds', 'Time from request to the end of the response, by route template, method and status.',
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10], registry);
  let inFlightNow = 0;
  new client.Gauge({ name: 'http_requests_in_flight', help: 'Requests being served now.', registers: [registry], collect() {
    this.set(inFlightNow);
  } });
  const { db, cache } = o;
  /** A counter whose value per label is read from the service's own tallies at each scrape. */
  const tallies = (name: string, help: string, label: string, read: () => Record<string, number>) => new client.Counter({
    name, help, labelNames: [label], registers: [registry],
    collect() {
      this.reset();
      for (const [value, n] of Object.entries(read())) this.inc({ [label]: value }, n);
    },
  });
  /** A gauge of several measures read together, one label value each. */
  const measures = (name: string, help: string, label: string, read: () => Record<string, number>) => new client.Gauge({
    name, help, labelNames: [label], registers: [registry],
    collect() {
      for (const [value, n] of Object.entries(read())) this.set({ [label]: value }, n);
    },
  });
  tallies('atelier_requests_refused_total',
    'Requests refused with a 503 before reaching the database: the wait queue was full, or the wait ran out (overload).',
    'reason', () => ({ queue_full: db.admission.refusedQueueFull, queue_timeout: db.admission.refusedTimeout }));
  new client.Gauge({
    name: 'atelier_db_pool_connections',
    help: 'Database pool: connections open (total), idle, and requests waiting for one.',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      this.set({ state: 'total' }, db.pool.totalCount);
      this.set({ state: 'idle' }, db.pool.idleCount);
      this.set({ state: 'waiting' }, db.queueLength);
    },
  });
  tallies('atelier_db_batched_total',
    'Cold reads batched into shared statements: statements run and requests they answered (requests / statements = mean batch).',
    'what', () => ({ ...db.batched }));
  if (o.replicas) {
    const set = o.replicas;
    new client.Gauge({
      name: 'atelier_replica_lag', help: 'Each standby: WAL bytes and seconds behind the primary, and whether it serves reads (usable 1/0).',
      labelNames: ['replica', 'measure'], registers: [registry],
      collect() {
        // The node that is the primary now (DATABASE_URL's, or a promoted standby) is no standby.
        this.reset();
        for (const [i, s] of set.states.entries()) {
          if (set.isPrimary(i)) continue;
          this.set({ replica: s.name, measure: 'bytes' }, Number.isFinite(s.lagBytes) ? s.lagBytes : -1);
          this.set({ replica: s.name, measure: 'seconds' }, Number.isFinite(s.lagSeconds) ? s.lagSeconds : -1);
          this.set({ replica: s.name, measure: 'usable' }, s.usable ? 1 : 0);
        }
      },
    });
    new client.Gauge({
      name: 'atelier_db_primary_up', help: 'Whether the primary answered the last probe as a primary (1), or writes are unavailable (0).', registers: [registry],
      collect() {
        this.set(set.writable ? 1 : 0);
      },
    });
    new client.Counter({
      name: 'atelier_db_failovers_total', help: 'Times this host moved its primary pool to a promoted standby.', registers: [registry],
      collect() {
        this.reset();
        this.inc(set.failovers);
      },
    });
    tallies('atelier_db_reads_total', 'Cold reads by where they ran: primary, replica, and fallback (a read retried on another server after one failed it).', 'target', () => ({ ...set.reads }));
  }
  if (cache) {
    tallies('atelier_response_cache_events_total',
      'Host response cache: hits, misses (coalesced: joined a render in flight), bypasses (off or untrusted), evictions, invalidations.',
      'event', () => {
        const s = cache.stats();
        return { hits: s.hits, misses: s.misses, coalesced: s.coalesced, bypassed: s.bypassed, evictions: s.evictions, invalidations: s.invalidations };
      });
    measures('atelier_response_cache_size', 'Host response cache: entries and bytes held; trusted is 1 while its change feed listens.',
      'measure', () => {
        const s = cache.stats();
        return { entries: s.entries, bytes: s.bytes, trusted: cache.isTrusted ? 1 : 0 };
      });
  }
  // The tables of every product in memory: the same events and measures for each.
  const tables: [string, string, { stats(): MemoryTableStats } | undefined][] = [
    ['meta', 'Meta from memory', o.metaMemory], ['review', 'Review lists from memory', o.reviewMemory]];
  for (const [name, what, memory] of tables) {
    if (!memory) continue;
    const quiet = `${name.toUpperCase()}_MEMORY_READ_BACK_AFTER_S`;
    tallies(`atelier_${name}_memory_events_total`,
      `${what}: answers served, reads of a dirty product (answered from the cache or the database; of them, those of products too large to read back (lists: REVIEW_MEMORY_REFRESH_MAX), and those sent on because a read-back statement under way had run over 50 ms), loads, failed and abandoned loads, changed products read again (of them, those the sweep asked for, quiet for ${quiet}; and statements of that which failed), and the sweep's turns skipped while requests waited for the primary.`,
      'event', () => {
        const s = memory.stats();
        return { served: s.served, dirty_reads: s.dirtyReads, dirty_reads_too_large: s.dirtyReadsTooLarge, dirty_reads_behind_slow: s.dirtyReadsBehindSlow, loads: s.loads, failed_loads: s.failedLoads, abandoned_loads: s.abandonedLoads, refreshed: s.refreshed, swept: s.swept, failed_refreshes: s.failedRefreshes, sweeps_skipped_busy: s.sweepsSkippedBusy };
      });
    measures(`atelier_${name}_memory_size`, `${what}: the highest product id held (0 while not loaded), dirty products among them, bytes held.`,
      'measure', () => {
        const s = memory.stats();
        return { max_product: s.maxProduct, dirty: s.dirty, bytes: s.bytes };
      });
  }
  // Each (route, method, status) series is found by three map lookups, never by hashing a
  // label set (src/http/duration-histogram.ts).
  const end = (started: number, route: string, method: string, status: number | string) => {
    inFlightNow--;
    duration.series(route, METHODS.has(method) ? method : 'other', status).observe((performance.now() - started) / 1000);
  };
  const begin = () => {
    inFlightNow++;
    return performance.now();
  };
  return {
    registry,
    begin,
    end,
    track(req, res) {
      const started = begin();
      // 'close' follows 'finish' on every response, and comes alone when the client left.
      res.once('close', () => end(started, routeOf(req), req.method ?? 'other', res.writableFinished ? res.statusCode : 'aborted'));
    },
  };
}
