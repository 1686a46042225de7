// The Node load generator: drives the shared traffic model (loadtest/lib/traffic.js)
// with autocannon, stage by stage at constant arrival rates, and measures what the
// service did: achieved rps, errors by status, latency percentiles, per-second timeline.
import type { EventEmitter } from 'node:events';
import autocannon from 'autocannon';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const traffic = require('../../loadtest/lib/traffic.js') as typeof import('../../loadtest/lib/traffic.js');

export interface Stage {
  /** Requests per second to offer; 0 = as fast as the connections allow. */
  rate: number;
  duration: number;
}

export interface Thresholds {
  errorRate: number;
  p99Ms: number;
  /** Longest single response allowed. */
  maxMs?: number;
  /** p99 of the reads alone. */
  readP99Ms?: number;
}

export interface RunOptions {
  target: string;
  stages: Stage[];
  thresholds?: Thresholds;
  stopOnFailure?: boolean;
  distribution?: string;
  products: number;
  connections?: number;
  seed?: number;
  /** Override the request mix (e.g. only GET /reviews for a benchmark row). */
  mix?: { op: string; weight: number }[];
  onStage?: (s: StageResult) => void;
}

export interface Percentiles {
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/** Latency of one class of responses (an operation, or a cache path). */
export interface ClassLatency {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

export interface StageResult {
  offeredRate: number;
  duration: number;
  requests: number;
  rps: number;
  errors: number;
  errorRate: number;
  statuses: Record<string, number>;
  latencyMs: Percentiles;
  cacheHits: number;
  /** Host response-cache hits (X-Response-Cache: HIT) among answered requests. */
  hostCacheHits: number;
  /** Latency by operation (list, meta, post, helpful, report). */
  byOp: Record<string, ClassLatency>;
  /**
   * Latency of reads by cache path: nginx's X-Cache-Status, then the host's
   * X-Response-Cache when a host answered (e.g. "HIT", "MISS/HIT", "MISS/MISS").
   */
  byCache: Record<string, ClassLatency>;
  /** All reads (GET /reviews, /reviews/meta) together, and all writes together. */
  reads: ClassLatency;
  writes: ClassLatency;
  passed: boolean;
}

export interface TimelinePoint {
  second: number;
  requests: number;
  errors: number;
  p50: number;
  p99: number;
}

export interface RunResult {
  target: string;
  distribution: string;
  products: number;
  startedAt: string;
  stages: StageResult[];
  timeline: TimelinePoint[];
  passed: boolean;
}

function classLatency(groups: Map<string, number[]>): Record<string, ClassLatency> {
  const out: Record<string, ClassLatency> = {};
  for (const [k, v] of [...groups.entries()].sort((x, y) => y[1].length - x[1].length)) {
    const p = percentiles(v);
    out[k] = { count: v.length, p50: p.p50, p99: p.p99, max: p.max };
  }
  return out;
}

function percentiles(values: number[]): Percentiles {
  if (values.length === 0) return { p50: 0, p90: 0, p99: 0, max: 0, mean: 0 };
  const v = Float64Array.from(values).sort();
  const at = (q: number) => v[Math.min(v.length - 1, Math.floor(q * v.length))];
  let sum = 0;
  for (const x of v) sum += x;
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: v[v.length - 1], mean: sum / v.length };
}

interface Ctx {
  last?: { op: string; productId: number };
  postNext?: number;
}

export async function runLoad(o: RunOptions): Promise<RunResult> {
  const rand = traffic.createRandom(o.seed ?? 1);
  const distribution = o.distribution ?? 'zipf';
  const pickProduct = traffic.productPicker(distribution, o.products);
  const model = { pickProduct, mix: o.mix ?? traffic.ENDPOINT_MIX };
  // Characteristic ids learned from meta responses, so POST bodies rate the right ones.
  const characteristics = new Map<number, number[]>();
  const result: RunResult = { target: o.target, distribution, products: o.products, startedAt: new Date().toISOString(), stages: [], timeline: [], passed: true };
  const started = performance.now();

  for (const stage of o.stages) {
    const latencies: number[] = [];
    const statuses: Record<string, number> = {};
    let errors = 0;
    let cacheHits = 0;
    let hostCacheHits = 0;
    const byOp = new Map<string, number[]>();
    const byCache = new Map<string, number[]>();
    const byKind = new Map<string, number[]>([['reads', []], ['writes', []]]);
    // Set by onResponse and read by the 'response' event, which autocannon emits right after
    // it, synchronously, for the same response.
    let last: { op: string; cache?: string } | undefined;
    const buckets = new Map<number, { n: number; errors: number; lat: number[] }>();
    const connections = o.connections ?? Math.min(256, Math.max(8, Math.ceil((stage.rate || 20000) / 250)));

    const setupRequest = (req: Record<string, unknown>, ctx: Ctx) => {
      let r = traffic.nextRequest(model, rand);
      if (ctx.postNext !== undefined) {
        r = { op: 'post', method: 'POST', path: '/reviews', productId: ctx.postNext };
        ctx.postNext = undefined;
      }
      if (r.op === 'post') {
        const ids = characteristics.get(r.productId);
        if (ids === undefined) {
          // Unknown characteristics: read the meta first, post on this connection's next turn.
          ctx.postNext = r.productId;
          r = { op: 'meta', method: 'GET', path: `/reviews/meta?product_id=${r.productId}`, productId: r.productId };
        } else {
          const body = traffic.reviewBody(r.productId, ids, rand);
          req.body = JSON.stringify(body);
          req.headers = { 'content-type': 'application/json', 'idempotency-key': body.name };
        }
      }
      if (r.op !== 'post') {
        req.body = undefined;
        req.headers = {};
      }
      req.method = r.method;
      req.path = r.path;
      ctx.last = { op: r.op, productId: r.productId };
      return req;
    };
    const onResponse = (status: number, body: string, ctx: Ctx, headers: Record<string, string>) => {
      if (ctx.last?.op === 'meta' && status === 200 && characteristics.size < 100_000) {
        try {
          characteristics.set(ctx.last.productId, traffic.characteristicIdsFromMeta(body));
        } catch {
          // not JSON: counted by status below
        }
      }
      // Raw header names keep the server's case.
      const edge = headers?.['X-Cache-Status'] ?? headers?.['x-cache-status'];
      const host = headers?.['X-Response-Cache'] ?? headers?.['x-response-cache'];
      if (edge === 'HIT') cacheHits++;
      if (host === 'HIT') hostCacheHits++;
      const op = ctx.last?.op ?? 'unknown';
      last = { op, cache: op === 'list' || op === 'meta' ? [edge, host].filter(Boolean).join('/') || 'none' : undefined };
    };

    const instance = autocannon({
      url: o.target,
      connections,
      duration: stage.duration,
      ...(stage.rate > 0 ? { overallRate: stage.rate } : {}),
      timeout: 10,
      requests: [{ setupRequest: setupRequest as never, onResponse: onResponse as never }],
    }) as unknown as EventEmitter & PromiseLike<autocannon.Result>; // the instance is both (its typings say only Promise)
    const stageStart = performance.now();
    instance.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
      latencies.push(responseTime);
      statuses[statusCode] = (statuses[statusCode] ?? 0) + 1;
      if (last) {
        let g = byOp.get(last.op);
        if (!g) byOp.set(last.op, (g = []));
        g.push(responseTime);
        byKind.get(last.op === 'list' || last.op === 'meta' ? 'reads' : 'writes')!.push(responseTime);
        if (last.cache) {
          let c = byCache.get(last.cache);
          if (!c) byCache.set(last.cache, (c = []));
          c.push(responseTime);
        }
        last = undefined;
      }
      const bad = traffic.isError(statusCode);
      if (bad) errors++;
      const second = Math.floor((performance.now() - started) / 1000);
      let b = buckets.get(second);
      if (!b) buckets.set(second, (b = { n: 0, errors: 0, lat: [] }));
      b.n++;
      if (bad) b.errors++;
      b.lat.push(responseTime);
    });
    const summary = await instance;
    const seconds = (performance.now() - stageStart) / 1000;
    const connectionErrors = summary.errors + summary.timeouts;
    if (connectionErrors) statuses['connection-error'] = connectionErrors;
    const requests = latencies.length + connectionErrors;
    const s: StageResult = {
      offeredRate: stage.rate,
      duration: stage.duration,
      requests,
      rps: latencies.length / seconds,
      errors: errors + connectionErrors,
      errorRate: requests ? (errors + connectionErrors) / requests : 0,
      statuses,
      latencyMs: percentiles(latencies),
      cacheHits,
      hostCacheHits,
      byOp: classLatency(byOp),
      byCache: classLatency(byCache),
      reads: classLatency(byKind).reads,
      writes: classLatency(byKind).writes,
      passed: true,
    };
    const t = o.thresholds;
    if (t) {
      s.passed = s.errorRate <= t.errorRate && s.latencyMs.p99 <= t.p99Ms &&
        (t.maxMs === undefined || s.latencyMs.max <= t.maxMs) && (t.readP99Ms === undefined || s.reads.p99 <= t.readP99Ms);
    }
    result.stages.push(s);
    for (const [second, b] of [...buckets.entries()].sort((x, y) => x[0] - y[0])) {
      const p = percentiles(b.lat);
      result.timeline.push({ second, requests: b.n, errors: b.errors, p50: p.p50, p99: p.p99 });
    }
    o.onStage?.(s);
    if (!s.passed) {
      result.passed = false;
      if (o.stopOnFailure) break;
    }
  }
  return result;
}
