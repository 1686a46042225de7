// Prometheus metrics for ops (GET /metrics, prom-client): request durations by route
// template and status, requests in flight, requests refused for overload, the database
// pool and its admission queue, the response cache, and Node's own (event-loop lag, heap,
// GC, CPU). Labels are route templates and status codes only, never URLs or ids.
import type { IncomingMessage, ServerResponse } from 'node:http';
import client from 'prom-client';
import type { Db } from './db';
import type { ResponseCache } from './response-cache/response-cache';

export interface Metrics {
  registry: client.Registry;
  /** Wraps a request: in-flight gauge, and the duration histogram when it ends. */
  track(req: IncomingMessage, res: ServerResponse): void;
}

/** The route template a request matched, set by the read path or read from Express. */
export function setRoute(req: IncomingMessage, route: string): void {
  (req as IncomingMessage & { metricsRoute?: string }).metricsRoute = route;
}

function routeOf(req: IncomingMessage): string {
  const r = req as IncomingMessage & { metricsRoute?: string; route?: { path?: string } };
  return r.metricsRoute ?? r.route?.path ?? 'unmatched';
}

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'OPTIONS']);

export function createMetrics(o: { db: Db; cache?: ResponseCache }): Metrics {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 20 });
  const duration = new client.Histogram({
    name: 'http_request_duration_seconds',
    help: 'Time from request to the end of the response, by route template, method and status.',
    labelNames: ['route', 'method', 'status'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [registry],
  });
  const inFlight = new client.Gauge({ name: 'http_requests_in_flight', help: 'Requests being served now.', registers: [registry] });
  const { db, cache } = o;
  new client.Counter({
    name: 'atelier_requests_refused_total',
    help: 'Requests refused with a 503 before reaching the database: the wait queue was full, or the wait ran out (overload).',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ reason: 'queue_full' }, db.admission.refusedQueueFull);
      this.inc({ reason: 'queue_timeout' }, db.admission.refusedTimeout);
    },
  });
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
  if (cache) {
    new client.Counter({
      name: 'atelier_response_cache_events_total',
      help: 'Host response cache: hits, misses (coalesced: joined a render in flight), bypasses (off or untrusted), evictions, invalidations.',
      labelNames: ['event'],
      registers: [registry],
      collect() {
        const s = cache.stats();
        this.reset();
        for (const k of ['hits', 'misses', 'coalesced', 'bypassed', 'evictions', 'invalidations'] as const) this.inc({ event: k }, s[k]);
      },
    });
    new client.Gauge({
      name: 'atelier_response_cache_size',
      help: 'Host response cache: entries and bytes held; trusted is 1 while its change feed listens.',
      labelNames: ['measure'],
      registers: [registry],
      collect() {
        const s = cache.stats();
        this.set({ measure: 'entries' }, s.entries);
        this.set({ measure: 'bytes' }, s.bytes);
        this.set({ measure: 'trusted' }, cache.isTrusted ? 1 : 0);
      },
    });
  }
  return {
    registry,
    track(req, res) {
      const started = process.hrtime.bigint();
      inFlight.inc();
      let done = false;
      const end = () => {
        if (done) return;
        done = true;
        inFlight.dec();
        const method = METHODS.has(req.method ?? '') ? req.method! : 'other';
        duration.observe({ route: routeOf(req), method, status: res.headersSent ? String(res.statusCode) : 'aborted' }, Number(process.hrtime.bigint() - started) / 1e9);
      };
      res.once('finish', end);
      res.once('close', end);
    },
  };
}
